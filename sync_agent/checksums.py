"""Everything the agent needs to prove an object is the file's bytes, in one read.

A file is read once to compute its SHA-256 (the identity the rest of the system keys
on, kept in the object's `sha256` metadata), its MD5 (what most S3-compatible servers
return as the ETag of a single-part object) and, for files big enough for multipart,
the digests of each part: S3's composite `ChecksumSHA256` of a multipart object is the
SHA-256 of the parts' SHA-256s, and its ETag the MD5 of the parts' MD5s. With these the
agent can check whatever a server answers to HEAD without downloading the object.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import BinaryIO, Optional

READ_CHUNK = 1 << 20


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str                        # hex, as in the object's metadata
    md5: str                           # hex, as in a single-part ETag
    part_size: int = 0                 # 0: uploaded in one PUT
    parts_sha256: Optional[str] = None  # base64 composite checksum, without "-N"
    parts_etag: Optional[str] = None    # hex multipart ETag, with "-N"

    @property
    def sha256_b64(self) -> str:
        return b64(bytes.fromhex(self.sha256))

    @property
    def multipart(self) -> bool:
        return self.part_size > 0


def digest_file(fh: BinaryIO, size: int, part_size: int = 0) -> Digests:
    """Digests of the `size` bytes from the start of `fh`; parts of `part_size` if > 0."""
    full_sha, full_md5 = hashlib.sha256(), hashlib.md5()
    part_shas, part_md5s = [], []
    fh.seek(0)
    remaining = size
    while remaining > 0:
        part_len = min(part_size, remaining) if part_size else remaining
        part_sha, part_md5 = hashlib.sha256(), hashlib.md5()
        left = part_len
        while left > 0:
            chunk = fh.read(min(READ_CHUNK, left))
            if not chunk:
                raise EOFError("file shrank while it was being read")
            left -= len(chunk)
            for h in (full_sha, full_md5, part_sha, part_md5):
                h.update(chunk)
        remaining -= part_len
        part_shas.append(part_sha.digest())
        part_md5s.append(part_md5.digest())
    if not part_size:
        return Digests(size, full_sha.hexdigest(), full_md5.hexdigest())
    return Digests(size, full_sha.hexdigest(), full_md5.hexdigest(), part_size,
                   composite_sha256(part_shas), composite_etag(part_md5s))


def composite_sha256(part_digests) -> str:
    return b64(hashlib.sha256(b"".join(part_digests)).digest())


def composite_etag(part_md5s) -> str:
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"
