"""Look at one pixel of a frame as IRAF's imexam does: its value, the row and column
through it, statistics of a box around it, and the source nearest to it -- a star
(radial profile, FWHM) or a spectrum's trace (profile across it, FWHM in rows).

The observer clicks a frame on the page; the API answers from the product in S3 with
no numpy, so this reads only the rows it needs (the image needs `shape`, `row(y)`,
`column(x)` and `pixel(x, y)`, as fitsread.HDU has; its `row_slice(y, start, stop)`
is used when there, so that only the columns near the pixel are decoded) and fits
with lsq.py. Goodman
spectra are dispersed along x, so a source that is flat along x across the box is
a trace, measured across the slit; anything compact is a point, measured radially.

Coordinates are 0-based pixel indices, x the column, y the row. The result is ready
for JSON: floats rounded, None where a value cannot be had.
"""
from __future__ import annotations

import math
from statistics import median
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .jsonfloat import json_float, json_floats
from .lsq import SingularMatrix, gaussian_line, levenberg_marquardt

#: a source's 3x3-smoothed peak must stand this many (smoothed) sigma above the background
DETECTION_SIGMA = 5.0
#: second moment along x over that along y above which a source is a trace
TRACE_RATIO = 3.0
#: columns combined (median) for the profile across a trace
TRACE_COLUMNS = 5
MODEL_POINTS = 100
MAD_TO_SIGMA = 1.4826


class ImexamError(ValueError):
    """The pixel cannot be examined (outside the frame, not an image); for people."""


def _row_part(image: Any, y: int, start: int, stop: int) -> List[float]:
    row_slice = getattr(image, "row_slice", None)
    return row_slice(y, start, stop) if row_slice is not None else image.row(y)[start:stop]


class _Rows:
    """Rows of the image decoded on demand, each once, kept only between x0 and x1."""

    def __init__(self, image: Any, x0: int, x1: int):
        self.image, self.x0, self.x1 = image, x0, x1
        self._rows: Dict[int, List[float]] = {}

    def __getitem__(self, y: int) -> List[float]:
        if y not in self._rows:
            self._rows[y] = _row_part(self.image, y, self.x0, self.x1)
        return self._rows[y]

    def value(self, x: int, y: int) -> float:
        return self[y][x - self.x0]


def _finite(values: Sequence[float]) -> List[float]:
    return [v for v in values if v == v and v not in (math.inf, -math.inf)]


def _stats(values: Sequence[float]) -> Dict[str, Any]:
    good = _finite(values)
    if not good:
        return {"n": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    mean = math.fsum(good) / len(good)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in good) / len(good))
    return {"n": len(good), "mean": mean, "median": median(good), "std": std, "min": min(good), "max": max(good)}


def _noise(values: Sequence[float], centre: float) -> float:
    """Robust sigma (scaled median absolute deviation), the standard deviation when
    more than half the values are equal."""
    mad = median([abs(v - centre) for v in values]) * MAD_TO_SIGMA
    if mad > 0:
        return mad
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _smoothed_peaks(sub: List[List[float]], threshold: float) -> List[Tuple[int, int, float]]:
    """(i, j, value) of the local maxima of the 3x3 mean of `sub` above threshold."""
    ny, nx = len(sub), len(sub[0])
    smooth = [[0.0] * nx for _ in range(ny)]
    for j in range(ny):
        for i in range(nx):
            near = [sub[b][a] for b in range(max(0, j - 1), min(ny, j + 2))
                    for a in range(max(0, i - 1), min(nx, i + 2)) if sub[b][a] == sub[b][a]]
            smooth[j][i] = sum(near) / len(near) if near else -math.inf
    peaks = []
    for j in range(ny):
        for i in range(nx):
            v = smooth[j][i]
            if v > threshold and all(v >= smooth[b][a] for b in range(max(0, j - 1), min(ny, j + 2))
                                     for a in range(max(0, i - 1), min(nx, i + 2))):
                peaks.append((i, j, v))
    return peaks


def _half_max_moment(profile: Sequence[float]) -> float:
    """Second moment of the part of a 1-D profile above half its maximum (+1/12 for the
    pixel): the wings and the noise, which would make every source look alike, left out."""
    top = max(profile)
    w = [p if p >= top / 2.0 else 0.0 for p in profile]
    total = sum(w)
    if not top > 0 or not total > 0:
        return 1.0 / 12.0
    centre = sum(i * wi for i, wi in enumerate(w)) / total
    return sum(wi * (i - centre) ** 2 for i, wi in enumerate(w)) / total + 1.0 / 12.0


def _fit_profile(r: List[float], values: List[float], background: float, peak: float, fwhm: float,
                 centre: Optional[Tuple[float, float]]) -> Optional[Dict[str, float]]:
    """Gaussian + constant of r: centred at 0 (a radial profile, centre None) or with a
    free centre within `centre` (low, high). None when the fit fails."""
    fixed = (1, 3) if centre is None else (1,)
    bounds = [(None, None), (None, None), (None, None), centre or (None, None), (0.3, 4.0 * (max(r) - min(r)))]
    try:
        res = levenberg_marquardt(gaussian_line, [background, 0.0, peak, 0.0, fwhm], r, values,
                                  [1.0] * len(r), fixed=fixed, bounds=bounds)
    except SingularMatrix:
        return None
    if not res.converged or res.dof <= 0 or res.params[4] >= bounds[4][1]:
        return None
    errors = res.errors(res.chi2_reduced)
    c0, _, amp, mu, fwhm = res.params
    return {"background": c0, "peak": amp, "centre": mu, "centre_error": errors[3],
            "fwhm": fwhm, "fwhm_error": errors[4]}


def _model_curve(fit: Optional[Dict[str, float]], r0: float, r1: float) -> Optional[Dict[str, List[Optional[float]]]]:
    if fit is None:
        return None
    r = [r0 + (r1 - r0) * i / (MODEL_POINTS - 1) for i in range(MODEL_POINTS)]
    values, _ = gaussian_line([fit["background"], 0.0, fit["peak"], 0.0, fit["fwhm"]], r)
    return {"r": json_floats(r), "value": json_floats(values)}


def _point(rows: _Rows, sub: List[List[float]], bx0: int, by0: int, px: int, py: int, reach: int,
           background: float, frame: Tuple[int, int]) -> Dict[str, Any]:
    ny, nx = frame
    peak = sub[py - by0][px - bx0]
    half_area = sum(1 for line in sub for v in line if v >= peak / 2.0)
    fwhm_guess = max(1.0, 2.0 * math.sqrt(half_area / math.pi))
    radius = max(3.0, min(float(reach) / 3.0, 1.5 * fwhm_guess))
    cx, cy = float(px), float(py)
    for _ in range(3):
        sw = sx = sy = 0.0
        for yy in range(max(0, math.floor(cy - radius)), min(ny, math.ceil(cy + radius) + 1)):
            row = rows[yy]
            for xx in range(max(rows.x0, math.floor(cx - radius)), min(rows.x1, math.ceil(cx + radius) + 1)):
                w = row[xx - rows.x0] - background
                if w > 0 and (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius:
                    sw, sx, sy = sw + w, sx + w * xx, sy + w * yy
        if sw <= 0:
            break
        cx, cy = sx / sw, sy / sw
    r, values = [], []
    for yy in range(max(0, math.floor(cy - reach)), min(ny, math.ceil(cy + reach) + 1)):
        row = rows[yy]
        for xx in range(max(rows.x0, math.floor(cx - reach)), min(rows.x1, math.ceil(cx + reach) + 1)):
            d = math.hypot(xx - cx, yy - cy)
            v = row[xx - rows.x0]
            if d <= reach and v == v and abs(v) != math.inf:
                r.append(d)
                values.append(v)
    order = sorted(range(len(r)), key=r.__getitem__)
    r, values = [r[i] for i in order], [values[i] for i in order]
    fit = _fit_profile(r, values, background, peak, fwhm_guess, None)
    return _source("point", cx, cy, peak, background, fit, r, values, _model_curve(fit, 0.0, float(reach)))


def _trace(rows: _Rows, px: int, py: int, reach: int, peak: float, background: float, var_y: float,
           frame: Tuple[int, int]) -> Dict[str, Any]:
    ny, nx = frame
    half_cols = TRACE_COLUMNS // 2
    cols = range(max(0, px - half_cols), min(nx, px + half_cols + 1))
    ys, values = [], []
    for yy in range(max(0, py - reach), min(ny, py + reach + 1)):
        good = _finite([rows.value(xx, yy) for xx in cols])
        if good:
            ys.append(float(yy))
            values.append(median(good))
    u = [yy - py for yy in ys]
    fwhm_guess = max(1.0, math.sqrt(8.0 * math.log(2.0) * max(var_y - 1.0 / 12.0, 0.1)))
    fit = _fit_profile(u, values, background, peak, fwhm_guess, (-float(reach) / 2.0, float(reach) / 2.0))
    cy = py + (fit["centre"] if fit else 0.0)
    r = [yy - cy for yy in ys]
    model = None
    if fit:
        model = _model_curve(fit, float(-reach), float(reach))
    return _source("trace", float(px), cy, peak, background, fit, r, values, model)


def _source(kind: str, x: float, y: float, peak: float, background: float, fit: Optional[Dict[str, float]],
            r: List[float], values: List[float], model: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    return {
        "kind": kind, "x": json_float(x), "y": json_float(y),
        "peak": json_float(fit["peak"] if fit else peak),
        "background": json_float(fit["background"] if fit else background),
        "fwhm": json_float(fit["fwhm"]) if fit else None,
        "fwhm_error": json_float(fit["fwhm_error"]) if fit else None,
        "profile": {"r": json_floats(r), "value": json_floats(values)},
        "model": model,
    }


def examine(image: Any, x: float, y: float, box: int = 21, cut_half: int = 50,
            saturation: Optional[float] = None) -> Dict[str, Any]:
    """Everything imexam would say about pixel (x, y) of `image` (see the module's
    docstring). `box` is the side of the statistics and search box (odd; an even one
    grows by one), `cut_half` the half-length of the row and column cuts, both
    clipped to the frame. In the result, box x1/y1 are the last column/row inside it.

    `source` is the source nearest the pixel among the local maxima of the box that
    stand DETECTION_SIGMA above the box's border (None if none does): a "point" is
    centroided (x, y) and measured on its radial profile out to 3 box half-sizes; a
    "trace" is measured across it, on the median of TRACE_COLUMNS columns, y being
    its fitted centre row. `peak` (above the background) and `background` are those
    of the fitted Gaussian + constant, `fwhm` in pixels (rows for a trace); `profile`
    holds the pixels (r the distance from the centre; signed rows for a trace) and
    `model` the fit over them. fwhm, fwhm_error and model are None when the fit fails.
    Raises ImexamError for a pixel outside the frame."""
    if len(getattr(image, "shape", ())) < 2:
        raise ImexamError(f"examine needs a 2-D image, not one of shape {getattr(image, 'shape', None)}")
    ny, nx = image.shape[-2], image.shape[-1]
    x, y = int(round(x)), int(round(y))
    if not (0 <= x < nx and 0 <= y < ny):
        raise ImexamError(f"pixel ({x}, {y}) is outside the frame ({nx} columns x {ny} rows)")
    half = max(1, int(box) // 2)
    reach = 3 * half
    rows = _Rows(image, max(0, x - half - reach), min(nx, x + half + reach + 1))

    value = image.pixel(x, y)
    cx0, cx1 = max(0, x - cut_half), min(nx, x + cut_half + 1)
    cy0, cy1 = max(0, y - cut_half), min(ny, y + cut_half + 1)

    bx0, bx1, by0, by1 = max(0, x - half), min(nx - 1, x + half), max(0, y - half), min(ny - 1, y + half)
    pixels = [rows[yy][bx0 - rows.x0:bx1 + 1 - rows.x0] for yy in range(by0, by1 + 1)]
    stats = _stats([v for line in pixels for v in line])

    return {
        "x": x, "y": y, "value": json_float(value), "shape": [ny, nx],
        "row_cut": {"y": y, "x0": cx0, "values": json_floats(_row_part(image, y, cx0, cx1))},
        "column_cut": {"x": x, "y0": cy0, "values": json_floats(image.column(x)[cy0:cy1])},
        "box": {"x0": bx0, "y0": by0, "x1": bx1, "y1": by1,
                **{k: (json_float(v) if isinstance(v, float) else v) for k, v in stats.items()}},
        "saturated": bool(saturation is not None and value == value and value >= saturation),
        "source": _find_source(rows, pixels, bx0, by0, x, y, reach, (ny, nx)),
    }


def _find_source(rows: _Rows, pixels: List[List[float]], bx0: int, by0: int, x: int, y: int, reach: int,
                 frame: Tuple[int, int]) -> Optional[Dict[str, Any]]:
    """The source nearest (x, y) whose peak stands out of the noise, or None."""
    h, w = len(pixels), len(pixels[0])
    if h < 3 or w < 3:
        return None
    border = _finite(pixels[0] + pixels[-1] + [line[0] for line in pixels[1:-1]] + [line[-1] for line in pixels[1:-1]])
    if len(border) < 4:
        return None
    background = median(border)
    noise = _noise(border, background)
    sub = [[v - background for v in line] for line in pixels]
    peaks = _smoothed_peaks(sub, DETECTION_SIGMA * noise / 3.0 if noise > 0 else 0.0)
    if not peaks:
        return None
    i, j, _ = min(peaks, key=lambda p: ((p[0] + bx0 - x) ** 2 + (p[1] + by0 - y) ** 2, -p[2]))
    near = [(sub[b][a], a, b) for b in range(max(0, j - 1), min(h, j + 2))
            for a in range(max(0, i - 1), min(w, i + 2)) if sub[b][a] == sub[b][a]]
    peak, i, j = max(near)
    px, py = i + bx0, j + by0

    clipped = [[v if v == v else 0.0 for v in line] for line in sub]
    along_x = [sum(line[a] for line in clipped) for a in range(w)]
    along_y = [sum(line) for line in clipped]
    var_x, var_y = _half_max_moment(along_x), _half_max_moment(along_y)
    if var_x > TRACE_RATIO * var_y:
        return _trace(rows, px, py, reach, peak, background, var_y, frame)
    return _point(rows, sub, bx0, by0, px, py, reach, background, frame)
