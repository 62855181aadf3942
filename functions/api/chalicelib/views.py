"""How index items are dressed for clients."""
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Optional

from golive_data.access import CALIBRATION_TYPES


def expires_at(expiry_seconds: int) -> str:
    """When URLs signed now for `expiry_seconds` stop working (UTC, ISO 8601)."""
    return (datetime.now(timezone.utc) + timedelta(seconds=expiry_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(s3, bucket: str, key: str, expiry_seconds: int) -> str:
    return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry_seconds)


def with_download_urls(item: Dict[str, Any], s3, expiry_seconds: int) -> Dict[str, Any]:
    """Each product gets a short-lived signed URL, so downloads never pass through the API.

    Signing is a local computation: no request is made to storage here.
    """
    products = [{**p, "url": _signed(s3, p["bucket"], p["key"], expiry_seconds)} for p in item.get("products") or []]
    return {**item, "products": products}


def night_objects(items: Iterable[Dict[str, Any]], proposal: Optional[str]) -> List[Dict[str, Any]]:
    """Every raw file and product of `items` (a night's, as the caller may see them),
    with where it is stored and its name in an archive. For one proposal: its frames
    and the night's calibrations, which a reduction of them needs."""
    out = []
    for item in items:
        if proposal and item.get("proposal") != proposal and item.get("obstype") not in CALIBRATION_TYPES:
            continue
        base = {"file_id": item["file_id"], "file_name": item["file_name"], "path": item.get("path"),
                "obstype": item.get("obstype"), "proposal": item.get("proposal")}
        if item.get("raw_key") and not str(item.get("obstype", "")).startswith("MASTER_"):
            out.append({**base, "kind": "raw", "product": item["file_name"], "size": item.get("size"),
                        "bucket": item["raw_bucket"], "key": item["raw_key"],
                        "name": f"{item['night']}/raw/{item.get('path') or item['file_name']}"})
        for p in item.get("products") or []:
            out.append({**base, "kind": p["kind"], "product": p["file_name"], "size": p.get("size"),
                        "bucket": p["bucket"], "key": p["key"], "name": p["key"]})
    return out


def night_downloads(objects: Iterable[Dict[str, Any]], s3, expiry_seconds: int) -> List[Dict[str, Any]]:
    """night_objects as signed URLs (and not where they are stored)."""
    return [{**{k: v for k, v in o.items() if k not in ("bucket", "key", "name")},
             "url": _signed(s3, o["bucket"], o["key"], expiry_seconds)} for o in objects]
