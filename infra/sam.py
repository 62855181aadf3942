"""The AWS SAM template, generated from infra/stack.json: the same queues, dead-letter
queues, table and notification the embedded stack builds, so the two cannot drift.

    .venv/bin/python -m infra.sam          # rewrites infra/template.json (the backend)
    .venv/bin/python -m infra.package      # builds the artefacts, merges the API in

`infra/template.json` is the backend alone (buckets, queues, table, functions, layers,
pool, site, alarms); `python -m infra.package` hands it, with the API's settings, to
`chalice package --merge-template`, which adds the API Gateway and its handlers, and
writes the deployable template beside the zips it names (build/package/).

Bucket names get the stack name and account id (S3 names are global); everything
else keeps the definition's settings.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from infra import definition as stackdef

TEMPLATE_FILE = Path(__file__).with_name("template.json")
RUNTIME = "python3.11"
ARCHITECTURE = "x86_64"
#: the layers (layers/<name>/requirements.txt), in the order a function lists them
LAYERS = ("numeric", "science")
LAYER_RESOURCES = {"numeric": "NumericLayer", "science": "ScienceLayer"}
#: the functions' code, as infra/package.py writes it beside the packaged template
CODE_URI = "functions.zip"
#: what each backend function imports beyond its code (tests/test_package.py imports
#: each handler with exactly these)
FUNCTION_LAYERS = {
    "IngestFunction": ("numeric",),
    "IngestDeadLetterFunction": ("numeric",),
    "ReduceFunction": ("numeric", "science"),
    "ReduceDeadLetterFunction": ("numeric", "science"),
    "BackgroundDeadLetterFunction": ("numeric", "science"),
    "ConsistencyFunction": ("numeric", "science"),
}
RAW_ARN = "arn:${AWS::Partition}:s3:::${AWS::StackName}-raw-${AWS::AccountId}"
PRODUCTS_ARN = "arn:${AWS::Partition}:s3:::${AWS::StackName}-products-${AWS::AccountId}"
#: CloudFront's managed cache policy "CachingOptimized"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"


def _bucket_name(suffix: str) -> Dict[str, Any]:
    return {"Fn::Sub": "${AWS::StackName}-" + suffix + "-${AWS::AccountId}"}


def _queue_pair(name: str, q: Dict[str, Any], lambda_timeout: int) -> Dict[str, Any]:
    dlq = name + "DeadLetterQueue"
    # AWS's advice for SQS event sources: visibility at least six times the function timeout.
    visibility = max(q["visibility_timeout_seconds"], 6 * lambda_timeout)
    encrypted = {"SqsManagedSseEnabled": True}
    return {
        dlq: {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": q["retention_seconds"],
                                                         **encrypted}},
        name: {"Type": "AWS::SQS::Queue", "Properties": {
            "VisibilityTimeout": visibility,
            "MessageRetentionPeriod": q["retention_seconds"],
            "ReceiveMessageWaitTimeSeconds": q["receive_wait_seconds"],
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                              "maxReceiveCount": q["max_receive_count"]},
            **encrypted,
        }},
    }


def _sqs_event(queue: str, batch: int, maximum_concurrency=None) -> Dict[str, Any]:
    props = {"Queue": {"Fn::GetAtt": [queue, "Arn"]}, "BatchSize": batch,
             "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    if maximum_concurrency:
        props["ScalingConfig"] = {"MaximumConcurrency": maximum_concurrency}
    return {"Type": "SQS", "Properties": props}


def _function(name: str, handler: str, timeout: int, memory: int, policies, env, events) -> Dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Properties": {
        "Handler": handler, "Runtime": RUNTIME, "Architectures": [ARCHITECTURE], "CodeUri": CODE_URI,
        "Timeout": timeout, "MemorySize": memory, "Environment": {"Variables": env}, "Policies": policies,
        "Layers": [{"Ref": LAYER_RESOURCES[layer]} for layer in FUNCTION_LAYERS[name]],
        "Events": events,
    }}


def _tls_only(bucket: str) -> Dict[str, Any]:
    """A bucket policy refusing any request not made over TLS."""
    arn = {"Fn::GetAtt": [bucket, "Arn"]}
    return {"Type": "AWS::S3::BucketPolicy", "Properties": {"Bucket": {"Ref": bucket}, "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{
            "Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, {"Fn::Sub": "${" + bucket + ".Arn}/*"}],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}}


def _private_bucket(name, lifecycle_rules: List[Dict[str, Any]], **extra) -> Dict[str, Any]:
    """Encrypted, no public access, multipart uploads nobody completed aborted."""
    props = {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "LifecycleConfiguration": {"Rules": lifecycle_rules},
        **extra,
    }
    if name is not None:
        props["BucketName"] = name
    return {"Type": "AWS::S3::Bucket", "Properties": props}


def _abort_multipart(d: Dict[str, Any]) -> Dict[str, Any]:
    lifecycle = stackdef.raw_bucket_lifecycle(d)["Rules"][0]
    return {"Id": lifecycle["ID"], "Status": lifecycle["Status"],
            "AbortIncompleteMultipartUpload": lifecycle["AbortIncompleteMultipartUpload"]}


def _policies(d: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """Least privilege per function: ingest reads raw frames and never writes products;
    the consistency check alone re-queues ingest work and aborts uploads."""
    table = {"DynamoDBCrudPolicy": {"TableName": {"Ref": "IndexTable"}}}
    read_raw = {"S3ReadPolicy": {"BucketName": _bucket_name("raw")}}
    products = {"S3CrudPolicy": {"BucketName": _bucket_name("products")}}
    send = [{"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": [q, "QueueName"]}}}
            for q in ("ReduceQueue", "BackgroundQueue")]
    reduction = [read_raw, products, table, *send]
    return {
        "ingest": [read_raw, table, *send],
        "reduction": reduction,
        "consistency": reduction + [
            {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}}},
            {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:ListBucketMultipartUploads"], "Resource": {"Fn::Sub": RAW_ARN}},
                {"Effect": "Allow", "Action": ["s3:AbortMultipartUpload"], "Resource": {"Fn::Sub": RAW_ARN + "/*"}},
            ]}],
    }


def _environment(d: Dict[str, Any]) -> Dict[str, Any]:
    names = stackdef.environment(d)
    return {
        "RAW_BUCKET": {"Ref": "RawBucket"}, "RAW_PREFIX": names["RAW_PREFIX"],
        "PRODUCTS_BUCKET": {"Ref": "ProductsBucket"}, "INDEX_TABLE": {"Ref": "IndexTable"},
        "MAX_RECEIVE_COUNT": names["MAX_RECEIVE_COUNT"], "WORK_QUEUE_URL": {"Ref": "ReduceQueue"},
        "BACKGROUND_QUEUE_URL": {"Ref": "BackgroundQueue"}, "PROPRIETARY_DAYS": {"Ref": "ProprietaryDays"},
    }


def _functions(d: Dict[str, Any]) -> Dict[str, Any]:
    ingest_fn, reduce_fn, check_fn = d["ingest_function"], d["reduce_function"], d["consistency_function"]
    env, policies = _environment(d), _policies(d)
    dlq_events = {q: {"Queue": _sqs_event(q + "DeadLetterQueue", 10)}
                  for q in ("IngestQueue", "ReduceQueue", "BackgroundQueue")}
    return {
        "IngestFunction": _function(
            "IngestFunction", ingest_fn["handler"], ingest_fn["timeout_seconds"], ingest_fn["memory_mb"],
            policies["ingest"], env,
            {"Queue": _sqs_event("IngestQueue", ingest_fn["batch_size"], ingest_fn["maximum_concurrency"])}),
        "IngestDeadLetterFunction": _function(
            "IngestDeadLetterFunction", ingest_fn["dlq_handler"], 30, 256, policies["ingest"], env,
            dlq_events["IngestQueue"]),
        # The reduction's slow work (whole-frame cosmic-ray cleaning, night archives) on a
        # second event source, capped at two executions (Lambda's least), so it never holds
        # up a new frame (the local runner's priority polling stands for it: infra/local/runner.py).
        "ReduceFunction": _function(
            "ReduceFunction", reduce_fn["handler"], reduce_fn["timeout_seconds"], reduce_fn["memory_mb"],
            policies["reduction"], env,
            {"Queue": _sqs_event("ReduceQueue", reduce_fn["batch_size"], reduce_fn["maximum_concurrency"]),
             "Background": _sqs_event("BackgroundQueue", reduce_fn["batch_size"],
                                      d["background_queue"]["maximum_concurrency"])}),
        "ReduceDeadLetterFunction": _function(
            "ReduceDeadLetterFunction", reduce_fn["dlq_handler"], 30, 256, policies["reduction"], env,
            dlq_events["ReduceQueue"]),
        "BackgroundDeadLetterFunction": _function(
            "BackgroundDeadLetterFunction", reduce_fn["dlq_handler"], 30, 256, policies["reduction"], env,
            dlq_events["BackgroundQueue"]),
        "ConsistencyFunction": _function(
            "ConsistencyFunction", check_fn["handler"], check_fn["timeout_seconds"], check_fn["memory_mb"],
            policies["consistency"], {**env, "INGEST_QUEUE_URL": {"Ref": "IngestQueue"}},
            {"Schedule": {"Type": "Schedule", "Properties": {
                "Schedule": check_fn["schedule"], "Description": "Goodman Live consistency check and repair"}}}),
    }


def _layers() -> Dict[str, Any]:
    return {LAYER_RESOURCES[name]: {"Type": "AWS::Serverless::LayerVersion", "Properties": {
        "LayerName": {"Fn::Sub": "${AWS::StackName}-" + name},
        "Description": f"Goodman Live {name} layer: layers/{name}/requirements.txt built for {RUNTIME} {ARCHITECTURE}",
        "ContentUri": f"layers/{name}.zip", "CompatibleRuntimes": [RUNTIME],
        "CompatibleArchitectures": [ARCHITECTURE], "RetentionPolicy": "Delete"}} for name in LAYERS}


def _site() -> Dict[str, Any]:
    """The page: a private bucket read only by this stack's CloudFront distribution
    (origin access control), over HTTPS, on the operator's domain when one is given."""
    return {
        "SiteBucket": _private_bucket(None, [{"Id": "abort-incomplete-multipart-uploads", "Status": "Enabled",
                                              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]),
        "SiteOriginAccessControl": {"Type": "AWS::CloudFront::OriginAccessControl", "Properties": {
            "OriginAccessControlConfig": {"Name": {"Fn::Sub": "${AWS::StackName}-site"},
                                          "OriginAccessControlOriginType": "s3", "SigningBehavior": "always",
                                          "SigningProtocol": "sigv4"}}},
        # cfn-lint checks CertificateArn's empty default against the ACM pattern, though
        # it is only read when DomainName is given (then the parameter's pattern holds).
        "SiteDistribution": {"Type": "AWS::CloudFront::Distribution",
                             "Metadata": {"cfn-lint": {"config": {"ignore_checks": ["W1030"]}}},
                             "Properties": {"DistributionConfig": {
            "Enabled": True, "Comment": {"Fn::Sub": "${AWS::StackName} page"}, "DefaultRootObject": "index.html",
            "HttpVersion": "http2and3", "PriceClass": "PriceClass_100",
            "Aliases": {"Fn::If": ["HasDomain", [{"Ref": "DomainName"}], {"Ref": "AWS::NoValue"}]},
            "ViewerCertificate": {"Fn::If": [
                "HasDomain",
                {"AcmCertificateArn": {"Ref": "CertificateArn"}, "SslSupportMethod": "sni-only",
                 "MinimumProtocolVersion": "TLSv1.2_2021"},
                {"CloudFrontDefaultCertificate": True}]},
            "Origins": [{"Id": "site", "DomainName": {"Fn::GetAtt": ["SiteBucket", "RegionalDomainName"]},
                         "OriginAccessControlId": {"Fn::GetAtt": ["SiteOriginAccessControl", "Id"]},
                         "S3OriginConfig": {"OriginAccessIdentity": ""}}],
            "DefaultCacheBehavior": {"TargetOriginId": "site", "ViewerProtocolPolicy": "redirect-to-https",
                                     "CachePolicyId": CACHING_OPTIMIZED, "Compress": True,
                                     "AllowedMethods": ["GET", "HEAD"]},
        }}},
        "SiteBucketPolicy": {"Type": "AWS::S3::BucketPolicy", "Properties": {
            "Bucket": {"Ref": "SiteBucket"}, "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "CloudFrontReads", "Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"},
                 "Action": "s3:GetObject", "Resource": {"Fn::Sub": "${SiteBucket.Arn}/*"},
                 "Condition": {"StringEquals": {"AWS:SourceArn": {
                     "Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${SiteDistribution}"}}}},
                {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": [{"Fn::GetAtt": ["SiteBucket", "Arn"]}, {"Fn::Sub": "${SiteBucket.Arn}/*"}],
                 "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}},
    }


def _alarm(description: str, namespace: str, metric: str, dimension: str, ref, statistic: str,
           threshold: float, period: int = 300) -> Dict[str, Any]:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmDescription": description, "Namespace": namespace, "MetricName": metric,
        "Dimensions": [{"Name": dimension, "Value": ref}], "Statistic": statistic, "Period": period,
        "EvaluationPeriods": 1, "Threshold": threshold, "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching", "AlarmActions": [{"Ref": "AlarmTopic"}],
        "OKActions": [{"Ref": "AlarmTopic"}]}}


def _alarms(d: Dict[str, Any], with_api: bool) -> Dict[str, Any]:
    """What an operator must hear of: work dead-lettered, a function failing, a queue
    falling behind. To the alarm topic, and the operator's e-mail if given."""
    oldest = d["alarms"]["oldest_message_seconds"]
    alarms: Dict[str, Any] = {
        "AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {
            "DisplayName": {"Fn::Sub": "${AWS::StackName} alarms"}, "KmsMasterKeyId": "alias/aws/sns"}},
        "AlarmEmailSubscription": {"Type": "AWS::SNS::Subscription", "Condition": "HasAlarmEmail", "Properties": {
            "TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}},
    }
    for queue in ("IngestQueue", "ReduceQueue", "BackgroundQueue"):
        dlq = queue + "DeadLetterQueue"
        alarms[dlq + "Alarm"] = _alarm(
            f"Work dead-lettered on {queue}: its file shows why (python -m functions.operations redrive)",
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", {"Fn::GetAtt": [dlq, "QueueName"]},
            "Maximum", 0)
        alarms[queue + "AgeAlarm"] = _alarm(
            f"{queue}'s oldest message is over {oldest} s old: the reduction is falling behind",
            "AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", {"Fn::GetAtt": [queue, "QueueName"]},
            "Maximum", oldest)
    functions = ["IngestFunction", "ReduceFunction", "ConsistencyFunction"] + (["APIHandler"] if with_api else [])
    for fn in functions:
        alarms[fn + "ErrorsAlarm"] = _alarm(f"{fn} failed (an unhandled error or a timeout) in 5 minutes",
                                            "AWS/Lambda", "Errors", "FunctionName", {"Ref": fn}, "Sum", 0)
    return alarms


def _site_origin() -> Dict[str, Any]:
    return {"Fn::If": ["HasDomain", {"Fn::Sub": "https://${DomainName}"},
                       {"Fn::Sub": "https://${SiteDistribution.DomainName}"}]}


def _api(d: Dict[str, Any]) -> Dict[str, Any]:
    """Merged over what `chalice package` generates (a deep merge: these keys win): the
    API's handler and authorizer get the stack's names and a role that may read the
    index and products, sign downloads and queue re-reductions, nothing else."""
    fn = d["api_function"]
    env = {**_environment(d), "USER_POOL_ID": {"Ref": "UserPool"}, "USER_POOL_CLIENT_ID": {"Ref": "UserPoolClient"},
           "ALLOWED_ORIGIN": _site_origin(),
           # resolved by CloudFormation at each deploy from the stack's own secret
           "PAGE_TOKEN_KEY": {"Fn::Sub": "{{resolve:secretsmanager:${PageTokenSecret}:SecretString}}"}}
    handler = {"Properties": {"MemorySize": fn["memory_mb"], "Timeout": fn["timeout_seconds"],
                              "Environment": {"Variables": env}}}
    table_arn = {"Fn::GetAtt": ["IndexTable", "Arn"]}
    logs = {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"}}
    api_policy = [logs,
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                                       "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                                       "dynamodb:ConditionCheckItem"],
         "Resource": [table_arn, {"Fn::Sub": "${IndexTable.Arn}/index/*"}]},
        {"Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": [{"Fn::Sub": RAW_ARN + "/*"}, {"Fn::Sub": PRODUCTS_ARN + "/*"}]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": [{"Fn::Sub": RAW_ARN}, {"Fn::Sub": PRODUCTS_ARN}]},
        {"Effect": "Allow", "Action": ["sqs:SendMessage"],
         "Resource": [{"Fn::GetAtt": ["ReduceQueue", "Arn"]}, {"Fn::GetAtt": ["BackgroundQueue", "Arn"]}]}]

    def role(statements):
        return {"Properties": {"Policies": [{"PolicyName": "GoodmanLive", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": statements}}]}}

    # chalice names a role per function when it writes no policy of its own
    # (autogen_policy false): the authorizer only checks tokens against the pool's
    # public keys, over HTTPS; it needs its logs and nothing else.
    # The key that signs page tokens: made once, when the stack is created, and kept
    # across deploys (a new key would end every open page's paging); nobody types it.
    secret = {"Type": "AWS::SecretsManager::Secret", "Properties": {
        "Description": {"Fn::Sub": "${AWS::StackName}: the key that signs the API's page tokens"},
        "GenerateSecretString": {"PasswordLength": 48, "ExcludePunctuation": True}}}
    return {"APIHandler": handler, "SignedIn": handler, "PageTokenSecret": secret,
            "ApiHandlerRole": role(api_policy), "SignedInRole": role([logs])}


PARAMETERS = {
    "Stage": {"Type": "String", "Default": "dev", "AllowedValues": ["dev", "prod"],
              "Description": "The deployment's stage (tags; the stack's name carries it too)"},
    "DomainName": {"Type": "String", "Default": "",
                   "Description": "The page's domain (e.g. live.example.org); empty: CloudFront's own"},
    "CertificateArn": {"Type": "String", "Default": "",
                       "AllowedPattern": "^$|^arn:aws[a-zA-Z-]*:acm:us-east-1:\\d{12}:certificate/.+$",
                       "Description": "ACM certificate (us-east-1) for DomainName; needed with it"},
    "AlarmEmail": {"Type": "String", "Default": "", "Description": "Where alarms are e-mailed; empty: none"},
    "ProprietaryDays": {"Type": "Number", "Default": 365, "MinValue": 0,
                        "Description": "Days after DATE-OBS a proposal's frames stay visible to its members only"},
}


def build_template(d: Dict[str, Any], with_api: bool = False) -> Dict[str, Any]:
    """The backend template; `with_api`: the input `chalice package --merge-template`
    takes (the API's overrides too, which are no resources on their own)."""
    table = stackdef.table_create_kwargs(d)
    table.pop("TableName")
    table["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    table["SSESpecification"] = {"SSEEnabled": True}
    products = d["products_bucket"]
    resources: Dict[str, Any] = {
        "RawBucket": {**_private_bucket(_bucket_name("raw"), [_abort_multipart(d)], NotificationConfiguration={
            "QueueConfigurations": [{
                "Event": "s3:ObjectCreated:*", "Queue": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": d["raw_bucket"]["prefix"]}]}},
            }]}), "DependsOn": "IngestQueuePolicy"},
        "RawBucketPolicy": _tls_only("RawBucket"),
        # Versioned: what a re-reduction replaces stays, cheaper, for a while.
        "ProductsBucket": _private_bucket(_bucket_name("products"), [_abort_multipart(d), {
            "Id": "older-versions-cheaper-then-gone", "Status": "Enabled",
            "NoncurrentVersionTransitions": [{"StorageClass": "STANDARD_IA",
                                              "TransitionInDays": products["noncurrent_infrequent_access_days"]}],
            "NoncurrentVersionExpiration": {"NoncurrentDays": products["noncurrent_expire_days"]}}, {
            # a night's zip archive is made on request and its link lasts hours
            "Id": "archives-after-a-week", "Status": "Enabled", "Prefix": "archives/",
            "ExpirationInDays": products["archive_expire_days"]}],
            VersioningConfiguration={"Status": "Enabled"},
            # the page's imexam reads a preview's pixels (a canvas), which needs CORS
            CorsConfiguration={"CorsRules": [{"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": [_site_origin()],
                                              "AllowedHeaders": ["*"], "MaxAge": 3600}]}),
        "ProductsBucketPolicy": _tls_only("ProductsBucket"),
        # S3 may send to the queue only for this stack's raw bucket (its ARN is built from
        # the name, not referenced, which would make a cycle).
        "IngestQueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "IngestQueue"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
                "Resource": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                "Condition": {"ArnLike": {"aws:SourceArn": {"Fn::Sub": RAW_ARN}},
                              "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            }]},
        }},
        "IndexTable": {"Type": "AWS::DynamoDB::Table", "Properties": table},
        # Accounts: operators create users (python -m infra.admin); the page signs in with
        # the public app client; the API verifies the tokens against the pool's keys.
        "UserPool": {"Type": "AWS::Cognito::UserPool", "Properties": {
            "UserPoolName": {"Fn::Sub": "${AWS::StackName}-" + d["user_pool"]["name"]}, "UserPoolTier": "LITE",
            **{k: v for k, v in stackdef.user_pool_kwargs(d).items() if k != "PoolName"}}},
        "UserPoolClient": {"Type": "AWS::Cognito::UserPoolClient", "Properties": {
            "UserPoolId": {"Ref": "UserPool"}, **stackdef.user_pool_client_kwargs(d)}},
        **_functions(d), **_layers(), **_site(), **_alarms(d, with_api),
    }
    resources.update(_queue_pair("IngestQueue", d["ingest_queue"], d["ingest_function"]["timeout_seconds"]))
    resources.update(_queue_pair("ReduceQueue", d["reduce_queue"], d["reduce_function"]["timeout_seconds"]))
    resources.update(_queue_pair("BackgroundQueue", d["background_queue"], d["reduce_function"]["timeout_seconds"]))
    outputs = {k: {"Value": {"Ref": v}} for k, v in (
        ("RawBucketName", "RawBucket"), ("ProductsBucketName", "ProductsBucket"),
        ("IndexTableName", "IndexTable"), ("ReduceQueueUrl", "ReduceQueue"),
        ("BackgroundQueueUrl", "BackgroundQueue"), ("IngestQueueUrl", "IngestQueue"), ("UserPoolId", "UserPool"),
        ("UserPoolClientId", "UserPoolClient"), ("SiteBucketName", "SiteBucket"),
        ("SiteDistributionId", "SiteDistribution"), ("AlarmTopicArn", "AlarmTopic"))}
    outputs["SiteUrl"] = {"Value": {"Fn::If": ["HasDomain", {"Fn::Sub": "https://${DomainName}/"},
                                               {"Fn::Sub": "https://${SiteDistribution.DomainName}/"}]}}
    if with_api:
        resources.update(_api(d))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "Goodman Live: generated from infra/stack.json by python -m infra.sam; do not edit.",
        "Parameters": PARAMETERS,
        "Conditions": {"HasDomain": {"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]},
                       "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}},
        "Globals": {"Function": {"Tags": {"project": "goodman-live", "stage": {"Ref": "Stage"}}}},
        "Resources": dict(sorted(resources.items())),
        "Outputs": outputs,
    }


def render(d: Dict[str, Any]) -> str:
    return json.dumps(build_template(d), indent=2) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.sam")
    parser.add_argument("--out", default=str(TEMPLATE_FILE))
    args = parser.parse_args(argv)
    Path(args.out).write_text(render(stackdef.load()))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
