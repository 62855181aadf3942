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
beside the trace. We add a test of each peak for being a real source (S/N per column,
a width the seeing allows at the binning, away from the slit's edges, a continuum
across the spectrum; see detect_targets), each rejection with its reason, and Horne
(1986) optimal extraction, which gains S/N on faint sources (sky/read-noise limited)
where the aperture sum adds pure noise from its wings.

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
#: median filter keeps the slit edges (monotonic steps) and gradients exactly. Used as
#: is when the binning is unknown; otherwise BACKGROUND_WINDOW_ARCSEC in rows (41 at 2x2).
BACKGROUND_WINDOW = 41
BACKGROUND_WINDOW_ARCSEC = 12.0
#: Goodman's unbinned plate scale along the slit, arcsec/px (Red and Blue cameras alike).
PLATE_SCALE_ARCSEC = 0.15
#: The coarsest spatial binning Goodman reads out: assumed when the binning is unknown.
MAX_SPATIAL_BINNING = 3

# ---- target knobs (declared here; the settings table wires them: name, type, default, range, help)
#: target_min_snr: float, default 3.0, range [0, 1000]. "A target's S/N per column (the
#: source summed over the +-1.5 FWHM aperture in one column, median along the spectrum)
#: must reach this; 0 turns the test off." Real faint sources of S/N ~5 pass, noise and
#: flat-field structure (S/N < 1) do not; trace_target cannot follow less than ~2.5.
TARGET_MIN_SNR = 3.0
#: target_min_fwhm_arcsec: float, default 0.4, range [0, 5]. "Narrowest FWHM (arcsec) a
#: point source can have: the best seeing at SOAR. Converted to rows with 0.15\"/px times
#: the spatial binning (2.67 px at 1x1, 1.33 at 2x2, 0.89 at 3x3); narrower peaks are
#: noise or bad rows."
TARGET_MIN_FWHM_ARCSEC = 0.4
#: slit_edge_margin_arcsec: float, default 2.0, range [0, 60]. "A target's centre must lie
#: this far (arcsec) inside the illuminated part of the slit (13 px at 1x1, 6.7 at 2x2,
#: 4.4 at 3x3); peaks closer to a slit edge, or to the frame's edge, are rejected."
SLIT_EDGE_MARGIN_ARCSEC = 2.0
#: target_column_blocks: int, default 8, range [1, 64]. "Independent blocks of columns in
#: which a target's continuum is looked for."
TARGET_COLUMN_BLOCKS = 8
#: target_min_block_fraction: float, default 0.6, range [0, 1]. "Fraction of the column
#: blocks a target must be seen in (5 of 8): a bad row segment or defect is not."
TARGET_MIN_BLOCK_FRACTION = 0.6
# ---- fixed detection constants (not knobs)
#: A source is "seen" in a column block when the S/N of its aperture sum on the block's
#: median profile reaches this (a real source of S/N 3 per column has ~30 in a block).
BLOCK_MIN_SNR = 5.0
#: The slit (see _slit_runs): a row is illuminated where the profile's background is
#: more than SLIT_EDGE_LEVEL of the way from the dark level (its minimum) to the lit one
#: (the median of the rows more than SLIT_LIT_FLOOR of the way up); the crossings are
#: the slit's edges, provided the lit level is SLIT_MIN_CONTRAST noise sigmas (of the
#: median profile) and SLIT_MIN_STEP sigmas of one pixel above the dark one: a smaller
#: step (a bias residual, a sky of 1 ADU) has no edge worth finding, and its artefacts
#: fail the S/N test anyway.
SLIT_EDGE_LEVEL = 0.5
SLIT_LIT_FLOOR = 0.25
SLIT_MIN_CONTRAST = 20.0
SLIT_MIN_STEP = 1.0
#: A candidate's steepest step between adjacent rows (central profile) may exceed that of
#: a Gaussian of its fitted FWHM and amplitude by this factor, plus STEEP_NOISE_SIGMA
#: sigmas of a difference of two rows' noise: stars measure 1.0-1.2 (Moffat cores
#: included), a band of bad rows 1.7 (3 rows) to 6 (12 rows), a flat top between cliffs.
STEEP_FACTOR = 1.5
STEEP_NOISE_SIGMA = 4.0
#: Clipping (sigmas) of the noise estimate of a profile (see _clipped_sigma).
CLIP_SIGMA = 4.0
#: Only the highest peaks of the profile are examined (each costs a fit).
MAX_CANDIDATES = 25
MODELS = ("gaussian", "moffat")
METHODS = ("fractional", "optimal")


@dataclass(frozen=True)
class Target:
    """A source found on the spatial profile: centre row (at the middle column), FWHM
    (rows), peak amplitude above the background (ADU, of the median profile), the
    profile model used to measure them and its S/N per column (NaN if not measured)."""

    center: float
    fwhm: float
    amplitude: float
    model: str
    snr: float = float("nan")  # S/N per column of the aperture sum (see detect_targets)


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


def _background(profile: np.ndarray, window: int = BACKGROUND_WINDOW) -> np.ndarray:
    """Running median (`window` rows) of the profile; NaNs (fully masked rows) are filled first."""
    p = profile.copy()
    bad = ~np.isfinite(p)
    if bad.all():
        return np.zeros_like(p)
    if bad.any():
        idx = np.arange(p.size)
        p[bad] = np.interp(idx[bad], idx[~bad], p[~bad])
    window = min(int(window), p.size if p.size % 2 else p.size - 1)
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


@dataclass(frozen=True)
class Rejection:
    """A peak of the spatial profile that is not a target, and why.

    ``kind`` is the first test it failed, one of REJECTION_KINDS; ``reason`` says, in
    words an observer can act on, every test it failed. ``center``/``fwhm``/``amplitude``
    are as in Target (NaN where the profile fit failed), ``snr`` the S/N per column
    (NaN where not measured)."""

    center: float
    fwhm: float
    amplitude: float
    snr: float
    kind: str
    reason: str

    def note(self) -> str:
        return f"candidate at row {self.center:.1f} rejected: {self.reason}"


#: Why a candidate can be rejected (Rejection.kind), in the order they are tested.
REJECTION_KINDS = ("fit", "duplicate", "outside_slit", "slit_edge", "narrow", "wide", "steep", "snr", "blocks",
                   "max_targets")


@dataclass(frozen=True)
class TargetSearch:
    """What detect_targets found: the targets (brightest first), every candidate it
    rejected with the reason, the illuminated part(s) of the slit it measured (rows,
    half-illumination crossings; empty when no slit edge was found in the frame, see
    _slit_runs), the narrowest FWHM and the edge margin it applied (rows) and how many
    weaker peaks it did not examine."""

    targets: Tuple[Target, ...]
    rejected: Tuple[Rejection, ...]
    slit: Tuple[Tuple[float, float], ...]
    min_fwhm: float
    edge_margin: float
    unexamined: int = 0

    def notes(self) -> List[str]:
        """One line per rejected candidate (and one for the peaks not examined); a
        'duplicate' (a second peak of a candidate already listed) is left out."""
        out = [r.note() for r in self.rejected if r.kind != "duplicate"]
        if self.unexamined:
            out.append(f"{self.unexamined} weaker peak(s) of the spatial profile not examined "
                       f"(only the {MAX_CANDIDATES} highest are)")
        return out


def plate_scale(spatial_binning: int) -> float:
    """Arcsec per binned row along the slit."""
    return PLATE_SCALE_ARCSEC * float(spatial_binning)


def _binning(spatial_binning) -> int:
    """The binning the seeing limits are computed for: an unknown one is taken as the
    coarsest Goodman offers, so that it can never reject a real star."""
    if spatial_binning is None:
        return MAX_SPATIAL_BINNING
    b = int(spatial_binning)
    if b < 1:
        raise ValueError(f"spatial_binning must be a positive integer, got {spatial_binning!r}")
    return b


def _window_rows(spatial_binning) -> int:
    """BACKGROUND_WINDOW_ARCSEC in rows at this binning (odd; BACKGROUND_WINDOW if unknown)."""
    if spatial_binning is None:
        return BACKGROUND_WINDOW
    n = int(round(BACKGROUND_WINDOW_ARCSEC / plate_scale(_binning(spatial_binning))))
    return max(n + 1 - n % 2, 5)


def _slit_runs(bg: np.ndarray, min_step: float) -> List[Tuple[float, float]]:
    """The illuminated runs of rows of the slit, from the background `bg` of the profile.

    The dark level is the background's minimum (~0 on a bias-subtracted frame where the
    slit does not reach; scattered light lifts it). The lit level starts at the 90th
    percentile and becomes the median of the rows more than SLIT_LIT_FLOOR of the way
    up from dark (three times): the sky through the slit, not the wings of a bright
    star that lift the background over several arcsec (a standard star), as long as
    they cover less than half the slit. A row is lit above SLIT_EDGE_LEVEL of the way
    from dark to lit; each run's ends are the interpolated crossings of that level
    (-0.5 / nrows-0.5 where a run reaches the frame). Empty when there is no edge to
    find: the lit level is not `min_step` above the dark one, or
    no row is darker than SLIT_EDGE_LEVEL of the lit level (the slit fills the frame,
    which only an illumination gradient spans); then only the frame's edges count."""
    finite = np.isfinite(bg)
    if not finite.any():
        return []
    vals = bg[finite]
    dark = float(vals.min())
    lit_level = float(np.percentile(vals, 90))
    for _ in range(3):  # down from the wings of a bright star, onto the sky through the slit
        above = vals[vals - dark > SLIT_LIT_FLOOR * (lit_level - dark)]
        if above.size == 0:
            break
        lit_level = float(np.median(above))
    if not (np.isfinite(min_step) and lit_level - dark > max(min_step, 1e-12)
            and dark < SLIT_EDGE_LEVEL * lit_level):
        return []
    half = dark + SLIT_EDGE_LEVEL * (lit_level - dark)
    lit = np.where(finite, bg > half, False)
    n = bg.size
    d = np.diff(np.concatenate([[0], lit.astype(int), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1
    runs = []
    for a, b in zip(starts, ends):
        lo = -0.5 if a == 0 else a - 1 + (half - bg[a - 1]) / (bg[a] - bg[a - 1])
        hi = n - 0.5 if b == n - 1 else b + (bg[b] - half) / (bg[b] - bg[b + 1])
        runs.append((float(lo), float(hi)))
    return runs


def _clipped_sigma(values: np.ndarray, floor: float) -> float:
    """Standard deviation about the median, iteratively clipped at CLIP_SIGMA (starting
    from the larger of the MAD's sigma and the standard deviation of the 5-95 % range),
    never below `floor`. The MAD alone fails on quantised profiles (more than half
    the rows exactly 0 gives 0, though others scatter by +-1 or 2 ADU); the clipped
    standard deviation sees that scatter, and equals the MAD's sigma on Gaussian noise."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 3:
        return float(floor)
    med = float(np.median(v))
    lo, hi = np.percentile(v, [5, 95])
    s = max(_mad_sigma(v), float(np.std(v[(v >= lo) & (v <= hi)])), floor)  # a start wide enough to grow
    for _ in range(20):
        sel = np.abs(v - med) <= CLIP_SIGMA * s
        new = max(float(np.std(v[sel])) if sel.sum() > 2 else s, floor)
        if abs(new - s) <= 1e-3 * s:
            break
        s = new
    return float(s)


def _finite_median(values) -> float:
    """Median of the finite values (NaN if none), without numpy's all-NaN warning."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def _median_quantum(rows: np.ndarray) -> float:
    """0.5 (ADU) when the pixels of these rows are whole ADU apart (raw counts less a
    constant per row, e.g. the overscan; within 0.1 ADU, as a flat of ~1 leaves faint
    pixels), so that their medians move in half-ADU steps; else 0."""
    quantised = 0
    total = 0
    for v in rows:
        v = v[np.isfinite(v)]
        if v.size < 2:
            continue
        f = np.mod(v - v[0], 1.0)
        quantised += np.mean(np.minimum(f, 1.0 - f) < 0.1) > 0.9
        total += 1
    return 0.5 if total and quantised > total / 2 else 0.0


def _row_pixel_sigma(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Noise of one pixel in each of `rows`, from the differences of neighbouring columns
    (MAD-based): the frame's own noise (sky, source, read noise, flat-field pattern)
    without a gain, insensitive to the spectrum's shape, sky lines and cosmic rays."""
    if arr.shape[1] < 2:
        return np.full(len(rows), np.nan)
    d = np.diff(arr[rows, :], axis=1)
    med = _nanmedian(d, axis=1)
    mad = _nanmedian(np.abs(d - med[:, None]), axis=1)
    return MAD_TO_SIGMA * mad / np.sqrt(2.0)


def _walk_blocks(y_blocks: np.ndarray, sig_blocks: np.ndarray, center: float, fwhm: float,
                 h: float) -> Tuple[np.ndarray, np.ndarray]:
    """(flux per column, S/N) of the candidate in each column block: the aperture sum
    (+-h rows) of the block's background-subtracted median profile about its centroid,
    walking outward from the middle block as trace_target does, so a drifting trace is
    followed; a block where the source is not seen keeps its neighbour's centre."""
    nrows, nb = y_blocks.shape
    rows = np.arange(nrows, dtype=float)
    flux = np.full(nb, np.nan)
    snr = np.full(nb, np.nan)
    mid = nb // 2
    for direction in (+1, -1):
        last = float(center)
        b = mid if direction > 0 else mid - 1
        while 0 <= b < nb:
            y = y_blocks[:, b]
            c = _centroid(np.clip(y, 0.0, None), rows, last, max(fwhm, 1.0))
            if not np.isfinite(c) or abs(c - last) > max(fwhm, 1.0):
                c = last
            w = _overlap(rows, c - h, c + h)
            f = float(np.sum(w * y))
            s = f / (max(sig_blocks[b], 1e-12) * np.sqrt(np.sum(w ** 2)))
            flux[b], snr[b] = f, s
            if s >= BLOCK_MIN_SNR:
                last = c
            b += direction
    return flux, snr


def _steepness(y: np.ndarray, center: float, fwhm: float, amp: float) -> Tuple[float, float]:
    """(largest step of `y` between adjacent rows within FWHM+1 rows of `center`, the
    largest step of a Gaussian of this FWHM and amplitude sampled at the same rows)."""
    lo = max(int(np.floor(center - fwhm - 1)), 0)
    hi = min(int(np.ceil(center + fwhm + 1)) + 1, y.size)
    if hi - lo < 2:
        return 0.0, float(amp)
    rows = np.arange(lo, hi, dtype=float)
    model = amp * np.exp(-0.5 * ((rows - center) * FWHM_PER_SIGMA / fwhm) ** 2)
    return float(np.max(np.abs(np.diff(y[lo:hi])))), float(np.max(np.abs(np.diff(model))))


def detect_targets(data, max_targets: int = 3, background_threshold: float = 1.0, model: str = "gaussian",
                   mask=None, spatial_binning=None, min_snr: float = None, min_fwhm_arcsec: float = None,
                   edge_margin_arcsec: float = None, column_blocks: int = None,
                   min_block_fraction: float = None) -> TargetSearch:
    """Point sources along the slit, brightest first, and every rejected candidate with why.

    Candidates. The spatial profile is the median along the dispersion of every row
    (robust to cosmic rays, emission lines and the source's own spectral shape; masked
    pixels are left out). Its background is a running median BACKGROUND_WINDOW_ARCSEC
    wide (keeps slit edges and illumination gradients, drops anything as narrow as a
    star) and its noise the clipped standard deviation of (profile - background) over
    the lit rows, floored at the noise a median of that many pixels has (medians of
    whole ADU are quantised, and their MAD can be 0 on a real low-sky frame). A peak is a
    candidate when its height above the background exceeds ``background_threshold *
    DETECTION_SIGMA * noise`` (goodman's knob: a multiplier of the detection level).
    Each is measured by fitting `model` ('gaussian' | 'moffat') to the
    background-subtracted median profile of the central eighth of the columns, so
    ``center`` is its row at the middle column and ``fwhm`` its width there.

    Why more than the detection level: the median of thousands of columns has so little
    noise that anything systematic is "significant": a slit edge, a flat-field
    residual, a bad row. So a candidate is a target only if it passes, in this order:

    * ``outside_slit``/``slit_edge``: its centre lies inside an illuminated run of the
      slit (see _slit_runs) and at least `edge_margin_arcsec` from the run's ends (the
      slit's edges, or the frame's where the slit runs off it): the background drops
      there and the edge itself makes peaks, and a star that close has no sky beside it.
    * ``narrow``/``wide``: FWHM at least `min_fwhm_arcsec` (the best seeing at SOAR)
      in rows at `spatial_binning` (0.15"/px unbinned, both cameras), and at most half
      the background window. Noise peaks and single bad rows are ~0.6 px wide. Unknown
      binning (None) is taken as the coarsest (3), which never rejects a real star.
    * ``steep``: no step between adjacent rows much steeper than the fitted profile has
      (STEEP_FACTOR): a band of bad rows is as wide as a star but has a flat top between
      cliffs, which no seeing makes.
    * ``snr``: S/N per column at least `min_snr`. It is the S/N of the source summed over
      the extraction aperture (+-1.5 FWHM, extract's default) in one column: the median
      over column blocks of that sum, over the noise of one column's sum measured from
      the frame itself (differences of neighbouring columns in the aperture rows: sky,
      source and read noise, no gain needed). We chose this over the S/N of the
      integrated profile (which grows with the number of columns and so is huge for
      any systematic feature) because it is the S/N the extracted spectrum will have
      (its median, as TargetSpectrum.summary reports it) and does not depend on the
      binning or the length of the spectrum; it is known before tracing, and a source
      below ~3 per column cannot be traced in 5-column bins anyway (trace_target).
    * ``blocks``: seen (block S/N >= BLOCK_MIN_SNR) in at least `min_block_fraction` of
      `column_blocks` independent blocks of columns: a source's continuum spans the
      spectrum, a bad row segment or a defect does not.

    Candidates that are the same source as a brighter one (a shoulder, centres closer
    than a FWHM), that fail to fit, or that pass but are beyond the `max_targets`
    brightest are reported too; only the MAX_CANDIDATES highest peaks are examined, the
    number of others is counted. Knob defaults (None) are the module's TARGET_* constants.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    min_snr = TARGET_MIN_SNR if min_snr is None else float(min_snr)
    min_fwhm_arcsec = TARGET_MIN_FWHM_ARCSEC if min_fwhm_arcsec is None else float(min_fwhm_arcsec)
    edge_margin_arcsec = SLIT_EDGE_MARGIN_ARCSEC if edge_margin_arcsec is None else float(edge_margin_arcsec)
    column_blocks = TARGET_COLUMN_BLOCKS if column_blocks is None else int(column_blocks)
    min_block_fraction = TARGET_MIN_BLOCK_FRACTION if min_block_fraction is None else float(min_block_fraction)
    binning = _binning(spatial_binning)
    scale = plate_scale(binning)
    min_fwhm = min_fwhm_arcsec / scale
    margin = edge_margin_arcsec / scale
    window = _window_rows(spatial_binning)
    max_fwhm = window / 2.0
    arr = _nan_bad(data, mask)
    nrows, ncols = arr.shape
    if not np.isfinite(arr).any():
        return TargetSearch((), (), (), min_fwhm, margin)
    profile = _nanmedian(arr, axis=1)
    bg = _background(profile, window)
    resid = profile - bg
    # The noise a median of n pixels has (1.2533 sigma/sqrt(n)), from the pixels' own
    # noise, plus that of its rounding when the pixels are whole ADU (a median then moves
    # in 0.5 ADU steps): a floor under the MAD of medians, which such quantised profiles
    # make 0 (everything would be hidden) or smaller than their steps (every step a peak).
    sample = np.unique(np.linspace(0, nrows - 1, min(nrows, 64)).astype(int))
    pix_sigma = _row_pixel_sigma(arr, sample)
    quantum2 = _median_quantum(arr[sample]) ** 2 / 12.0  # variance of rounding a median
    n_good = np.maximum(np.isfinite(arr[sample]).sum(axis=1), 1)
    runs = _slit_runs(bg, max(SLIT_MIN_CONTRAST * _finite_median(1.2533 * pix_sigma / np.sqrt(n_good)),
                              SLIT_MIN_STEP * _finite_median(pix_sigma)))
    lit = np.zeros(nrows, dtype=bool)
    for lo, hi in runs:
        lit[int(np.ceil(lo)):int(np.floor(hi)) + 1] = True
    use = lit if lit.sum() > 10 else np.ones(nrows, dtype=bool)
    sigma_lit = _finite_median(pix_sigma[use[sample]] if use[sample].any() else pix_sigma)
    sigma_lit = sigma_lit if np.isfinite(sigma_lit) else 0.0

    def median_noise(values: np.ndarray, n: int) -> float:
        """Noise of a profile of medians of n pixels over the lit rows, floored."""
        return _clipped_sigma(values[use], float(np.sqrt((1.2533 * sigma_lit) ** 2 / max(n, 1) + quantum2)))

    noise = median_noise(resid, ncols)
    if not np.isfinite(noise) or noise <= 0:
        return TargetSearch((), (), tuple(runs), min_fwhm, margin)
    level = float(background_threshold) * DETECTION_SIGMA * noise
    r = np.nan_to_num(resid, nan=0.0)
    peaks, _ = signal.find_peaks(r, height=level, distance=3)
    if peaks.size == 0:
        return TargetSearch((), (), tuple(runs), min_fwhm, margin)
    peaks = peaks[np.argsort(r[peaks])[::-1]]
    unexamined = max(peaks.size - MAX_CANDIDATES, 0)
    peaks = peaks[:MAX_CANDIDATES]

    half = max(ncols // 16, 25)
    mid = ncols // 2
    central = _nanmedian(arr[:, max(mid - half, 0):mid + half + 1], axis=1)
    c_resid = central - _background(central, window)
    c_noise = median_noise(c_resid, 2 * half + 1)
    c_resid = np.nan_to_num(c_resid, nan=0.0)
    nb = int(np.clip(column_blocks, 1, max(ncols // 8, 1)))
    block_edges = np.linspace(0, ncols, nb + 1).astype(int)
    blocks = _bin_medians(arr, block_edges)
    y_blocks = np.empty_like(blocks)
    sig_blocks = np.empty(nb)
    for k in range(nb):
        yk = blocks[:, k] - _background(blocks[:, k], window)
        sig_blocks[k] = median_noise(yk, int(block_edges[k + 1] - block_edges[k]))
        y_blocks[:, k] = np.nan_to_num(yk, nan=0.0)
    need_blocks = int(np.ceil(min_block_fraction * nb - 1e-9))

    rows_all = np.arange(nrows, dtype=float)
    nan = float("nan")
    accepted: List[Target] = []
    rejected: List[Rejection] = []
    seen: List[Tuple[float, float]] = []  # (center, fwhm) of every candidate measured so far
    for p in peaks:
        guess = _half_max_width(r, int(p))
        w = int(max(np.ceil(3 * guess), 8))
        lo, hi = max(p - w, 0), min(p + w + 1, nrows)
        try:
            center, fwhm, amp = _fit_profile(rows_all[lo:hi], c_resid[lo:hi], float(p), float(c_resid[p]),
                                             guess, model)
            ok = np.isfinite(center) and np.isfinite(fwhm) and lo <= center <= hi - 1 and amp > 0 and fwhm > 0
        except Exception:  # judged below: a fit that does not converge is not a target
            ok = False
        if not ok:
            rejected.append(Rejection(float(p), nan, float(r[p]), nan, "fit",
                                      f"the {model} profile fit did not converge on a positive peak"))
            continue
        twin = next((c for c, f in seen if abs(center - c) < max(fwhm, f)), None)
        if twin is not None:
            rejected.append(Rejection(center, fwhm, amp, nan, "duplicate",
                                      f"the same source as the brighter candidate at row {twin:.1f}"))
            continue
        seen.append((center, fwhm))
        h = max(1.5 * fwhm, 1.0)
        flux_b, snr_b = _walk_blocks(y_blocks, sig_blocks, center, fwhm, h)
        ap_rows = np.arange(max(int(np.floor(center - h)), 0), min(int(np.ceil(center + h)) + 1, nrows))
        wts = _overlap(ap_rows.astype(float), center - h, center + h)
        col_noise = float(np.sqrt(np.nansum(wts ** 2 * _row_pixel_sigma(arr, ap_rows) ** 2)))
        snr = _finite_median(flux_b) / col_noise if col_noise > 0 else nan
        n_seen = int(np.sum(snr_b >= BLOCK_MIN_SNR))
        fails: List[Tuple[str, str]] = []
        inside = [(a, b) for a, b in runs if a <= center <= b] if runs else [(-0.5, nrows - 0.5)]
        if not inside:
            spans = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in runs)
            fails.append(("outside_slit", f"outside the illuminated part of the slit (rows {spans})"))
        else:
            a, b = inside[0]
            dist, edge = min((center - a, a), (b - center, b))
            if dist < margin:
                what = "frame's edge" if edge in (-0.5, nrows - 0.5) else "slit edge"
                fails.append(("slit_edge", f"{dist:.1f} px from the {what} at row {edge:.1f} "
                                           f"(margin {margin:.1f} px = {edge_margin_arcsec:g}\")"))
        if fwhm < min_fwhm:
            fails.append(("narrow", f"FWHM {fwhm:.2f} px is narrower than the seeing allows at spatial binning "
                                    f"{binning} (min {min_fwhm:.2f} px = {min_fwhm_arcsec:g}\")"))
        if fwhm > max_fwhm:
            fails.append(("wide", f"FWHM {fwhm:.2f} px is wider than a point source (max {max_fwhm:.1f} px)"))
        jump, allowed = _steepness(c_resid, center, fwhm, amp)
        if jump > STEEP_FACTOR * allowed + STEEP_NOISE_SIGMA * np.sqrt(2.0) * c_noise:
            fails.append(("steep", f"edges steeper than the seeing allows: a jump of {jump / amp:.0%} of the peak "
                                   f"between adjacent rows where a profile {fwhm:.2f} px wide has at most "
                                   f"{allowed / amp:.0%} (a band of bad rows, not a star)"))
        if not snr >= min_snr:
            fails.append(("snr", f"S/N {snr:.1f} per column is below {min_snr:g}"))
        if n_seen < need_blocks:
            fails.append(("blocks", f"seen in only {n_seen} of {nb} column blocks (needs {need_blocks}): "
                                    f"a source's continuum spans the spectrum, a bad row or defect does not"))
        if fails:
            rejected.append(Rejection(center, fwhm, amp, snr, fails[0][0], "; ".join(m for _, m in fails)))
            continue
        accepted.append(Target(center=center, fwhm=fwhm, amplitude=amp, model=model, snr=snr))
    accepted.sort(key=lambda t: t.amplitude, reverse=True)
    keep = max(int(max_targets), 0)
    for t in accepted[keep:]:
        rejected.append(Rejection(t.center, t.fwhm, t.amplitude, t.snr, "max_targets",
                                  f"a real source, but fainter than the {keep} brightest (max_targets)"))
    return TargetSearch(tuple(accepted[:keep]), tuple(rejected), tuple(runs), min_fwhm, margin, unexamined)


def find_targets(data, max_targets: int = 3, background_threshold: float = 1.0, model: str = "gaussian",
                 mask=None, spatial_binning=None, min_snr: float = None, min_fwhm_arcsec: float = None,
                 edge_margin_arcsec: float = None, column_blocks: int = None,
                 min_block_fraction: float = None) -> List[Target]:
    """The targets of detect_targets (brightest first, at most `max_targets`) without
    the rejected candidates; see detect_targets for every argument. Pass
    `spatial_binning` (the second number of CCDSUM): without it the seeing limit is
    that of the coarsest binning."""
    return list(detect_targets(data, max_targets=max_targets, background_threshold=background_threshold,
                               model=model, mask=mask, spatial_binning=spatial_binning, min_snr=min_snr,
                               min_fwhm_arcsec=min_fwhm_arcsec, edge_margin_arcsec=edge_margin_arcsec,
                               column_blocks=column_blocks, min_block_fraction=min_block_fraction).targets)


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


def _columns(trace: Trace, columns, ncols: int) -> np.ndarray:
    cols = trace.valid_columns if columns is None else np.asarray(columns, dtype=int)
    return cols[(cols >= 0) & (cols < ncols)]


def extraction_rows(trace: Trace, fwhm: float, nrows: int, ncols: int, columns=None, aperture: float = 3.0,
                    sky_offset: float = 3.0, sky_width: float = 5.0) -> Tuple[int, int]:
    """The rows [lo, hi) `extract` reads with these arguments: the aperture and both sky
    regions along the trace over `columns`, and a row more on each side. Only these
    rows need cleaning of cosmic rays before the spectrum is extracted."""
    y = trace.center(_columns(trace, columns, ncols))
    s_out = aperture * fwhm / 2.0 + (sky_offset + sky_width) * fwhm
    return int(max(np.floor(y.min() - s_out) - 1, 0)), int(min(np.ceil(y.max() + s_out) + 2, nrows))


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

    cols = _columns(trace, columns, ncols)
    y = trace.center(cols)
    h = aperture * fwhm / 2.0
    s_in, s_out = h + sky_offset * fwhm, h + (sky_offset + sky_width) * fwhm
    # rows covering the sky regions: work on a band (rows x len(cols)) only
    r_lo, r_hi = extraction_rows(trace, fwhm, nrows, ncols, columns, aperture, sky_offset, sky_width)
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
