"""Versions of a file's reduction: each re-reduction with settings, requested through
the API, is a version, reduced by the reduction function and kept.

  version item  pk=FILE#<file_id>  sk=VERSION#<n, 6 digits>
                beside its file item (sk=FILE), so one Query lists a file's versions,
                oldest first; it has no night_pk, type_pk nor updated_sk, so the
                night's listings and the change feed (sparse GSIs) never show it.

Version 0 is the automatic reduction: it is written only when a requested version
first replaces it (status done, requested_by "automatic"), so that it stays listed and
its products kept. Version n >= 1 is numbered by the file item's `versions_requested`
counter, which `request_version` increments atomically: two requests racing get two
numbers. Its products live under `{night}/{stem}/v<n>/` (functions/products.py), so
no version overwrites another's objects; the file item shows the version reduced last
(`settings_version`, `settings`, its `products`), and the reduction keeps that
version's `products` in step with the item's (functions/products.remove_unlisted),
which never deletes an object a version lists.

Status: queued (requested) -> reducing -> done | failed (`error` says why; a failed
version is not adopted: the file item keeps showing the version before it).
Standard library and boto3 only, like the rest of the data layer.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from .index import FILE_SK, _decode, _encode, _set_fields, query_partition, strip_keys, utcnow
from .item import API, INDEX, REDUCTION, Field

VERSION_PREFIX = "VERSION#"
QUEUED, REDUCING, DONE, FAILED = "queued", "reducing", "done", "failed"
VERSION_STATUSES = (QUEUED, REDUCING, DONE, FAILED)
#: requested_by of version 0, the automatic reduction
AUTOMATIC = "automatic"

#: Every field a version item holds (besides its keys, pk and sk).
VERSION_ITEM: Tuple[Field, ...] = (
    Field("file_id", "string", "the file it is a version of", API),
    Field("version", "integer", "its number: 0 the automatic reduction, 1, 2, ... as requested", API),
    Field("status", "string", "queued, reducing, done or failed", API, enum=VERSION_STATUSES),
    Field("settings", "object", "the overrides it asked for (on top of the deployment's settings)", API),
    Field("requested_by", "string", "who asked for it (a username; 'automatic' for version 0)", API),
    Field("requested_at", "string", "UTC time it was requested", API),
    Field("started_at", "string", "UTC time its reduction started", REDUCTION),
    Field("finished_at", "string", "UTC time its reduction ended, done or failed", REDUCTION),
    Field("error", "string", "why it failed; null otherwise", REDUCTION),
    Field("products", "array", "its products, as the file item's `products` while it is the one shown", REDUCTION,
          items="object"),
    Field("spectra_status", "string", "its spectra's calibration status, as the file item's", REDUCTION),
    Field("updated_at", "string", "UTC time of its last change", INDEX),
)
VERSION_FIELDS = frozenset(f.name for f in VERSION_ITEM)


class NoSuchFile(LookupError):
    """A version was requested for a file the index does not hold."""


def version_key(file_id: str, n: int) -> Dict[str, Any]:
    return _encode({"pk": f"FILE#{file_id}", "sk": f"{VERSION_PREFIX}{int(n):06d}"})


def store_of(index) -> Tuple[Any, str]:
    """(client, table) of a golive_data.index.FileIndex, for the functions below."""
    return index._db, index._table


def _check(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - VERSION_FIELDS)
    if unknown:
        raise ValueError("not fields of a version item (golive_data/versions.py): " + ", ".join(unknown))


def request_version(client, table: str, file_id: str, settings: Mapping[str, Any], requested_by: str) -> int:
    """Allocate the file's next version and put it `queued`, asking for `settings` (the
    overrides, already validated and merged by the caller); returns its number (>= 1).
    NoSuchFile when the file is not indexed."""
    while True:
        try:
            resp = client.update_item(
                TableName=table, Key=_encode({"pk": f"FILE#{file_id}", "sk": FILE_SK}),
                UpdateExpression="ADD versions_requested :one", ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=_encode({":one": 1}), ReturnValues="UPDATED_NEW")
        except client.exceptions.ConditionalCheckFailedException:
            raise NoSuchFile(f"no file {file_id} in the index") from None
        n = int(_decode(resp["Attributes"])["versions_requested"])
        now = utcnow()
        if record_version(client, table, file_id, n, {
                "file_id": file_id, "version": n, "status": QUEUED, "settings": dict(settings or {}),
                "requested_by": requested_by, "requested_at": now, "products": []}):
            return n
        # The number is taken: the item's counter was reset (a new upload of the raw
        # file re-records its item). Move it past the newest version and try again.
        newest = max(v["version"] for v in list_versions(client, table, file_id))
        try:
            client.update_item(
                TableName=table, Key=_encode({"pk": f"FILE#{file_id}", "sk": FILE_SK}),
                UpdateExpression="SET versions_requested = :n",
                ConditionExpression="attribute_exists(pk) AND versions_requested < :n",
                ExpressionAttributeValues=_encode({":n": newest}))
        except client.exceptions.ConditionalCheckFailedException:
            pass    # another request moved it already


def record_version(client, table: str, file_id: str, n: int, fields: Mapping[str, Any]) -> bool:
    """Put version `n` unless it exists; True when this call created it."""
    _check(fields)
    item = {**fields, "file_id": file_id, "version": int(n), "updated_at": utcnow()}
    try:
        client.put_item(TableName=table, Item={**version_key(file_id, n), **_encode(item)},
                        ConditionExpression="attribute_not_exists(pk)")
        return True
    except client.exceptions.ConditionalCheckFailedException:
        return False


def update_version(client, table: str, file_id: str, n: int, fields: Mapping[str, Any]) -> bool:
    """Change some fields of version `n` (None removes one); False when there is no
    such version (nothing is written)."""
    _check(fields)
    try:
        client.update_item(TableName=table, Key=version_key(file_id, n), ConditionExpression="attribute_exists(pk)",
                           **_set_fields({**fields, "updated_at": utcnow()}))
        return True
    except client.exceptions.ConditionalCheckFailedException:
        return False


def get_version(client, table: str, file_id: str, n: int) -> Optional[Dict[str, Any]]:
    raw = client.get_item(TableName=table, Key=version_key(file_id, n), ConsistentRead=True).get("Item")
    return _plain(raw) if raw else None


def list_versions(client, table: str, file_id: str) -> List[Dict[str, Any]]:
    """Every version of a file, oldest first (one Query, read consistently)."""
    return [strip_keys(i) for i in query_partition(client, table, f"FILE#{file_id}", VERSION_PREFIX)]


def _plain(raw: Dict[str, Any]) -> Dict[str, Any]:
    return strip_keys(_decode(raw))
