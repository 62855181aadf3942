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


def put_file_product(services, item: Dict[str, Any], name: str, kind: str, body: bytes,
                     content_type: str) -> Dict[str, Any]:
    """A product of one raw file, filed under that file's folder."""
    return put_product(services, product_key(item["night"], item["file_name"], name), name, kind, body, content_type)


def read_fits_hdus(s3, bucket: str, key: str):
    """Every HDU's (data, header) of a FITS object, read whole into memory (the 1-D
    products keep their variance and sky in further HDUs)."""
    import io

    from astropy.io import fits

    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with fits.open(io.BytesIO(body), memmap=False) as hdul:
        return [(h.data, h.header.copy()) for h in hdul]


def read_fits(s3, bucket: str, key: str):
    """(data, header) of the first HDU of a FITS object."""
    return read_fits_hdus(s3, bucket, key)[0]
