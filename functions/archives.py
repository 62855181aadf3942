"""Build the zip of a night's files an observer asked for (POST /api/nights/{night}/archive):
the objects the API listed on the archive item, copied into one ZIP64 file in the
products bucket, under `archives/<id>/`.

Stored, not deflated: FITS images of noise and floats barely compress, and copying is
what keeps a night's archive to seconds of a worker's time. The zip is spooled to a
temporary file (in Lambda, /tmp) and uploaded in parts. An object gone since it was
listed is left out and named (`missing`); a failure ends the archive `failed` with
the reason, for the page to show and the observer to ask again, never a retry loop.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import zipfile
from typing import Any, Dict

from golive_data import archives
from golive_data.index import utcnow

log = logging.getLogger("goodman_live.archives")

#: what a zip is spooled in memory before it goes to a temporary file
SPOOL_BYTES = 64 * 1024 * 1024
CHUNK = 1024 * 1024


def zip_name(archive: Dict[str, Any]) -> str:
    who = f"-{archive['proposal']}" if archive.get("proposal") else ""
    return f"goodman-{archive['night']}{who}.zip"


def build_archive(archive_id: str, services) -> None:
    client, table = services.index._db, services.index._table
    archive = archives.get_archive(client, table, archive_id)
    if archive is None or archive.get("status") in (archives.DONE, archives.FAILED):
        return   # a duplicate delivery of a finished job
    archives.update_archive(client, table, archive_id, {"status": archives.BUILDING, "started_at": utcnow()})
    missing, copied = [], 0
    try:
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for entry in archive.get("entries") or []:
                    try:
                        body = services.s3.get_object(Bucket=entry["bucket"], Key=entry["key"])["Body"]
                    except services.s3.exceptions.NoSuchKey:
                        missing.append(entry["name"])
                        continue
                    with zf.open(entry["name"], "w", force_zip64=True) as out:
                        shutil.copyfileobj(body, out, CHUNK)
                    copied += 1
            size = spool.tell()
            spool.seek(0)
            key = f"{archives.PREFIX}{archive_id}/{zip_name(archive)}"
            services.s3.upload_fileobj(spool, services.settings.products_bucket, key,
                                       ExtraArgs={"ContentType": "application/zip"})
    except Exception as exc:
        log.exception("archive %s failed", archive_id)
        archives.update_archive(client, table, archive_id, {
            "status": archives.FAILED, "finished_at": utcnow(),
            "error": f"the archive could not be built ({type(exc).__name__}: {exc}); ask again, or download the "
                     "URL list"})
        return
    archives.update_archive(client, table, archive_id, {
        "status": archives.DONE, "finished_at": utcnow(), "bucket": services.settings.products_bucket, "key": key,
        "size": size, "copied": copied, "missing": missing or None, "file_name": zip_name(archive)})
    log.info("archive %s: %d files, %.1f MB", archive_id, copied, size / 1e6)
