"""Read a FITS primary header from the first bytes of an object, and judge whether
the whole object can be a complete FITS file.

The ingest function fetches only the start of each raw file (a ranged GET), so this
works on a prefix of the file plus the object's total size. Problems with the file
itself raise BadFrame: they are permanent and must end as a `failed` status with
the reason, never as a retry. A header a careful astronomer could still read (a
non-ASCII byte, a card astropy must fix, a missing optional keyword) is not a bad
frame: it is repaired (headerfix) and the repairs are noted.
"""
from __future__ import annotations

from typing import Optional, Tuple

from astropy.io import fits

from .headerfix import RepairedHeader, UnreadableHeader, repair_header

BLOCK = 2880
CARD = 80
# Goodman's primary headers are ~270 cards (8 blocks); read 12 and ask for more if needed.
HEADER_PROBE_BYTES = 12 * BLOCK
MAX_HEADER_BYTES = 200 * BLOCK


class BadFrame(ValueError):
    """The object is not a usable FITS file; the message says why, for people."""


class NeedMoreBytes(Exception):
    """The header goes on beyond the bytes read; fetch `needed` bytes and try again."""

    def __init__(self, needed: int):
        super().__init__(needed)
        self.needed = needed


def header_end(prefix: bytes, object_size: Optional[int] = None) -> int:
    """Byte offset just past the primary header's last block (where data starts)."""
    if len(prefix) < CARD or not prefix.startswith(b"SIMPLE  ="):
        if object_size is not None and object_size == 0:
            raise BadFrame("empty object (0 bytes)")
        raise BadFrame("not a FITS file: it does not start with the SIMPLE card")
    for offset in range(0, len(prefix) - CARD + 1, CARD):
        card = prefix[offset:offset + CARD]
        if card[:8] == b"END     ":
            return (offset // BLOCK + 1) * BLOCK
    if object_size is not None and len(prefix) >= object_size:
        raise BadFrame(f"truncated: the header has no END card within the object's {object_size} bytes")
    if len(prefix) >= MAX_HEADER_BYTES:
        raise BadFrame(f"no END card in the first {MAX_HEADER_BYTES} bytes: the header is corrupt")
    raise NeedMoreBytes(len(prefix) + HEADER_PROBE_BYTES)


def read_primary_header(prefix: bytes, object_size: Optional[int] = None) -> Tuple[RepairedHeader, int]:
    """The primary header from a prefix of the file, repaired, with the notes saying
    what was repaired, and the bytes the raw header takes up.

    Raises BadFrame, or NeedMoreBytes when the prefix is too short.
    """
    end = header_end(prefix, object_size)
    if len(prefix) < end:
        if object_size is not None and object_size < end:
            raise BadFrame(f"truncated: the header needs {end} bytes, the object has {object_size}")
        raise NeedMoreBytes(end)
    try:
        return repair_header(prefix[:end]), end
    except UnreadableHeader as exc:
        raise BadFrame(f"unreadable FITS header: {exc}") from exc


def parse_primary_header(prefix: bytes, object_size: Optional[int] = None) -> Tuple[fits.Header, int]:
    """read_primary_header without the notes (they are in the header's HISTORY)."""
    repaired, end = read_primary_header(prefix, object_size)
    return repaired.header, end


def repair_file(raw: bytes) -> bytes:
    """The whole FITS file with its primary header repaired as ingest repairs it, for
    astropy to read (astropy reads a Latin-1 byte as '?' and cannot write it back); the
    file itself when its header needs no repair. Raises BadFrame."""
    repaired, end = read_primary_header(raw, len(raw))
    if not repaired.repairs:
        return raw
    return repaired.header.tostring().encode("ascii") + raw[end:]


def data_size(header: fits.Header) -> int:
    """Bytes of the primary data unit, padded to whole blocks (FITS standard 4.4.1)."""
    try:
        naxis = int(header.get("NAXIS", 0))
        bitpix = int(header["BITPIX"])
        if naxis == 0:
            return 0
        count = 1
        for i in range(1, naxis + 1):
            count *= int(header[f"NAXIS{i}"])
        pcount, gcount = int(header.get("PCOUNT", 0)), int(header.get("GCOUNT", 1))
    except (KeyError, ValueError, TypeError) as exc:
        raise BadFrame(f"FITS header lacks a valid BITPIX/NAXIS description: {exc}") from exc
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise BadFrame(f"invalid BITPIX {bitpix}")
    nbytes = abs(bitpix) // 8 * gcount * (pcount + count)
    return -(-nbytes // BLOCK) * BLOCK


def check_complete(header: fits.Header, header_bytes: int, object_size: int) -> None:
    """Raise BadFrame unless the object holds the whole primary HDU.

    Extra bytes after the primary HDU are allowed (extensions); fewer are not.
    """
    expected = header_bytes + data_size(header)
    if object_size < expected:
        raise BadFrame(
            f"truncated: the header describes {expected} bytes "
            f"({header.get('NAXIS1')}x{header.get('NAXIS2')} BITPIX {header.get('BITPIX')}), "
            f"the object has {object_size}"
        )
    if object_size % BLOCK:
        raise BadFrame(f"truncated or padded wrongly: {object_size} bytes is not a whole number of 2880-byte blocks")
