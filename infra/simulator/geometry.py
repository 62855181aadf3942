"""Where things are on a raw Goodman Red-camera frame, for any binning and row window (ROI).

A readout is a value, `Geometry(binning=(sb, pb), roi=Roi(...))`: the raw shape, the
overscan and trim sections (goodman-pipeline's rules for INSTCONF='Red' at that serial
binning, taken from `functions.core.regions` so the two cannot disagree), the lit columns
and rows, and the mapping from raw pixels to the unbinned reference coordinate. The
module constants below are the default readout, 'Spectroscopic 2x2' (`DEFAULT`), which is
what every frame of the default night uses; they stay for the code and tests that read them.

The detector: the Red camera's full spectroscopic readout is 4142 unbinned columns
(serial) by 1896 unbinned rows (parallel), starting at the camera's 'Parallel Origin'
(PG5_6) 1100. A readout binned (sb, pb) has ``4142 // sb`` columns and ``n_rows // pb``
rows of its window; e.g. 2x2: (948, 2071), 1x1: (1896, 4142), 3x3: (632, 1380). A window
(ROI) is a band of unbinned rows ``first_row .. first_row + n_rows - 1`` counted from the
first row of the full window (PG5_6 = 1100 + first_row), e.g. 'Spectroscopic ZZ Ceti':
400 unbinned rows from row 700 (PG5_6 = 1800, 200 rows at 2x2, as in real headers).

Conventions used across the simulator (and recorded in truth.json):

* ``row``/``r`` and ``col``/``c`` are 0-based numpy indices of the raw array
  ``data[row, col]``; FITS sections are 1-based ``[x1:x2,y1:y2]`` with x = column.
* Pixel ``i`` covers the interval ``[i - 0.5, i + 0.5]``: a value at coordinate
  ``i`` refers to the pixel centre.
* ``x`` is the *unbinned reference coordinate* of the goodman-pipeline reference lamp
  (0-based pixel centres of its 1-D, 4060 px spectrum); the wavelength solution of
  the lamp is a function of ``x``, whose 0 is unbinned detector column 50
  (`REFERENCE_ORIGIN`). A binned raw column ``c`` covers unbinned detector columns
  ``sb*c .. sb*c + sb - 1`` at any binning, so its centre sits at
  ``x = sb*c + (sb - 1)/2 - 50`` (plus the frame's shift, see `Geometry.column_to_x`);
  for 2x2 that is ``x = 2*(c - 25) + 0.5``.
* ``u`` is the unbinned row coordinate along the slit, counted from the first row of
  the full window: binned row ``r`` of a window starting at unbinned row ``y0`` has its
  centre at ``u = pb*r + (pb - 1)/2 + y0``. The slit image, the star and the line tilt
  are defined in ``u`` (equivalently in rows of the default 2x2 full frame,
  ``r2 = (u - 0.5)/2``), so every readout sees the same sky.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np

from functions.core import regions

#: (NAXIS2, NAXIS1): rows are spatial (along the slit), columns are dispersion.
SHAPE = (948, 2071)
N_ROWS, N_COLS = SHAPE
BINNING = 2

#: Serial overscan, FITS 1-based: bias and read noise only.
OVERSCAN_SECTION = "[3:24,1:948]"
#: Trim section, FITS 1-based: the illuminated detector area (columns 26..2055).
TRIM_SECTION = "[26:2055,2:948]"

#: Unbinned detector column of the reference lamps' x = 0 (goodman's trim starts there).
REFERENCE_ORIGIN = 50
#: 0-based first illuminated column (1-based 26) and number of illuminated columns.
FIRST_LIT_COL = 25
N_LIT_COLS = 2030
LAST_LIT_COL = FIRST_LIT_COL + N_LIT_COLS - 1  # 2054 (1-based 2055)
#: Unbinned width of the illuminated area: exactly the width of a 400M2 reference lamp.
UNBINNED_WIDTH = BINNING * N_LIT_COLS  # 4060

#: 0-based overscan columns (1-based 3..24).
OVERSCAN_COLS = (2, 23)

#: Slit illumination along the rows, 1-based inclusive: the slit image ends there,
#: with soft (error-function) edges of EDGE_SIGMA rows.
ILLUMINATED_ROWS_1BASED = (90, 905)
ILLUMINATED_ROWS = (ILLUMINATED_ROWS_1BASED[0] - 1, ILLUMINATED_ROWS_1BASED[1] - 1)  # 0-based (89, 904)
SLIT_EDGE_SIGMA = 1.5
#: Row about which a line tilt is applied (centre of the slit image, 0-based).
TILT_REFERENCE_ROW = (ILLUMINATED_ROWS[0] + ILLUMINATED_ROWS[1]) / 2.0  # 496.5

#: Readout 'Red, 344 kHz' as goodman-pipeline names it: RED_SP_2x2_R03.89_G01.48.
READOUT_MODE = "RED_SP_2x2_R03.89_G01.48"
GAIN = 1.48  # e-/ADU
RDNOISE = 3.89  # e-
BIAS_LEVEL = 1000.0  # ADU, nominal
SATURATION = 65535


def column_to_x(col, shift: float = 0.0, row=None, tilt: float = 0.0):
    """Unbinned reference coordinate of the centre of raw column `col`.

    ``x = 2*(col - 25) + 0.5 + shift + tilt*(row - TILT_REFERENCE_ROW)/100``.
    `shift` is the frame's flexure shift and `tilt` the line tilt, both in unbinned
    reference pixels; the tilt term is dropped when `row` is None or `tilt` is 0.
    """
    x = BINNING * (np.asarray(col, dtype=float) - FIRST_LIT_COL) + 0.5 + shift
    if row is not None and tilt:
        x = x + tilt * (np.asarray(row, dtype=float) - TILT_REFERENCE_ROW) / 100.0
    return x


def x_to_column(x, shift: float = 0.0, row=None, tilt: float = 0.0):
    """Inverse of `column_to_x`: the (fractional) raw column whose centre maps to `x`."""
    x = np.asarray(x, dtype=float) - shift
    if row is not None and tilt:
        x = x - tilt * (np.asarray(row, dtype=float) - TILT_REFERENCE_ROW) / 100.0
    return (x - 0.5) / BINNING + FIRST_LIT_COL


def lit_columns() -> np.ndarray:
    """0-based raw columns that receive light (the trim columns)."""
    return np.arange(FIRST_LIT_COL, LAST_LIT_COL + 1)


# ---------------------------------------------------------------- readouts as values

#: The Red camera's full spectroscopic readout, unbinned: columns (serial) and rows (parallel).
DETECTOR_COLS = BINNING * N_COLS  # 4142
DETECTOR_ROWS = BINNING * N_ROWS  # 1896
#: The camera's 'Parallel Origin' (PG5_6) of the full spectroscopic window, unbinned rows.
PARALLEL_ORIGIN = 1100
#: The slit image and the tilt reference row in unbinned rows ``u`` of the full window
#: (the 2x2 numbers above, ``u = 2*r + 0.5``): edges at 177.5 and 1809.5, sigma 3 rows.
SLIT_EDGES_U = (BINNING * ILLUMINATED_ROWS[0] - 0.5, BINNING * ILLUMINATED_ROWS[1] + BINNING - 0.5)
SLIT_EDGE_SIGMA_U = SLIT_EDGE_SIGMA * BINNING
TILT_REFERENCE_U = BINNING * TILT_REFERENCE_ROW + 0.5  # 993.5
#: Rows of margin around the slit image where light is computed (2x2 rows; scaled per binning).
_BAND_MARGIN_U = 24
BINNINGS = (1, 2, 3)


@dataclass(frozen=True)
class Roi:
    """A window of detector rows: `n_rows` unbinned rows from unbinned row `first_row` of the
    full spectroscopic window (the camera's Parallel Origin is ``PARALLEL_ORIGIN + first_row``).
    `name` is the header's ROI; None for the full window, whose name depends on the binning."""

    name: Optional[str] = None
    first_row: int = 0
    n_rows: int = DETECTOR_ROWS

    def __post_init__(self):
        if self.first_row < 0 or self.n_rows < 1 or self.first_row + self.n_rows > DETECTOR_ROWS:
            raise ValueError(f"ROI rows {self.first_row}..{self.first_row + self.n_rows - 1} are not inside "
                             f"the {DETECTOR_ROWS} unbinned rows of the spectroscopic window")

    @property
    def is_full(self) -> bool:
        return self.first_row == 0 and self.n_rows == DETECTOR_ROWS


FULL = Roi()
#: Goodman's 'Spectroscopic ZZ Ceti' preset: 200 rows at 2x2 (400 unbinned), Parallel Origin 1800.
ZZ_CETI = Roi("Spectroscopic ZZ Ceti", 1800 - PARALLEL_ORIGIN, 400)
ROIS = {"full": FULL, "spectroscopic": FULL, "spectroscopic 1x1": FULL, "spectroscopic 2x2": FULL,
        "spectroscopic 3x3": FULL, "spectroscopic zz ceti": ZZ_CETI, "zz ceti": ZZ_CETI}

RoiSpec = Union[None, str, Roi, Tuple[int, int]]


def roi_from(spec: RoiSpec) -> Roi:
    """A `Roi` from None/'full'/'Spectroscopic 2x2' (the full window), 'Spectroscopic ZZ Ceti',
    a (first_row, n_rows) pair of unbinned rows ('user-defined'), or a `Roi`."""
    if spec is None:
        return FULL
    if isinstance(spec, Roi):
        return spec
    if isinstance(spec, str):
        try:
            return ROIS[spec.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown ROI {spec!r}: use one of {sorted(set(ROIS))} "
                             "or (first_row, n_rows) in unbinned rows") from None
    first, n = (int(v) for v in spec)
    return Roi("user-defined", first, n)


def binning_from(spec) -> Tuple[int, int]:
    """(serial, parallel) from 2, (1, 2), '1 2' (CCDSUM) or '1x2'; each in 1..3."""
    if isinstance(spec, str):
        parts = spec.lower().replace("x", " ").split()
    elif np.isscalar(spec):
        parts = [spec, spec]
    else:
        parts = list(spec)
    try:
        sb, pb = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"binning must be (serial, parallel), e.g. (2, 2) or '1 1', got {spec!r}") from None
    if sb not in BINNINGS or pb not in BINNINGS:
        raise ValueError(f"binning {sb}x{pb} is not supported: serial and parallel in {BINNINGS}")
    return sb, pb


@dataclass(frozen=True)
class Geometry:
    """One readout of the Red camera: binning (serial sb, parallel pb) and row window."""

    binning: Tuple[int, int] = (BINNING, BINNING)
    roi: Roi = FULL

    def __post_init__(self):
        sb, pb = binning_from(self.binning)
        object.__setattr__(self, "binning", (sb, pb))
        if self.roi.n_rows // pb < 4:
            raise ValueError(f"ROI of {self.roi.n_rows} unbinned rows is too small at parallel binning {pb}")

    # ---- shape and sections
    @property
    def sb(self) -> int:
        return self.binning[0]

    @property
    def pb(self) -> int:
        return self.binning[1]

    @property
    def n_cols(self) -> int:
        return DETECTOR_COLS // self.sb

    @property
    def n_rows(self) -> int:
        return self.roi.n_rows // self.pb

    @property
    def shape(self) -> Tuple[int, int]:
        return self.n_rows, self.n_cols

    @property
    def overscan_section(self) -> str:
        return regions.overscan_section("Red", self.binning, self.shape)

    @property
    def trim_section(self) -> str:
        return regions.trim_section("Red", self.binning, self.shape)

    @property
    def overscan_cols(self) -> Tuple[int, int]:
        """0-based first and last overscan column."""
        cols = regions.parse_section(self.overscan_section)[1]
        return cols.start, cols.stop - 1

    @property
    def first_lit_col(self) -> int:
        return regions.parse_section(self.trim_section)[1].start

    @property
    def last_lit_col(self) -> int:
        return regions.parse_section(self.trim_section)[1].stop - 1

    @property
    def n_lit_cols(self) -> int:
        return self.last_lit_col - self.first_lit_col + 1

    @property
    def unbinned_width(self) -> int:
        return self.sb * self.n_lit_cols

    def lit_columns(self) -> np.ndarray:
        return np.arange(self.first_lit_col, self.last_lit_col + 1)

    # ---- header values
    @property
    def ccdsum(self) -> str:
        return f"{self.sb} {self.pb}"

    @property
    def roi_name(self) -> str:
        if self.roi.name is not None:
            return self.roi.name
        return f"Spectroscopic {self.sb}x{self.pb}" if self.sb == self.pb else "user-defined"

    @property
    def parallel_origin(self) -> int:
        return PARALLEL_ORIGIN + self.roi.first_row

    @property
    def readout_mode(self) -> str:
        return f"RED_SP_{self.sb}x{self.pb}_R03.89_G01.48"

    # ---- rows along the slit
    def row_to_u(self, row):
        """Unbinned row (from the full window's first row) of the centre of frame row `row`."""
        return self.pb * np.asarray(row, dtype=float) + (self.pb - 1) / 2.0 + self.roi.first_row

    def u_to_row(self, u):
        return (np.asarray(u, dtype=float) - self.roi.first_row - (self.pb - 1) / 2.0) / self.pb

    @property
    def slit_edges(self) -> Tuple[float, float]:
        """The slit image's edges (where illumination is 1/2) in this frame's row coordinate."""
        lo, hi = (float(self.u_to_row(u)) for u in SLIT_EDGES_U)
        return lo, hi

    @property
    def slit_edge_sigma(self) -> float:
        return SLIT_EDGE_SIGMA_U / self.pb

    @property
    def illuminated_rows(self) -> Optional[Tuple[int, int]]:
        """0-based first and last frame row whose centre is inside the slit image (None: none)."""
        lo, hi = self.slit_edges
        first, last = max(0, int(math.ceil(lo))), min(self.n_rows - 1, int(math.floor(hi)))
        return (first, last) if first <= last else None

    def band(self) -> slice:
        """Rows where light is computed: the slit image plus a margin, inside the frame."""
        lo, hi = self.slit_edges
        margin = int(math.ceil(_BAND_MARGIN_U / self.pb))
        start = max(0, int(math.ceil(lo)) - margin)
        stop = min(self.n_rows, int(math.floor(hi)) + margin + 1)
        return slice(start, max(start, stop))

    @property
    def tilt_reference_row(self) -> float:
        return float(self.u_to_row(TILT_REFERENCE_U))

    def tilt_per_100_rows(self, tilt: float) -> float:
        """A tilt given per 100 rows of the 2x2 frame (the plan's), per 100 rows of this frame."""
        return tilt * self.pb / 2.0

    # ---- columns along the dispersion
    def column_to_x(self, col, shift: float = 0.0, row=None, tilt: float = 0.0):
        """Unbinned reference coordinate of the centre of raw column `col` of this readout.

        ``x = sb*col + (sb - 1)/2 - REFERENCE_ORIGIN + shift + tilt_f*(row - tilt_reference_row)/100``
        with ``tilt_f = tilt*pb/2`` (`tilt` per 100 rows of the 2x2 frame, as the plan has it).
        Raw column c covers unbinned detector columns sb*c .. sb*c + sb - 1 at any binning,
        so the spectrum falls on the same detector pixels whatever the readout (at 3x3 the
        first lit column, 16, starts 2 unbinned px before the reference's x = 0).
        """
        x = self.sb * np.asarray(col, dtype=float) + (self.sb - 1) / 2.0 - REFERENCE_ORIGIN + shift
        if row is not None and tilt:
            x = x + self.tilt_per_100_rows(tilt) * (np.asarray(row, dtype=float) - self.tilt_reference_row) / 100.0
        return x

    def x_to_column(self, x, shift: float = 0.0, row=None, tilt: float = 0.0):
        """Inverse of `column_to_x`: the (fractional) raw column whose centre maps to `x`."""
        x = np.asarray(x, dtype=float) - shift
        if row is not None and tilt:
            x = x - self.tilt_per_100_rows(tilt) * (np.asarray(row, dtype=float) - self.tilt_reference_row) / 100.0
        return (x + REFERENCE_ORIGIN - (self.sb - 1) / 2.0) / self.sb

    @property
    def pixel_scale(self) -> float:
        """Area of one binned pixel relative to a 2x2 pixel (light per pixel scales with it)."""
        return self.sb * self.pb / 4.0


DEFAULT = Geometry()
