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
                        ("ReduceQueue", d["reduce_queue"], d["reduce_function"])):
        props = res[name]["Properties"]
        assert props["RedrivePolicy"]["maxReceiveCount"] == q["max_receive_count"]
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
            if "Queue" in events:
                assert "ReportBatchItemFailures" in events["Queue"]["Properties"]["FunctionResponseTypes"]


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
    assert env["X"] == "1"


def test_cfn_lint_accepts_it():
    lint = Path(sys.executable).with_name("cfn-lint")  # installed in the venv from requirements.txt
    proc = subprocess.run([str(lint), str(TEMPLATE_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
