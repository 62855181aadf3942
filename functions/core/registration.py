"""The reference path: a goodman-pipeline reference lamp of the same configuration,
registered on the observed lamp, tells which laboratory wavelength each observed line is.

Geometry: the registration is done in the data's own binning geometry. Binned pixel
``j`` covers unbinned pixels ``b*j .. b*j+b-1``, so its centre is ``b*j + (b-1)/2``
(goodman uses ``b*j``, half an unbinned pixel off for 2x2, and moves its solution by
whole pixels only); reference pixel ``x = b*j + (b-1)/2 + offset``.

Registration without a ceiling: real lamps sit 20-25 unbinned px from goodman's
reference lamps, and a setup can be off by more. The whole plausible range,
``reference_search_range`` unbinned px either side of where the two trims put the
reference, is searched with one FFT cross-correlation, and its `N_CANDIDATES` highest
distinct peaks are each tried as the registration. A correlation peak alone is not
trusted (a dense lamp correlates with itself moved by a line spacing): the candidate
whose identification is best wins, ranked by

1. a solution that passes the quality limits, and explains the lamp's bright lines:
   of its `N_BRIGHT` brightest lines, at least `MIN_BRIGHT_EXPLAINED` must fall on a
   line of the registered reference spectrum (a lamp that is not what the header says,
   or a wrong lag, leaves them unexplained);
2. the number of bright lines explained, then of reference lines identified, then the
   lowest RMS.

Identification at one registration: the reference's identified lines (GSP_A) are
predicted on the lamp and first paired with the lamp's bright lines within
``correlation_tolerance`` unbinned px (goodman's meaning: how far a line may disagree
locally with the global lag; it does not bound the lag); a shift and scale fitted to
those pairs corrects the prediction, and every lamp line within ``max(1.5, 3/b)``
binned px of it is paired; then the reference's own solution, moved to the fitted
shift, plus a fitted correction is the answer (`_fit_on_reference`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from astropy.io import fits
from numpy.polynomial import chebyshev

from . import lampdata
from .lines import Lines, detect_lines, residual_spectrum
from .waveheader import _config, _first_column_unbinned, _norm, lamp_elements, spectral_binning
from .wavesettings import setting
from .wavesolution import WavelengthFailure, WavelengthSolution, _finish, _fit_clipped, _invert, _match

#: Correlation peaks tried as the registration, highest first.
N_CANDIDATES = 6
#: Of the lamp's brightest lines (within the reference's coverage), at least this
#: fraction must sit on a line of the registered reference. The right registration of
#: the right lamp explains 90-100 % (every simulated mode); a lamp of other elements, or
#: a lag off by a line spacing, far fewer.
MIN_BRIGHT_EXPLAINED = 0.6
N_BRIGHT = 15
#: A registration explaining this fraction of the bright lines is not bettered: the
#: remaining correlation peaks are not tried.
CERTAIN_BRIGHT_EXPLAINED = 0.9
#: Lines of the reference spectrum that can explain a bright lamp line: its brightest
#: this many (more would explain random positions: 80 lines x +-2 px cover 8 % of 4060 px).
N_REFERENCE_LINES = 80
#: Lamp lines paired in the first, wide round of the identification.
N_FIRST_ROUND = 30


@functools.lru_cache(maxsize=1)
def _reference_configs():
    """(name, header, configuration) of every reference lamp, parsed once."""
    return tuple((name, h, _config(h)) for name, h in lampdata.reference_headers())


def find_reference(header: fits.Header, settings=None) -> Optional[str]:
    """The reference lamp (name) of the same configuration and lamp elements, or None.

    Same lines/mm, GRT_TARG and CAM_TARG within `reference_angle_tolerance`, the same
    camera, and the same elements (a reference of other lamps would register on the
    wrong lines); among several, the closest angles, then the same GRATING name (two
    1200 l/mm gratings exist), then the same FILTER2.
    """
    want = _config(header)
    if want.grating is None or want.grt_targ is None or want.cam_targ is None or not want.elements:
        return None
    tol = float(setting(settings, "reference_angle_tolerance"))
    best = None
    for name, ref_header, have in _reference_configs():
        if have.grating != want.grating or have.elements != want.elements or have.camera != want.camera:
            continue
        if have.grt_targ is None or have.cam_targ is None:
            continue
        d = max(abs(have.grt_targ - want.grt_targ), abs(have.cam_targ - want.cam_targ))
        if d > tol:
            continue
        same_grating = _norm(ref_header.get("GRATING")) == _norm(header.get("GRATING"))
        rank = (d, not same_grating, have.filter2 != want.filter2, name)
        if best is None or rank < best[0]:
            best = (rank, name)
    return None if best is None else best[1]


# ---------------------------------------------------------------------------- registration


@functools.lru_cache(maxsize=128)
def _reference_lines(name: str, threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """(centres, fluxes) of the lines in reference lamp `name`'s spectrum (unbinned px), brightest first."""
    lines = detect_lines(lampdata.read_reference(name).flux, 1, threshold)
    order = np.argsort(lines.flux)[::-1]
    return lines.centre[order], lines.flux[order]


def _prepared(y: np.ndarray, binning: int) -> np.ndarray:
    """Continuum removed, square-root compressed (a few saturated lines must not decide alone), unit norm."""
    r = np.sqrt(np.clip(residual_spectrum(y, binning), 0, None))
    r = r - r.mean()
    return r / (np.linalg.norm(r) or 1.0)


def _correlation_peaks(data: np.ndarray, ref: np.ndarray, binning: int, lo: float, hi: float,
                       n_best: int) -> List[Tuple[float, float]]:
    """(lag, correlation) of the `n_best` highest distinct local maxima within [lo, hi],
    lag t meaning data[j] ~ sum_k ref[b*j + k + t].

    The data are repeated b times onto the unbinned grid, which makes the correlation
    with the unbinned reference exactly the correlation with the reference binned like
    the data; each peak is refined with a parabola. Maxima closer than 2b + 2 px to a
    higher one are the same registration.
    """
    d = np.repeat(_prepared(data, binning), binning)
    r = _prepared(ref, 1)
    nfft = 1 << int(np.ceil(np.log2(d.size + r.size)))
    cc = np.fft.irfft(np.fft.rfft(r, nfft) * np.conj(np.fft.rfft(d, nfft)), nfft)
    # cc[t] = sum_u d[u] r[u + t] (negative lags wrap around)
    lags = np.arange(int(np.floor(lo)), int(np.ceil(hi)) + 1)
    values = cc[lags % nfft]
    if values.size < 3:
        return []
    k = np.flatnonzero((values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:])) + 1
    k = k[np.argsort(values[k])[::-1]]
    chosen: List[int] = []
    for i in k:
        if all(abs(int(lags[i]) - int(lags[c])) > 2 * binning + 2 for c in chosen):
            chosen.append(int(i))
        if len(chosen) == n_best:
            break
    peaks = []
    for i in chosen:
        a, b_, c = values[i - 1], values[i], values[i + 1]
        den = a - 2 * b_ + c
        peaks.append((float(lags[i] + (0.5 * (a - c) / den if den < 0 else 0.0)), float(b_)))
    return peaks


class ReferenceFailure(WavelengthFailure):
    """The reference path refused; `identified` holds the (column, wavelength) pairs of
    the reference's lines it did find in the lamp at its best registration (maybe too
    few for a solution, but evidence any other solution must agree with)."""

    def __init__(self, reason: str, identified: Tuple[np.ndarray, np.ndarray] = (np.array([]), np.array([]))):
        super().__init__(reason)
        self.identified = identified


@dataclass(frozen=True)
class _Attempt:
    """The identification at one registration: the solution or why not, and how many of
    the lamp's bright lines the registered reference explains."""

    offset: float  # reference x = b*j + (b-1)/2 + offset, unbinned px
    correlation: float
    solution: Optional[WavelengthSolution]
    reason: str
    bright_found: int
    bright_total: int
    n_paired: int
    identified: Tuple[np.ndarray, np.ndarray]  # (column, wavelength) of the reference lines paired

    @property
    def trusted(self) -> bool:
        return (self.solution is not None and self.bright_total > 0
                and self.bright_found >= MIN_BRIGHT_EXPLAINED * self.bright_total)

    def rank(self):
        rms = self.solution.rms_pixels if self.solution is not None else np.inf
        n = self.solution.n_lines if self.solution is not None else self.n_paired
        return (self.trusted, self.solution is not None, self.bright_found, n, -rms)


def _linear_offset(j: np.ndarray, dx: np.ndarray, n: int) -> Tuple[float, float, float]:
    """(o0, o1, jc): the reference offset o0 + o1*(j - jc) fitted (robustly) to per-line offsets dx."""
    jc = float(np.mean(j)) if j.size else (n - 1) / 2.0
    if j.size == 0:
        return 0.0, 0.0, jc
    keep = np.ones(j.size, bool)
    o0, o1 = float(np.median(dx)), 0.0
    for _ in range(3):
        fit_slope = keep.sum() >= 4 and np.ptp(j[keep]) > 0.3 * n
        if fit_slope:
            o1, o0 = (float(v) for v in np.polyfit(j[keep] - jc, dx[keep], 1))
        else:
            o0, o1 = float(np.median(dx[keep])), 0.0
        res = dx - (o0 + o1 * (j - jc))
        scale = max(3.0 * 1.4826 * np.median(np.abs(res[keep])), 1.0)
        new = np.abs(res) <= scale
        if new.sum() < 2 or np.array_equal(new, keep):
            break
        keep = new
    return o0, o1, jc


def _attempt(lines: Lines, ref, ref_lines: np.ndarray, x_gsp: np.ndarray, wl_gsp: np.ndarray, b: int, n: int,
             offset: float, correlation: float, degree: int, settings, elements) -> _Attempt:
    half = (b - 1) / 2.0
    edge = lines.half

    def predict(o0, o1, jc):  # data column of reference pixels x under x = b*j + half + o0 + o1*(j - jc)
        return (x_gsp - half - o0 + o1 * jc) / (b + o1)

    # round 1: the bright lamp lines within correlation_tolerance of the global registration
    tol1 = float(setting(settings, "correlation_tolerance")) / b
    j_pred = predict(offset, 0.0, 0.0)
    inside = np.flatnonzero((j_pred > edge) & (j_pred < n - 1 - edge))
    bright = np.sort(np.argsort(lines.flux)[::-1][:N_FIRST_ROUND])
    oi, ci = _match(lines.centre[bright], j_pred[inside], tol1)
    oi, ci = bright[oi], inside[ci]
    jo = lines.centre[oi]
    o0, o1, jc = _linear_offset(jo, x_gsp[ci] - (b * jo + half), n)
    if oi.size < 2:
        o0, o1, jc = offset, 0.0, 0.0
    # round 2: every lamp line near the corrected prediction
    j_pred = predict(o0, o1, jc)
    inside = np.flatnonzero((j_pred > edge) & (j_pred < n - 1 - edge))
    oi, ci = _match(lines.centre, j_pred[inside], max(1.5, 3.0 / b))
    ci = inside[ci]
    jo = lines.centre[oi]
    if oi.size >= 2:
        o0, o1, jc = _linear_offset(jo, x_gsp[ci] - (b * jo + half), n)
    # the lamp's bright lines on the registered reference's lines
    x_obs = b * lines.centre + half + o0 + o1 * (lines.centre - jc)
    covered = np.flatnonzero((x_obs > 2.0) & (x_obs < ref.flux.size - 3.0))
    top = covered[np.argsort(lines.flux[covered])[::-1][:N_BRIGHT]]
    if ref_lines.size and top.size:
        dist = np.abs(x_obs[top][:, None] - ref_lines[None, :]).min(axis=1)
        found = int(np.sum(dist <= max(2.0, float(b))))
    else:
        found = 0
    solution, reason = None, ""
    try:
        solution = _fit_on_reference(jo, wl_gsp[ci], ref, b, o0 + o1 * (float(np.mean(jo)) - jc) if jo.size else o0,
                                     degree, n, settings, elements, lines.fwhm(oi))
    except WavelengthFailure as exc:
        reason = str(exc)
    return _Attempt(float(o0), correlation, solution, reason, found, int(top.size), int(oi.size), (jo, wl_gsp[ci]))


def solve_with_reference(flux: np.ndarray, header: fits.Header, reference: str, settings=None) -> WavelengthSolution:
    """Register `reference` on the lamp, identify its lines, fit (see the module docstring)."""
    flux = np.asarray(flux, dtype=float)
    n = flux.size
    b = spectral_binning(header)
    ref = lampdata.read_reference(reference)
    elements = lamp_elements(header)
    threshold = float(setting(settings, "line_detection_sigma"))
    lines = detect_lines(flux, b, threshold)
    if lines.centre.size == 0:
        raise WavelengthFailure("reference: no lamp lines detected above the noise")
    # prior offset: ref x = b*j + (b-1)/2 + prior + s; the two trims, or the centres aligned
    # when the reference covers a different width (600Red lamps are 3096 px wide)
    data_start = _first_column_unbinned(header, b)
    ref_start = _first_column_unbinned(ref.header, 1)
    width_gap = ref.flux.size - b * n
    prior = (data_start - ref_start) if width_gap == 0 else width_gap / 2.0
    half_range = float(setting(settings, "reference_search_range")) + abs(width_gap) / 2.0
    # laboratory wavelengths of the reference's lines, at reference pixels
    x_ref = _invert(ref.coefficients, ref.line_wavelengths, -0.5, ref.flux.size - 0.5,
                    what=f"the solution of {ref.filename}")
    good = np.isfinite(x_ref)
    x_gsp, wl_gsp = x_ref[good], ref.line_wavelengths[good]
    ref_lines = _reference_lines(ref.name, threshold)[0][:N_REFERENCE_LINES]
    degree = int(setting(settings, "wavelength_order") or ref.degree)
    peaks = _correlation_peaks(flux, ref.flux, b, prior - half_range, prior + half_range, N_CANDIDATES)
    if not peaks:
        raise ReferenceFailure(f"reference: the lamp does not correlate with {ref.filename} within "
                                f"+-{half_range:.0f} unbinned px (reference_search_range)")
    attempts = []
    for lag, value in peaks:  # highest correlation first; stop at one beyond doubt
        attempts.append(_attempt(lines, ref, ref_lines, x_gsp, wl_gsp, b, n, lag, value, degree, settings, elements))
        if attempts[-1].trusted and attempts[-1].bright_found >= CERTAIN_BRIGHT_EXPLAINED * attempts[-1].bright_total:
            break
    best = max(attempts, key=lambda a: a.rank())
    if best.trusted:
        return best.solution
    tried = (f"best of {len(attempts)} registrations tried within +-{half_range:.0f} unbinned px "
             f"(reference_search_range)")
    if best.solution is not None:
        raise ReferenceFailure(
            f"reference: registered on {ref.filename} at {best.offset - prior:+.0f} unbinned px, only "
            f"{best.bright_found} of the lamp's {best.bright_total} brightest lines are lines of the reference "
            f"(a trustworthy registration explains at least {MIN_BRIGHT_EXPLAINED:.0%}; {tried}): the lamp is "
            f"not what the header says, or not this setup")  # its pairs are not evidence then
    reason = best.reason or f"reference: no lines of {ref.filename} found in the lamp"
    # its pairs are evidence only where the registration explains the bright lines
    registered = best.bright_total > 0 and best.bright_found >= MIN_BRIGHT_EXPLAINED * best.bright_total
    raise ReferenceFailure(f"{reason} ({tried})", best.identified if registered else (np.array([]), np.array([])))


def _fit_on_reference(j, wl, ref, b, offset, degree, n, settings, elements, fwhm=None) -> WavelengthSolution:
    """The reference's own solution, moved to the fitted shift, plus a fitted correction.

    Why not a free fit: the shipped lamps often have their lines in part of the detector
    only (7 lines in the red half for 1200M5 Ar), and a free cubic through them
    extrapolates to the other half with errors of a pixel. The reference solution holds
    the shape there; the lines fit the shift and a correction of degree 1, or of the
    full degree when they are many (4 per coefficient) and span 85 % of the detector
    (then it is a free fit).
    """
    clip = float(setting(settings, "wavelength_clip_sigma"))
    der = chebyshev.chebder(ref.coefficients)
    half = (b - 1) / 2.0

    def moved(jj, o):
        return chebyshev.chebval(b * np.asarray(jj, dtype=float) + half + o, ref.coefficients)

    if j.size == 0:
        raise WavelengthFailure(f"reference: no lines of {ref.filename} found in the lamp")
    keep = np.ones(j.size, dtype=bool)
    for _ in range(4):  # the shift, from the lines' residuals converted to unbinned px
        dx = (wl - moved(j, offset)) / chebyshev.chebval(b * j + half + offset, der)
        offset += float(np.median(dx[keep]))
    span = (j.max() - j.min()) / max(n - 1, 1)
    full = j.size >= 4 * (degree + 1) and span >= 0.85
    m = degree if full else min(1, degree)
    target = wl - moved(j, offset)
    disp = b * chebyshev.chebval(b * j + half + offset, der)
    fit, keep = _fit_clipped(j, target, m, n, clip, dispersion=disp)
    if fit is None:
        raise WavelengthFailure(f"reference: only {j.size} lines of {ref.filename} identified in the lamp")
    grid = np.linspace(0.0, n - 1.0, 4 * (degree + 1))
    total = chebyshev.Chebyshev.fit(grid, moved(grid, offset) + fit(grid), degree, domain=[0.0, n - 1.0])
    return _finish(j, wl, degree, n, settings, "reference", ref.filename, elements, shift=float(offset),
                   fitted=total, keep=keep, fwhm=fwhm, free=m + 1)
