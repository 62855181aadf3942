"""A file's products as data: which product of a file (or of one of its versions) a
route means, and its bytes from storage, kept for a while per warm API process.

The page asks for the same spectrum or 2-D frame many times in a row (a zoom, a line
fit, every click of imexam); a product is read from storage once and then only checked
(a GET with If-None-Match, answered 304 without the body) while it is kept."""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from golive_data.fitsread import FitsError, read_hdus


class NoProduct(LookupError):
    """The file has no such product (yet): the route answers 409 with this message."""


def spectrum_entry(item: Dict[str, Any], target: int) -> Dict[str, Any]:
    for s in item.get("spectra") or []:
        if int(s.get("number") or 0) == int(target):
            return s
    numbers = [s.get("number") for s in item.get("spectra") or []]
    if not numbers:
        raise NoProduct(f"{item.get('file_name')} has no extracted spectrum"
                        + (f" ({item['spectra_reason']})" if item.get("spectra_reason") else ""))
    raise NoProduct(f"{item.get('file_name')} has no target {target}: its targets are "
                    + ", ".join(str(n) for n in numbers))


def named(products: List[Dict[str, Any]], file_name: Optional[str], kind: str) -> Optional[Dict[str, Any]]:
    return next((p for p in products if p.get("kind") == kind and (file_name is None or p.get("file_name") == file_name)),
                None)


def of_target(products: List[Dict[str, Any]], file_name: str, target: int, kinds) -> Dict[str, Dict[str, Any]]:
    """{kind: entry} of one target's products of these kinds, by the names
    functions/spectroscopy.py gives them: `<prefix><stem>_target_<n>.fits` (extracted,
    calibrated) and `we<lamp>_for_<stem>_target_<n>.fits` (the lamp along the target)."""
    own = re.compile(rf"(^[a-z]+_?|_for_){re.escape(file_name.rsplit('.', 1)[0])}_target_{int(target)}\.fits$")
    return {p["kind"]: p for p in products if p.get("kind") in kinds and own.search(p.get("file_name", ""))}


class Store:
    """Product bytes by (bucket, key), the most recent `most_bytes` of them kept."""

    def __init__(self, s3, most_bytes: int = 96 * 1024 * 1024):
        self.s3 = s3
        self.most_bytes = most_bytes
        self._kept: "OrderedDict[Tuple[str, str], Tuple[str, bytes]]" = OrderedDict()
        self._lock = threading.Lock()

    def read(self, product: Dict[str, Any]) -> bytes:
        where = (product["bucket"], product["key"])
        with self._lock:
            kept = self._kept.get(where)
        kwargs: Dict[str, Any] = {"Bucket": where[0], "Key": where[1]}
        if kept:
            kwargs["IfNoneMatch"] = kept[0]
        try:
            resp = self.s3.get_object(**kwargs)
        except self.s3.exceptions.NoSuchKey:
            raise NoProduct(f"{product.get('file_name')} is listed but not in storage (being replaced?): "
                            "try again in a moment") from None
        except Exception as exc:  # botocore's ClientError: 304 Not Modified is the one we want
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if kept and code in ("304", "NotModified"):
                return kept[1]
            raise
        body = resp["Body"].read()
        with self._lock:
            self._kept[where] = (resp.get("ETag", ""), body)
            self._kept.move_to_end(where)
            while sum(len(b) for _, b in self._kept.values()) > self.most_bytes and len(self._kept) > 1:
                self._kept.popitem(last=False)
        return body

    def hdus(self, product: Dict[str, Any]):
        try:
            return read_hdus(self.read(product))
        except FitsError as exc:
            raise NoProduct(f"{product.get('file_name')} cannot be read: {exc}") from None
