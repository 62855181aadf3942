"""Is a file on disk a whole FITS file yet?

The instrument writes a file in pieces; uploading it half-written would put a
truncated frame in storage. A file is complete when every HDU's header has its END
card and the file ends exactly where the last HDU's data (padded to 2880-byte
blocks) ends.
"""
from __future__ import annotations

from typing import BinaryIO, Dict, Optional

BLOCK = 2880
CARD = 80
_MAX_HEADER_BLOCKS = 1000


def _read_header(fh: BinaryIO) -> Optional[Dict[str, str]]:
    """Cards of the header at the current position, or None if it is cut short."""
    cards: Dict[str, str] = {}
    for _ in range(_MAX_HEADER_BLOCKS):
        block = fh.read(BLOCK)
        if len(block) < BLOCK:
            return None
        for i in range(0, BLOCK, CARD):
            card = block[i:i + CARD].decode("ascii", "replace")
            key = card[:8].strip()
            if key == "END":
                return cards
            if card[8:10] == "= ":
                cards.setdefault(key, card[10:].split("/", 1)[0].strip())
    return None


def _data_bytes(cards: Dict[str, str]) -> int:
    naxis = int(cards.get("NAXIS", "0"))
    if naxis == 0:
        return 0
    count = 1
    for i in range(1, naxis + 1):
        count *= int(cards[f"NAXIS{i}"])
    nbytes = abs(int(cards["BITPIX"])) // 8 * int(cards.get("GCOUNT", "1")) * (int(cards.get("PCOUNT", "0")) + count)
    return -(-nbytes // BLOCK) * BLOCK


def fits_state(path: str) -> str:
    """'complete', 'incomplete' (may still grow) or 'invalid' (will never be FITS)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(0)
            if size == 0:
                return "incomplete"
            start = fh.read(9)
            if len(start) < 9:
                return "incomplete" if b"SIMPLE  ="[:len(start)] == start else "invalid"
            if start != b"SIMPLE  =":
                return "invalid"
            fh.seek(0)
            offset = 0
            while offset < size:
                cards = _read_header(fh)
                if cards is None:
                    return "incomplete"
                try:
                    offset = fh.tell() + _data_bytes(cards)
                except (KeyError, ValueError):
                    return "invalid"
                if offset > size:
                    return "incomplete"
                fh.seek(offset)
            return "complete"
    except FileNotFoundError:
        return "incomplete"
