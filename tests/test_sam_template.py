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
            assert "ReportBatchItemFailures" in fn["Properties"]["Events"]["Queue"]["Properties"]["FunctionResponseTypes"]


def test_cfn_lint_accepts_it():
    lint = Path(sys.executable).with_name("cfn-lint")  # installed in the venv from requirements.txt
    proc = subprocess.run([str(lint), str(TEMPLATE_FILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
