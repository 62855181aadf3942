"""Carrying a lamp's wavelength solution and a science trace between frames read out differently.

Why: on real nights the comparison lamps are often taken at another binning, slit
width or region of interest than the science (a 1x2 arc with the 0.45" slit for a 2x2
science frame through 1.0"). The lines still fall on the same detector pixels: the
optics are the same. So a lamp is solved in its own pixels, and the solution is moved
to the science frame's pixels through unbinned detector coordinates:

* columns (dispersion): reduced column ``j`` of a frame with serial binning ``b``
  covers unbinned detector columns ``b*j + x0 .. b*j + x0 + b - 1``, its centre at
  ``b*j + x0 + (b - 1)/2``, where ``x0`` is where the frame's column 0 starts on the
  detector (GSP_TRIM's first column, plus GSP_SLIT's, times ``b``). Goodman's
  spectroscopic readouts always span the full detector width, so this is exact.
* rows (spatial): the same with the parallel binning, from where the readout window
  starts on the detector: the camera's 'Parallel Origin' (PG5_6, unbinned rows of the
  4096-row detector: 1100 for the full 'Spectroscopic' window of 1896 rows, 1800 for the
  400-row 'Spectroscopic ZZ Ceti' one). A header without it is taken to be centred on
  the detector, as those windows nearly are; the sky lines then measure what is left
  (the lines' tilt along the slit is a fraction of a pixel). Columns likewise start at
  the 'Serial Origin' (PG5_11, 0 for every spectroscopic window).

A solution mapped this way keeps its form: ``lambda_science(j) = lambda_lamp(a*j + c)``
is still a Chebyshev series in plain ``chebval(j, coefficients)`` form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

import numpy as np
from numpy.polynomial import chebyshev

from .masters import camera_binning
from .regions import parse_section

#: Rows of the detector; a window with no PG5_6 card is taken to be centred on it.
DETECTOR_ROWS = 4096


def _section(header, key) -> Optional[Tuple[int, int, int]]:
    """(first column, first row, row stop) of a header's section card, 0-based; None if absent."""
    try:
        rows, cols = parse_section(header[key])
    except (KeyError, ValueError):
        return None
    if None in (rows.start, rows.stop, cols.start):
        return None
    return cols.start, rows.start, rows.stop


def _number(header, key) -> Optional[float]:
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class FrameGeometry:
    """Where a reduced frame's pixels sit on the detector, in unbinned pixels."""

    serial: int
    parallel: int
    x0: float  # unbinned detector column where reduced column 0 starts
    y0: float  # unbinned detector row where reduced row 0 starts
    roi: str = ""

    @classmethod
    def from_header(cls, header) -> "FrameGeometry":
        """From a reduced frame's (or its 1-D products') header: CCDSUM, GSP_TRIM, GSP_SLIT,
        the window's origin (PG5_6, PG5_11) and ROI."""
        try:
            serial, parallel = (max(b, 1) for b in camera_binning(header)[1])
        except ValueError:
            serial, parallel = 1, 1
        trim = _section(header, "GSP_TRIM")
        if trim:
            tx, ty, ny = trim
        else:  # goodman's spectroscopic trim rule: first column ceil(51/b), rows from 2
            tx, ty = int(math.ceil(51.0 / serial)) - 1, 1
            ny = int(header.get("NAXIS2") or 0) + 1
        slit = _section(header, "GSP_SLIT")
        sx, sy = (slit[0], slit[1]) if (slit and trim) else (0, 0)
        row_origin = _number(header, "PG5_6")
        if row_origin is None:
            row_origin = (DETECTOR_ROWS - parallel * ny) / 2.0
        column_origin = _number(header, "PG5_11") or 0.0
        return cls(serial=serial, parallel=parallel, x0=float(column_origin + (tx + sx) * serial),
                   y0=float(row_origin + (ty + sy) * parallel), roi=str(header.get("ROI") or "").strip())

    def column_to_x(self, j):
        return self.serial * np.asarray(j, dtype=float) + self.x0 + (self.serial - 1) / 2.0

    def x_to_column(self, x):
        return (np.asarray(x, dtype=float) - self.x0 - (self.serial - 1) / 2.0) / self.serial

    def row_to_y(self, i):
        return self.parallel * np.asarray(i, dtype=float) + self.y0 + (self.parallel - 1) / 2.0

    def y_to_row(self, y):
        return (np.asarray(y, dtype=float) - self.y0 - (self.parallel - 1) / 2.0) / self.parallel


def column_map(source: FrameGeometry, target: FrameGeometry) -> Tuple[float, float]:
    """(a, c) with source column = a * target column + c."""
    a = target.serial / source.serial
    c = float(source.x_to_column(target.column_to_x(0.0)))
    return a, c


def differences(lamp: FrameGeometry, science: FrameGeometry) -> List[str]:
    """What a mapping has to bridge, for the provenance."""
    out = []
    if (lamp.serial, lamp.parallel) != (science.serial, science.parallel):
        out.append(f"binning {lamp.serial}x{lamp.parallel} vs {science.serial}x{science.parallel}")
    if lamp.x0 != science.x0:
        out.append(f"first column at unbinned {lamp.x0:g} vs {science.x0:g}")
    return out  # a window of other rows is a difference of setup: calibrations.compare_setup names it


def map_solution(solution, lamp: FrameGeometry, science: FrameGeometry, n_pixels: int):
    """The lamp's solution as a function of the science frame's columns.

    Unchanged when the geometries agree. Otherwise the coefficients are composed with
    the column map, the identified lines are moved to science columns and the RMS in
    pixels is expressed in the science frame's (binned) pixels."""
    a, c = column_map(lamp, science)
    if a == 1.0 and c == 0.0 and n_pixels == solution.n_pixels:
        return solution
    composed = chebyshev.Chebyshev(solution.coefficients)(chebyshev.Chebyshev([c, a]))
    coefficients = tuple(float(v) for v in composed.coef[:len(solution.coefficients)])
    lines = tuple(((float(j) - c) / a, float(w), float(r)) for j, w, r in solution.lines)
    return replace(solution, coefficients=coefficients, n_pixels=int(n_pixels), lines=lines,
                   rms_pixels=float(solution.rms_pixels) / a)


def lamp_rows(lamp: FrameGeometry, science: FrameGeometry, n_lamp_columns: int, trace_center) -> np.ndarray:
    """Row of the lamp frame, per lamp column, that lies under the science trace.

    `trace_center(j)` gives the science trace's row at science columns j."""
    a, c = column_map(lamp, science)
    j_lamp = np.arange(n_lamp_columns, dtype=float)
    j_science = (j_lamp - c) / a
    y = science.row_to_y(trace_center(j_science))
    return lamp.y_to_row(y)
