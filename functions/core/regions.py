"""Where the overscan and the useful detector area are on a raw Goodman spectrum.

Why computed, not read from the header: Goodman's BIASSEC/TRIMSEC cards describe the
unbinned full chip and are wrong for binned spectroscopic readouts, so goodman-pipeline
derives both regions from the camera and the binning (`get_overscan_region`,
`define_trim_section`). We use the same rules so that our reduced frames line up pixel
for pixel with theirs:

* overscan, Red camera: columns ceil(6/sb)..int(49/sb), all rows (the first ~5
  unbinned columns read abnormally high, so they are skipped);
* overscan, Blue camera: columns 1..int(16/sb), all rows;
* trim (spectroscopy, both cameras): columns ceil(51/sb)..int(4110/sb), rows 2..ny
  (the first row is a partial read).

``sb`` is the serial (dispersion-axis) binning, the first number of CCDSUM. Sections are
FITS/IRAF 1-based inclusive strings ``[x1:x2,y1:y2]`` with x = column; `parse_section`
turns them into numpy slices ``(rows, cols)``.
"""
from __future__ import annotations

import math
import re
from typing import Optional, Tuple

CAMERAS = ("RED", "BLUE")

_SECTION = re.compile(r"^\[\s*(\d*)\s*:\s*(\d*)\s*,\s*(\d*)\s*:\s*(\d*)\s*\]$")


def _check(camera: str, binning: Tuple[int, int], shape: Tuple[int, int]) -> Tuple[str, int, int, int]:
    cam = str(camera).strip().upper()
    if cam not in CAMERAS:
        raise ValueError(f"unknown camera {camera!r}: expected one of {CAMERAS}")
    serial, parallel = (int(b) for b in binning)
    if serial < 1 or parallel < 1:
        raise ValueError(f"binning must be positive integers, got {binning!r}")
    ny, nx = (int(n) for n in shape)
    if ny < 2 or nx < 2:
        raise ValueError(f"shape {shape!r} is too small to hold a spectrum")
    return cam, serial, ny, nx


def overscan_section(camera: str, binning: Tuple[int, int], shape: Tuple[int, int]) -> Optional[str]:
    """FITS section of the serial overscan for a spectroscopic readout (goodman's rule).

    Returns None when there is nothing to use, i.e. imaging readouts: callers of this
    module pass only spectroscopic frames, but a caller that passes ``camera`` of
    'IMAGING' style gets None rather than an exception so it can fall back to bias.
    Raises ValueError when the section does not fit inside `shape`.
    """
    if str(camera).strip().upper() in ("IMAGING", "NONE", ""):
        return None
    cam, serial, ny, nx = _check(camera, binning, shape)
    if cam == "RED":
        x1, x2 = int(math.ceil(6.0 / serial)), int(49.0 / serial)
    else:
        x1, x2 = 1, int(16.0 / serial)
    if x2 < x1 or x2 > nx:
        raise ValueError(f"overscan columns {x1}..{x2} do not fit a frame {nx} columns wide")
    return f"[{x1:d}:{x2:d},1:{ny:d}]"


def trim_section(camera: str, binning: Tuple[int, int], shape: Tuple[int, int]) -> str:
    """FITS section of the useful (exposed) area for a spectroscopic readout.

    The same rule for both cameras, as in goodman-pipeline. Raises ValueError when the
    section does not fit inside `shape` (e.g. a cut-out or an unexpected ROI): trimming
    such a frame with these numbers would silently produce garbage.
    """
    _, serial, ny, nx = _check(camera, binning, shape)
    x1, x2 = int(math.ceil(51.0 / serial)), int(4110 / serial)
    if x2 > nx or x1 >= x2:
        raise ValueError(f"trim columns {x1}..{x2} do not fit a frame {nx} columns wide")
    return f"[{x1:d}:{x2:d},2:{ny:d}]"


def parse_section(section: str) -> Tuple[slice, slice]:
    """``'[x1:x2,y1:y2]'`` (1-based, inclusive, x = column) → numpy ``(rows, cols)`` slices.

    Empty bounds (``'[:,5:10]'``) mean the whole axis, as in IRAF. Reversed ranges are
    rejected: Goodman sections are never flipped and a flip would be a silent bug.
    """
    m = _SECTION.match(str(section).strip())
    if not m:
        raise ValueError(f"not a FITS section '[x1:x2,y1:y2]': {section!r}")
    x1, x2, y1, y2 = (int(g) if g else None for g in m.groups())
    for lo, hi in ((x1, x2), (y1, y2)):
        if lo is not None and lo < 1:
            raise ValueError(f"FITS sections are 1-based: {section!r}")
        if lo is not None and hi is not None and hi < lo:
            raise ValueError(f"reversed section {section!r} is not supported")
    rows = slice(None if y1 is None else y1 - 1, y2)
    cols = slice(None if x1 is None else x1 - 1, x2)
    return rows, cols


def format_section(rows: slice, cols: slice) -> str:
    """Numpy ``(rows, cols)`` slices with explicit non-negative bounds → ``'[x1:x2,y1:y2]'``."""
    for s in (rows, cols):
        if s.start is None or s.stop is None or s.start < 0 or s.stop <= s.start or s.step not in (None, 1):
            raise ValueError(f"need explicit, increasing, unit-step slices, got {s!r}")
    return f"[{cols.start + 1:d}:{cols.stop:d},{rows.start + 1:d}:{rows.stop:d}]"
