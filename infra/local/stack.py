"""moto's server on loopback, with the buckets, queues, table and S3 -> SQS
notification of infra/stack.json created through the real AWS APIs.

Everything talks to it over HTTP through `endpoint_url`, exactly as to AWS or MinIO.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import boto3

from infra import definition as stackdef
from infra.local.faults import Faults, FaultyApp, peek_body, service_of

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "goodman-live-local", "AWS_SECRET_ACCESS_KEY": "goodman-live-local"}


class _SerialWrites:
    """moto is not thread-safe where AWS is atomic per request: DynamoDB's
    transact_write_items deep-copies a table while another request changes it, and
    concurrent S3 puts can close each other's buffers. Running DynamoDB requests and
    S3 writes one at a time restores per-request atomicity; S3 reads and SQS (whose
    long polls must not block anything) stay parallel."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        s3_write = not target and environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE")
        if target.startswith("DynamoDB_") or s3_write:
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class _UploadTimes:
    """moto lists every multipart upload as begun on 2010-11-10, which would make each
    one in flight look abandoned to the consistency check: the time each upload was
    begun is remembered here and put into moto's listings, as S3 reports it."""

    _UPLOAD = re.compile(rb"<Upload>.*?</Upload>", re.S)

    def __init__(self, app):
        self.app = app
        self.begun: Dict[bytes, bytes] = {}

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") or "uploads" not in parse_qs(environ.get("QUERY_STRING", ""),
                                                                          keep_blank_values=True):
            return self.app(environ, start_response)
        captured: Dict[str, Any] = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)

        body = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200"):
            if environ.get("REQUEST_METHOD") == "POST":
                for upload_id in re.findall(rb"<UploadId>(.*?)</UploadId>", body):
                    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
                    self.begun[upload_id] = now.encode()
            else:
                body = self._UPLOAD.sub(self._with_time, body)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], headers + [("Content-Length", str(len(body)))])
        return [body]

    def _with_time(self, match) -> bytes:
        block = match.group(0)
        upload_id = re.search(rb"<UploadId>(.*?)</UploadId>", block)
        begun = self.begun.get(upload_id.group(1)) if upload_id else None
        if begun is None:
            return block
        return re.sub(rb"<Initiated>.*?</Initiated>", b"<Initiated>" + begun + b"</Initiated>", block)


class RequestStats:
    """What the stack's clients ask of it, per service and operation (a DynamoDB query
    per index): how many requests, the seconds moto took, the bytes it answered. The
    benchmarks print it: on this machine moto's DynamoDB is what a busy night waits for,
    and in AWS the same counts are the bill."""

    _INDEX = re.compile(rb'"IndexName"\s*:\s*"([^"]+)"')
    _PARTITION = re.compile(rb'":pk"\s*:\s*\{\s*"S"\s*:\s*"([A-Za-z_]+)#')

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.by_operation: Dict[str, List[float]] = {}

    def __call__(self, environ, start_response):
        service = service_of(environ)
        operation = environ.get("HTTP_X_AMZ_TARGET", "").split(".", 1)[-1] or environ.get("REQUEST_METHOD", "")
        if service == "dynamodb" and operation == "Query":
            raw = peek_body(environ)
            index, partition = self._INDEX.search(raw), self._PARTITION.search(raw)
            operation += f" {index.group(1).decode() if index else 'table'}"
            if not index and partition:   # which of the table's partitions: MASTER#, FILE#, USER#...
                operation += f" {partition.group(1).decode()}#"
        started = time.perf_counter()
        body = list(self.app(environ, start_response))
        seconds, size = time.perf_counter() - started, sum(len(b) for b in body)
        with self.lock:
            entry = self.by_operation.setdefault(f"{service} {operation}", [0, 0.0, 0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] += size
        return body

    def snapshot(self) -> Dict[str, Dict[str, float]]:
        with self.lock:
            return {k: {"requests": n, "seconds": round(t, 3), "bytes": b} for k, (n, t, b) in self.by_operation.items()}


def fast_queries() -> None:
    """moto answers every DynamoDB query by sorting the whole table (its `all_items`),
    keeping the partition asked for, sorting that, and only then applying the range
    condition: a query costs N log N comparisons of Python key objects, N the table's
    items. On a long night that makes the local stack slower with every frame (a
    60-minute series: the change-feed query, which keeps the few items changed since
    the cursor, sorted the whole night each time), and the index is the local stack's
    bottleneck (a 40-frame replay: 57 s of moto time in change-feed queries).

    A query is handed its candidates instead: a table query its partition; an index
    query the items whose index keys meet its key conditions (plain string comparisons,
    for string keys: every key here is a string), unsorted. moto then does all it did,
    on those: what is answered is unchanged (tests/test_local_stack.py compares both
    ways). moto's requests run one at a time (_SerialWrites), so swapping the table's
    item source for the length of a query is safe."""
    from moto.dynamodb.comparisons import get_comparison_func
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_candidates_given", False):
        return
    original = Table.query

    def key_conditions(table, index_name, range_comparison, range_objs, kwargs):
        conditions = [(name, "=", [value]) for name, value in kwargs.get("hash_key_conditions") or []]
        ranges = kwargs.get("range_key_conditions") or []
        if ranges:
            conditions += [(name, op, list(values)) for name, op, values in ranges]
        elif range_comparison:
            index = {i.name: i for i in table.all_indexes()}[index_name]
            names = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
            conditions += [(names[0], range_comparison, list(range_objs))] if len(names) == 1 else []
        return conditions

    def candidates(table, index_name, range_comparison, range_objs, kwargs):
        pool = [i for part in table.items.values() for i in (part.values() if table.range_key_attr else [part])]
        for name, op, values in key_conditions(table, index_name, range_comparison, range_objs, kwargs):
            test, args = get_comparison_func(op), [v.value for v in values]
            if test is None or not values or any(v.type != "S" for v in values):
                continue   # (moto alone decides)
            pool = [i for i in pool if (a := i.attrs.get(name)) is not None and a.type == "S" and test(a.value, *args)]
        return pool

    def query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
              projection_expressions, index_name=None, *args, **kwargs):
        if index_name:
            pool = candidates(self, index_name, range_comparison, range_objs, kwargs)
        else:
            part = self.items.get(hash_key)
            pool = [] if part is None else list(part.values()) if self.range_key_attr else [part]
        self.all_items = lambda: pool   # (an instance attribute, over the method, for this query)
        try:
            return original(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                            scan_index_forward, projection_expressions, index_name, *args, **kwargs)
        finally:
            del self.all_items

    query._candidates_given = True
    query.original = original
    Table.query = query


class _MotoServer:
    """moto's threaded server, with writes serialised (see _SerialWrites)."""

    def __init__(self, host: str, port: int, faults: Faults):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.stats = RequestStats(_UploadTimes(FaultyApp(DomainDispatcherApplication(create_backend_app), faults)))
        app = _SerialWrites(self.stats)
        self.httpd = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="moto", daemon=True)

    def start(self) -> "_MotoServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)


@dataclass
class LocalStack:
    definition: Dict[str, Any] = field(default_factory=stackdef.load)
    host: str = "127.0.0.1"
    port: int = 0
    # Shorter than in AWS so a failed message is retried within seconds, not minutes.
    visibility_timeout: int = 5
    server: Any = None
    endpoint_url: Optional[str] = None
    queue_url: Optional[str] = None
    dlq_url: Optional[str] = None
    reduce_queue_url: Optional[str] = None
    reduce_dlq_url: Optional[str] = None
    background_queue_url: Optional[str] = None
    background_dlq_url: Optional[str] = None
    user_pool_id: Optional[str] = None
    user_pool_client_id: Optional[str] = None
    retry_backoff: int = 5
    gsi_settle: int = 2
    #: off unless a test turns them on (infra/local/faults.py)
    faults: Optional[Faults] = None

    def start(self) -> "LocalStack":
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.faults = Faults(self.region)
        fast_queries()
        self.server = _MotoServer(self.host, self.port, self.faults).start()
        host, port = self.server.httpd.server_address[:2]
        self.endpoint_url = f"http://{host}:{port}"
        self.create_resources()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def request_stats(self) -> Dict[str, Dict[str, float]]:
        """Requests, moto's seconds and bytes answered, per service and operation, so far."""
        return self.server.stats.snapshot() if self.server is not None else {}

    @property
    def region(self) -> str:
        return self.definition["region"]

    def environment(self) -> Dict[str, str]:
        """What a process needs to use this stack: endpoint, credentials, resource names."""
        env = dict(LOCAL_CREDENTIALS)
        env.update(stackdef.environment(self.definition))
        env.update(AWS_ENDPOINT_URL=self.endpoint_url, AWS_DEFAULT_REGION=self.region, AWS_REGION=self.region,
                   WORK_QUEUE_URL=self.reduce_queue_url, BACKGROUND_QUEUE_URL=self.background_queue_url,
                   INGEST_QUEUE_URL=self.queue_url,
                   USER_POOL_ID=self.user_pool_id, USER_POOL_CLIENT_ID=self.user_pool_client_id)
        # Retries and the second look after a write come within seconds here (AWS: 30 s
        # doubling, and 10 s), so tests see a whole retry history in under a minute.
        env.update(RETRY_BACKOFF_SECONDS=str(self.retry_backoff), GSI_SETTLE_SECONDS=str(self.gsi_settle))
        return env

    def export_environment(self) -> None:
        """Make this process look like a Lambda / API process deployed against the stack."""
        os.environ.update(self.environment())

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def create_resources(self) -> None:
        d = self.definition
        s3, sqs, ddb = self.client("s3"), self.client("sqs"), self.client("dynamodb")
        for bucket in (d["raw_bucket"]["name"], d["products_bucket"]["name"]):
            s3.create_bucket(Bucket=bucket)
        # moto keeps the rule but never applies it; the consistency check aborts
        # abandoned uploads here (and sooner than the rule in AWS)
        s3.put_bucket_lifecycle_configuration(Bucket=d["raw_bucket"]["name"],
                                              LifecycleConfiguration=stackdef.raw_bucket_lifecycle(d))
        self.queue_url, self.dlq_url = self._queue_pair(sqs, d["ingest_queue"])
        self.reduce_queue_url, self.reduce_dlq_url = self._queue_pair(sqs, d["reduce_queue"])
        self.background_queue_url, self.background_dlq_url = self._queue_pair(sqs, d["background_queue"])
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(Bucket=d["raw_bucket"]["name"], NotificationConfiguration={
            "QueueConfigurations": [{
                "Id": "raw-created", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": d["raw_bucket"]["prefix"]}]}},
            }]
        })
        ddb.create_table(**stackdef.table_create_kwargs(d))
        cognito = self.client("cognito-idp")
        self.user_pool_id = cognito.create_user_pool(**stackdef.user_pool_kwargs(d))["UserPool"]["Id"]
        self.user_pool_client_id = cognito.create_user_pool_client(
            UserPoolId=self.user_pool_id, **stackdef.user_pool_client_kwargs(d))["UserPoolClient"]["ClientId"]

    def _queue_pair(self, sqs, q: Dict[str, Any]):
        """A queue and its dead-letter queue, joined by the redrive policy."""
        dlq = sqs.create_queue(QueueName=q["dead_letter_queue"],
                               Attributes={"MessageRetentionPeriod": str(q["retention_seconds"])})["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=q["name"], Attributes={
            "VisibilityTimeout": str(self.visibility_timeout),
            "MessageRetentionPeriod": str(q["retention_seconds"]),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": q["max_receive_count"]}),
        })["QueueUrl"]
        return url, dlq
