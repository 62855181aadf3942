"""The ingest function: S3 ObjectCreated events (through SQS) in, one index item per
raw file out.

Lambda calls `handler` with an SQS batch; the local runner calls the same function
with the same event shape. Each record succeeds or is reported in
`batchItemFailures` so that only it is retried (SQS partial batch responses). A bad
file is not an error of the function: it is recorded as `failed` with the reason and
acknowledged. Anything else (storage or index unreachable) raises, is noted on the
file's item as `retrying`, and the queue retries it, then dead-letters it.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from functions import reduction
from functions.api.chalicelib.index import (
    FINAL_STATUSES, STATUS_FAILED, STATUS_INDEXED, STATUS_REDUCING, STATUS_RETRYING, STATUS_UNSUPPORTED, FileIndex,
    file_id_for,
)
from functions.api.chalicelib.settings import Settings
from functions.core.calibrations import REDUCED_TYPES, bias_group, flat_group, reason_not_reducible
from functions.core.classify import classify
from functions.core.reduce import ReductionSettings
from functions.reduction import ReductionConfig
from functions.core.fitsheader import HEADER_PROBE_BYTES, BadFrame, NeedMoreBytes, check_complete, parse_primary_header
from functions.s3events import BadMessage, Ignored, ObjectCreated, parse_body

log = logging.getLogger("goodman_live.ingest")
_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Services:
    """What the functions need from the outside world, created once per warm worker."""
    settings: Settings
    s3: Any
    sqs: Any
    index: FileIndex
    reduction: ReductionConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        config = ReductionConfig(ReductionSettings.from_dict(json.loads(settings.reduction_overrides)),
                                 window_days=settings.calibration_window_days)
        return cls(settings, settings.client("s3"), settings.client("sqs"),
                   FileIndex(settings.client("dynamodb"), settings.index_table), config)


_services: Optional[Services] = None


def _warm_services() -> Services:
    global _services
    if _services is None:
        _services = Services.from_settings(Settings.from_env())
    return _services


def reset_services() -> None:
    """Forget the warm clients (the local stack calls this when it changes endpoints)."""
    global _services
    _services = None


def handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    services = _warm_services()
    failures = []
    for record in event.get("Records", []):
        attempt = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
        try:
            handle_message(record.get("body", ""), services, attempt)
        except Exception:
            log.exception("message %s failed on attempt %d", record.get("messageId"), attempt)
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def handle_message(body: Any, services: Services, attempt: int = 1) -> None:
    task = _task(body)
    if task is not None:
        try:
            reduction.handle_task(task, services, services.reduction)
        except Exception as exc:
            if task.get("file_id"):
                _note_task_error(task["file_id"], services, f"attempt {attempt} failed: {type(exc).__name__}: {exc}")
            raise
        return
    try:
        events = parse_body(body)
    except BadMessage as exc:
        # Not an S3 notification: nothing to index, and retrying cannot help.
        log.error("dropping a message that is not an S3 notification: %s", exc)
        return
    for event in events:
        if isinstance(event, Ignored):
            log.info("ignored: %s", event.why)
            continue
        try:
            ingest_object(event, services)
        except Exception as exc:
            note_retry(event, services, f"attempt {attempt} failed: {type(exc).__name__}: {exc}")
            raise


def _task(body: Any) -> Optional[Dict[str, Any]]:
    """A work item the functions sent themselves, or None for anything else."""
    if isinstance(body, str) and reduction.TASK_KEY in body:
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            return None
    if isinstance(body, dict) and isinstance(body.get(reduction.TASK_KEY), dict):
        return body[reduction.TASK_KEY]
    return None


def split_key(key: str, prefix: str) -> Tuple[Optional[str], str]:
    """(night, file name) from '{prefix}{night}/{file}'; night None if the key is elsewhere."""
    rest = key[len(prefix):] if prefix and key.startswith(prefix) else key
    night, _, name = rest.partition("/")
    if name and _NIGHT.match(night):
        return night, name
    return None, posixpath.basename(key)


def _base_fields(event: ObjectCreated, settings: Settings) -> Dict[str, Any]:
    night, name = split_key(event.key, settings.raw_prefix)
    return {
        "file_id": file_id_for(event.bucket, event.key),
        "night": night or "unsorted",
        "file_name": name,
        "raw_bucket": event.bucket,
        "raw_key": event.key,
        "etag": event.etag,
        "size": event.size,
    }


def read_head(s3, bucket: str, key: str) -> Tuple[bytes, int, Optional[str]]:
    """The first bytes of an object holding its whole primary header, its size and ETag."""
    want = HEADER_PROBE_BYTES
    while True:
        try:
            resp = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{want - 1}")
        except s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b"", 0, None  # a 0-byte object has no range to give
            raise
        data = resp["Body"].read()
        content_range = resp.get("ContentRange") or ""
        total = int(content_range.rsplit("/", 1)[1]) if "/" in content_range else int(resp["ContentLength"])
        etag = (resp.get("ETag") or "").strip('"') or None
        try:
            parse_primary_header(data, total)
            return data, total, etag
        except NeedMoreBytes as more:
            want = more.needed
        except BadFrame:
            return data, total, etag


def ingest_object(event: ObjectCreated, services: Services) -> Dict[str, Any]:
    """Index one raw object; idempotent on (bucket, key, ETag)."""
    settings, index = services.settings, services.index
    fields = _base_fields(event, settings)
    existing = index.get_file(fields["file_id"])
    if existing and existing.get("status") in FINAL_STATUSES and event.etag and existing.get("etag") == event.etag:
        log.info("already indexed: %s (%s)", event.key, existing["status"])
        reduction.after_index(existing, services, services.reduction)  # idempotent: finishes what a crash left
        return existing
    try:
        data, total, etag = read_head(services.s3, event.bucket, event.key)
    except services.s3.exceptions.NoSuchKey:
        fields.update(status=STATUS_FAILED, error="the raw object was deleted before it could be read")
        index.record_file(fields)
        return fields
    fields.update(size=total, etag=etag or event.etag)
    try:
        header, header_bytes = parse_primary_header(data, total)
        check_complete(header, header_bytes, total)
    except BadFrame as exc:
        fields.update(status=STATUS_FAILED, error=str(exc), obstype="UNKNOWN")
        index.record_file(fields)
        log.warning("failed %s: %s", event.key, exc)
        return fields
    info = classify(header)
    if fields["night"] == "unsorted" and info.get("date_obs"):
        fields["night"] = info["date_obs"][:10]
        info["notes"].append(f"key not under {settings.raw_prefix}<night>/: night taken from DATE-OBS")
    fields.update(info)
    fields["products"] = [write_header_product(services, fields, header)]
    why_not = reason_not_reducible(info)
    if why_not:
        fields.update(status=STATUS_UNSUPPORTED, error=why_not)
    else:
        fields.update(status=STATUS_REDUCING if info["obstype"] in REDUCED_TYPES else STATUS_INDEXED, error=None,
                      bias_group=bias_group(info), flat_group=flat_group(info))
    index.record_file(fields)
    log.info("indexed %s as %s %s", event.key, info["obstype"], info["configuration"])
    reduction.after_index(fields, services, services.reduction)
    return fields


def product_key(night: str, file_name: str, product_name: str) -> str:
    stem = file_name.rsplit(".", 1)[0]
    return f"{night}/{stem}/{product_name}"


def write_header_product(services: Services, fields: Dict[str, Any], header) -> Dict[str, Any]:
    """The raw primary header as text: what observers open first when a frame looks odd."""
    name = fields["file_name"].rsplit(".", 1)[0] + ".header.txt"
    key = product_key(fields["night"], fields["file_name"], name)
    body = header.tostring(sep="\n", endcard=True, padding=False).encode("ascii", "replace")
    services.s3.put_object(Bucket=services.settings.products_bucket, Key=key, Body=body,
                           ContentType="text/plain; charset=us-ascii")
    return {"file_name": name, "kind": "header", "bucket": services.settings.products_bucket,
            "key": key, "size": len(body), "content_type": "text/plain"}


def note_retry(event: ObjectCreated, services: Services, error: str) -> None:
    """Say on the file's item that work on it failed and will be retried (best effort:
    the index itself may be what is down)."""
    try:
        fields = _base_fields(event, services.settings)
        existing = services.index.get_file(fields["file_id"]) or {}
        fields = {**existing, **{k: v for k, v in fields.items() if v is not None}}
        fields.update(status=STATUS_RETRYING, error=error)
        services.index.record_file(fields)
    except Exception:
        log.exception("could not record the retry of %s", event.key)


def dlq_handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    """Lambda entry for the dead-letter queue: nothing the queue gave up on goes unexplained."""
    services = _warm_services()
    failures = []
    for record in event.get("Records", []):
        try:
            dead_lettered(record.get("body", ""), services, services.settings.max_receive_count)
        except BadMessage:
            log.error("dead-lettered message %s is not an S3 notification", record.get("messageId"))
        except Exception:
            log.exception("could not record dead-lettered message %s", record.get("messageId"))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def _note_task_error(file_id: str, services: Services, error: str) -> None:
    try:
        services.index.update_file(file_id, {"status": STATUS_RETRYING, "error": error})
    except Exception:
        log.exception("could not record the failure of a task on %s", file_id)


def dead_lettered(body: Any, services: Services, receive_count: int) -> None:
    """A message the queue gave up on: its files end `failed`, with the last error."""
    task = _task(body)
    if task is not None:
        log.error("task gave up after %d deliveries: %s", receive_count, task)
        existing = services.index.get_file(task["file_id"]) if task.get("file_id") else None
        if existing and existing.get("status") not in FINAL_STATUSES:
            services.index.update_file(task["file_id"], {
                "status": STATUS_FAILED,
                "error": f"gave up after {receive_count} deliveries; last error: {existing.get('error')}"})
        return
    for event in parse_body(body):
        if isinstance(event, Ignored):
            continue
        fields = _base_fields(event, services.settings)
        existing = services.index.get_file(fields["file_id"]) or {}
        if existing.get("status") in FINAL_STATUSES:
            continue
        last = existing.get("error") or "no error was recorded"
        merged = {**existing, **{k: v for k, v in fields.items() if v is not None}}
        merged.update(status=STATUS_FAILED,
                      error=f"gave up after {receive_count} deliveries; last error: {last}")
        services.index.record_file(merged)
