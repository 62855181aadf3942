"""Where products go in the products bucket, and the entry that lists each one.

Every product of a raw file lives under `{night}/{stem}/`, those of a requested version
n of its reduction (golive_data/versions.py) under `{night}/{stem}/v<n>/`, masters under
`{night}/masters/`; the entry is what the index stores and the API signs."""
from __future__ import annotations

from typing import Any, Dict

from golive_data.versions import list_versions, store_of, update_version


def stem_of(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0]


def product_key(night: str, path: str, product_name: str) -> str:
    """`path` is the raw file's path below its night (its name, or `RAW/0267.fits` for a
    file the agent found in a folder below the night's): two folders never share a key."""
    return f"{night}/{stem_of(path)}/{product_name}"


def raw_path(item: Dict[str, Any]) -> str:
    """The raw file's path below its night (items written before nested folders have
    only the name)."""
    return item.get("path") or item["file_name"]


def item_product_key(item: Dict[str, Any], product_name: str) -> str:
    """Where a product of this file goes: in the folder of the version the item is
    reduced as (`settings_version`; none for the automatic reduction), so that no
    version overwrites another's objects."""
    version = int(item.get("settings_version") or 0)
    return product_key(item["night"], raw_path(item), f"v{version}/{product_name}" if version else product_name)


def put_product(services, key: str, file_name: str, kind: str, body: bytes, content_type: str) -> Dict[str, Any]:
    bucket = services.settings.products_bucket
    services.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return {"file_name": file_name, "kind": kind, "bucket": bucket, "key": key, "size": len(body),
            "content_type": content_type}


def put_file_product(services, item: Dict[str, Any], name: str, kind: str, body: bytes,
                     content_type: str) -> Dict[str, Any]:
    """A product of one raw file, filed under that file's folder."""
    return put_product(services, item_product_key(item, name), name, kind, body, content_type)


def product_keys(products) -> set:
    """(bucket, key) of each product entry."""
    return {(p["bucket"], p["key"]) for p in products or [] if p.get("key")}


def stamp_version(products, version: int):
    """Entries of a reduction carry the reduction version they belong to; entries it
    kept from earlier (the header) keep theirs."""
    return [{**p, "version": p.get("version") or version} for p in products]


def remove_unlisted(file_id: str, candidates: set, services) -> int:
    """Once a reduction or calibration has listed its products on the file item: the
    version they belong to (the item's `settings_version`, if it has a version item)
    lists them too, and the objects among `candidates` ((bucket, key) pairs an earlier
    reduction of this file wrote) that neither the item nor any version lists are
    deleted: a re-reduction that finds fewer targets leaves no stale spectra behind,
    and every version's objects stay. The item is read consistently after the new
    products are listed, so a product still in use is never deleted; a crash before
    this point leaves orphans for the consistency check."""
    item = services.index.get_file(file_id) or {}
    store = store_of(services.index)
    versions = list_versions(*store, file_id)
    shown = int(item.get("settings_version") or 0)
    for v in versions:
        if v["version"] == shown and item and v.get("products") != item.get("products"):
            update_version(*store, file_id, shown, {"products": item.get("products") or [],
                                                   "spectra_status": item.get("spectra_status")})
            v["products"] = item.get("products") or []
    kept = product_keys(item.get("products"))
    for v in versions:
        kept |= product_keys(v.get("products"))
    gone = sorted(set(candidates) - kept)
    for bucket, key in gone:
        services.s3.delete_object(Bucket=bucket, Key=key)
    return len(gone)


def read_fits_hdus(s3, bucket: str, key: str):
    """Every HDU's (data, header) of a FITS object, read whole into memory (the 1-D
    products keep their variance and sky in further HDUs)."""
    return _hdus(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _hdus(body: bytes):
    import io

    from astropy.io import fits

    with fits.open(io.BytesIO(body), memmap=False) as hdul:
        return [(h.data, h.header.copy()) for h in hdul]


def read_fits(s3, bucket: str, key: str):
    """(data, header) of the first HDU of a FITS object."""
    return read_fits_hdus(s3, bucket, key)[0]


def read_raw_fits(s3, bucket: str, key: str):
    """(data, header) of a raw frame, its primary header repaired as ingest repaired it
    (a non-ASCII OBJECT, a card astropy must fix, a missing optional keyword), with the
    HISTORY cards saying so: every product is written from this header."""
    from functions.core.fitsheader import repair_file

    return _hdus(repair_file(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))[0]
