"""Wavelength calibration of a 1-D comparison-lamp spectrum: pixels of the reduced frame → angstrom.

Two ways to a first guess, one way to the answer:

* **reference** – a goodman-pipeline reference lamp of the same configuration (grating,
  grating and camera targets, lamp elements) is registered on the observed lamp with a
  sub-pixel cross-correlation, in the data's own binning geometry: binned pixel ``j``
  covers unbinned pixels ``b*j .. b*j+b-1``, so its centre is ``b*j + (b-1)/2`` (goodman
  uses ``b*j``, half an unbinned pixel off for 2x2, and moves its solution by whole
  pixels only). The reference's identified lines (GSP_A) then tell which laboratory
  wavelength each observed line is.
* **grating-equation** – for every other configuration the dispersion is predicted from
  ``m*lambda = d*(sin(alpha) + sin(beta))`` with the header's angles and the constants
  below, refined by a search over scale and offset against the NIST lines of the lamp's
  elements, then matched line by line.

Either way the answer is a Chebyshev fit of laboratory wavelengths against *measured*
line centres (pixel-integrated Gaussians fitted to each line), with iterative clipping,
and it is refused (`WavelengthFailure`, with the reason for the observer) when too few
lines are identified, the RMS is too large, the registration is at the edge of the
allowed range, or the solution is not monotonic.

Coordinates: ``j`` is the 0-based column of the 1-D spectrum, i.e. a column of the
reduced (trimmed) frame, in binned pixels; pixel ``j`` spans ``[j-0.5, j+0.5]``.
Wavelengths are in angstrom, air. The stored coefficients evaluate with plain
``numpy.polynomial.chebyshev.chebval(j, coefficients)`` (no domain mapping), as
goodman-pipeline's GSP_C### do with astropy's ``Chebyshev1D`` default domain; the fit
itself is done in a scaled variable and converted, which is exact up to rounding.

Nothing here imports goodman-pipeline; its data files are read by `lampdata`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from astropy.io import fits
from numpy.polynomial import chebyshev
from scipy import ndimage, signal
from scipy.special import ndtr

from . import lampdata

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

#: Lamp keywords → the elements whose lines the lamp shows. The Fe and Cu hollow
#: cathodes are FeHeAr and CuHeAr lamps: their fill gas lines dominate many modes.
LAMP_KEYWORDS = {
    "LAMP_HGA": ("Hg", "Ar"),
    "LAMP_NE": ("Ne",),
    "LAMP_AR": ("Ar",),
    "LAMP_FE": ("Fe", "He", "Ar"),
    "LAMP_CU": ("Cu", "He", "Ar"),
}
ELEMENT_ORDER = ("Hg", "Cu", "Fe", "He", "Ar", "Ne")
_ELEMENT_RE = re.compile(r"(Hg|Ar|Ne|Fe|Cu|He|Xe|Kr|Th)")
#: Elements implied by a hollow cathode named alone in OBJECT ('Fe' is the FeHeAr lamp).
_CATHODE_GAS = {"Fe": ("He", "Ar"), "Cu": ("He", "Ar"), "Hg": ("Ar",)}

DEFAULTS = {
    "correlation_tolerance": 15.0,  # unbinned px (goodman's --cross-corr-tolerance default)
    "wavelength_use_reference": True,
    "wavelength_order": None,  # None: the reference's GSP_ORDR, or 3 from the grating equation
    "wavelength_min_lines": 6,
    "wavelength_max_rms_pixels": 0.15,  # binned px of the spectrum
    "wavelength_clip_sigma": 3.0,
    "line_detection_sigma": 5.0,
    "reference_angle_tolerance": 0.1,  # degrees, on GRT_TARG and CAM_TARG
}
#: Relative scale and offset (fraction of the detector) searched around the
#: grating-equation prediction.
SCALE_RANGE = 0.05
OFFSET_RANGE = 0.06
#: MAD → standard deviation.
MAD_TO_SIGMA = 1.4826


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

    def wavelength(self, j):
        return chebyshev.chebval(np.asarray(j, dtype=float), self.coefficients)

    def dispersion(self, j):
        """Angstrom per binned pixel at `j`."""
        return chebyshev.chebval(np.asarray(j, dtype=float), chebyshev.chebder(self.coefficients))

    def pixel(self, wavelengths):
        """The column j of each wavelength, NaN outside the spectrum (either dispersion direction)."""
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
            "lines": [[float(j), float(w), float(r)] for j, w, r in self.lines],
            "wavelength_range": [float(self.wavelength(0)), float(self.wavelength(self.n_pixels - 1))],
        }


# ---------------------------------------------------------------------------- header


def _setting(settings, name: str):
    return getattr(settings, name, DEFAULTS[name]) if settings is not None else DEFAULTS[name]


def lines_per_mm(grating) -> Optional[int]:
    """'SYZY_400' → 400, '930_Hz' → 930, '1200_RALC_BLUE' → 1200; None when there is no number."""
    m = re.findall(r"(?<!\d)(\d{3,4})(?!\d)", str(grating or ""))
    return int(m[0]) if m else None


def spectral_binning(header: fits.Header) -> int:
    """The dispersion-axis (serial) binning: the first number of CCDSUM ('1 2' → 1)."""
    try:
        return int(str(header.get("CCDSUM", "1 1")).split()[0])
    except (ValueError, IndexError) as exc:
        raise WavelengthFailure(f"cannot read the binning from CCDSUM={header.get('CCDSUM')!r}") from exc


def _true(value) -> bool:
    return str(value).strip().upper() in ("TRUE", "T", "ON", "1") or value is True


def lamp_elements(header: fits.Header) -> Tuple[str, ...]:
    """Elements whose lines the lamp shows, from LAMP_* = TRUE, else from OBJECT ('HgArNe', 'Fe')."""
    found = set()
    for key, elements in LAMP_KEYWORDS.items():
        if _true(header.get(key, False)):
            found.update(elements)
    if not found:
        named = _ELEMENT_RE.findall(str(header.get("OBJECT", "")))
        found.update(named)
        if len(set(named)) == 1:
            found.update(_CATHODE_GAS.get(named[0], ()))
    return tuple(sorted(found, key=lambda e: ELEMENT_ORDER.index(e) if e in ELEMENT_ORDER else 99))


def _first_column_unbinned(header: fits.Header, binning: int) -> float:
    """Unbinned detector column (0-based, of the raw frame) where reduced column 0 starts.

    From GSP_TRIM (plus GSP_SLIT columns if any), else goodman's spectroscopic trim rule
    (first column ceil(51/b), 1-based). Used only to line up data and reference; the
    cross-correlation absorbs what it gets wrong within the tolerance.
    """
    start = None
    trim = header.get("GSP_TRIM")
    m = re.match(r"\[\s*(\d+)\s*:", str(trim or ""))
    if m:
        start = int(m.group(1)) - 1
    else:
        start = int(np.ceil(51.0 / binning)) - 1
    m = re.match(r"\[\s*(\d+)\s*:", str(header.get("GSP_SLIT") or ""))
    if m and trim:
        start += int(m.group(1)) - 1
    return float(start * binning)


# ---------------------------------------------------------------------------- lines in a spectrum


def _continuum(flux: np.ndarray, width: int) -> np.ndarray:
    """A smooth lower envelope (running minimum, then running mean), below every line."""
    floor = ndimage.minimum_filter1d(flux, size=width, mode="nearest")
    return ndimage.uniform_filter1d(floor, size=width, mode="nearest")


def noise_sigma(resid: np.ndarray) -> float:
    """Pixel noise from the MAD of first differences: blind to lines and continuum slopes."""
    d = np.diff(resid)
    sigma = MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0)
    return float(sigma) if sigma > 0 else float(np.std(d) / np.sqrt(2.0) or 1.0)


def fit_lines(y: np.ndarray, guesses: np.ndarray, half: int, sigma0: float = 1.0, n_iter: int = 12):
    """Pixel-integrated Gaussian + constant fitted to each line (vectorised Gauss-Newton).

    Why integrated: binned lamp lines are 1-2 px wide, and the samples are integrals over
    each pixel, not values at its centre; a model that integrates is unbiased at any
    sub-pixel phase, where a parabola or a moment is off by a few hundredths of a pixel.
    Returns (centre, sigma, flux, ok) arrays.
    """
    n = y.size
    g = np.asarray(guesses, dtype=float)
    k0 = np.clip(np.round(g).astype(int), half, n - 1 - half)
    offs = np.arange(-half, half + 1)
    idx = k0[:, None] + offs[None, :]
    Y = y[idx]
    kk = idx.astype(float)
    back = np.minimum(Y[:, 0], Y[:, -1])
    amp = np.clip((Y - back[:, None]).sum(axis=1), 1e-12, None)
    w = np.clip(Y - back[:, None], 0, None)
    mu = np.where(w.sum(1) > 0, (w * kk).sum(1) / np.maximum(w.sum(1), 1e-30), g)
    sig = np.full(g.size, float(sigma0))
    p = np.stack([amp, mu, sig, back], axis=1)
    lam = np.full(g.size, 1e-3)
    sq2pi = np.sqrt(2.0 * np.pi)

    def model_jac(p):
        A, m, s, B = (p[:, i:i + 1] for i in range(4))
        u1 = (kk + 0.5 - m) / s
        u0 = (kk - 0.5 - m) / s
        f1 = np.exp(-0.5 * u1 * u1) / sq2pi
        f0 = np.exp(-0.5 * u0 * u0) / sq2pi
        prof = ndtr(u1) - ndtr(u0)
        M = B + A * prof
        J = np.stack([prof, A * (f0 - f1) / s, A * (f0 * u0 - f1 * u1) / s, np.ones_like(prof)], axis=2)
        return M, J

    M, J = model_jac(p)
    chi = ((Y - M) ** 2).sum(1)
    for _ in range(n_iter):
        r = Y - M
        JTJ = np.einsum("nki,nkj->nij", J, J)
        JTr = np.einsum("nki,nk->ni", J, r)
        diag = np.einsum("nii->ni", JTJ)
        H = JTJ + (lam[:, None] * (diag + 1e-12))[:, :, None] * np.eye(4)[None]
        try:
            step = np.linalg.solve(H, JTr[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        trial = p + step
        trial[:, 2] = np.clip(trial[:, 2], 0.25, 3.0 * half)
        Mt, Jt = model_jac(trial)
        chit = ((Y - Mt) ** 2).sum(1)
        better = chit < chi
        p = np.where(better[:, None], trial, p)
        M = np.where(better[:, None], Mt, M)
        J = np.where(better[:, None, None], Jt, J)
        chi = np.where(better, chit, chi)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    centre, sigma, flux = p[:, 1], p[:, 2], p[:, 0]
    ok = (flux > 0) & (np.abs(centre - g) < half) & (sigma > 0.25) & (sigma < 2.5 * half) & np.isfinite(centre)
    return centre, sigma, flux, ok


@dataclass(frozen=True)
class _Lines:
    """Lines detected in a spectrum: fitted centres, widths, fluxes, peak heights."""

    centre: np.ndarray
    sigma: np.ndarray
    flux: np.ndarray
    height: np.ndarray
    noise: float
    half: int


def residual_spectrum(flux: np.ndarray, binning: int) -> np.ndarray:
    width = max(15, int(round(61 / binning)) | 1)
    return flux - _continuum(flux, width)


def detect_lines(flux: np.ndarray, binning: int, threshold: float) -> _Lines:
    """Emission lines above `threshold` x noise, with sub-pixel centres."""
    resid = residual_spectrum(flux, binning)
    noise = noise_sigma(resid)
    peaks, props = signal.find_peaks(resid, height=threshold * noise, prominence=threshold * noise)
    empty = np.array([])
    if peaks.size == 0:
        return _Lines(empty, empty, empty, empty, noise, 3)
    # width of the instrumental profile from the brightest lines sets the fit window
    top = peaks[np.argsort(props["peak_heights"])[::-1][:15]]
    _, s0, _, ok0 = fit_lines(resid, top.astype(float), 4, 2.0 / binning)
    sigma = float(np.median(s0[ok0])) if ok0.any() else 2.0 / binning
    half = int(np.clip(np.ceil(2.5 * sigma), 2, 8))
    keep = (peaks >= half) & (peaks < resid.size - half)
    peaks = peaks[keep]
    heights = props["peak_heights"][keep]
    centre, sig, fl, ok = fit_lines(resid, peaks.astype(float), half, sigma)
    ok &= (sig < 3.0 * sigma) & (sig > 0.3 * sigma)
    return _Lines(centre[ok], sig[ok], fl[ok], heights[ok], noise, half)


# ---------------------------------------------------------------------------- fitting


def _to_plain(fit: chebyshev.Chebyshev) -> Tuple[float, ...]:
    """Coefficients that evaluate with plain chebval(j): the fit's domain mapping folded in."""
    return tuple(float(c) for c in fit.convert(domain=[-1.0, 1.0], window=[-1.0, 1.0]).coef)


def _fit_clipped(j: np.ndarray, wl: np.ndarray, degree: int, n_pixels: int, clip: float,
                 floor_px: float = 0.03, dispersion: Optional[np.ndarray] = None):
    """Chebyshev fit with iterative clipping: (fit, kept mask).

    The scale of the residuals is their MAD in pixels (`dispersion` per line, else the
    fit's own derivative), floored at `floor_px` so that a very clean lamp does not
    reject good lines for residuals of a thousandth of a pixel.
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
        scale = max(MAD_TO_SIGMA * np.median(np.abs(rpx[keep] - np.median(rpx[keep]))), floor_px)
        new = np.abs(rpx) <= clip * scale
        if np.array_equal(new, keep):
            break
        keep = new
    return fit, keep


def _finish(j, wl, degree, n_pixels, settings, method, reference, elements, shift=None,
            fitted=None, keep=None) -> WavelengthSolution:
    """Fit, clip, check quality, and build the solution, or raise WavelengthFailure."""
    min_lines = int(_setting(settings, "wavelength_min_lines"))
    max_rms = float(_setting(settings, "wavelength_max_rms_pixels"))
    clip = float(_setting(settings, "wavelength_clip_sigma"))
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
    grid = np.arange(n_pixels, dtype=float)
    disp = chebyshev.chebval(grid, chebyshev.chebder(coeffs))
    if not (np.all(disp > 0) or np.all(disp < 0)):
        raise WavelengthFailure(f"{method}: the fitted solution is not monotonic over the {n_pixels} pixels")
    resid = wl - chebyshev.chebval(j, coeffs)
    dj = chebyshev.chebval(j, chebyshev.chebder(coeffs))
    rms_a = float(np.sqrt(np.mean(resid[keep] ** 2)))
    rms_p = float(np.sqrt(np.mean((resid[keep] / dj[keep]) ** 2)))
    if rms_p > max_rms:
        raise WavelengthFailure(f"{method}: RMS {rms_p:.3f} px ({rms_a:.3f} A) over {int(keep.sum())} lines "
                                f"is above the limit of {max_rms} px")
    order = np.argsort(j[keep])
    lines = tuple((float(a), float(b), float(c)) for a, b, c in
                  zip(j[keep][order], wl[keep][order], resid[keep][order]))
    return WavelengthSolution(
        coefficients=coeffs, degree=int(degree), n_pixels=int(n_pixels), rms_angstrom=rms_a, rms_pixels=rms_p,
        n_lines=int(keep.sum()), lines=lines, rejected=int((~keep).sum()),
        method=method, reference=reference, elements=tuple(elements), shift=shift)


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


# ---------------------------------------------------------------------------- reference path


@dataclass(frozen=True)
class _Config:
    grating: Optional[int]
    grt_targ: Optional[float]
    cam_targ: Optional[float]
    filter2: str
    elements: Tuple[str, ...]
    camera: str


def _float(header, key) -> Optional[float]:
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return None


def _config(header: fits.Header) -> _Config:
    grt = _float(header, "GRT_TARG")
    cam = _float(header, "CAM_TARG")
    return _Config(
        grating=lines_per_mm(header.get("GRATING")),
        grt_targ=grt if grt is not None else _float(header, "GRT_ANG"),
        cam_targ=cam if cam is not None else _float(header, "CAM_ANG"),
        filter2=str(header.get("FILTER2", "")).strip().upper(),
        elements=lamp_elements(header),
        camera=str(header.get("INSTCONF", "")).strip().upper(),
    )


def _norm(text) -> str:
    return re.sub(r"[^A-Z0-9]", "", str(text or "").upper())


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
    tol = float(_setting(settings, "reference_angle_tolerance"))
    best = None
    for name, ref_header in lampdata.reference_headers():
        have = _config(ref_header)
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


def _register(data: np.ndarray, ref: np.ndarray, binning: int, prior: float, half_range: float):
    """Unbinned shift s such that data[j] ~ sum_k ref[b*j + k + prior + s]: (s, best shift
    over a 500 px wider range, whether that or the edge of the range beats s).

    The data are repeated b times onto the unbinned grid, which makes the correlation
    with the unbinned reference exactly the correlation with the reference binned like
    the data; the peak is refined with a parabola. Both spectra are continuum-removed and
    square-root compressed so that a few saturated lines do not decide alone.
    """
    def prep(y, b):
        r = np.clip(residual_spectrum(y, b), 0, None)
        r = np.sqrt(r)
        r = r - r.mean()
        return r / (np.linalg.norm(r) or 1.0)

    d = np.repeat(prep(data, binning), binning)
    r = prep(ref, 1)
    n = d.size + r.size
    nfft = 1 << int(np.ceil(np.log2(n)))
    cc = np.fft.irfft(np.fft.rfft(r, nfft) * np.conj(np.fft.rfft(d, nfft)), nfft)
    # cc[t] = sum_u d[u] r[u + t]; t = prior + s (negative lags wrap around)
    lo = int(np.floor(prior - half_range))
    hi = int(np.ceil(prior + half_range))
    lags = np.arange(lo, hi + 1)
    values = cc[lags % nfft]
    k = int(np.argmax(values))
    s = float(lags[k])
    if 0 < k < values.size - 1:
        a, b_, c = values[k - 1], values[k], values[k + 1]
        den = a - 2 * b_ + c
        if den < 0:
            s += 0.5 * (a - c) / den
    # a better match outside the allowed range means the lamp moved more than allowed
    wide = np.arange(lo - 10 * binning * 25, hi + 10 * binning * 25 + 1)
    best_wide = int(wide[int(np.argmax(cc[wide % nfft]))])
    outside = (k == 0 or k == values.size - 1 or
               ((best_wide < lo or best_wide > hi) and cc[best_wide % nfft] > values[k]))
    return s - prior, float(best_wide - prior), outside


def _invert(coefficients: Sequence[float], wavelengths: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """x with chebval(x) = wavelength over [lo, hi] (NaN outside): table, then Newton."""
    grid = np.arange(lo, hi + 1.0)
    lam = chebyshev.chebval(grid, coefficients)
    if not np.all(np.diff(lam) > 0):
        return np.full(np.shape(wavelengths), np.nan)
    wl = np.asarray(wavelengths, dtype=float)
    x = np.interp(wl, lam, grid)
    der = chebyshev.chebder(coefficients)
    for _ in range(3):
        x = x - (chebyshev.chebval(x, coefficients) - wl) / chebyshev.chebval(x, der)
    return np.where((wl >= lam[0]) & (wl <= lam[-1]), x, np.nan)


def solve_with_reference(flux: np.ndarray, header: fits.Header, reference: str, settings=None) -> WavelengthSolution:
    """Register `reference` on the lamp, identify its lines, fit (see the module docstring)."""
    flux = np.asarray(flux, dtype=float)
    n = flux.size
    b = spectral_binning(header)
    ref = lampdata.read_reference(reference)
    elements = lamp_elements(header)
    lines = detect_lines(flux, b, float(_setting(settings, "line_detection_sigma")))
    if lines.centre.size == 0:
        raise WavelengthFailure("reference: no lamp lines detected above the noise")
    # prior offset: ref x = b*j + (b-1)/2 + prior + s; the two trims, or the centres aligned
    # when the reference covers a different width (600Red lamps are 3096 px wide)
    data_start = _first_column_unbinned(header, b)
    ref_start = _first_column_unbinned(ref.header, 1)
    width_gap = ref.flux.size - b * n
    prior = (data_start - ref_start) if width_gap == 0 else width_gap / 2.0
    tol = float(_setting(settings, "correlation_tolerance"))
    half_range = tol + abs(width_gap) / 2.0
    s, s_wide, outside = _register(flux, ref.flux, b, prior, half_range)
    if outside:
        raise WavelengthFailure(f"reference: the lamp matches {ref.filename} best {s_wide:+.0f} unbinned px away, "
                                f"outside the allowed range of +-{half_range:.0f} px (correlation_tolerance): "
                                f"the lamp moved more than that or is not what the header says")
    offset = prior + s
    # laboratory wavelengths of the reference's lines, at the registered position
    x_ref = _invert(ref.coefficients, ref.line_wavelengths, -0.5 * ref.flux.size, 1.5 * ref.flux.size)
    good = np.isfinite(x_ref)
    wl_cat = ref.line_wavelengths[good]
    j_pred = (x_ref[good] - offset - (b - 1) / 2.0) / b
    inside = (j_pred > lines.half) & (j_pred < n - 1 - lines.half)
    wl_cat, j_pred = wl_cat[inside], j_pred[inside]
    oi, ci = _match(lines.centre, j_pred, max(1.5, 3.0 / b))
    degree = int(_setting(settings, "wavelength_order") or ref.degree)
    return _fit_on_reference(lines.centre[oi], wl_cat[ci], ref, b, offset, degree, n, settings, elements)


def _fit_on_reference(j, wl, ref, b, offset, degree, n, settings, elements) -> WavelengthSolution:
    """The reference's own solution, moved to the fitted shift, plus a fitted correction.

    Why not a free fit: the shipped lamps often have their lines in part of the detector
    only (7 lines in the red half for 1200M5 Ar), and a free cubic through them
    extrapolates to the other half with errors of a pixel. The reference solution holds
    the shape there; the lines fit the shift and a correction of degree 1, or of the
    full degree when they are many (4 per coefficient) and span 85 % of the detector
    (then it is a free fit).
    """
    clip = float(_setting(settings, "wavelength_clip_sigma"))
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
                   fitted=total, keep=keep)


# ---------------------------------------------------------------------------- grating equation


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


def _search(obs: _Lines, cat_j: np.ndarray, cat_w: np.ndarray, n: int, centre: float,
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


def _identify(obs: _Lines, cw: np.ndarray, weight: np.ndarray, pred: np.ndarray, degree: int, n: int,
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
        inv = _invert(_to_plain(fit), cw, -0.2 * n, 1.2 * n)
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
                                f"GRT_ANG/CAM_ANG in the header, and no reference lamp matches")
    elements = lamp_elements(header)
    cat_wl, cat_int = _catalogue(elements)
    lines = detect_lines(flux, b, float(_setting(settings, "line_detection_sigma")))
    degree = int(_setting(settings, "wavelength_order") or 3)
    if lines.centre.size < max(int(_setting(settings, "wavelength_min_lines")), degree + 2):
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
    clip = float(_setting(settings, "wavelength_clip_sigma"))
    best = (np.array([], int), np.array([], int), -1.0)
    for scale, offset, _ in _search(lines, cat_j, weight, n, centre):
        found = _identify(lines, cw, weight, centre + (cat_j - centre) * scale + offset, degree, n, clip)
        if found[2] > best[2]:
            best = found
    oi, ci_, _ = best
    solution = _finish(lines.centre[oi], cw[ci_], degree, n, settings, "grating-equation", None, elements)
    _check_bright_lines(lines, solution)
    return solution


#: Of the lamp's brightest detected lines, at least this fraction must be in the
#: solution. A wrong identification can still fit a handful of faint lines well; it
#: cannot explain the bright ones. Correct solutions identify 80-100 % of the 15
#: brightest (simulated modes and the real Fe arcs), a wrong one seen on a simulated
#: 930M2 Ar lamp 53 %.
MIN_BRIGHT_IDENTIFIED = 0.6
N_BRIGHT = 15


def _check_bright_lines(lines: _Lines, solution: WavelengthSolution) -> None:
    used = np.array([line[0] for line in solution.lines])
    bright = np.argsort(lines.flux)[::-1][:N_BRIGHT]
    found = np.array([np.min(np.abs(used - lines.centre[i])) < 1.0 for i in bright])
    if found.mean() < MIN_BRIGHT_IDENTIFIED:
        raise WavelengthFailure(
            f"grating-equation: only {int(found.sum())} of the {bright.size} brightest lamp lines are identified "
            f"(a trustworthy solution explains at least {MIN_BRIGHT_IDENTIFIED:.0%}): check the lamp and the "
            f"grating angles in the header")


# ---------------------------------------------------------------------------- entry point


def solve(flux: np.ndarray, header: fits.Header, settings=None) -> WavelengthSolution:
    """The wavelength solution of a 1-D lamp spectrum (reduced-frame columns, binned as CCDSUM).

    Uses a matching reference lamp when there is one (and `wavelength_use_reference`),
    else the grating equation; raises WavelengthFailure with the reason otherwise. A
    reference that fails to register is reported, not silently replaced: the lamp may not
    be what the header says.
    """
    arr = np.asarray(flux, dtype=float)
    if arr.ndim != 1 or arr.size < 50:
        raise WavelengthFailure(f"expected a 1-D lamp spectrum of at least 50 pixels, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        arr = np.where(np.isfinite(arr), arr, np.nanmedian(arr))
    if _setting(settings, "wavelength_use_reference"):
        reference = find_reference(header, settings)
        if reference is not None:
            return solve_with_reference(arr, header, reference, settings)
    return solve_with_grating_equation(arr, header, settings)


# ---------------------------------------------------------------------------- linear resampling


def linearize(flux: np.ndarray, variance: Optional[np.ndarray], solution: WavelengthSolution):
    """Resample onto a linear wavelength grid: (flux_lin, var_lin, crval1, cdelt1).

    The grid has the spectrum's number of pixels, from lambda(0) to lambda(n-1): pixel k
    is centred at ``crval1 + k*cdelt1`` (FITS CRPIX1 = 1). Flux is conserved: the
    cumulative flux, linear within each input pixel (flux spread evenly over the pixel),
    is interpolated at the output pixel edges and differenced, so every output pixel
    holds the flux that falls in its wavelength range (a spectrum flat per angstrom
    stays flat; the total is unchanged up to the half pixels at both ends). The variance
    is propagated with the squared overlap fractions (output covariances are ignored).
    """
    f = np.asarray(flux, dtype=float)
    n = f.size
    if n != solution.n_pixels:
        raise ValueError(f"flux has {n} pixels, the solution {solution.n_pixels}")
    lam_lo, lam_hi = float(solution.wavelength(0)), float(solution.wavelength(n - 1))
    sign = 1.0 if lam_hi > lam_lo else -1.0
    cdelt = (lam_hi - lam_lo) / (n - 1)
    out_edges = lam_lo + (np.arange(n + 1) - 0.5) * cdelt
    # output edges in input pixel coordinates (pixel i spans [i-0.5, i+0.5])
    p = _invert(np.asarray(solution.coefficients) * sign, sign * out_edges, -2.0, n + 1.0)
    p = np.clip(p, -0.5, n - 0.5)
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
