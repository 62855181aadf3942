"""Master-flat normalisation and slit-edge detection.

Why normalise: a quartz flat carries the lamp's spectrum times the instrument's
throughput along the dispersion axis. Dividing science by it unnormalised would imprint
that colour on every spectrum. goodman-pipeline's default ('simple') removes it by
fitting a Chebyshev polynomial (order 15) to the median spectral profile (median over
the spatial axis, i.e. over rows) and dividing every row by it; what remains is the
pixel-to-pixel response and the slit illumination, which is what a flat should correct.

goodman fits with astropy's LevMarLSQFitter (iterative, non-linear). The model is linear
in its coefficients, so we solve the same least-squares problem directly with
numpy.polynomial.Chebyshev.fit (x mapped onto [-1, 1], well conditioned, ~1 ms).

Why find the slit: rows beyond the slit ends get no light; they hold only noise, make
the flat ~0 there and confuse later steps. goodman trims them (GSP_SLIT) with 10 rows
of safety margin on each side; `slit_trim_section` does the same.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

METHODS = ("mean", "simple", "spline", "function")

#: Rows dropped inside each detected slit edge (goodman's offset): the edges are soft.
SLIT_OFFSET = 10
#: Central columns whose median gives the spatial profile (goodman uses 200).
SLIT_COLUMNS = 200


def _profile(data: np.ndarray, rows: Optional[slice]) -> np.ndarray:
    use = data if rows is None else data[rows]
    return np.median(use, axis=0).astype(np.float64)


def normalize_flat(data: np.ndarray, method: str = "simple", order: int = 15,
                   rows: Optional[slice] = None) -> np.ndarray:
    """Return a new, normalised copy of the combined flat `data` (rows spatial, columns dispersion).

    method:
      * 'mean': divide by the mean (of `rows`): keeps the lamp spectrum; only for tests.
      * 'simple' (default) and its alias 'function': divide every row by a Chebyshev
        series of degree `order` least-squares fitted to the median spectral profile.
      * 'spline': divide by a smoothing spline of that profile (scipy
        make_smoothing_spline, smoothing chosen by generalised cross-validation); follows
        sharp features of the throughput (e.g. a filter edge) better than order 15.

    `rows` restricts the rows used to build the profile (e.g. the illuminated slit rows);
    the division is applied to all rows. Profile values that are not positive (no light)
    are excluded from the fit; if none remain the flat cannot be normalised (ValueError).
    """
    if method not in METHODS:
        raise ValueError(f"unknown flat normalization {method!r}: choose one of {METHODS}")
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError("flat must be a 2-D array")
    if method == "mean":
        use = arr if rows is None else arr[rows]
        mean = float(np.mean(use, dtype=np.float64))
        if not np.isfinite(mean) or mean <= 0:
            raise ValueError("flat has no positive signal to normalise by")
        return (arr / np.float32(mean)).astype(np.float32)
    profile = _profile(arr, rows)
    x = np.arange(profile.size, dtype=np.float64)
    good = np.isfinite(profile) & (profile > 0)
    if np.count_nonzero(good) <= max(order + 1, 5):
        raise ValueError("flat profile has too few illuminated columns to fit")
    if method in ("simple", "function"):
        fit = np.polynomial.Chebyshev.fit(x[good], profile[good], deg=int(order), domain=[x[0], x[-1]])
        model = fit(x)
    else:  # spline
        from scipy.interpolate import make_smoothing_spline

        spline = make_smoothing_spline(x[good], profile[good])
        model = spline(x)
    # never divide by a non-positive model value: leave such columns unnormalised
    model = np.where(model > 0, model, np.nan)
    out = arr / model[None, :].astype(np.float32)
    return np.where(np.isfinite(out), out, np.float32(0.0)).astype(np.float32)


def slit_trim_section(master_flat_data: np.ndarray) -> str:
    """FITS section ``'[1:nx,y1:y2]'`` of the slit-illuminated rows of `master_flat_data`.

    The spatial profile is the median of the SLIT_COLUMNS central columns; the slit edges
    are where it crosses half of its plateau (the 90th percentile of the profile, so a
    bright row or two cannot set the level). SLIT_OFFSET rows are then dropped inside each
    edge, like goodman (whose Box1D fit gives the same half-maximum edges). An edge that
    touches the end of the array is not an edge: no offset is applied there; if neither
    edge is found (a flat lit end to end, or no light at all), the full range is returned.
    Coordinates are those of the array passed in (usually the trimmed master flat).
    """
    arr = np.asarray(master_flat_data, dtype=np.float32)
    ny, nx = arr.shape
    full = f"[1:{nx:d},1:{ny:d}]"
    mid = nx // 2
    half_w = SLIT_COLUMNS // 2
    cols = slice(max(0, mid - half_w), min(nx, mid + half_w))
    prof = np.median(arr[:, cols], axis=1).astype(np.float64)
    if not np.all(np.isfinite(prof)):
        prof = np.nan_to_num(prof, nan=0.0, posinf=0.0, neginf=0.0)
    plateau = float(np.percentile(prof, 90))
    floor = float(np.percentile(prof, 2))
    if plateau <= 0 or plateau - floor < 0.2 * plateau:
        return full  # no light, or no contrast between slit and dark rows
    level = floor + 0.5 * (plateau - floor)
    lit = np.flatnonzero(prof >= level)
    if lit.size == 0:
        return full
    first, last = int(lit[0]), int(lit[-1])  # 0-based, inclusive
    lo_edge = first > 0
    hi_edge = last < ny - 1
    if not lo_edge and not hi_edge:
        return full
    y1 = first + 1 + (SLIT_OFFSET if lo_edge else 0)
    y2 = last + 1 - (SLIT_OFFSET if hi_edge else 0)
    if y2 - y1 < 10:
        return full  # a sliver: not a believable slit image
    return f"[1:{nx:d},{y1:d}:{y2:d}]"
