"""The AWS SAM template, generated from infra/stack.json: the same queues, dead-letter
queues, table and notification the embedded stack builds, so the two cannot drift.

    .venv/bin/python -m infra.sam            # rewrites infra/template.json
    sam build -t infra/template.json && sam deploy --guided

Bucket names get the stack name and account id (S3 names are global); everything
else keeps the definition's settings. The API is added by
`chalice package --merge-template infra/template.json` (see README).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict

from infra import definition as stackdef

TEMPLATE_FILE = Path(__file__).with_name("template.json")
RUNTIME = "python3.11"


def _bucket_name(suffix: str) -> Dict[str, Any]:
    return {"Fn::Sub": "${AWS::StackName}-" + suffix + "-${AWS::AccountId}"}


def _queue_pair(name: str, q: Dict[str, Any], lambda_timeout: int) -> Dict[str, Any]:
    dlq = name + "DeadLetterQueue"
    # AWS's advice for SQS event sources: visibility at least six times the function timeout.
    visibility = max(q["visibility_timeout_seconds"], 6 * lambda_timeout)
    return {
        dlq: {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": q["retention_seconds"]}},
        name: {"Type": "AWS::SQS::Queue", "Properties": {
            "VisibilityTimeout": visibility,
            "MessageRetentionPeriod": q["retention_seconds"],
            "ReceiveMessageWaitTimeSeconds": q["receive_wait_seconds"],
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
                              "maxReceiveCount": q["max_receive_count"]},
        }},
    }


def _function(handler: str, timeout: int, memory: int, queue: str, batch: int, policies, env) -> Dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Properties": {
        "Handler": handler, "Runtime": RUNTIME, "CodeUri": "..", "Timeout": timeout, "MemorySize": memory,
        "Environment": {"Variables": env}, "Policies": policies,
        "Events": {"Queue": {"Type": "SQS", "Properties": {
            "Queue": {"Fn::GetAtt": [queue, "Arn"]}, "BatchSize": batch,
            "FunctionResponseTypes": ["ReportBatchItemFailures"]}}},
    }}


def _scheduled_function(fn: Dict[str, Any], policies, env) -> Dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Properties": {
        "Handler": fn["handler"], "Runtime": RUNTIME, "CodeUri": "..", "Timeout": fn["timeout_seconds"],
        "MemorySize": fn["memory_mb"], "Environment": {"Variables": env}, "Policies": policies,
        "Events": {"Schedule": {"Type": "Schedule", "Properties": {
            "Schedule": fn["schedule"], "Description": "Goodman Live consistency check and repair"}}},
    }}


def build_template(d: Dict[str, Any]) -> Dict[str, Any]:
    ingest_fn, reduce_fn, check_fn = d["ingest_function"], d["reduce_function"], d["consistency_function"]
    background = d["background_queue"]
    names = stackdef.environment(d)
    env = {
        "RAW_BUCKET": {"Ref": "RawBucket"}, "RAW_PREFIX": names["RAW_PREFIX"],
        "PRODUCTS_BUCKET": {"Ref": "ProductsBucket"}, "INDEX_TABLE": {"Ref": "IndexTable"},
        "MAX_RECEIVE_COUNT": names["MAX_RECEIVE_COUNT"], "WORK_QUEUE_URL": {"Ref": "ReduceQueue"},
        "BACKGROUND_QUEUE_URL": {"Ref": "BackgroundQueue"},
    }
    policies = [
        {"S3ReadPolicy": {"BucketName": _bucket_name("raw")}},
        {"S3CrudPolicy": {"BucketName": _bucket_name("products")}},
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": "IndexTable"}}},
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["ReduceQueue", "QueueName"]}}},
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["BackgroundQueue", "QueueName"]}}},
    ]
    raw_arn = "arn:${AWS::Partition}:s3:::${AWS::StackName}-raw-${AWS::AccountId}"
    # The consistency check also indexes raw objects again through the ingest queue and
    # aborts abandoned multipart uploads on the raw bucket.
    check_policies = policies + [
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}}},
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucketMultipartUploads"], "Resource": {"Fn::Sub": raw_arn}},
            {"Effect": "Allow", "Action": ["s3:AbortMultipartUpload"], "Resource": {"Fn::Sub": raw_arn + "/*"}},
        ]},
    ]
    # The reduction's slow work (whole-frame cosmic-ray cleaning, night archives) on a
    # second event source, capped at two executions (Lambda's least), so it never holds
    # up a new frame (the local runner's priority polling stands for it: infra/local/runner.py).
    reduction = _function(reduce_fn["handler"], reduce_fn["timeout_seconds"], reduce_fn["memory_mb"],
                          "ReduceQueue", reduce_fn["batch_size"], policies, env)
    reduction["Properties"]["Events"]["Background"] = {"Type": "SQS", "Properties": {
        "Queue": {"Fn::GetAtt": ["BackgroundQueue", "Arn"]}, "BatchSize": reduce_fn["batch_size"],
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": background["maximum_concurrency"]}}}
    lifecycle = stackdef.raw_bucket_lifecycle(d)["Rules"][0]
    table = stackdef.table_create_kwargs(d)
    table.pop("TableName")
    resources: Dict[str, Any] = {
        "RawBucket": {"Type": "AWS::S3::Bucket", "DependsOn": "IngestQueuePolicy", "Properties": {
            "BucketName": _bucket_name("raw"),
            "LifecycleConfiguration": {"Rules": [{
                "Id": lifecycle["ID"], "Status": lifecycle["Status"],
                "AbortIncompleteMultipartUpload": lifecycle["AbortIncompleteMultipartUpload"]}]},
            "NotificationConfiguration": {"QueueConfigurations": [{
                "Event": "s3:ObjectCreated:*", "Queue": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": d["raw_bucket"]["prefix"]}]}},
            }]},
        }},
        "ProductsBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": _bucket_name("products")}},
        # S3 may send to the queue only for this stack's raw bucket (its ARN is built from
        # the name, not referenced, which would make a cycle).
        "IngestQueuePolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "IngestQueue"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
                "Resource": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                "Condition": {"ArnLike": {"aws:SourceArn": {"Fn::Sub": raw_arn}},
                    "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
            }]},
        }},
        "IndexTable": {"Type": "AWS::DynamoDB::Table", "Properties": table},
        "IngestFunction": _function(ingest_fn["handler"], ingest_fn["timeout_seconds"], 512, "IngestQueue",
                                    ingest_fn["batch_size"], policies, env),
        "IngestDeadLetterFunction": _function(ingest_fn["dlq_handler"], 30, 256, "IngestQueueDeadLetterQueue", 10,
                                              policies, env),
        "ReduceFunction": reduction,
        "ReduceDeadLetterFunction": _function(reduce_fn["dlq_handler"], 30, 256, "ReduceQueueDeadLetterQueue", 10,
                                              policies, env),
        "BackgroundDeadLetterFunction": _function(reduce_fn["dlq_handler"], 30, 256,
                                                  "BackgroundQueueDeadLetterQueue", 10, policies, env),
        # Accounts: operators create users (python -m infra.admin); the page signs in with
        # the public app client; the API verifies the tokens against the pool's keys.
        "UserPool": {"Type": "AWS::Cognito::UserPool", "Properties": {
            "UserPoolName": {"Fn::Sub": "${AWS::StackName}-" + d["user_pool"]["name"]},
            **{k: v for k, v in stackdef.user_pool_kwargs(d).items() if k != "PoolName"}}},
        "UserPoolClient": {"Type": "AWS::Cognito::UserPoolClient", "Properties": {
            "UserPoolId": {"Ref": "UserPool"}, **stackdef.user_pool_client_kwargs(d)}},
        "ConsistencyFunction": _scheduled_function(check_fn, check_policies,
                                                   {**env, "INGEST_QUEUE_URL": {"Ref": "IngestQueue"}}),
    }
    resources.update(_queue_pair("IngestQueue", d["ingest_queue"], ingest_fn["timeout_seconds"]))
    resources.update(_queue_pair("ReduceQueue", d["reduce_queue"], reduce_fn["timeout_seconds"]))
    resources.update(_queue_pair("BackgroundQueue", background, reduce_fn["timeout_seconds"]))
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": "Goodman Live: generated from infra/stack.json by python -m infra.sam; do not edit.",
        "Resources": dict(sorted(resources.items())),
        "Outputs": {k: {"Value": {"Ref": v}} for k, v in (
            ("RawBucketName", "RawBucket"), ("ProductsBucketName", "ProductsBucket"),
            ("IndexTableName", "IndexTable"), ("ReduceQueueUrl", "ReduceQueue"),
            ("BackgroundQueueUrl", "BackgroundQueue"), ("IngestQueueUrl", "IngestQueue"), ("UserPoolId", "UserPool"),
            ("UserPoolClientId", "UserPoolClient"))},
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
