"""Stands for Lambda's python3.11 runtime, for tests/test_package.py: run with
`python -I -S`, so nothing of this machine's site-packages is seen, it puts the unpacked
artefacts where Lambda does (the function's code as /var/task, its layers' python/ as
/opt/python, then the runtime's own boto3), imports a handler, and can then feed it
SQS events the way an event source mapping does (batches, partial batch responses,
deletes what succeeded). Standard library only, until the handler's boto3 is found.

    python -I -S tests/lambda_runtime.py --task T --opt O --runtime R import functions.ingest.handler
    python -I -S tests/lambda_runtime.py ... poll functions.reduction.handler URL [URL ...] --idle 5
"""
import argparse
import importlib
import json
import os
import sys
import time


def _load(handler: str):
    module, name = handler.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _record(message, arn, region):
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"], "attributes": message.get("Attributes", {}),
            "messageAttributes": {}, "md5OfBody": message.get("MD5OfBody"), "eventSource": "aws:sqs",
            "eventSourceARN": arn, "awsRegion": region}


def poll(handler, urls, idle: float, batch: int, deadline: float) -> dict:
    """Every queue in turn, a batch at a time, until all were empty for `idle` seconds."""
    import boto3

    region = os.environ["AWS_DEFAULT_REGION"]
    sqs = boto3.client("sqs", region_name=region, endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    arns = {u: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            for u in urls}
    handled = failed = 0
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle:
        if time.monotonic() > deadline:
            raise SystemExit("deadline passed with work still queued")
        took = False
        for url in urls:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=batch, WaitTimeSeconds=0,
                                           AttributeNames=["All"]).get("Messages", [])
            if not messages:
                continue
            took = True
            answer = handler({"Records": [_record(m, arns[url], region) for m in messages]}, None) or {}
            failures = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
            for m in messages:
                if m["MessageId"] in failures:
                    failed += 1
                else:
                    handled += 1
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if took:
            quiet_since = time.monotonic()
        else:
            time.sleep(0.2)
    return {"handled": handled, "failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", required=True)
    parser.add_argument("--opt", required=True)
    parser.add_argument("--runtime", required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import")
    imp.add_argument("handler")
    run = sub.add_parser("poll")
    run.add_argument("handler")
    run.add_argument("urls", nargs="+")
    run.add_argument("--idle", type=float, default=4.0)
    run.add_argument("--batch", type=int, default=1)
    run.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    leaked = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    if leaked:
        raise SystemExit(f"run with python -I -S: site-packages on the path: {leaked}")
    task = os.path.abspath(args.task)
    sys.path[:0] = [task, os.path.join(os.path.abspath(args.opt), "python"), os.path.abspath(args.runtime)]
    os.chdir(task)
    started = time.perf_counter()
    handler = _load(args.handler)
    out = {"import_seconds": round(time.perf_counter() - started, 3),
           "from": {m: getattr(sys.modules[m], "__file__", None) for m in ("numpy", "scipy", "astropy", "boto3")
                    if m in sys.modules}}
    if args.command == "poll":
        out.update(poll(handler, args.urls, args.idle, args.batch, time.monotonic() + args.timeout))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
