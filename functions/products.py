"""Where products go in the products bucket, and the entry that lists each one.

Every product of a raw file lives under `{night}/{stem}/`, masters under
`{night}/masters/`; the entry is what the index stores and the API signs."""
from __future__ import annotations

from typing import Any, Dict


def stem_of(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0]


def product_key(night: str, file_name: str, product_name: str) -> str:
    return f"{night}/{stem_of(file_name)}/{product_name}"


def put_product(services, key: str, file_name: str, kind: str, body: bytes, content_type: str) -> Dict[str, Any]:
    bucket = services.settings.products_bucket
    services.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return {"file_name": file_name, "kind": kind, "bucket": bucket, "key": key, "size": len(body),
            "content_type": content_type}
