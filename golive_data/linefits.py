"""Line fits an observer made on a file's spectrum (POST /api/files/{id}/linefit),
kept so that the page lists them again and a colleague sees them:

  line-fit item  pk=FILE#<file_id>  sk=LINEFIT#<at>#<fit_id>
                 beside the file item, like its versions: one Query lists a file's
                 fits, oldest first; no night or update keys, so the night's listings
                 and the change feed never show them.

The fit itself (golive_data/linefit.py) is computed by the API; this module only
stores and lists it. Standard library and boto3 only, like the rest of the data layer.
"""
from __future__ import annotations

import json
import secrets
from typing import Any, Dict, List, Mapping, Optional

from .index import _encode, query_partition, strip_keys, utcnow

LINEFIT_PREFIX = "LINEFIT#"
#: fits kept per file at most: the oldest go first (a page can fit lines all night)
MOST_PER_FILE = 200


def _pk(file_id: str) -> str:
    return f"FILE#{file_id}"


def record_fit(client, table: str, file_id: str, fit: Mapping[str, Any], by: str) -> Dict[str, Any]:
    """Store `fit` for the file, made by user `by`; returns it with its fit_id and time."""
    at = utcnow()
    fit_id = secrets.token_hex(6)
    entry = {**fit, "fit_id": fit_id, "file_id": file_id, "by": by, "at": at}
    # the drawn curve (hundreds of numbers) is kept as one JSON string: a list of numbers
    # is costly to write and to read back as DynamoDB attributes
    stored = {**entry, "curve": json.dumps(entry.get("curve") or {}, separators=(",", ":"))}
    client.put_item(TableName=table, Item=_encode({**stored, "pk": _pk(file_id),
                                                   "sk": f"{LINEFIT_PREFIX}{at}#{fit_id}"}))
    if _count(client, table, file_id) > MOST_PER_FILE:
        kept = list_fits(client, table, file_id)
        for old in kept[:-MOST_PER_FILE]:
            delete_fit(client, table, file_id, old["fit_id"], old)
    return entry


def _count(client, table: str, file_id: str) -> int:
    """How many fits the file has, without reading them (each holds its curve)."""
    kwargs = dict(TableName=table, Select="COUNT", KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                  ExpressionAttributeValues=_encode({":pk": _pk(file_id), ":p": LINEFIT_PREFIX}))
    total = 0
    while True:
        resp = client.query(**kwargs)
        total += int(resp.get("Count", 0))
        if "LastEvaluatedKey" not in resp:
            return total
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def list_fits(client, table: str, file_id: str) -> List[Dict[str, Any]]:
    """The file's fits, oldest first."""
    return [_read(i) for i in query_partition(client, table, _pk(file_id), LINEFIT_PREFIX)]


def _read(item: Dict[str, Any]) -> Dict[str, Any]:
    fit = strip_keys(item)
    if isinstance(fit.get("curve"), str):
        fit["curve"] = json.loads(fit["curve"])
    return fit


def get_fit(client, table: str, file_id: str, fit_id: str) -> Optional[Dict[str, Any]]:
    return next((f for f in list_fits(client, table, file_id) if f.get("fit_id") == fit_id), None)


def delete_fit(client, table: str, file_id: str, fit_id: str, fit: Optional[Mapping[str, Any]] = None) -> bool:
    """Remove a fit; False when there is none with that id."""
    fit = fit or get_fit(client, table, file_id, fit_id)
    if not fit:
        return False
    client.delete_item(TableName=table, Key=_encode({"pk": _pk(file_id),
                                                     "sk": f"{LINEFIT_PREFIX}{fit['at']}#{fit_id}"}))
    return True
