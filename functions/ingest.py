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

import logging
import posixpath
import re
from typing import Any, Dict, Optional, Tuple

from golive_data.index import UNSORTED, file_id_for, utcnow
from golive_data.item import (
    FINAL_STATUSES, STATUS_FAILED, STATUS_INDEXED, STATUS_REDUCING, STATUS_RETRYING, STATUS_UNSUPPORTED,
)
from functions.core.calibrations import REDUCED_TYPES, reason_not_reducible
from functions.core.classify import classify
from functions.core.fitsheader import (  # parse_primary_header: consistency.py rewrites header products with it
    HEADER_PROBE_BYTES, BadFrame, NeedMoreBytes, check_complete, header_end, parse_primary_header,
    read_primary_header,
)
from functions.s3events import BadMessage, Ignored, ObjectCreated, parse_body
from functions.products import item_product_key, put_product, stem_of
from functions import deadletters
from functions.services import Services, gave_up, send_task, sqs_batch

log = logging.getLogger("goodman_live.ingest")
#: How a header repair (functions/core/headerfix.py) starts among the item's notes.
HEADER_REPAIRED = "header repaired: "
_NIGHT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    return sqs_batch(event, handle_message)


def handle_message(body: Any, services: Services, attempt: int = 1) -> None:
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


def split_key(key: str, prefix: str) -> Tuple[Optional[str], str]:
    """(night, path below the night) from '{prefix}{night}/{path}', where the path is the
    file's name or, for a file the agent found in a folder below the night's, that
    folder and the name ('RAW/0267.fits'); night None if the key is elsewhere."""
    rest = key[len(prefix):] if prefix and key.startswith(prefix) else key
    night, _, path = rest.partition("/")
    if path and _NIGHT.match(night):
        return night, path
    return None, posixpath.basename(key)


def _base_fields(event: ObjectCreated, settings) -> Dict[str, Any]:
    night, path = split_key(event.key, settings.raw_prefix)
    return {
        "file_id": file_id_for(event.bucket, event.key),
        "night": night or UNSORTED,
        "file_name": posixpath.basename(path),
        "path": path,
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
            end = header_end(data, total)
        except NeedMoreBytes as more:
            want = more.needed
            continue
        except BadFrame:
            return data, total, etag  # ingest_object records why
        if len(data) >= min(end, total):
            return data, total, etag
        want = end


#: An item in one of these states was indexed from the object's present bytes: a
#: redelivered event only hands it on again. Writing it afresh would drop what its
#: reduction, perhaps running at that moment, has listed (its products, calibrations and
#: spectra), and their objects would be left behind. An item `retrying` is indexed
#: afresh: that is how a failed file is taken up again.
_INDEXED_STATUSES = FINAL_STATUSES | {STATUS_REDUCING}


def _already_indexed(existing: Optional[Dict[str, Any]], etag: Optional[str]) -> bool:
    return bool(existing and etag and existing.get("status") in _INDEXED_STATUSES and existing.get("etag") == etag)


def _again(existing: Dict[str, Any], event: ObjectCreated, services: Services) -> Dict[str, Any]:
    log.info("already indexed: %s (%s)", event.key, existing["status"])
    _hand_over(existing, services)  # idempotent downstream: finishes what a crash left
    return existing


def ingest_object(event: ObjectCreated, services: Services) -> Dict[str, Any]:
    """Index one raw object; idempotent on (bucket, key, ETag)."""
    settings, index = services.settings, services.index
    received = utcnow()
    fields = _base_fields(event, settings)
    existing = index.get_file(fields["file_id"])
    if _already_indexed(existing, event.etag):
        return _again(existing, event, services)
    try:
        data, total, etag = read_head(services.s3, event.bucket, event.key)
    except services.s3.exceptions.NoSuchKey:
        fields.update(status=STATUS_FAILED, error="the raw object was deleted before it could be read")
        index.record_file(fields)
        return fields
    if not event.etag and _already_indexed(existing, etag):
        return _again(existing, event, services)  # an event without its ETag (a repair's, an operator's)
    fields.update(size=total, etag=etag or event.etag)
    try:
        repaired, header_bytes = read_primary_header(data, total)
        header = repaired.header
        check_complete(header, header_bytes, total)
    except BadFrame as exc:
        fields.update(status=STATUS_FAILED, error=str(exc), obstype="UNKNOWN")
        index.record_file(fields)
        log.warning("failed %s: %s", event.key, exc)
        return fields
    info = classify(header)
    # A repaired header is reduced all the same; the item and the page say what was read how.
    info["header_repairs"] = list(repaired.repairs)
    info["notes"] = [f"{HEADER_REPAIRED}{note}" for note in repaired.repairs] + info["notes"]
    if fields["night"] == UNSORTED and info.get("date_obs"):
        fields["night"] = info["date_obs"][:10]
        info["notes"].append(f"key not under {settings.raw_prefix}<night>/: night taken from DATE-OBS")
    fields.update(info)
    fields["products"] = [write_header_product(services, fields, header)]
    why_not = reason_not_reducible(info)
    if why_not:
        fields.update(status=STATUS_UNSUPPORTED, error=why_not)
    else:
        fields.update(status=STATUS_REDUCING if info["obstype"] in REDUCED_TYPES else STATUS_INDEXED, error=None)
    fields["timeline"] = {k: v for k, v in (("uploaded_at", event.event_time), ("event_at", received),
                                            ("indexed_at", utcnow())) if v}
    index.record_file(fields)
    log.info("indexed %s as %s %s", event.key, info["obstype"], info["configuration"])
    _hand_over(fields, services)
    return fields


def _hand_over(item: Dict[str, Any], services: Services) -> None:
    """Calibrations and reduction run on their own queue and workers, so a new file is
    listed within a second however busy the reduction is."""
    if item.get("status") not in (STATUS_FAILED, STATUS_UNSUPPORTED):
        send_task(services, {"task": "after_index", "file_id": item["file_id"]})


def write_header_product(services: Services, fields: Dict[str, Any], header) -> Dict[str, Any]:
    """The raw primary header as text: what observers open first when a frame looks odd."""
    name = stem_of(fields["file_name"]) + ".header.txt"
    body = header.tostring(sep="\n", endcard=True, padding=False).encode("ascii", "replace")
    return put_product(services, item_product_key(fields, name), name, "header", body,
                       "text/plain")


def _mark(event: ObjectCreated, services: Services, status: str, error_for, extra=None) -> None:
    """Set a file's status (and the `extra` fields), creating its item if work failed
    before it was indexed. `error_for(existing item)` gives the error text, or None to
    leave the item alone."""
    fields = _base_fields(event, services.settings)
    existing = services.index.get_file(fields["file_id"]) or {}
    error = error_for(existing)
    if error is None:
        return
    merged = {**existing, **{k: v for k, v in fields.items() if v is not None}, "status": status, "error": error,
              **(extra or {})}
    services.index.record_file(merged)


def note_retry(event: ObjectCreated, services: Services, error: str) -> None:
    """Say on the file's item that work on it failed and will be retried (best effort:
    the index itself may be what is down)."""
    try:
        _mark(event, services, STATUS_RETRYING, lambda existing: error)
    except Exception:
        log.exception("could not record the retry of %s", event.key)


def dlq_handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    """Lambda entry for the dead-letter queue: nothing the queue gave up on goes unexplained."""
    return sqs_batch(event, dead_lettered)


def dead_lettered(body: Any, services: Services, attempt: int = 1) -> None:
    """A message the queue gave up on: kept for the operator to redrive
    (functions.operations), and its files, unless indexed since, end `failed` with the
    last error."""
    receive_count = services.settings.max_receive_count
    try:
        events = [e for e in parse_body(body) if not isinstance(e, Ignored)]
    except BadMessage:
        log.error("a dead-lettered message is not an S3 notification: %.200s", body)
        deadletters.record(services, deadletters.INGEST, body, "not an S3 notification", [], receive_count)
        return
    files, reasons = [], []
    for event in events:
        fields = _base_fields(event, services.settings)
        existing = services.index.get_file(fields["file_id"]) or {}
        files.append(deadletters.file_ref(fields))
        reasons.append(gave_up(receive_count, existing.get("error")))
    if not events:
        return
    entry = deadletters.record(services, deadletters.INGEST, body, "; ".join(dict.fromkeys(reasons)), files,
                               receive_count)
    for event in events:
        _mark(event, services, STATUS_FAILED, lambda existing: None if existing.get("status") in FINAL_STATUSES
              else gave_up(receive_count, existing.get("error")), extra={"dead_letter": deadletters.note(entry)})
