"""Archives of a night's files: what an observer asked to download as one zip, and
how far its building has gone.

  archive item  pk=ARCHIVE#<archive_id>  sk=ARCHIVE
                no night or update keys, so listings and the change feed never show it.

The API writes it `queued` with the files the caller may see (`entries`: bucket, key,
name in the archive), decided when asked, so the worker that builds the zip
(functions/archives.py) copies exactly those and needs no rules of its own.
Status: queued -> building -> done (`key`, `size`, `count`) | failed (`error`).
Standard library and boto3 only, like the rest of the data layer.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from .index import _decode, _encode, _set_fields, strip_keys, utcnow

QUEUED, BUILDING, DONE, FAILED = "queued", "building", "done", "failed"
#: entries an archive may hold: the item must stay well under DynamoDB's 400 KB
MOST_ENTRIES = 2000
#: where the zips go in the products bucket (a lifecycle rule may expire them)
PREFIX = "archives/"


def _key(archive_id: str) -> Dict[str, Any]:
    return _encode({"pk": f"ARCHIVE#{archive_id}", "sk": "ARCHIVE"})


def request_archive(client, table: str, archive_id: str, night: str, proposal: Optional[str], by: str,
                    entries: List[Mapping[str, Any]]) -> Dict[str, Any]:
    if len(entries) > MOST_ENTRIES:
        raise ValueError(f"{len(entries)} files are more than an archive holds ({MOST_ENTRIES}): download the URL "
                         "list instead, or one proposal's files")
    item = {"archive_id": archive_id, "night": night, "proposal": proposal, "requested_by": by,
            "requested_at": utcnow(), "status": QUEUED, "count": len(entries),
            "bytes": sum(int(e.get("size") or 0) for e in entries), "entries": [dict(e) for e in entries]}
    client.put_item(TableName=table, Item={**_key(archive_id), **_encode(item)})
    return item


def get_archive(client, table: str, archive_id: str) -> Optional[Dict[str, Any]]:
    raw = client.get_item(TableName=table, Key=_key(archive_id), ConsistentRead=True).get("Item")
    return strip_keys(_decode(raw)) if raw else None


def update_archive(client, table: str, archive_id: str, fields: Mapping[str, Any]) -> None:
    client.update_item(TableName=table, Key=_key(archive_id), ConditionExpression="attribute_exists(pk)",
                       **_set_fields({**fields, "updated_at": utcnow()}))


def public(archive: Mapping[str, Any]) -> Dict[str, Any]:
    """The archive as its requester is shown it (not the list of objects it copies)."""
    return {k: v for k, v in archive.items() if k != "entries"}
