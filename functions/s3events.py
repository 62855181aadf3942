"""S3 notifications as AWS, moto, MinIO and SNS fan-out deliver them, read into one
shape. Keys arrive URL-encoded (AWS: quote_plus with '/' kept; MinIO and moto: '/'
as %2F as well), so every key is decoded here and nowhere else.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List, Optional, Union
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    etag: Optional[str]
    size: Optional[int]
    sequencer: Optional[str] = None
    #: when the storage says the object was created (the record's eventTime)
    event_time: Optional[str] = None


@dataclass(frozen=True)
class Ignored:
    """A message that needs no work (S3's s3:TestEvent, a removal); `why` is logged."""
    why: str


class BadMessage(ValueError):
    """A queue message that is not an S3 notification at all."""


def clean_etag(etag: Optional[str]) -> Optional[str]:
    return etag.strip('"') if etag else None


def parse_body(body: Union[str, dict]) -> List[Union[ObjectCreated, Ignored]]:
    """All the objects one queue message is about."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadMessage(f"message body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadMessage("message body is not a JSON object")
    if body.get("Type") == "Notification" and "Message" in body:  # S3 -> SNS -> SQS
        return parse_body(body["Message"])
    if body.get("Event") == "s3:TestEvent":
        return [Ignored(f"s3:TestEvent for bucket {body.get('Bucket')}")]
    records = body.get("Records")
    if not isinstance(records, list):
        raise BadMessage("message has no S3 Records")
    out: List[Union[ObjectCreated, Ignored]] = []
    for record in records:
        source = record.get("eventSource", "")
        name = record.get("eventName", "")
        if source not in ("aws:s3", "minio:s3"):
            out.append(Ignored(f"event source {source!r} is not S3"))
            continue
        if "ObjectCreated" not in name:
            out.append(Ignored(f"{name} needs no ingest"))
            continue
        s3 = record.get("s3") or {}
        obj = s3.get("object") or {}
        bucket = (s3.get("bucket") or {}).get("name")
        if not bucket or "key" not in obj:
            raise BadMessage("S3 record without bucket name or object key")
        size = obj.get("size")
        out.append(ObjectCreated(
            bucket=bucket,
            key=unquote_plus(obj["key"]),
            etag=clean_etag(obj.get("eTag") or obj.get("etag")),
            size=int(size) if size is not None else None,
            sequencer=obj.get("sequencer"),
            event_time=record.get("eventTime"),
        ))
    return out
