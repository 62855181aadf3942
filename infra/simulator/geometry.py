"""Where things are on a raw Goodman Red-camera frame read out as 'Spectroscopic 2x2'.

Every number here is what goodman-pipeline assumes for that readout (its
`get_overscan_region` and `define_trim_section` for INSTCONF='Red', 2x2), so a frame
built on this geometry can be reduced by it, and by our own reduction, unchanged.
They live in one module so the frame synthesis, the truth file and the tests can
never disagree about a pixel.

Conventions used across the simulator (and recorded in truth.json):

* ``row``/``r`` and ``col``/``c`` are 0-based numpy indices of the raw array
  ``data[row, col]``; FITS sections are 1-based ``[x1:x2,y1:y2]`` with x = column.
* Pixel ``i`` covers the interval ``[i - 0.5, i + 0.5]``: a value at coordinate
  ``i`` refers to the pixel centre.
* ``x`` is the *unbinned reference coordinate* of the goodman-pipeline reference lamp
  (0-based pixel centres of its 1-D, 4060 px spectrum); the wavelength solution of
  the lamp is a function of ``x``.  A binned raw column ``c`` inside the trim section
  covers unbinned pixels ``2*(c - 25)`` and ``2*(c - 25) + 1``, so its centre sits at
  ``x = 2*(c - 25) + 0.5`` (plus the frame's flexure shift, see `column_to_x`).
"""
from __future__ import annotations

import numpy as np

#: (NAXIS2, NAXIS1): rows are spatial (along the slit), columns are dispersion.
SHAPE = (948, 2071)
N_ROWS, N_COLS = SHAPE
BINNING = 2

#: Serial overscan, FITS 1-based: bias and read noise only.
OVERSCAN_SECTION = "[3:24,1:948]"
#: Trim section, FITS 1-based: the illuminated detector area (columns 26..2055).
TRIM_SECTION = "[26:2055,2:948]"

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
