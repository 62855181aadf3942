"""Find the point sources on a reduced 2-D spectrum, trace them and extract 1-D spectra.

Conventions (those of every reduced frame in this core): ``data[row, col]``, float ADU,
dispersion along columns (axis 1), the slit along rows (axis 0), bias-subtracted (and
usually flat-fielded) and trimmed. Pixel ``i`` spans ``[i - 0.5, i + 0.5]``, so a row
coordinate ``y`` refers to a position in pixel-centre units. ``mask`` is a boolean array
of the data's shape, True = bad (saturated, cosmic ray); bad pixels never contribute.

Why our own code and not goodman-pipeline's ``identify_targets``/``trace``/
``extract_fractional_pixel``: those work on CCDData objects, log and plot, and mix
decisions (slit size from the header, peak filtering by ad-hoc levels) into the
numerics. Here each step is a pure function of arrays, so the live page can run it on
every frame and tests can check it against the simulator's exact truth. The methods
are the same in spirit: a median spatial profile to find targets, binned centroids and
a low-order polynomial for the trace, and a fractional-pixel aperture sum with sky from
beside the trace; we add Horne (1986) optimal extraction, which gains S/N on faint
sources (sky/read-noise limited) where the aperture sum adds pure noise from its wings.

Nothing here modifies its inputs: every array is copied before it is changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np
from astropy.modeling import fitting, models
from scipy import ndimage, signal

#: Gaussian sigma -> FWHM.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: MAD -> standard deviation for Gaussian noise.
MAD_TO_SIGMA = 1.4826
#: A peak must reach background_threshold x DETECTION_SIGMA x noise (see find_targets).
DETECTION_SIGMA = 5.0
#: Width (rows) of the running median that models the background of the spatial
#: profile: much wider than any point source, so the source is not part of it, while a
#: median filter keeps the slit edges (monotonic steps) and gradients exactly.
BACKGROUND_WINDOW = 41
MODELS = ("gaussian", "moffat")
METHODS = ("fractional", "optimal")


@dataclass(frozen=True)
class Target:
    """A source found on the spatial profile: centre row (at the middle column), FWHM
    (rows), peak amplitude above the background (ADU, of the median profile) and the
    profile model used to measure them."""

    center: float
    fwhm: float
    amplitude: float
    model: str


@dataclass(frozen=True)
class Trace:
    """Centre row of a source as a polynomial in column: ``row = sum(c_k * col**k)``.

    ``coefficients`` are in increasing power (numpy.polynomial convention); ``rms`` is
    the scatter (rows) of the kept bin centroids about the fit; the trace is only
    trusted from ``col_min`` to ``col_max`` (inclusive), where the source was bright
    enough to centroid. ``columns``/``rows`` are the kept bin centroids (for plots).
    """

    coefficients: Tuple[float, ...]
    rms: float
    col_min: int
    col_max: int
    fwhm: float
    columns: Tuple[float, ...] = field(default=(), repr=False)
    rows: Tuple[float, ...] = field(default=(), repr=False)

    def center(self, cols) -> np.ndarray:
        """Centre row(s) of the trace at column(s) `cols`."""
        return np.polynomial.polynomial.polyval(np.asarray(cols, dtype=float), np.asarray(self.coefficients))

    @property
    def valid_columns(self) -> np.ndarray:
        return np.arange(self.col_min, self.col_max + 1)


@dataclass(frozen=True)
class ExtractedSpectrum:
    """A 1-D spectrum: flux (ADU summed over the profile, sky subtracted), its variance
    (ADU^2), the sky per pixel row (ADU) that was subtracted, the detector columns, the
    method and the aperture half-width (rows) used."""

    flux: np.ndarray
    variance: np.ndarray
    sky: np.ndarray
    columns: np.ndarray
    method: str
    aperture: float


# ---------------------------------------------------------------------------- helpers


def _as_float(data) -> np.ndarray:
    arr = np.array(data, dtype=float, copy=True)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {arr.shape}")
    return arr


def _good(data: np.ndarray, mask) -> np.ndarray:
    good = np.isfinite(data)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != data.shape:
            raise ValueError(f"mask shape {m.shape} does not match data shape {data.shape}")
        good &= ~m
    return good


def _nan_bad(data, mask) -> np.ndarray:
    arr = _as_float(data)
    arr[~_good(arr, mask)] = np.nan
    return arr


def _mad_sigma(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def _background(profile: np.ndarray) -> np.ndarray:
    """Running median of the profile; NaNs (fully masked rows) are filled first."""
    p = profile.copy()
    bad = ~np.isfinite(p)
    if bad.all():
        return np.zeros_like(p)
    if bad.any():
        idx = np.arange(p.size)
        p[bad] = np.interp(idx[bad], idx[~bad], p[~bad])
    window = min(BACKGROUND_WINDOW, p.size if p.size % 2 else p.size - 1)
    return ndimage.median_filter(p, size=max(window, 1), mode="nearest")


def _half_max_width(y: np.ndarray, i: int) -> float:
    """Full width at half maximum around index i (linear interpolation); a start guess."""
    half = y[i] / 2.0
    lo = i
    while lo > 0 and y[lo] > half:
        lo -= 1
    hi = i
    while hi < y.size - 1 and y[hi] > half:
        hi += 1
    left = lo + (half - y[lo]) / (y[lo + 1] - y[lo]) if y[lo + 1] != y[lo] else lo
    right = hi - 1 + (y[hi - 1] - half) / (y[hi - 1] - y[hi]) if y[hi - 1] != y[hi] else hi
    return float(max(right - left, 1.0))


def _fit_profile(rows: np.ndarray, y: np.ndarray, center: float, amplitude: float, fwhm: float, model: str):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's 'fit may be unsuccessful': judged by the caller
        return _fit_profile_inner(rows, y, center, amplitude, fwhm, model)


def _fit_profile_inner(rows, y, center, amplitude, fwhm, model):
    fitter = fitting.LevMarLSQFitter()
    if model == "gaussian":
        init = models.Gaussian1D(amplitude=amplitude, mean=center, stddev=fwhm / FWHM_PER_SIGMA)
        fit = fitter(init, rows, y)
        return float(fit.mean.value), float(abs(fit.stddev.value) * FWHM_PER_SIGMA), float(fit.amplitude.value)
    init = models.Moffat1D(amplitude=amplitude, x_0=center, gamma=fwhm / 2.0, alpha=2.5)
    fit = fitter(init, rows, y)
    return float(fit.x_0.value), float(abs(fit.fwhm)), float(fit.amplitude.value)


# ---------------------------------------------------------------------------- targets


def find_targets(data, max_targets: int = 3, background_threshold: float = 1.0, model: str = "gaussian",
                 mask=None) -> List[Target]:
    """Point sources along the slit, brightest first, at most `max_targets`.

    The spatial profile is the median along the dispersion of every row (robust to
    cosmic rays, emission lines and the source's own spectral shape; masked pixels are
    left out). Its background is a running median BACKGROUND_WINDOW rows wide (keeps
    slit edges and illumination gradients, drops anything as narrow as a star), and its
    noise the MAD-based sigma of (profile - background). A peak is a target when its
    height above the background exceeds ``background_threshold * DETECTION_SIGMA *
    noise``: with the default 1.0 a 5-sigma detection; raise it to keep only brighter
    sources (the paper's knob is a multiplier of the detection level, as in goodman).

    Each peak is then measured by fitting `model` ('gaussian' | 'moffat', astropy) to
    the background-subtracted median profile of the central eighth of the columns, so
    ``center`` is the row of the source at the middle column (a curved trace would
    smear the full-width median) and ``fwhm`` its width there. Fits that fail or give
    a width below 0.5 or above BACKGROUND_WINDOW/2 rows (not a point source) are dropped.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if max_targets < 1:
        return []
    arr = _nan_bad(data, mask)
    nrows, ncols = arr.shape
    profile = _nanmedian(arr, axis=1)
    half = max(ncols // 16, 25)
    mid = ncols // 2
    central = _nanmedian(arr[:, max(mid - half, 0):mid + half + 1], axis=1)
    resid = profile - _background(profile)
    noise = _mad_sigma(resid)
    if not np.isfinite(noise) or noise <= 0:
        return []
    level = float(background_threshold) * DETECTION_SIGMA * noise
    r = np.nan_to_num(resid, nan=0.0)
    peaks, _ = signal.find_peaks(r, height=level, distance=3)
    if peaks.size == 0:
        return []
    c_resid = np.nan_to_num(central - _background(central), nan=0.0)
    peaks = peaks[np.argsort(r[peaks])[::-1]]
    out: List[Target] = []
    rows_all = np.arange(nrows, dtype=float)
    for p in peaks:
        guess = _half_max_width(r, int(p))
        w = int(max(np.ceil(3 * guess), 8))
        lo, hi = max(p - w, 0), min(p + w + 1, nrows)
        try:
            center, fwhm, amp = _fit_profile(rows_all[lo:hi], c_resid[lo:hi], float(p), float(c_resid[p]),
                                             guess, model)
        except Exception:  # a fit that does not converge is not a target
            continue
        if not (np.isfinite(center) and lo <= center <= hi - 1 and 0.5 <= fwhm <= BACKGROUND_WINDOW / 2
                and amp > 0):
            continue
        if any(abs(center - t.center) < max(fwhm, t.fwhm) for t in out):
            continue  # the same source seen twice (e.g. a shoulder)
        out.append(Target(center=center, fwhm=fwhm, amplitude=amp, model=model))
    out.sort(key=lambda t: t.amplitude, reverse=True)
    return out[:max_targets]


# ---------------------------------------------------------------------------- trace


def _centroid(y: np.ndarray, rows: np.ndarray, start: float, half: float) -> float:
    """Iterated first moment in a window of +-half rows about the current estimate:
    unbiased for a symmetric profile once the window is centred on it."""
    c = start
    for _ in range(10):
        w = np.clip(np.minimum(rows + 0.5, c + half) - np.maximum(rows - 0.5, c - half), 0.0, 1.0)
        s = np.sum(w * y)
        if not s > 0:
            return float("nan")
        new = float(np.sum(w * y * rows) / s)
        if abs(new - c) < 1e-4:
            return new
        c = new
    return c


def _bin_medians(arr: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Median of each row over each bin of columns [edges[k], edges[k+1]), NaNs left out
    (NaN where a bin has no finite pixel): the numbers np.nanmedian gives bin by bin, for
    the whole frame in one sort instead of hundreds of masked-array calls."""
    nrows = arr.shape[0]
    widths = np.diff(edges)
    step = int(widths.max())
    padded = np.full((nrows, len(widths) * step), np.nan)
    for k, (a, w) in enumerate(zip(edges[:-1], widths)):
        padded[:, k * step:k * step + w] = arr[:, a:a + w]
    return _nanmedian(padded.reshape(nrows, len(widths), step), axis=2)


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmedian along `axis` (NaN where nothing is finite) by one sort: numpy's own
    falls back to a Python loop over the other axes as soon as one NaN is present."""
    cube = np.sort(np.moveaxis(np.asarray(a, dtype=float), axis, -1), axis=-1)  # NaNs sort last
    n = np.isfinite(cube).sum(axis=-1)
    lo = np.take_along_axis(cube, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(cube, np.maximum(n // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(n > 0, 0.5 * (lo + hi), np.nan)


def trace_target(data, target: Target, sampling_step: int = 5, order: int = 2, mask=None,
                 min_snr: float = 5.0, sigma_clip: float = 3.0) -> Trace:
    """Follow `target` along the dispersion and fit its centre row as a polynomial.

    Columns are median-combined in bins of `sampling_step` (robust to cosmic rays;
    masked pixels left out), each bin's profile gets its local background removed (the
    median of the rows 3-6 FWHM from the source) and is centroided within +-FWHM. We walk
    outward from the middle column, each bin starting from its neighbour's centre, so a
    trace that drifts by many rows is still followed. Bins with S/N (source sum over the
    background noise) below `min_snr` are dropped, which is what ends the trace in the
    faint blue/red ends; the valid column range spans the kept bins. A polynomial of
    `order` in column is fitted with iterative `sigma_clip` (MAD) rejection of outliers.
    """
    arr = _nan_bad(data, mask)
    nrows, ncols = arr.shape
    step = max(int(sampling_step), 1)
    fwhm = float(target.fwhm)
    half_win = int(np.ceil(6 * fwhm)) + 2
    edges = np.arange(0, ncols + step, step)
    edges = edges[edges <= ncols]
    if edges[-1] != ncols:
        edges = np.append(edges, ncols)
    nb = len(edges) - 1
    mid_bin = int(np.clip(np.searchsorted(edges, ncols // 2, side="right") - 1, 0, nb - 1))
    cen = np.full(nb, np.nan)
    bin_col = 0.5 * (edges[:-1] + edges[1:]) - 0.5
    medians = _bin_medians(arr, edges)

    def measure(b: int, start: float) -> float:
        lo, hi = int(round(start)) - half_win, int(round(start)) + half_win + 1
        if lo < 0 or hi > nrows:
            return float("nan")
        prof = medians[lo:hi, b]
        rows = np.arange(lo, hi, dtype=float)
        d = np.abs(rows - start)
        bgsel = (d >= 3 * fwhm) & np.isfinite(prof)
        if bgsel.sum() < 4:
            return float("nan")
        bg = float(np.median(prof[bgsel]))
        noise = _mad_sigma(prof[bgsel])
        y = np.nan_to_num(prof - bg, nan=0.0)
        c = _centroid(y, rows, start, fwhm)
        if not np.isfinite(c) or abs(c - start) > fwhm:
            return float("nan")
        ap = np.abs(rows - c) <= fwhm
        snr = y[ap].sum() / (max(noise, 1e-12) * np.sqrt(ap.sum()))
        return c if snr >= min_snr else float("nan")

    for direction in (+1, -1):
        last = float(target.center)
        b = mid_bin if direction > 0 else mid_bin - 1
        misses = 0
        while 0 <= b < nb:
            c = measure(b, last)
            if np.isfinite(c):
                cen[b] = c
                last = c
                misses = 0
            else:
                misses += 1
            b += direction
    good = np.isfinite(cen)
    if good.sum() < order + 2:
        raise ValueError(f"too few bins ({int(good.sum())}) with S/N >= {min_snr} to trace the target")
    x, y = bin_col[good], cen[good]
    keep = np.ones(x.size, dtype=bool)
    for _ in range(10):
        poly = np.polynomial.Polynomial.fit(x[keep], y[keep], order)
        res = y - poly(x)
        s = _mad_sigma(res[keep])
        new = np.abs(res) <= sigma_clip * max(s, 1e-6)
        if (new == keep).all() or new.sum() < order + 2:
            break
        keep = new
    poly = np.polynomial.Polynomial.fit(x[keep], y[keep], order)
    res = y[keep] - poly(x[keep])
    coef = poly.convert().coef
    coef = np.pad(coef, (0, order + 1 - coef.size))
    kept_bins = np.flatnonzero(good)[keep]
    return Trace(coefficients=tuple(float(v) for v in coef), rms=float(np.sqrt(np.mean(res ** 2))),
                 col_min=int(edges[kept_bins.min()]), col_max=int(edges[kept_bins.max() + 1] - 1), fwhm=fwhm,
                 columns=tuple(float(v) for v in x[keep]), rows=tuple(float(v) for v in y[keep]))


# ---------------------------------------------------------------------------- extraction


def _overlap(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fraction of each pixel [r-0.5, r+0.5] inside [lo, hi] (broadcast)."""
    return np.clip(np.minimum(rows + 0.5, hi) - np.maximum(rows - 0.5, lo), 0.0, 1.0)


def extract(data, trace: Trace, fwhm: float, method: str = "fractional", variance=None, gain: float = 1.0,
            rdnoise: float = 0.0, sky_offset: float = 3.0, sky_width: float = 5.0, mask=None,
            aperture: float = 3.0, columns=None, profile_window: int = 51, reject_sigma: float = 5.0,
            max_iterations: int = 10) -> ExtractedSpectrum:
    """Extract the 1-D spectrum of the source on `trace`.

    Geometry, per column, around the trace centre y: the aperture is ``|row - y| <=
    h`` with ``h = aperture * fwhm / 2`` (default +-1.5 FWHM, > 99.9 % of a Gaussian);
    the sky is taken from both sides, from ``h + sky_offset*fwhm`` to ``h +
    (sky_offset + sky_width)*fwhm`` rows from the trace (both in units of `fwhm`, so
    the same settings fit seeing of any size), as the median per column of the
    unmasked sky pixels (robust to stars and cosmic rays in the sky; using both sides
    cancels a linear gradient along the slit). Columns default to the trace's valid range.

    Noise model, in ADU^2 per pixel: `variance` when given, else ``rdnoise**2/gain**2 +
    max(signal, 0)/gain`` (gain e-/ADU, rdnoise e-), where signal is the data for
    'fractional' and the model (sky + flux*profile) for 'optimal' (Horne: a variance from
    the data itself would bias the weights toward low pixels).

    'fractional': the sum of (data - sky) over the aperture with each pixel weighted by
    the fraction of it inside the aperture, like goodman's extract_fractional_pixel.
    Masked pixels cannot simply be left out of a sum; in a column with masked aperture
    pixels the sum of the good ones is divided by the fraction of a Gaussian of `fwhm`
    they cover. Variance = sum(w^2 var) + (sum w)^2 var_sky, with var_sky = pi/2 *
    median(var)/n (the variance of a median).

    'optimal': Horne (1986). The spatial profile is estimated from the sky-subtracted
    data itself: a running mean along the dispersion (`profile_window` columns) of the
    good pixels, negative values set to 0, normalised to unit sum in each column inside
    the aperture. Then iterate: flux = sum(P D/V)/sum(P^2/V), V from the model, and the
    worst pixel of each column deviating by more than `reject_sigma` is rejected
    (weight 0) until nothing changes; masked pixels have weight 0 from the start.
    Variance = 1/sum(M P^2/V) plus the sky-median term propagated through the weights.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not fwhm > 0:
        raise ValueError(f"fwhm must be positive, got {fwhm!r}")
    arr = _as_float(data)
    nrows, ncols = arr.shape
    good = _good(arr, mask)
    if variance is not None:
        var_in = np.array(variance, dtype=float, copy=True)
        if var_in.shape != arr.shape:
            raise ValueError(f"variance shape {var_in.shape} does not match data shape {arr.shape}")
        good &= np.isfinite(var_in) & (var_in > 0)
    else:
        var_in = None
    gain = float(gain)
    rd2 = (float(rdnoise) / gain) ** 2

    cols = trace.valid_columns if columns is None else np.asarray(columns, dtype=int)
    cols = cols[(cols >= 0) & (cols < ncols)]
    y = trace.center(cols)
    h = aperture * fwhm / 2.0
    s_in, s_out = h + sky_offset * fwhm, h + (sky_offset + sky_width) * fwhm
    # rows covering the sky regions: work on a band (rows x len(cols)) only
    r_lo = int(max(np.floor(y.min() - s_out) - 1, 0))
    r_hi = int(min(np.ceil(y.max() + s_out) + 2, nrows))
    rows = np.arange(r_lo, r_hi, dtype=float)[:, None]
    D = arr[r_lo:r_hi, cols]
    G = good[r_lo:r_hi, cols]
    dist = np.abs(rows - y[None, :])

    # sky: median of the good pixels in both side regions, per column
    skysel = (dist >= s_in) & (dist <= s_out) & G
    sky = _nanmedian(np.where(skysel, D, np.nan), axis=0)
    n_sky = skysel.sum(axis=0)
    sky = np.where(n_sky > 0, sky, 0.0)
    D = D - sky[None, :]
    D = np.where(G, D, 0.0)

    w = _overlap(rows, y[None, :] - h, y[None, :] + h)
    if var_in is not None:
        V_data = np.where(G, var_in[r_lo:r_hi, cols], np.inf)
    else:
        V_data = np.where(G, rd2 + np.maximum(arr[r_lo:r_hi, cols], 0.0) / gain, np.inf)
    with np.errstate(all="ignore"):
        sky_pix_var = _nanmedian(np.where(skysel, V_data, np.nan), axis=0)
        var_sky = np.where(n_sky > 0, 0.5 * np.pi * sky_pix_var / np.maximum(n_sky, 1), 0.0)

    if method == "fractional":
        wg = np.where(G, w, 0.0)
        # fraction of a Gaussian of this fwhm seen by the good part of the aperture
        from scipy.special import ndtr
        sig = fwhm / FWHM_PER_SIGMA
        lo_edge = np.maximum(rows - 0.5, y[None, :] - h)
        hi_edge = np.minimum(rows + 0.5, y[None, :] + h)
        gfrac = np.where(hi_edge > lo_edge, ndtr((hi_edge - y[None, :]) / sig) - ndtr((lo_edge - y[None, :]) / sig),
                         0.0)
        total = gfrac.sum(axis=0)
        seen = np.where(G, gfrac, 0.0).sum(axis=0)
        corr = np.where(seen > 0, total / np.where(seen > 0, seen, 1.0), np.nan)
        Vw = np.where(wg > 0, V_data, 0.0)
        flux = (wg * D).sum(axis=0) * corr
        var = ((wg ** 2 * Vw).sum(axis=0) + wg.sum(axis=0) ** 2 * var_sky) * corr ** 2
        return ExtractedSpectrum(flux=flux, variance=var, sky=sky, columns=cols, method=method, aperture=h)

    # ---- optimal (Horne 1986)
    def pixel_variance(f):
        """Given variance, or the CCD noise model on the current profile and flux."""
        if var_in is not None:
            return V_data
        return rd2 + np.maximum(f[None, :] * P + sky[None, :], 0.0) / gain

    inap = w > 0
    M = G & inap
    win = max(int(profile_window), 1)
    for _ in range(2):  # profile, rejection, then once more with the rejections left out
        num = ndimage.uniform_filter1d(np.where(M, D, 0.0), win, axis=1, mode="nearest")
        den = ndimage.uniform_filter1d(M.astype(float), win, axis=1, mode="nearest")
        P = np.where(inap & (den > 0), np.maximum(num / np.where(den > 0, den, 1.0), 0.0) * w, 0.0)
        norm = P.sum(axis=0)
        P = np.where(norm > 0, P / np.where(norm > 0, norm, 1.0), 0.0)
        flux = (np.where(M, w, 0.0) * D).sum(axis=0)  # start: aperture sum
        Mi = M.copy()
        for _ in range(max_iterations):
            Vi = np.where(Mi, 1.0 / pixel_variance(flux), 0.0)
            den2 = (P ** 2 * Vi).sum(axis=0)
            flux = np.where(den2 > 0, (P * D * Vi).sum(axis=0) / np.where(den2 > 0, den2, 1.0), np.nan)
            z = np.where(Mi, (D - flux[None, :] * P) ** 2 * Vi, 0.0)
            worst = np.argmax(z, axis=0)
            zmax = z[worst, np.arange(z.shape[1])]
            bad = zmax > reject_sigma ** 2
            if not bad.any():
                break
            Mi[worst[bad], np.flatnonzero(bad)] = False
        if (Mi == M).all():
            break
        M = Mi
    Vi = np.where(Mi, 1.0 / pixel_variance(flux), 0.0)
    den2 = (P ** 2 * Vi).sum(axis=0)
    safe = np.where(den2 > 0, den2, 1.0)
    flux = np.where(den2 > 0, (P * D * Vi).sum(axis=0) / safe, np.nan)
    var_f = np.where(den2 > 0, 1.0 / safe, np.nan)  # exact for the weights used (= Horne's when sum(MP)=1)
    dfds = (P * Vi).sum(axis=0) / safe  # d flux / d sky
    var = var_f + dfds ** 2 * var_sky
    return ExtractedSpectrum(flux=flux, variance=var, sky=sky, columns=cols, method=method, aperture=h)
