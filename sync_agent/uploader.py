"""Put one file in storage and prove it arrived whole, or say why not.

Proof, per server, from the answer to the write or a HEAD of the object (no download):
  * the ETag, where it is the server's MD5 of the bytes it stored (single-part objects
    on AWS without KMS, MinIO, SeaweedFS, moto, Ceph) or the MD5 of the parts' MD5s
    (multipart), equal to the one computed here;
  * otherwise (KMS-encrypted objects on AWS) the SHA-256 checksum the server returns,
    which AWS validates against the bytes when they arrive;
  * otherwise the object is read back and hashed ("get-sha256").
The ETag comes first because some servers (moto) store the checksum the client claims
without checking it, while every server computes its ETag itself. `verify="get"` always
reads the object back, for servers that fit none of these.

Every upload is a conditional create (If-None-Match: *), so nothing already in storage
is overwritten: a retry after a lost answer finds its own object and verifies it, and
a different object under the same name is kept and the new bytes go next to it under a
name that carries their checksum (see conflict_key).
"""
from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional, Tuple

from botocore.exceptions import BotoCoreError, ClientError

from sync_agent.checksums import Digests, b64, composite_sha256, digest_file

log = logging.getLogger("goodman_live.sync")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
SAME, DIFFERS, UNKNOWN = "same", "differs", "unknown"
CONTENT_TYPE = "application/fits"
# Answers that mean the storage is up but every upload would fail until a person acts.
CONFIG_ERRORS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "NoSuchBucket",
                 "AuthorizationHeaderMalformed", "PermanentRedirect")


class FileChanged(Exception):
    """The file on disk is not the version that was hashed: look at it again."""


class NotVerified(Exception):
    """The storage holds other bytes than were sent: retry."""


@dataclass
class Outcome:
    stored_key: str
    verified_by: str
    sent: bool
    existing_sha256: Optional[str] = None   # set when the intended key held other bytes


def conflict_key(key: str, sha256: str) -> str:
    """Where new bytes go when `key` already holds others: beside it, named by content,
    still ending in .fits so the ingest takes it. Same bytes, same name: idempotent."""
    folder, name = posixpath.split(key)
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    return posixpath.join(folder, f"{stem}.sha256-{sha256[:12]}{'.' + suffix if suffix else ''}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def judge(head: dict, d: Digests) -> Tuple[str, str]:
    """(SAME | DIFFERS | UNKNOWN, how) for an object's HEAD against the file's digests."""
    if int(head.get("ContentLength", -1)) != d.size:
        return DIFFERS, "size"
    meta = (head.get("Metadata") or {}).get("sha256")
    if meta and meta.lower() != d.sha256:
        return DIFFERS, "metadata sha256"
    etag = str(head.get("ETag", "")).strip('"').lower()
    encrypted = head.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or head.get("SSECustomerAlgorithm")
    if not encrypted:
        if etag == d.md5 or (d.parts_etag and etag == d.parts_etag):
            return SAME, "etag-md5"
        if _MD5.match(etag):
            return DIFFERS, "etag-md5"
    checksum = str(head.get("ChecksumSHA256") or "").split("-", 1)[0]
    if checksum and (checksum == d.sha256_b64 or checksum == d.parts_sha256):
        return SAME, "checksum-sha256"
    return UNKNOWN, ""


class Uploader:
    def __init__(self, s3, bucket: str, multipart_threshold: int = 16 << 20, part_size: int = 8 << 20,
                 verify: str = "head"):
        self.s3 = s3
        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.verify = verify
        self.conditional = True

    # ---- hashing (once per version of a file)
    def digest(self, fh: BinaryIO, size: int) -> Digests:
        part = self.part_size if size >= self.multipart_threshold else 0
        return digest_file(fh, size, part)

    # ---- storage
    def reachable(self, probe_key: str) -> bool:
        """Does the storage answer at all? Any answer below 500 (even 403 or 404 for a
        key that does not exist) means it is back; no object is written."""
        try:
            self.s3.head_object(Bucket=self.bucket, Key=probe_key)
            return True
        except ClientError as exc:
            if _code(exc) in CONFIG_ERRORS:
                return False
            return 0 < _status(exc) < 500
        except BotoCoreError:
            return False

    def head(self, key: str) -> Optional[dict]:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _status(exc) == 404 or _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read_back(self, key: str, d: Digests) -> Tuple[str, str]:
        digest = hashlib.sha256()
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        return (SAME if digest.hexdigest() == d.sha256 else DIFFERS), "get-sha256"

    def check(self, key: str, head: dict, d: Digests, after_upload: bool) -> Tuple[str, str]:
        verdict, how = judge(head, d)
        if verdict == UNKNOWN or (after_upload and verdict == SAME and self.verify == "get"):
            verdict, how = self.read_back(key, d)
        return verdict, how

    def upload(self, fh: BinaryIO, d: Digests, key: str, on_upload_id=lambda _id: None) -> Outcome:
        """Make sure the file's bytes are in storage, under `key` or beside it."""
        target, existing = key, None
        for _ in range(4):          # a racing writer can make us look again, not forever
            head = self.head(target)
            if head is not None:
                verdict, how = self.check(target, head, d, after_upload=False)
                if verdict == SAME:
                    if d.multipart:
                        self._abort_strays(target)
                    return Outcome(target, "already-present:" + how, False, existing)
                if target != key:
                    raise NotVerified(f"{target} holds other bytes than its name says")
                existing = (head.get("Metadata") or {}).get("sha256") or str(head.get("ETag", "")).strip('"')
                target = conflict_key(key, d.sha256)
                log.warning("%s already holds different bytes (%s); keeping both: new bytes go to %s",
                            key, existing, target)
                continue
            try:
                answer = self.send(fh, d, target, on_upload_id)
            except ClientError as exc:
                if _status(exc) == 412 or _code(exc) == "PreconditionFailed":
                    continue        # created meanwhile (often: by our own retried request)
                raise
            # The write's answer carries the server's own ETag/checksum of what it stored:
            # as good as a HEAD, one request fewer. Without them, ask.
            head = {**answer, "ContentLength": d.size, "Metadata": {}} if answer.get("ETag") else self.head(target)
            if head is None:
                raise NotVerified(f"{target} is not there after its upload")
            verdict, how = self.check(target, head, d, after_upload=True)
            if verdict != SAME:
                self._remove_bad(target)
                raise NotVerified(f"{target} does not match the file after upload ({how})")
            return Outcome(target, how, True, existing)
        raise NotVerified(f"{key}: storage kept changing under the upload")

    def _remove_bad(self, key: str) -> None:
        """Only ever called on an object this upload itself just created (If-None-Match)."""
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            log.error("could not remove corrupt %s: %s", key, exc)

    def _conditional(self) -> dict:
        return {"IfNoneMatch": "*"} if self.conditional else {}

    def _call(self, method, **kwargs):
        """A write, conditional where the server allows it."""
        try:
            return method(**kwargs, **self._conditional())
        except ClientError as exc:
            if self.conditional and _code(exc) in ("NotImplemented", "InvalidArgument") and _status(exc) in (400, 501):
                log.warning("storage does not support conditional writes (%s); relying on HEAD before upload",
                            _code(exc))
                self.conditional = False
                return method(**kwargs)
            raise

    def send(self, fh: BinaryIO, d: Digests, key: str, on_upload_id) -> dict:
        """Write the object; the server's answer (ETag, checksum)."""
        common = dict(Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE, Metadata={"sha256": d.sha256})
        if not d.multipart:
            fh.seek(0)
            body = fh.read(d.size)
            return self._call(self.s3.put_object, Body=body, ChecksumAlgorithm="SHA256",
                              ChecksumSHA256=d.sha256_b64, **common)
        upload_id = self.s3.create_multipart_upload(ChecksumAlgorithm="SHA256", **common)["UploadId"]
        on_upload_id(f"{key}\t{upload_id}")
        try:
            parts, part_shas = [], []
            for number, offset in enumerate(range(0, d.size, d.part_size), start=1):
                fh.seek(offset)
                chunk = fh.read(min(d.part_size, d.size - offset))
                sha = hashlib.sha256(chunk).digest()
                part_shas.append(sha)
                resp = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                           Body=chunk, ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(sha))
                parts.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": b64(sha)})
            if composite_sha256(part_shas) != d.parts_sha256:
                raise FileChanged(f"{key}: the file changed while it was being uploaded")
            answer = self._call(self.s3.complete_multipart_upload, Bucket=self.bucket, Key=key,
                                UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            self.abort(key, upload_id)
            raise
        on_upload_id(None)
        self._abort_strays(key)
        return answer

    def _abort_strays(self, key: str) -> None:
        """Uploads of this key that an earlier, killed or unanswered attempt began and
        nobody will finish (best effort: needs s3:ListBucketMultipartUploads)."""
        try:
            listing = self.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for upload in listing.get("Uploads", []):
                if upload["Key"] == key:
                    self.abort(key, upload["UploadId"])
        except (ClientError, BotoCoreError) as exc:
            log.debug("could not list stray multipart uploads of %s: %s", key, exc)

    def abort_recorded(self, recorded: Optional[str]) -> None:
        """Abort a multipart upload a killed agent left open ('key<TAB>upload id')."""
        if recorded and "\t" in recorded:
            self.abort(*recorded.split("\t", 1))

    def abort(self, key: str, upload_id: str) -> None:
        """Best effort: an upload left open is retried from scratch and aborted again later."""
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # noqa: BLE001 - the storage may be the thing that is down
            log.debug("could not abort multipart upload of %s: %s", key, exc)


def open_version(path: Path, size: int, mtime_ns: int) -> BinaryIO:
    """The file, if it is still the version the journal knows; FileChanged if not."""
    fh = open(path, "rb")
    st = os.fstat(fh.fileno())
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        fh.close()
        raise FileChanged(f"{path.name} changed since it was queued")
    return fh
