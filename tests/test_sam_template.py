"""The SAM template is generated from the same definition as the local stack."""
import importlib
import subprocess
import sys
from pathlib import Path

from infra import definition as stackdef
from infra.sam import TEMPLATE_FILE, build_template, render


def test_the_committed_template_is_the_generated_one():
    assert TEMPLATE_FILE.read_text() == render(stackdef.load()), "run: python -m infra.sam"


def test_template_follows_the_definition():
    d = stackdef.load()
    res = build_template(d)["Resources"]
    for name, q, fn in (("IngestQueue", d["ingest_queue"], d["ingest_function"]),
                        ("ReduceQueue", d["reduce_queue"], d["reduce_function"]),
                        ("BackgroundQueue", d["background_queue"], d["reduce_function"])):
        props = res[name]["Properties"]
        assert props["RedrivePolicy"]["maxReceiveCount"] == q["max_receive_count"]
        assert props["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [name + "DeadLetterQueue", "Arn"]}
        assert props["VisibilityTimeout"] >= 6 * fn["timeout_seconds"]
    table = stackdef.table_create_kwargs(d)
    assert res["IndexTable"]["Properties"]["GlobalSecondaryIndexes"] == table["GlobalSecondaryIndexes"]
    assert res["IndexTable"]["Properties"]["KeySchema"] == table["KeySchema"]
    rules = res["RawBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"][0]["Filter"]
    assert rules["S3Key"]["Rules"][0]["Value"] == d["raw_bucket"]["prefix"]


def test_every_handler_named_exists():
    for fn in build_template(stackdef.load())["Resources"].values():
        if fn["Type"] == "AWS::Serverless::Function":
            module, name = fn["Properties"]["Handler"].rsplit(".", 1)
            assert callable(getattr(importlib.import_module(module), name))
            events = fn["Properties"]["Events"]
            for event in events.values():
                if event["Type"] == "SQS":
                    assert "ReportBatchItemFailures" in event["Properties"]["FunctionResponseTypes"]


def test_background_work_is_a_second_event_source_on_the_reduction_capped_at_two():
    """The reduction takes its background queue too, but never more than two executions'
    worth (Lambda's minimum cap), while its own queue scales freely; the background
    queue's dead letters go to the reduction's dead-letter handler."""
    d = stackdef.load()
    res = build_template(d)["Resources"]
    events = res["ReduceFunction"]["Properties"]["Events"]
    main, background = events["Queue"]["Properties"], events["Background"]["Properties"]
    assert main["Queue"] == {"Fn::GetAtt": ["ReduceQueue", "Arn"]}
    # the work queue's cap only keeps a flood from taking the account's whole concurrency
    assert main["ScalingConfig"]["MaximumConcurrency"] == d["reduce_function"]["maximum_concurrency"] >= 50
    assert background["Queue"] == {"Fn::GetAtt": ["BackgroundQueue", "Arn"]}
    assert background["ScalingConfig"] == {"MaximumConcurrency": 2} == {
        "MaximumConcurrency": d["background_queue"]["maximum_concurrency"]}
    assert background["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    dlq = res["BackgroundDeadLetterFunction"]["Properties"]
    assert dlq["Handler"] == d["reduce_function"]["dlq_handler"]
    assert dlq["Events"]["Queue"]["Properties"]["Queue"] == {"Fn::GetAtt": ["BackgroundQueueDeadLetterQueue", "Arn"]}
    # every function may send to it and knows where it is, as for the reduce queue
    for name, fn in res.items():
        if fn["Type"] == "AWS::Serverless::Function":
            props = fn["Properties"]
            assert props["Environment"]["Variables"]["BACKGROUND_QUEUE_URL"] == {"Ref": "BackgroundQueue"}, name
            assert {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["BackgroundQueue", "QueueName"]}}} \
                in props["Policies"], name


def test_the_consistency_check_runs_on_a_schedule():
    d = stackdef.load()
    fn = build_template(d)["Resources"]["ConsistencyFunction"]["Properties"]
    assert fn["Handler"] == "functions.consistency.scheduled_handler" == d["consistency_function"]["handler"]
    assert fn["Events"] == {"Schedule": {"Type": "Schedule", "Properties": {
        "Schedule": "rate(10 minutes)", "Description": "Goodman Live consistency check and repair"}}}
    # it indexes raw objects again through the ingest queue and aborts abandoned uploads
    assert fn["Environment"]["Variables"]["INGEST_QUEUE_URL"] == {"Ref": "IngestQueue"}
    actions = {a for p in fn["Policies"] for st in p.get("Statement", []) for a in st["Action"]}
    assert {"s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload"} <= actions


def test_abandoned_multipart_uploads_on_the_raw_bucket_are_aborted_after_a_day():
    rules = build_template(stackdef.load())["Resources"]["RawBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rules == [{"Id": "abort-incomplete-multipart-uploads", "Status": "Enabled",
                      "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]


def test_the_operations_command_finds_a_deployment_from_the_stack_outputs():
    from functions.operations import STACK_OUTPUTS, environment_from_outputs

    outputs = build_template(stackdef.load())["Outputs"]
    assert set(STACK_OUTPUTS) <= set(outputs)
    env = environment_from_outputs([{"OutputKey": k, "OutputValue": f"value-of-{k}"} for k in outputs], {"X": "1"})
    assert env["INGEST_QUEUE_URL"] == "value-of-IngestQueueUrl" and env["WORK_QUEUE_URL"] == "value-of-ReduceQueueUrl"
    assert env["BACKGROUND_QUEUE_URL"] == "value-of-BackgroundQueueUrl"
    assert env["X"] == "1"


def test_cfn_lint_accepts_it():
    lint = Path(sys.executable).with_name("cfn-lint")  # installed in the venv from requirements.txt
    proc = subprocess.run([str(lint), str(TEMPLATE_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_storage_is_private_encrypted_and_tls_only_and_the_index_recoverable():
    d = stackdef.load()
    res = build_template(d)["Resources"]
    for bucket in ("RawBucket", "ProductsBucket", "SiteBucket"):
        props = res[bucket]["Properties"]
        assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
            ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True), bucket
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any("AbortIncompleteMultipartUpload" in r for r in rules), bucket
        policy = res[bucket + "Policy"]["Properties"]["PolicyDocument"]["Statement"]
        assert any(st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for st in policy), bucket
    products = res["ProductsBucket"]["Properties"]
    assert products["VersioningConfiguration"] == {"Status": "Enabled"}
    older = next(r for r in products["LifecycleConfiguration"]["Rules"] if "NoncurrentVersionTransitions" in r)
    assert older["NoncurrentVersionTransitions"][0]["StorageClass"] == "STANDARD_IA"
    assert older["NoncurrentVersionExpiration"]["NoncurrentDays"] == d["products_bucket"]["noncurrent_expire_days"]
    table = res["IndexTable"]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # the page: only CloudFront reads its bucket, through origin access control, over HTTPS
    site = res["SiteDistribution"]["Properties"]["DistributionConfig"]
    assert site["Origins"][0]["OriginAccessControlId"] == {"Fn::GetAtt": ["SiteOriginAccessControl", "Id"]}
    assert site["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    reader = res["SiteBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert reader["Principal"] == {"Service": "cloudfront.amazonaws.com"} and reader["Action"] == "s3:GetObject"


def test_alarms_cover_dead_letters_errors_and_a_queue_falling_behind():
    res = build_template(stackdef.load())["Resources"]
    alarms = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert metrics == {("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/SQS", "ApproximateAgeOfOldestMessage"),
                       ("AWS/Lambda", "Errors")}
    dead = [a for a in alarms.values() if a["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert {a["Dimensions"][0]["Value"]["Fn::GetAtt"][0] for a in dead} == {
        "IngestQueueDeadLetterQueue", "ReduceQueueDeadLetterQueue", "BackgroundQueueDeadLetterQueue"}
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    assert res["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_each_function_gets_the_layers_it_imports_and_only_the_rights_it_uses():
    res = build_template(stackdef.load())["Resources"]
    functions = {k: v["Properties"] for k, v in res.items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions["IngestFunction"]["Layers"] == [{"Ref": "NumericLayer"}]
    assert functions["ReduceFunction"]["Layers"] == [{"Ref": "NumericLayer"}, {"Ref": "ScienceLayer"}]
    assert all(f["Runtime"] == "python3.11" and f["Architectures"] == ["x86_64"] for f in functions.values())
    # ingest reads raw frames and never writes products
    ingest = functions["IngestFunction"]["Policies"]
    assert not any("S3CrudPolicy" in p for p in ingest) and any("S3ReadPolicy" in p for p in ingest)
