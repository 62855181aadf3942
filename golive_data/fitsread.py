"""Read FITS images from the bytes of a whole file, with the standard library only.

The API measures products it fetches from S3 (a line on a spectrum, a star on an
image) and must stay free of numpy and astropy, whose import would dominate its cold
start. So this reads just what a measurement needs: every HDU's header, where its
data lies, and its pixels decoded lazily -- one row, one column or one pixel of a
2071x1000 frame without converting the other two million.

Pixels come out as Python floats with BSCALE/BZERO applied and BLANK integers as
NaN. Decoding goes through `array.array` and one `byteswap()` (FITS is big-endian),
which is C speed; a column is gathered with strided byte slices of the file, one per
byte of a pixel, rather than one `struct` call per row.

Indices are 0-based and in numpy order: `shape` is (ny, nx) and `pixel(x, y)` is
`data[y, x]` of astropy.
"""
from __future__ import annotations

import math
import struct
import sys
from array import array
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

BLOCK = 2880
CARD = 80
_COMMENTARY = ("COMMENT", "HISTORY", "")
_LITTLE_ENDIAN = sys.byteorder == "little"


def _typecode(kind: str, size: int) -> str:
    """The array typecode of `size` bytes: 'l' is 4 bytes on some platforms, 8 on others."""
    for code in kind:
        if array(code).itemsize == size:
            return code
    raise RuntimeError(f"this platform has no {size}-byte array type")


#: BITPIX -> (array typecode, struct format of one big-endian value)
_FORMATS = {
    8: ("B", ">B"),
    16: (_typecode("hil", 2), ">h"),
    32: (_typecode("ilq", 4), ">i"),
    64: (_typecode("lq", 8), ">q"),
    -32: ("f", ">f"),
    -64: ("d", ">d"),
}
#: BZERO that makes BITPIX's integers the other signedness, and the typecode that reads them so
_SIGN_FLIP_ZERO = {8: -128.0, 16: 32768.0, 32: 2.0 ** 31, 64: 2.0 ** 63}
_FLIPPED_TYPECODES = {8: "b", 16: _typecode("HIL", 2), 32: _typecode("ILQ", 4), 64: _typecode("LQ", 8)}
_FLIP_SIGN_BIT = bytes(i ^ 0x80 for i in range(256))


class FitsError(ValueError):
    """The bytes are not a FITS file we can read, or one cut short; the message says
    which HDU and what is wrong, for people."""


class Header(Mapping):
    """A header's keywords, case-insensitive; the first card of a repeated keyword
    wins (as in astropy). COMMENT and HISTORY map to the list of their texts.
    `cards` keeps every (keyword, value, comment) in order."""

    def __init__(self, cards: Sequence[Tuple[str, Any, str]]):
        self.cards = list(cards)
        self._values: Dict[str, Any] = {}
        self._comments: Dict[str, str] = {}
        for key, value, comment in self.cards:
            if key in _COMMENTARY:
                self._values.setdefault(key, []).append(value)
            elif key not in self._values:
                self._values[key] = value
                self._comments[key] = comment

    def __getitem__(self, key: str) -> Any:
        return self._values[key.upper()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def comment(self, key: str) -> str:
        return self._comments.get(key.upper(), "")

    def __repr__(self) -> str:
        return f"Header({len(self.cards)} cards)"


# ---- header cards -----------------------------------------------------------------

def _parse_string(text: str) -> Tuple[str, str]:
    """A quoted value at the start of `text` ('' is a quote) and what follows it.
    Trailing blanks inside the quotes are not significant (FITS 4.2.1)."""
    out = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if text[i + 1:i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out).rstrip(), text[i + 1:]
        out.append(ch)
        i += 1
    return "".join(out).rstrip(), ""      # an unclosed quote: be lenient, as astropy is


def _parse_scalar(token: str) -> Any:
    if not token:
        return None                        # an undefined value
    if token == "T":
        return True
    if token == "F":
        return False
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token.upper().replace("D", "E"))
    except ValueError:
        pass
    if token.startswith("(") and token.endswith(")"):
        try:
            re, im = (_parse_scalar(part.strip()) for part in token[1:-1].split(","))
            return complex(re, im)
        except (TypeError, ValueError):
            pass
    return token                           # not standard; keep the text


def _parse_value(text: str) -> Tuple[Any, str]:
    """(value, comment) of the part of a card after '= '."""
    stripped = text.lstrip()
    if stripped.startswith("'"):
        value, rest = _parse_string(stripped)
        _, _, comment = rest.partition("/")
        return value, comment.strip()
    token, _, comment = stripped.partition("/")
    return _parse_scalar(token.strip()), comment.strip()


def _parse_card(card: str) -> Tuple[str, Any, str]:
    key = card[:8].rstrip().upper()
    if key == "HIERARCH" and "=" in card:
        name, _, rest = card[9:].partition("=")
        value, comment = _parse_value(rest)
        return name.strip().upper(), value, comment
    if card[8:9] == "=" and key not in _COMMENTARY:     # '= ' by the standard; '=x' read too
        value, comment = _parse_value(card[9:])
        return key, value, comment
    if key == "CONTINUE":
        value, comment = _parse_value(card[8:])
        return key, value, comment
    return key, card[8:].rstrip(), ""


def _join_continued(cards: List[Tuple[str, Any, str]]) -> List[Tuple[str, Any, str]]:
    """Long strings (the CONTINUE convention): a string ending in '&' goes on in the
    CONTINUE cards after it."""
    joined: List[Tuple[str, Any, str]] = []
    for key, value, comment in cards:
        if key == "CONTINUE" and joined:
            prev_key, prev_value, prev_comment = joined[-1]
            if isinstance(prev_value, str) and prev_value.endswith("&") and isinstance(value, str):
                both = " ".join(c for c in (prev_comment, comment) if c)
                joined[-1] = (prev_key, prev_value[:-1] + value, both)
                continue
        joined.append((key, value, comment))
    return joined


def _read_header(data: bytes, start: int, index: int) -> Tuple[Header, int]:
    """The header starting at `start` and the offset of the block after its END."""
    cards: List[Tuple[str, Any, str]] = []
    offset = start
    while True:
        if offset + BLOCK > len(data):
            raise FitsError(f"truncated: the header of HDU {index} has no END card "
                            f"(the file ends after {len(data)} bytes)")
        block = data[offset:offset + BLOCK].decode("ascii", "replace")
        offset += BLOCK
        for i in range(0, BLOCK, CARD):
            card = block[i:i + CARD]
            if card[:8] == "END     ":
                return Header(_join_continued(cards)), offset
            if card.strip():
                cards.append(_parse_card(card))


# ---- HDUs -------------------------------------------------------------------------

def _int_card(header: Header, key: str, default: Optional[int], index: int) -> int:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FitsError(f"HDU {index}: {key} is {value!r}, not an integer")
    return value


def _float_card(header: Header, key: str, default: float, index: int) -> float:
    value = header.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FitsError(f"HDU {index}: {key} is {value!r}, not a number")
    return float(value)


class HDU:
    """One header and data unit. Pixel access decodes only what is asked for."""

    def __init__(self, raw: bytes, index: int, header: Header, offset: int, nbytes: int):
        self._raw = raw
        self.index = index
        self.header = header
        self.offset = offset                 #: where the data starts in the file
        self.nbytes = nbytes                 #: bytes of data, without the padding
        self.bitpix = _int_card(header, "BITPIX", None, index)
        naxis = _int_card(header, "NAXIS", 0, index)
        self.axes = tuple(_int_card(header, f"NAXIS{i}", None, index) for i in range(1, naxis + 1))
        extension = header.get("XTENSION")
        self.is_image = index == 0 or (isinstance(extension, str) and extension.strip() == "IMAGE")
        name = header.get("EXTNAME")
        self.name = name.strip() if isinstance(name, str) and name.strip() else ("PRIMARY" if index == 0 else "")
        self._bscale = _float_card(header, "BSCALE", 1.0, index)
        self._bzero = _float_card(header, "BZERO", 0.0, index)
        blank = header.get("BLANK")
        self._blank = blank if self.bitpix > 0 and isinstance(blank, int) else None

    @property
    def shape(self) -> Tuple[int, ...]:
        """numpy order: (ny, nx) for an image."""
        return tuple(reversed(self.axes))

    def __repr__(self) -> str:
        return f"HDU({self.index}, {self.name!r}, shape={self.shape}, bitpix={self.bitpix})"

    # -- decoding --

    def _format(self) -> Tuple[str, str]:
        if not self.is_image:
            raise FitsError(f"HDU {self.index} ({self.name or self.header.get('XTENSION')}) is not an image")
        if self.bitpix not in _FORMATS:
            raise FitsError(f"HDU {self.index}: invalid BITPIX {self.bitpix}")
        return _FORMATS[self.bitpix]

    def _convert(self, buffer: Any) -> List[float]:
        """Floats of the big-endian pixels in `buffer` (bytes-like), scaled.

        The usual unsigned integers (BITPIX 16 and BZERO 32768, as Goodman writes its
        raw frames; 32 and 64 alike; signed bytes with BZERO -128) are read as the
        other signedness after flipping each value's sign bit, so that the conversion
        stays in C instead of a Python multiply-add per pixel."""
        code, _ = self._format()
        size = abs(self.bitpix) // 8
        scale, zero, blank = self._bscale, self._bzero, self._blank
        values = array(code)
        if blank is None and scale == 1.0 and zero == _SIGN_FLIP_ZERO.get(self.bitpix):
            flipped = bytearray(buffer)
            flipped[0::size] = flipped[0::size].translate(_FLIP_SIGN_BIT)
            values = array(_FLIPPED_TYPECODES[self.bitpix])
            values.frombytes(flipped)
            scale, zero = 1.0, 0.0
        else:
            values.frombytes(buffer)
        if _LITTLE_ENDIAN and size > 1:
            values.byteswap()
        if blank is not None:
            nan = math.nan
            return [nan if v == blank else v * scale + zero for v in values]
        if scale != 1.0 or zero != 0.0:
            return [v * scale + zero for v in values]
        return values.tolist() if self.bitpix < 0 else list(map(float, values))

    def _decode(self, start: int, count: int) -> List[float]:
        """`count` values from the `start`-th pixel of the data."""
        size = abs(self.bitpix) // 8
        begin = self.offset + start * size
        return self._convert(memoryview(self._raw)[begin:begin + count * size])

    def _plane(self) -> Tuple[int, int]:
        if len(self.axes) < 2:
            raise FitsError(f"HDU {self.index} has shape {self.shape}: rows and columns need a 2-D image")
        return self.axes[0], self.axes[1]

    def values(self) -> List[float]:
        """Every pixel, flat, in file order (x fastest)."""
        self._format()
        count = math.prod(self.axes) if self.axes else 0
        return self._decode(0, count)

    def row(self, y: int) -> List[float]:
        """Row y (nx values) of the first image plane."""
        return self.row_slice(y, 0, self.axes[0] if self.axes else 0)

    def row_slice(self, y: int, start: int, stop: int) -> List[float]:
        """Pixels start..stop-1 of row y, decoding only those (clipped to the row, as
        `row(y)[start:stop]` would be, for non-negative start and stop)."""
        nx, ny = self._plane()
        _check_index("y", y, ny)
        start, stop = min(max(start, 0), nx), min(max(stop, 0), nx)
        return self._decode(y * nx + start, max(stop - start, 0))

    def column(self, x: int) -> List[float]:
        """Column x (ny values) of the first image plane, gathered with one strided
        slice per byte of a pixel."""
        nx, ny = self._plane()
        _check_index("x", x, nx)
        self._format()
        size = abs(self.bitpix) // 8
        first = self.offset + x * size
        stride = nx * size
        end = first + (ny - 1) * stride + 1
        gathered = bytearray(ny * size)
        for byte in range(size):
            gathered[byte::size] = self._raw[first + byte:end + byte:stride]
        return self._convert(gathered)

    def pixel(self, x: int, y: int) -> float:
        nx, ny = self._plane()
        _check_index("x", x, nx)
        _check_index("y", y, ny)
        _, fmt = self._format()
        (value,) = struct.unpack_from(fmt, self._raw, self.offset + (y * nx + x) * (abs(self.bitpix) // 8))
        if self._blank is not None and value == self._blank:
            return math.nan
        return float(value * self._bscale + self._bzero)


def _check_index(name: str, value: int, size: int) -> None:
    if not 0 <= value < size:
        raise IndexError(f"{name}={value} is outside 0..{size - 1}")


def _data_bytes(header: Header, index: int) -> int:
    """Bytes of data without padding (FITS standard 4.4.1.1; random groups skip NAXIS1)."""
    bitpix = _int_card(header, "BITPIX", None, index)
    if bitpix not in _FORMATS:
        raise FitsError(f"HDU {index}: invalid BITPIX {bitpix}")
    naxis = _int_card(header, "NAXIS", None, index)
    if naxis == 0:
        return 0
    axes = [_int_card(header, f"NAXIS{i}", None, index) for i in range(1, naxis + 1)]
    if index == 0 and header.get("GROUPS") is True and axes[0] == 0:
        axes = axes[1:]
    pcount = _int_card(header, "PCOUNT", 0, index)
    gcount = _int_card(header, "GCOUNT", 1, index)
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(axes))


def read_hdus(data: bytes) -> List[HDU]:
    """Every HDU of a whole FITS file. Raises FitsError for bytes that are not FITS or
    are cut short (a header without END, data shorter than its header says). Bytes
    after the last HDU that do not start an extension are ignored, as astropy does."""
    raw = data if isinstance(data, bytes) else bytes(data)
    if not raw.startswith(b"SIMPLE  ="):
        raise FitsError("not a FITS file: it does not start with the SIMPLE card")
    hdus: List[HDU] = []
    offset = 0
    while offset < len(raw):
        index = len(hdus)
        if index and raw[offset:offset + 9] != b"XTENSION=":
            break
        header, data_start = _read_header(raw, offset, index)
        nbytes = _data_bytes(header, index)
        if data_start + nbytes > len(raw):
            raise FitsError(f"truncated: HDU {index} needs {nbytes} bytes of data after byte {data_start}, "
                            f"the file has {len(raw) - data_start}")
        hdus.append(HDU(raw, index, header, data_start, nbytes))
        offset = data_start + -(-nbytes // BLOCK) * BLOCK
    return hdus


def find_hdu(hdus: Sequence[HDU], name: str) -> HDU:
    """The first HDU called `name` (EXTNAME, or 'PRIMARY'), case-insensitive."""
    for hdu in hdus:
        if hdu.name.upper() == name.upper():
            return hdu
    raise KeyError(f"no HDU named {name!r}; the file has {[h.name for h in hdus]}")


def linear_axis(header: Mapping[str, Any], n: int) -> List[float]:
    """The n world coordinates of a linear 1-D axis 1: CRVAL1 + (i + 1 - CRPIX1) * CDELT1
    (CD1_1 when there is no CDELT1; CRPIX1 0 when missing, as the WCS standard says),
    10**that for IRAF's log-linear DC-FLAG = 1. Without CRVAL1 it is the 0-based pixel
    index."""
    if "CRVAL1" not in header:
        return [float(i) for i in range(n)]
    crval = float(header["CRVAL1"])
    crpix = float(header.get("CRPIX1", 0.0))         # the WCS standard's default, as astropy's
    step = header.get("CDELT1", header.get("CD1_1", 1.0))
    step = float(step if step is not None else 1.0)
    axis = [crval + (i + 1 - crpix) * step for i in range(n)]
    if header.get("DC-FLAG") == 1:
        axis = [10.0 ** v for v in axis]
    return axis
