"""The wavelength solution: its model, the clipped fit that makes it, its quality limits,
its FITS cards, its inverse and the resampling onto a linear grid.

Coordinates: ``j`` is the 0-based column of the 1-D spectrum, in binned pixels; pixel
``j`` spans ``[j-0.5, j+0.5]``. Wavelengths are in angstrom, air. The stored
coefficients evaluate with plain ``numpy.polynomial.chebyshev.chebval(j, coefficients)``
(no domain mapping), as goodman-pipeline's GSP_C### do with astropy's ``Chebyshev1D``
default domain; the fit itself is done in a scaled variable and converted, which is
exact up to rounding.

A solution is accepted only if it is monotonic over the spectrum's pixel edges and
`EDGE_MARGIN_PX` beyond them, so that its inverse, the linear resampling and a flexure
shift of up to that many pixels are always defined.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from numpy.polynomial import chebyshev

from .lines import MAD_TO_SIGMA
from .wavesettings import setting

#: Columns beyond each end of the spectrum over which an accepted solution must stay
#: monotonic: a flexure shift (at most `flexure.MAX_SHIFT_PX`, 4 px) moves this much of
#: the extrapolation into the spectrum.
EDGE_MARGIN_PX = 4.5


class WavelengthFailure(ValueError):
    """No acceptable solution; str(exc) is the reason shown to the observer."""


@dataclass(frozen=True)
class WavelengthSolution:
    """lambda(j) = chebval(j, coefficients), j = 0-based binned column of the spectrum."""

    coefficients: tuple
    degree: int
    n_pixels: int
    rms_angstrom: float
    rms_pixels: float
    n_lines: int
    lines: tuple  # ((j, wavelength, residual), ...) in the final fit
    rejected: int
    method: str  # 'reference' | 'grating-equation'
    reference: Optional[str]
    elements: tuple
    shift: Optional[float] = None  # registration against the reference, unbinned px
    rms_limit: Optional[float] = None  # the RMS limit (binned px) this solution passed
    note: Optional[str] = None  # e.g. why the reference lamp was not used

    def wavelength(self, j):
        return chebyshev.chebval(np.asarray(j, dtype=float), self.coefficients)

    def dispersion(self, j):
        """Angstrom per binned pixel at `j`."""
        return chebyshev.chebval(np.asarray(j, dtype=float), chebyshev.chebder(self.coefficients))

    def pixel(self, wavelengths):
        """The column j of each wavelength, NaN outside the spectrum (either dispersion direction).

        Raises WavelengthFailure when the solution is not monotonic over the spectrum
        (an accepted solution always is; one moved by a flexure shift may not be).
        """
        sign = 1.0 if self.wavelength(self.n_pixels - 1) > self.wavelength(0) else -1.0
        return _invert(np.asarray(self.coefficients) * sign, sign * np.asarray(wavelengths, dtype=float),
                       0.0, self.n_pixels - 1.0)

    def to_header_cards(self) -> List[Tuple[str, object, str]]:
        """(key, value, comment) cards: goodman-pipeline's solution keywords plus our quality ones.

        GSP_FUNC/ORDR/NPIX/C### as goodman's wcs.write_gsp_wcs, GSP_WRMS/WPOI/WREJ as its
        wavelength.py, GSP_P###/GSP_A### as its reference lamps (numbered from 001);
        GSP_WPRM, GSP_WMTH and GSP_WREF are ours.
        """
        cards: List[Tuple[str, object, str]] = [
            ("GSP_FUNC", "Chebyshev1D", "Wavelength solution model"),
            ("GSP_ORDR", int(self.degree), "Mathematical model order"),
            ("GSP_NPIX", int(self.n_pixels), "Number of Pixels"),
        ]
        cards += [(f"GSP_C{i:03d}", float(c), f"Value of parameter c{i:d}") for i, c in enumerate(self.coefficients)]
        cards += [
            ("GSP_WRMS", round(float(self.rms_angstrom), 5), "Wavelength solution RMS Error"),
            ("GSP_WPRM", round(float(self.rms_pixels), 5), "Wavelength solution RMS [binned px]"),
            ("GSP_WPOI", int(self.n_lines), "Lines used in the wavelength solution"),
            ("GSP_WREJ", int(self.rejected), "Number of points rejected"),
            ("GSP_WMTH", self.method, "Wavelength solution method"),
            ("GSP_WREF", self.reference or "none", "Reference lamp used"),
        ]
        for i, (j, wl, _) in enumerate(self.lines, start=1):
            cards.append((f"GSP_P{i:03d}", round(float(j), 4), "Line location in pixel value"))
            cards.append((f"GSP_A{i:03d}", round(float(wl), 4), "Line location in angstrom value"))
        return cards

    def as_dict(self) -> Dict:
        return {
            "model": "Chebyshev1D", "degree": int(self.degree), "coefficients": [float(c) for c in self.coefficients],
            "n_pixels": int(self.n_pixels), "rms_angstrom": float(self.rms_angstrom),
            "rms_pixels": float(self.rms_pixels), "n_lines": int(self.n_lines), "rejected": int(self.rejected),
            "method": self.method, "reference": self.reference, "elements": list(self.elements),
            "shift": None if self.shift is None else float(self.shift),
            "rms_limit": None if self.rms_limit is None else float(self.rms_limit),
            "note": self.note,
            "lines": [[float(j), float(w), float(r)] for j, w, r in self.lines],
            "wavelength_range": [float(self.wavelength(0)), float(self.wavelength(self.n_pixels - 1))],
        }


# ---------------------------------------------------------------------------- fitting


def _to_plain(fit: chebyshev.Chebyshev) -> Tuple[float, ...]:
    """Coefficients that evaluate with plain chebval(j): the fit's domain mapping folded in."""
    return tuple(float(c) for c in fit.convert(domain=[-1.0, 1.0], window=[-1.0, 1.0]).coef)


def _fit_clipped(j: np.ndarray, wl: np.ndarray, degree: int, n_pixels: int, clip: float,
                 floor_px: float = 0.03, dispersion: Optional[np.ndarray] = None):
    """Chebyshev fit with iterative clipping: (fit, kept mask).

    The scale of the residuals is their MAD in pixels (`dispersion` per line, else the
    fit's own derivative), floored at `floor_px` so that a very clean lamp does not
    reject good lines for residuals of a thousandth of a pixel; lines are judged by
    their distance from the median residual (one outlier shifts the whole fit), and a
    clipping that would leave too few lines for the degree is not applied.
    """
    keep = np.ones(j.size, dtype=bool)
    domain = [0.0, float(max(n_pixels - 1, 1))]
    fit = None
    for _ in range(12):
        if keep.sum() <= degree + 1:
            break
        fit = chebyshev.Chebyshev.fit(j[keep], wl[keep], degree, domain=domain)
        resid = wl - fit(j)
        disp = np.abs(fit.deriv()(j)) if dispersion is None else np.abs(dispersion)
        rpx = resid / np.where(disp > 0, disp, 1.0)
        centre = np.median(rpx[keep])  # an outlier pulls the fit: judge the lines from their median
        scale = max(MAD_TO_SIGMA * np.median(np.abs(rpx[keep] - centre)), floor_px)
        new = np.abs(rpx - centre) <= clip * scale
        if np.array_equal(new, keep) or new.sum() <= degree + 1:
            break
        keep = new
    return fit, keep


def rms_limit(settings, fwhm: Optional[float]) -> Tuple[float, str]:
    """The RMS limit (binned px) for lines of median FWHM `fwhm` (binned px), and how it was set.

    ``max(wavelength_max_rms_pixels, wavelength_max_rms_fwhm_fraction * fwhm)``: a line's
    centre is measured to a fraction of its width, so the limit follows the binning and
    the slit (1x1 Fe arcs with 2.7-3 px FWHM fit to 0.2-0.3 px; 2x2 lamps of 1.4 px to
    0.1 px), and it is never below the configured floor.
    """
    floor = float(setting(settings, "wavelength_max_rms_pixels"))
    fraction = float(setting(settings, "wavelength_max_rms_fwhm_fraction"))
    if fwhm is None or not np.isfinite(fwhm) or fraction <= 0 or fraction * fwhm <= floor:
        return floor, f"wavelength_max_rms_pixels={floor:g}"
    return fraction * fwhm, (f"{fraction:g} of the lines' {fwhm:.2f} px FWHM, wavelength_max_rms_fwhm_fraction; "
                             f"floor wavelength_max_rms_pixels={floor:g}")


def monotonic_turn(coefficients, lo: float, hi: float) -> Optional[float]:
    """None when chebval(x, coefficients) is strictly monotonic on [lo, hi], else the x
    (to a pixel) where the dispersion first changes sign or vanishes."""
    c = np.asarray(coefficients, dtype=float)
    if not np.all(np.isfinite(c)):
        return float(lo)
    grid = np.linspace(lo, hi, max(int(np.ceil(hi - lo)) * 2 + 1, 3))
    d = chebyshev.chebval(grid, chebyshev.chebder(c))
    sign = np.sign(d[np.argmax(np.abs(d))])
    bad = np.flatnonzero(~(d * sign > 0))
    return None if bad.size == 0 else float(grid[bad[0]])


def _finish(j, wl, degree, n_pixels, settings, method, reference, elements, shift=None,
            fitted=None, keep=None, fwhm=None, free=None) -> WavelengthSolution:
    """Fit, clip, check quality, and build the solution, or raise WavelengthFailure.

    Quality: enough lines survive clipping, the solution is monotonic over the spectrum
    and `EDGE_MARGIN_PX` beyond, and the scatter of the lines about it (binned px) is
    within `rms_limit` for lines of `fwhm` (binned px). The scatter is the RMS corrected
    for the `free` parameters the lines fitted (degree + 1 by default), sqrt(n / (n -
    free)) times it: six lines through a free cubic leave an RMS that understates the
    lines' real scatter by a factor 1.7, and such a solution is off by more than its
    RMS says where no line holds it; with seventy lines the factor is 1.03.
    """
    min_lines = int(setting(settings, "wavelength_min_lines"))
    clip = float(setting(settings, "wavelength_clip_sigma"))
    j = np.asarray(j, dtype=float)
    wl = np.asarray(wl, dtype=float)
    needed = max(min_lines, degree + 2)
    if j.size < needed:
        raise WavelengthFailure(f"{method}: only {j.size} lamp lines identified, at least {needed} needed "
                                f"for a degree-{degree} solution")
    if fitted is None:
        fit, keep = _fit_clipped(j, wl, degree, n_pixels, clip)
    else:
        fit = fitted
    if fit is None or keep.sum() < needed:
        raise WavelengthFailure(f"{method}: only {int(keep.sum())} of {j.size} identified lines survive "
                                f"clipping, at least {needed} needed")
    coeffs = _to_plain(fit)
    turn = monotonic_turn(coeffs, -0.5 - EDGE_MARGIN_PX, n_pixels - 0.5 + EDGE_MARGIN_PX)
    if turn is not None:
        raise WavelengthFailure(f"{method}: the fitted solution is not monotonic over the {n_pixels} pixels "
                                f"(its dispersion changes sign near column {turn:.0f})")
    resid = wl - chebyshev.chebval(j, coeffs)
    dj = chebyshev.chebval(j, chebyshev.chebder(coeffs))
    rms_a = float(np.sqrt(np.mean(resid[keep] ** 2)))
    rms_p = float(np.sqrt(np.mean((resid[keep] / dj[keep]) ** 2)))
    limit, why = rms_limit(settings, fwhm)
    used = int(keep.sum())
    free = degree + 1 if free is None else int(free)
    scatter = rms_p * np.sqrt(used / (used - free)) if used > free else np.inf
    if not scatter <= limit:
        corrected = f", {scatter:.3f} px for {used - free} degrees of freedom" if used - free < 20 else ""
        raise WavelengthFailure(f"{method}: RMS {rms_p:.3f} px ({rms_a:.3f} A) over {used} lines{corrected} "
                                f"is above the limit of {limit:.3f} px ({why})")
    order = np.argsort(j[keep])
    lines = tuple((float(a), float(b), float(c)) for a, b, c in
                  zip(j[keep][order], wl[keep][order], resid[keep][order]))
    return WavelengthSolution(
        coefficients=coeffs, degree=int(degree), n_pixels=int(n_pixels), rms_angstrom=rms_a, rms_pixels=rms_p,
        n_lines=int(keep.sum()), lines=lines, rejected=int((~keep).sum()),
        method=method, reference=reference, elements=tuple(elements), shift=shift, rms_limit=float(limit))


def _match(observed_j: np.ndarray, predicted_j: np.ndarray, tolerance: float) -> Tuple[np.ndarray, np.ndarray]:
    """Mutually nearest pairs (observed index, predicted index) closer than `tolerance` px.

    Mutual nearness keeps a line from being paired twice, and an observed blend of two
    catalogue lines from being given either (both are then rejected as ambiguous when
    they are within the tolerance of each other).
    """
    if observed_j.size == 0 or predicted_j.size == 0:
        return np.array([], int), np.array([], int)
    order = np.argsort(predicted_j)
    ps = predicted_j[order]
    pos = np.clip(np.searchsorted(ps, observed_j), 1, ps.size - 1) if ps.size > 1 else np.zeros(observed_j.size, int)
    if ps.size > 1:
        left, right = ps[pos - 1], ps[pos]
        near_p = np.where(np.abs(observed_j - left) <= np.abs(observed_j - right), pos - 1, pos)
    else:
        near_p = pos
    dist = np.abs(observed_j - ps[near_p])
    oo = np.argsort(observed_j)
    os_ = observed_j[oo]
    pos2 = np.clip(np.searchsorted(os_, ps), 1, max(os_.size - 1, 1)) if os_.size > 1 else np.zeros(ps.size, int)
    if os_.size > 1:
        l2, r2 = os_[pos2 - 1], os_[pos2]
        near_o = oo[np.where(np.abs(ps - l2) <= np.abs(ps - r2), pos2 - 1, pos2)]
    else:
        near_o = np.zeros(ps.size, int)
    obs_idx = np.arange(observed_j.size)
    mutual = (near_o[near_p] == obs_idx) & (dist <= tolerance)
    # ambiguous: two catalogue lines closer than 1.5 px (or the tolerance) blend
    gaps = np.diff(ps)
    crowded = np.zeros(ps.size, bool)
    if gaps.size:
        tight = gaps < min(tolerance, 1.5)
        crowded[:-1] |= tight
        crowded[1:] |= tight
    mutual &= ~crowded[near_p]
    return obs_idx[mutual], order[near_p[mutual]]


# ---------------------------------------------------------------------------- inverse and resampling


def _invert(coefficients: Sequence[float], wavelengths, lo: float, hi: float, outside: str = "nan",
            what: str = "the wavelength solution") -> np.ndarray:
    """x in [lo, hi] with chebval(x, coefficients) = wavelength, for a function increasing on [lo, hi].

    A table on a pixel grid, then Newton. Wavelengths beyond the function's range over
    [lo, hi] give NaN (``outside='nan'``) or the nearer end (``outside='clip'``). Raises
    WavelengthFailure, saying where, when the function is not increasing on [lo, hi]:
    the inverse is then not defined, and a NaN would only travel on to a crash.
    """
    c = np.asarray(coefficients, dtype=float)
    wl = np.asarray(wavelengths, dtype=float)
    if not np.all(np.isfinite(c)):
        raise WavelengthFailure(f"{what} has non-finite coefficients")
    grid = np.linspace(lo, hi, max(int(np.ceil(hi - lo)) + 1, 2))
    lam = chebyshev.chebval(grid, c)
    if not np.all(np.diff(lam) > 0):
        k = int(np.flatnonzero(~(np.diff(lam) > 0))[0])
        raise WavelengthFailure(f"{what} is not monotonic over columns {lo:g} to {hi:g}: its dispersion changes "
                                f"sign near column {grid[k]:.0f}")
    x = np.interp(wl, lam, grid)
    der = chebyshev.chebder(c)
    for _ in range(3):
        x = np.clip(x - (chebyshev.chebval(x, c) - wl) / chebyshev.chebval(x, der), lo, hi)
    if outside == "clip":
        return np.where(wl <= lam[0], lo, np.where(wl >= lam[-1], hi, x))
    return np.where((wl >= lam[0]) & (wl <= lam[-1]), x, np.nan)


def linearize(flux: np.ndarray, variance: Optional[np.ndarray], solution: WavelengthSolution):
    """Resample onto a linear wavelength grid: (flux_lin, var_lin, crval1, cdelt1).

    The grid has the spectrum's number of pixels, from lambda(0) to lambda(n-1): pixel k
    is centred at ``crval1 + k*cdelt1`` (FITS CRPIX1 = 1). Flux is conserved: the
    cumulative flux, linear within each input pixel (flux spread evenly over the pixel),
    is interpolated at the output pixel edges and differenced, so every output pixel
    holds the flux that falls in its wavelength range (a spectrum flat per angstrom
    stays flat; the total is unchanged up to the half pixels at both ends). The variance
    is propagated with the squared overlap fractions (output covariances are ignored).

    Needs the solution monotonic over the input pixel edges [-0.5, n-0.5] only (output
    edges beyond them fall on the ends); raises WavelengthFailure when it is not (a lamp
    solution moved by a flexure shift past its turning point) or has no finite value.
    """
    f = np.asarray(flux, dtype=float)
    n = f.size
    if n != solution.n_pixels:
        raise ValueError(f"flux has {n} pixels, the solution {solution.n_pixels}")
    lam_lo, lam_hi = float(solution.wavelength(0)), float(solution.wavelength(n - 1))
    if not (np.isfinite(lam_lo) and np.isfinite(lam_hi)) or lam_hi == lam_lo:
        raise WavelengthFailure(f"the wavelength solution gives {lam_lo} to {lam_hi} A over the spectrum")
    sign = 1.0 if lam_hi > lam_lo else -1.0
    cdelt = (lam_hi - lam_lo) / (n - 1)
    out_edges = lam_lo + (np.arange(n + 1) - 0.5) * cdelt
    # output edges in input pixel coordinates (pixel i spans [i-0.5, i+0.5])
    p = _invert(np.asarray(solution.coefficients) * sign, sign * out_edges, -0.5, n - 0.5, outside="clip")
    cum = np.concatenate([[0.0], np.cumsum(f)])
    edges_in = np.arange(n + 1) - 0.5
    cum_out = np.interp(p, edges_in, cum)
    flux_lin = np.diff(cum_out)
    var_lin = None
    if variance is not None:
        v = np.asarray(variance, dtype=float)
        var_lin = np.zeros(n)
        lo, hi = p[:-1], p[1:]
        first = np.floor(lo + 0.5).astype(int)
        span = int(np.ceil(np.max(hi - lo))) + 2
        for m in range(span):
            i = first + m
            valid = (i >= 0) & (i < n)
            ii = np.clip(i, 0, n - 1)
            overlap = np.clip(np.minimum(hi, ii + 0.5) - np.maximum(lo, ii - 0.5), 0.0, None)
            var_lin += np.where(valid, overlap ** 2 * v[ii], 0.0)
    return flux_lin, var_lin, lam_lo, cdelt
