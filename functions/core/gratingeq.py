"""The grating-equation path: the dispersion predicted from the grating equation and the
header's angles, refined by a scale and offset search against the NIST lines of the
lamp's elements, then matched line by line and fitted (see `solve_with_grating_equation`).
Used for setups without a goodman-pipeline reference lamp, and when the reference path
refuses.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from astropy.io import fits
from numpy.polynomial import chebyshev
from scipy import ndimage

from . import lampdata
from .lines import Lines, detect_lines
from .waveheader import _first_column_unbinned, _float, lamp_elements, lines_per_mm, spectral_binning
from .wavesettings import setting
from .wavesolution import WavelengthFailure, WavelengthSolution, _finish, _fit_clipped, _invert, _match, _to_plain

#: Detector pixel size (mm, unbinned): both Goodman cameras have 15 um pixels.
PIXEL_SIZE_MM = 0.015
#: Grating-equation constants, fitted (robust least squares, soft-L1) to the solutions of
#: every shipped 4060 px reference lamp with at least 12 identified lines (42 lamps,
#: 30 pixels each) with the model
#: ``lambda(x) = 1e7/G * (sin(a) + sin(b + atan((x - AXIS_PIXEL) * PIXEL_SIZE_MM / CAMERA_FOCAL_MM)))``,
#: ``a = GRT_ANG + da``, ``b = CAM_ANG + dc - a``, x = unbinned detector pixel of the
#: trimmed frame, G = lines/mm: one effective camera focal length and optical-axis pixel
#: for the instrument, and one (da, dc) angle zero point per grating (degrees). They
#: are effective numbers (the optical axis comes out beyond the detector edge), not a
#: physical model; what matters is that they predict every reference lamp's solution to
#: a few tens of unbinned pixels (see tests/test_core_wavelength.py), which the scale
#: and offset search of the identification covers. `fit_grating_constants` re-derives
#: them (run it if reference lamps are added).
CAMERA_FOCAL_MM = 350.63
AXIS_PIXEL = 4892.3
ANGLE_OFFSETS = {
    400: (-11.212, 7.241),
    600: (-11.951, 7.211),
    930: (-7.943, 6.949),
    1200: (-6.055, 6.860),
    2100: (-3.478, 5.962),
}
#: For a grating without its own zero points: the mean of the above.
DEFAULT_ANGLE_OFFSET = (-8.128, 6.844)

#: Relative scale and offset (fraction of the detector) searched around the
#: grating-equation prediction.
SCALE_RANGE = 0.05
OFFSET_RANGE = 0.06

def grating_wavelength(x, lines_mm: float, grt_ang: float, cam_ang: float,
                       offsets: Optional[Tuple[float, float]] = None, camera_focal: float = CAMERA_FOCAL_MM,
                       axis_pixel: float = AXIS_PIXEL) -> np.ndarray:
    """Predicted wavelength (angstrom) at unbinned pixel `x` of the trimmed detector row."""
    da, dc = offsets if offsets is not None else ANGLE_OFFSETS.get(int(lines_mm), DEFAULT_ANGLE_OFFSET)
    alpha = np.radians(grt_ang + da)
    beta = np.radians(cam_ang + dc) - alpha
    theta = np.arctan((np.asarray(x, dtype=float) - axis_pixel) * PIXEL_SIZE_MM / camera_focal)
    return 1e7 / lines_mm * (np.sin(alpha) + np.sin(beta + theta))


def _catalogue(elements: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """NIST lines (wavelength, intensity) of `elements`, merged and sorted; WavelengthFailure if none."""
    wls, ints, missing = [], [], []
    for el in elements:
        try:
            w, i = lampdata.read_nist_lines(el)
        except ValueError:
            missing.append(el)
            continue
        wls.append(w)
        ints.append(i)
    if not wls:
        have = ", ".join(lampdata.nist_elements())
        raise WavelengthFailure(f"no NIST line list for the lamp elements {tuple(elements) or '(none found)'}; "
                                f"lists exist for {have}")
    w, i = np.concatenate(wls), np.concatenate(ints)
    order = np.argsort(w)
    return w[order], i[order]


def _comb(positions: np.ndarray, weights: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """A spectrum of Gaussian lines of width `sigma` px: the common currency of the search."""
    out = np.zeros(size)
    k = np.round(positions).astype(int)
    ok = (k >= 0) & (k < size)
    np.add.at(out, k[ok], weights[ok])
    return ndimage.gaussian_filter1d(out, sigma)


def _search(obs: Lines, cat_j: np.ndarray, cat_w: np.ndarray, n: int, centre: float,
            n_best: int = 4) -> List[Tuple[float, float, float]]:
    """The best (scale, offset, score) that map catalogue pixels onto the observed lines.

    Catalogue position p maps to ``centre + (p - centre) * scale + offset``; for each
    scale on a grid, an FFT cross-correlation of two smoothed line combs finds the best
    offset, so the search is a few dozen FFTs. The `n_best` best distinct candidates are
    returned: in a dense catalogue the highest peak is not always the right one, and
    the line-by-line identification tells them apart.
    """
    pad = int(OFFSET_RANGE * n) + 8
    size = n + 2 * pad
    o_w = np.sqrt(np.clip(obs.flux, 0, None))
    o_w = np.minimum(o_w, np.percentile(o_w, 90)) if o_w.size > 5 else o_w
    obs_comb = _comb(obs.centre + pad, o_w, size, 1.5)
    nfft = 1 << int(np.ceil(np.log2(2 * size)))
    fo = np.conj(np.fft.rfft(obs_comb, nfft))
    lags = np.arange(-pad, pad + 1)
    found = []
    for scale in np.arange(1.0 - SCALE_RANGE, 1.0 + SCALE_RANGE + 1e-9, 0.0025):
        p = centre + (cat_j - centre) * scale + pad
        comb = _comb(p, cat_w, size, 1.5)
        cc = np.fft.irfft(np.fft.rfft(comb, nfft) * fo, nfft)
        vals = cc[lags % nfft]  # cc[t] = sum obs[u] comb[u + t]: comb shifted by -t matches
        k = int(np.argmax(vals))
        found.append((float(vals[k]), float(scale), float(-lags[k])))
    found.sort(reverse=True)
    best: List[Tuple[float, float, float]] = []
    for score, scale, offset in found:
        # distinct: moves the detector edges by more than a few pixels
        if all(abs(offset - o) + abs(scale - s_) * n / 2 > 4.0 for s_, o, _ in best):
            best.append((scale, offset, score))
        if len(best) == n_best:
            break
    return best


def _identify(obs: Lines, cw: np.ndarray, weight: np.ndarray, pred: np.ndarray, degree: int, n: int,
              clip: float) -> Tuple[np.ndarray, np.ndarray, float]:
    """Match -> fit -> re-match from a first guess `pred` (catalogue pixels): (obs idx, cat idx, score).

    Bright lines first with a wide tolerance, then all lines with a narrowing one. The
    score, the summed sqrt(flux) of the lines that end within 0.5 px, ranks the guesses.
    """
    centre = obs.centre
    bright_obs = np.argsort(obs.flux)[::-1]
    bright_cat = np.argsort(weight)[::-1]
    rounds = ((8.0, 30, 60), (4.0, 60, 150), (2.0, None, None), (1.0, None, None), (0.5, None, None))
    for tol, n_obs, n_cat in rounds:
        o_sel = np.sort(bright_obs[:n_obs]) if n_obs else np.arange(centre.size)
        c_sel = np.sort(bright_cat[:n_cat]) if n_cat else np.arange(cw.size)
        oi, ci = _match(centre[o_sel], pred[c_sel], tol)
        oi, ci = o_sel[oi], c_sel[ci]
        if oi.size <= degree + 2:
            return oi, ci, 0.0
        fit, keep = _fit_clipped(centre[oi], cw[ci], degree, n, clip)
        if fit is None:
            return oi, ci, 0.0
        try:
            inv = _invert(_to_plain(fit), cw, -0.2 * n, 1.2 * n)
        except WavelengthFailure:  # a guess that turns over on the detector: a wrong one
            return np.array([], int), np.array([], int), 0.0
        pred = np.where(np.isfinite(inv), inv, -1e9)
    oi, ci = _match(centre, pred, 0.5)
    return oi, ci, float(np.sqrt(np.clip(obs.flux[oi], 0, None)).sum())


def solve_with_grating_equation(flux: np.ndarray, header: fits.Header, settings=None) -> WavelengthSolution:
    """Predict the dispersion from the grating equation, identify NIST lines, fit."""
    flux = np.asarray(flux, dtype=float)
    n = flux.size
    b = spectral_binning(header)
    g = lines_per_mm(header.get("GRATING"))
    grt, cam = _float(header, "GRT_ANG"), _float(header, "CAM_ANG")
    if g is None or grt is None or cam is None:
        raise WavelengthFailure(f"grating-equation: no lines/mm in GRATING={header.get('GRATING')!r} or no "
                                f"GRT_ANG/CAM_ANG in the header")
    elements = lamp_elements(header)
    cat_wl, cat_int = _catalogue(elements)
    lines = detect_lines(flux, b, float(setting(settings, "line_detection_sigma")))
    degree = int(setting(settings, "wavelength_order") or 3)
    if lines.centre.size < max(int(setting(settings, "wavelength_min_lines")), degree + 2):
        raise WavelengthFailure(f"grating-equation: only {lines.centre.size} lamp lines detected above the noise")
    # predicted solution on the data's pixels, as unbinned detector pixels of the trimmed frame
    start = _first_column_unbinned(header, b) - (int(np.ceil(51.0 / b)) - 1) * b
    j = np.arange(n, dtype=float)
    x = b * j + (b - 1) / 2.0 + start
    lam0 = grating_wavelength(x, g, grt, cam)
    margin = (lam0[-1] - lam0[0]) * (SCALE_RANGE + OFFSET_RANGE)
    sel = (cat_wl > lam0[0] - margin) & (cat_wl < lam0[-1] + margin)
    if sel.sum() < degree + 2:
        raise WavelengthFailure(f"grating-equation: the NIST lists of {elements} have only {int(sel.sum())} lines in "
                                f"the predicted range {lam0[0]:.0f}-{lam0[-1]:.0f} A")
    cw, ci = cat_wl[sel], cat_int[sel]
    cat_j = np.interp(cw, lam0, j, left=np.nan, right=np.nan)
    outside = ~np.isfinite(cat_j)
    if outside.any():  # beyond the detector: extrapolate with the edge dispersion
        d0, d1 = lam0[1] - lam0[0], lam0[-1] - lam0[-2]
        cat_j[outside] = np.where(cw[outside] < lam0[0], (cw[outside] - lam0[0]) / d0,
                                  n - 1 + (cw[outside] - lam0[-1]) / d1)
    weight = np.log1p(ci)
    weight = np.where(weight > 0, weight, 1.0)
    centre = (n - 1) / 2.0
    clip = float(setting(settings, "wavelength_clip_sigma"))
    best = (np.array([], int), np.array([], int), -1.0)
    for scale, offset, _ in _search(lines, cat_j, weight, n, centre):
        found = _identify(lines, cw, weight, centre + (cat_j - centre) * scale + offset, degree, n, clip)
        if found[2] > best[2]:
            best = found
    oi, ci_, _ = best
    solution = _finish(lines.centre[oi], cw[ci_], degree, n, settings, "grating-equation", None, elements,
                       fwhm=lines.fwhm(oi))
    _check_bright_lines(lines, solution)
    return solution


#: Of the lamp's brightest detected lines, at least this fraction must be in the
#: solution. A wrong identification can still fit a handful of faint lines well; it
#: cannot explain the bright ones. Correct solutions identify 80-100 % of the 15
#: brightest (simulated modes and the real Fe arcs), a wrong one seen on a simulated
#: 930M2 Ar lamp 53 %.
MIN_BRIGHT_IDENTIFIED = 0.6
N_BRIGHT = 15


def _check_bright_lines(lines: Lines, solution: WavelengthSolution) -> None:
    used = np.array([line[0] for line in solution.lines])
    bright = np.argsort(lines.flux)[::-1][:N_BRIGHT]
    found = np.array([np.min(np.abs(used - lines.centre[i])) < 1.0 for i in bright])
    if found.mean() < MIN_BRIGHT_IDENTIFIED:
        raise WavelengthFailure(
            f"grating-equation: only {int(found.sum())} of the {bright.size} brightest lamp lines are identified "
            f"(a trustworthy solution explains at least {MIN_BRIGHT_IDENTIFIED:.0%}): check the lamp and the "
            f"grating angles in the header")


# ---------------------------------------------------------------------------- constants


def fit_grating_constants(min_lines: int = 12):
    """Re-derive CAMERA_FOCAL_MM, AXIS_PIXEL and ANGLE_OFFSETS from the shipped reference lamps.

    Returns (focal_mm, axis_pixel, {lines/mm: (da, dc)}). Slow (a second): for
    maintenance and the test, never on the hot path.
    """
    from scipy.optimize import least_squares

    xs = np.linspace(0.0, 4059.0, 30)
    rows = []
    for name, header in lampdata.reference_headers():
        ref = lampdata.read_reference(name)
        g = lines_per_mm(header.get("GRATING"))
        if ref.flux.size != 4060 or ref.line_wavelengths.size < min_lines or g is None:
            continue
        lam = chebyshev.chebval(xs, ref.coefficients)
        disp = chebyshev.chebval(xs, chebyshev.chebder(ref.coefficients))
        rows.append((g, float(header["GRT_ANG"]), float(header["CAM_ANG"]), lam, disp))
    gratings = sorted({r[0] for r in rows})

    def resid(p):
        focal, axis = p[:2]
        out = []
        for g, a, c, lam, disp in rows:
            k = gratings.index(g)
            pred = grating_wavelength(xs, g, a, c, (p[2 + 2 * k], p[3 + 2 * k]), focal, axis)
            out.append((pred - lam) / disp)
        return np.concatenate(out)

    start = [377.3, 2030.0] + [0.0, 0.0] * len(gratings)
    sol = least_squares(resid, start, loss="soft_l1", f_scale=10.0)
    offsets = {g: (float(sol.x[2 + 2 * k]), float(sol.x[3 + 2 * k])) for k, g in enumerate(gratings)}
    return float(sol.x[0]), float(sol.x[1]), offsets
