"""Flux calibration: a sensitivity function from a standard star, applied to science spectra.

Why: a `wecfzst_` spectrum is in ADU per pixel, which says nothing about the source until
the throughput of atmosphere, telescope, spectrograph and detector is divided out. One
exposure of a spectrophotometric standard measures that throughput (the *sensitivity*):
its flux is tabulated, so observed rate / tabulated flux, after taking the atmosphere's
extinction out, is what the instrument delivers per unit flux. Applied to any spectrum of
the same setup, at that spectrum's own airmass, it gives erg/s/cm^2/Å.

Choices, and why:

- The sensitivity is in electrons (not ADU) per second per Å per unit flux, *above the
  atmosphere*: it then holds for a science frame read out with another gain or exposed
  for another time, and at another airmass (the CTIO extinction curve, used for Cerro
  Pachón as Gemini South and PypeIt do, moves it there).
- The standards are the southern ones of Hamuy et al. (1992, 1994) as ESO distributes
  them, with their bin widths: each tabulated value is the star's mean flux over a bin
  (50 Å for most), so the observed rate is averaged over the very same bin before the
  ratio is taken. The star's Balmer lines then sit in both numbers alike and need no
  mask; the atmosphere's molecular bands do not (they are absorbed in the data only), so
  bins touching `TELLURIC_BANDS` are left out and the fit bridges them.
- The fit is a cubic least-squares spline in log(ratio) with knots some 300 Å apart,
  clipped twice at 3 sigma: smooth enough not to follow noise or a bad bin, flexible
  enough for a grating's blaze and a blocking filter's slope.
- A standard is recognised by name (with the spellings observers use) and checked
  against the pointing: a name 2 arcmin from where the telescope pointed is another
  field (an offset target, a typo), not the standard.

Everything here is arrays and headers in, arrays and bytes out; the data files are read
from `data/standards/` beside this module (see its README), nothing from the network.
"""
from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from astropy.io import fits

DATA_DIR = Path(__file__).resolve().parent / "data" / "standards"
TABLE_DIR = DATA_DIR / "eso_hamuy"
EXTINCTION_FILE = DATA_DIR / "extinction" / "ctioextinct.dat"

#: Telluric absorption bands (Å, air) whose bins are left out of the fit: the O2 gamma
#: band, the O2 B band, the H2O band at 7200, the O2 A band and the H2O bands at 8200 and
#: 9300 Å. The first five are PypeIt's optical telluric mask (its UVIS sensitivity
#: algorithm, `flux_calib.py`); the last is the broad H2O band of Bessell (1999, PASP
#: 111, 1426, Fig. 1), which PypeIt masks from a transmission model instead. The A and B
#: bands are saturated and ~50% deep at Goodman's resolution whatever the weather; the
#: H2O bands vary with humidity through the night, so not even a mean correction holds.
TELLURIC_BANDS: Tuple[Tuple[float, float], ...] = (
    (6270.0, 6290.0), (6850.0, 6960.0), (7160.0, 7340.0), (7580.0, 7750.0), (8110.0, 8350.0), (8950.0, 9850.0))

#: Tabulated flux unit of the ESO files (erg/s/cm^2/Å).
TABLE_FLUX_UNIT = 1e-16
#: Fewer usable table bins than this cannot constrain a curve across the spectrum.
MIN_BINS = 6
#: A bin whose observed mean is below this signal-to-noise is not used.
MIN_BIN_SNR = 3.0
#: The table's own accuracy (Hamuy et al.: ~1-2%) bounds how much a bright bin is trusted.
TABLE_FRACTIONAL_ERROR = 0.01
#: Tables binned finer than this (Å: the 16 Å HR stars, the 1-2 Å spaced Oke stars) are
#: averaged into bins this wide before use: a narrow bin next to a Balmer line would
#: compare the table's resolution with the spectrograph's, a wide one compares fluxes.
MIN_BIN_WIDTH = 40.0
REBIN_WIDTH = 50.0
#: Knot spacing (Å) of the spline, and the fewest bins between knots.
KNOT_SPACING = 300.0
BINS_PER_KNOT = 5
CLIP_SIGMA, CLIP_PASSES = 3.0, 2
#: A name match further than this from the pointing is not the standard (arcsec).
NAME_POINTING_LIMIT = 120.0
#: More than this fraction of the range flagged in MASK (no good pixel in the aperture:
#: saturated or struck) and the standard is refused rather than patched.
MAX_MASKED_FRACTION = 0.2

FLUX_UNIT = "erg / (s cm2 Angstrom)"
VARIANCE_UNIT = "erg2 / (s2 cm4 Angstrom2)"
SENSITIVITY_UNIT = "electron cm2 / erg"  # (e-/s/Å) / (erg/s/cm^2/Å)


class FluxCalFailure(ValueError):
    """A spectrum that cannot give (or take) a sensitivity; str(exc) is the reason shown to the observer."""


# ------------------------------------------------------------------------ standards
@dataclass(frozen=True)
class Standard:
    """One spectrophotometric standard as `esofil_info.txt` lists it (J2000 position)."""

    name: str  # "LTT3218", "EG21", "Feige110", "CD-32d9927"
    file: str  # "fltt3218.dat"
    ra_deg: float
    dec_deg: float


def _sexagesimal(text: str) -> float:
    """'dd:mm:ss.s' (or 'dd mm ss') to a float in the first field's unit; the sign is the
    string's, so '-00:30:00' is -0.5."""
    text = text.strip()
    parts = [float(p) for p in re.split(r"[:\s]+", text.lstrip("+-")) if p]
    if not parts or len(parts) > 3:
        raise ValueError(f"not sexagesimal: {text!r}")
    value = sum(p / 60.0 ** i for i, p in enumerate(parts))
    return -value if text.startswith("-") else value


def _angle(value, hours: bool) -> Optional[float]:
    """Degrees from a header value: a sexagesimal string (hours for RA) or a number in
    degrees; None when absent or unreadable (the pointing is then simply not known)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            if ":" in text or " " in text:
                return _sexagesimal(text) * (15.0 if hours else 1.0)
            return float(text)
        except ValueError:
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


@functools.lru_cache(maxsize=1)
def standards() -> Tuple[Standard, ...]:
    """The standards `esofil_info.txt` lists (its commented lines left out)."""
    out = []
    for line in (TABLE_DIR / "esofil_info.txt").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 4 or not fields[0].endswith(".dat"):
            continue  # comments and the column titles
        out.append(Standard(name=fields[1], file=fields[0], ra_deg=_sexagesimal(fields[2]) * 15.0,
                            dec_deg=_sexagesimal(fields[3])))
    return tuple(out)


def _normalised(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def _aliases(standard: Standard) -> Tuple[str, ...]:
    """Normalised spellings of a standard's name that observers type. Only unambiguous
    ones: 'Feige 110' and 'F110'; 'CD-32 9927' beside 'CD-32d9927'; 'Hiltner 600'.
    ('L3218' is not LTT 3218: the L catalogue numbers stars differently.)"""
    key = _normalised(standard.name)
    keys = {key, re.sub(r"(?<=\d)D(?=\d)", "", key)}
    if key.startswith("FEIGE"):
        keys.add("F" + key[len("FEIGE"):])
    if key.startswith("HILT"):
        keys.add("HILTNER" + key[len("HILT"):])
    return tuple(sorted(keys))


@functools.lru_cache(maxsize=1)
def _name_index():
    index = {}
    for s in standards():
        for key in _aliases(s):
            index.setdefault(key, set()).add(s)
    return index


def _match_name(object_name: str) -> Optional[Standard]:
    """The standard the OBJECT names: the whole name, or a leading part of it followed by
    a separator ('LTT3218_std', 'LTT 3218 slit 1.0'); None when none or several match."""
    text = (object_name or "").strip()
    index = _name_index()
    cuts = [i for i, c in enumerate(text) if not (c.isascii() and c.isalnum())] + [len(text)]
    found = set()
    for i in cuts:
        found |= index.get(_normalised(text[:i]), set())
    return found.pop() if len(found) == 1 else None


def _separation_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance (haversine: exact at the arcsecond scales compared here)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0


def find_standard(object_name: str, ra=None, dec=None, max_arcsec: float = 10.0
                  ) -> Optional[Tuple[Standard, str]]:
    """(standard, how) for a frame's OBJECT and pointing, how being "name and position",
    "name" or "position"; None when the frame is not of a standard.

    `ra`, `dec`: header strings ('hh:mm:ss.s', '±dd:mm:ss.s') or degrees. A pointing within
    `max_arcsec` of a standard matches whatever the name (observers leave OBJECT as the
    last target's). A name whose pointing is known and more than `NAME_POINTING_LIMIT`
    away is refused: the frame is of something else. Between the two the name decides,
    which covers pointing errors and the stars' own motion (LTT 3218 and other nearby
    white dwarfs move about an arcsecond a year from their J2000 positions).
    """
    named = _match_name(object_name)
    ra_deg, dec_deg = _angle(ra, hours=True), _angle(dec, hours=False)
    if ra_deg is None or dec_deg is None:
        return (named, "name") if named is not None else None
    catalogue = standards()
    seps = _separation_arcsec(ra_deg, dec_deg, [s.ra_deg for s in catalogue], [s.dec_deg for s in catalogue])
    nearest = int(np.argmin(seps))
    if seps[nearest] <= max_arcsec:
        near = catalogue[nearest]
        return near, ("name and position" if near == named else "position")
    if named is None:
        return None
    if _separation_arcsec(ra_deg, dec_deg, named.ra_deg, named.dec_deg) > NAME_POINTING_LIMIT:
        return None
    return named, "name"


@functools.lru_cache(maxsize=None)
def _table(file: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = np.loadtxt(TABLE_DIR / file, ndmin=2)
    wavelength = data[:, 0]
    flux = data[:, 1] * TABLE_FLUX_UNIT
    if data.shape[1] >= 4:
        width = data[:, 3]
    else:  # the finely sampled files: each value stands for its share of the spacing
        width = np.gradient(wavelength)
    arrays = (wavelength, flux, np.abs(width))
    for a in arrays:
        a.setflags(write=False)
    return arrays


def standard_flux(standard: Standard) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wavelength Å air, flux erg/s/cm^2/Å, bin width Å) of the standard's table (read-only)."""
    return _table(standard.file)


def _fit_bins(standard: Standard) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table as the bins the fit compares: as tabulated when they are at least
    `MIN_BIN_WIDTH` wide, else averaged into abutting `REBIN_WIDTH` bins (each tabulated
    value standing for the flux over its share of the spacing)."""
    centres, flux, widths = standard_flux(standard)
    if np.median(widths) >= MIN_BIN_WIDTH:
        return centres, flux, widths
    spacing = np.gradient(centres)
    edges = np.concatenate([centres - spacing / 2, [centres[-1] + spacing[-1] / 2]])
    cumulative = np.concatenate([[0.0], np.cumsum(flux * spacing)])
    new_edges = np.arange(edges[0], edges[-1] + 1e-9, REBIN_WIDTH)
    mean = np.diff(np.interp(new_edges, edges, cumulative)) / REBIN_WIDTH
    return (new_edges[:-1] + new_edges[1:]) / 2, mean, np.full(mean.size, REBIN_WIDTH)


@functools.lru_cache(maxsize=1)
def _extinction_table() -> Tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(EXTINCTION_FILE, ndmin=2)
    order = np.argsort(data[:, 0])
    return data[order, 0], data[order, 1]


def extinction(wavelength) -> np.ndarray:
    """CTIO extinction (mag/airmass) at `wavelength` (Å), linearly interpolated; beyond the
    curve's ends (3200-10870 Å) its end values."""
    lam, k = _extinction_table()
    return np.interp(np.asarray(wavelength, dtype=float), lam, k)


# ---------------------------------------------------------------------- sensitivity
@dataclass(frozen=True, eq=False)
class Sensitivity:
    """What the instrument delivers per unit flux above the atmosphere, on `wavelength`:
    sensitivity in (e-/s/Å) / (erg/s/cm^2/Å), from one standard's exposure."""

    wavelength: np.ndarray  # Å, increasing
    sensitivity: np.ndarray
    standard: str
    airmass: float
    exptime: float
    masked: Tuple[Tuple[float, float], ...]  # telluric bands in the standard's range, left out of the fit
    points: int  # table bins the fit kept
    rms: float  # fractional rms of those bins' ratios about the fit

    def at(self, wavelength) -> np.ndarray:
        """Interpolated at `wavelength`; NaN outside the range it was measured on."""
        lam = np.asarray(wavelength, dtype=float)
        return np.interp(lam, self.wavelength, self.sensitivity, left=np.nan, right=np.nan)


def _header_value(header, key: str, low: float, high: float, what: str) -> float:
    value = header.get(key) if header is not None else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FluxCalFailure(f"no usable {key} in the header ({value!r}): {what} is needed") from None
    if not (np.isfinite(number) and low < number < high):
        raise FluxCalFailure(f"{key} = {value!r} is not a usable {what}")
    return number


def _exposure(header) -> Tuple[float, float, float]:
    """(EXPTIME s, AIRMASS, GAIN e-/ADU), checked."""
    return (_header_value(header, "EXPTIME", 0.0, 1e6, "exposure time (s)"),
            _header_value(header, "AIRMASS", 0.99, 10.0, "airmass"),
            _header_value(header, "GAIN", 0.0, 1e3, "gain (e-/ADU)"))


def _grid(wavelength, *arrays):
    """The wavelength grid increasing, with the arrays that go with it, as float copies;
    and the dispersion (Å per pixel) of each pixel."""
    lam = np.asarray(wavelength, dtype=float).ravel()
    out = [np.asarray(a, dtype=float).ravel() for a in arrays]
    if lam.size < 2 or any(a.size != lam.size for a in out):
        raise FluxCalFailure(f"wavelength ({lam.size}) and spectrum ({[a.size for a in out]}) do not match")
    step = np.diff(lam)
    if not (np.isfinite(lam).all() and (np.all(step > 0) or np.all(step < 0))):
        raise FluxCalFailure("the wavelength grid is not monotonic")
    if step[0] < 0:
        lam, out = lam[::-1], [a[::-1] for a in out]
    return lam, np.gradient(lam), out


def _rate_above_atmosphere(lam, dispersion, counts, variance, header):
    """(e-/s/Å above the atmosphere, its variance, exptime, airmass)."""
    exptime, airmass, gain = _exposure(header)
    factor = gain / exptime / dispersion * 10.0 ** (0.4 * extinction(lam) * airmass)
    return counts * factor, variance * factor ** 2, exptime, airmass


def _bin_means(lam, dispersion, rate, var_rate, bad, centres, widths):
    """Mean rate over each bin [c - w/2, c + w/2] (fractions of pixels counted by their
    overlap), its variance, and whether the bin lies inside the data with no bad pixel."""
    edges = np.concatenate([[lam[0] - dispersion[0] / 2], (lam[1:] + lam[:-1]) / 2,
                            [lam[-1] + dispersion[-1] / 2]])
    dl = np.diff(edges)

    def integral(values):
        cum = np.concatenate([[0.0], np.cumsum(values)])
        return np.interp(centres + widths / 2, edges, cum) - np.interp(centres - widths / 2, edges, cum)

    mean = integral(np.where(bad, 0.0, rate) * dl) / widths
    var = integral(np.where(bad, 0.0, var_rate) * dl ** 2) / widths ** 2
    inside = (centres - widths / 2 >= edges[0]) & (centres + widths / 2 <= edges[-1])
    clean = integral(bad.astype(float) * dl) <= 0.0
    return mean, var, inside & clean


def _in_bands(lo, hi, bands) -> np.ndarray:
    hit = np.zeros(np.shape(lo), dtype=bool)
    for b_lo, b_hi in bands:
        hit |= (hi > b_lo) & (lo < b_hi)
    return hit


def _spline_fit(x, y, sigma):
    """A cubic least-squares spline through (x, y), knots ~`KNOT_SPACING` apart at
    quantiles of x (so every interval holds points), clipped `CLIP_PASSES` times."""
    from scipy.interpolate import LSQUnivariateSpline

    keep = np.ones(x.size, dtype=bool)
    spline = None
    for _ in range(CLIP_PASSES + 1):
        xs, ys, ws = x[keep], y[keep], 1.0 / sigma[keep]
        n_knots = int(max(0, min(xs.size // BINS_PER_KNOT - 1, (xs[-1] - xs[0]) // KNOT_SPACING)))
        knots = np.quantile(xs, np.linspace(0, 1, n_knots + 2)[1:-1]) if n_knots else []
        spline = LSQUnivariateSpline(xs, ys, knots, w=ws, k=min(3, xs.size - 1))
        resid = y - spline(x)
        # the scatter seen (MAD) or a bin's own error, whichever is larger: a noisy bin is
        # not clipped for its noise, nor everything for a fit that happens to be tight
        scale = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        new_keep = np.abs(resid) <= CLIP_SIGMA * np.maximum(scale, sigma)
        if new_keep.sum() < MIN_BINS or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return spline, keep


def build_sensitivity(wavelength, counts, variance, header, standard: Standard, mask=None) -> Sensitivity:
    """The sensitivity from `standard`'s spectrum: `counts` ADU per pixel on the grid
    `wavelength` (Å), `variance` ADU^2, `header` with EXPTIME, AIRMASS and GAIN; `mask`
    (optional, the product's MASK): pixels with no good pixel in the aperture.

    Rate e-/s/Å = counts x GAIN / EXPTIME / dispersion, times 10^(0.4 k AIRMASS); the mean
    rate over each table bin inside the data and clear of `TELLURIC_BANDS`, divided by the
    tabulated flux, is fitted in log with a clipped spline (see the module's notes).
    Raises FluxCalFailure with the reason when the header or the spectrum cannot give one.
    """
    if variance is None:
        variance = np.zeros_like(np.asarray(counts, dtype=float))
    flags = np.zeros(np.size(counts)) if mask is None else np.asarray(mask, dtype=float)
    lam, dispersion, (counts, variance, flags) = _grid(wavelength, counts, variance, flags)
    bad = ~(np.isfinite(counts) & np.isfinite(variance)) | (flags != 0)
    if bad.all():
        raise FluxCalFailure("the standard's spectrum has no finite value")
    flagged = float(np.mean(flags != 0))
    if flagged > MAX_MASKED_FRACTION:
        raise FluxCalFailure(f"{flagged:.0%} of the standard's spectrum has no good pixel in the aperture "
                             "(saturated?): take a shorter exposure")
    good_counts = counts[~bad]
    if np.median(good_counts) <= 0 or good_counts.sum() <= 0:
        raise FluxCalFailure("the standard's spectrum is negative or zero: no star in the aperture "
                             "(check the target and the sky subtraction)")
    rate, var_rate, exptime, airmass = _rate_above_atmosphere(lam, dispersion, counts, variance, header)

    centres, table_flux, widths = _fit_bins(standard)
    lo, hi = centres - widths / 2, centres + widths / 2
    mean, var, usable = _bin_means(lam, dispersion, rate, var_rate, bad, centres, widths)
    in_range = (lo >= lam[0] - dispersion[0] / 2) & (hi <= lam[-1] + dispersion[-1] / 2)
    telluric = _in_bands(lo, hi, TELLURIC_BANDS)
    snr = np.where(var > 0, mean / np.sqrt(np.where(var > 0, var, 1.0)), np.inf)
    bright = (mean > 0) & (snr >= MIN_BIN_SNR)
    use = usable & ~telluric & bright & (table_flux > 0)
    if use.sum() < MIN_BINS:
        raise FluxCalFailure(
            f"only {int(use.sum())} of {standard.name}'s table bins are usable (need {MIN_BINS}): "
            f"{int(in_range.sum())} lie within {lam[0]:.0f}-{lam[-1]:.0f} A, {int((in_range & telluric).sum())} "
            f"of them in telluric bands, {int((in_range & ~usable).sum())} with bad pixels, "
            f"{int((usable & ~bright).sum())} without signal (S/N < {MIN_BIN_SNR:g})")

    x = centres[use]
    ratio = mean[use] / table_flux[use]
    sigma = np.hypot(1.0 / snr[use], TABLE_FRACTIONAL_ERROR)
    spline, keep = _spline_fit(x, np.log(ratio), sigma)
    inside = (lam >= lo[use][0]) & (lam <= hi[use][-1])
    curve = np.exp(spline(lam[inside]))
    fit_at_bins = np.exp(spline(x[keep]))
    rms = float(np.sqrt(np.mean((ratio[keep] / fit_at_bins - 1.0) ** 2)))
    masked = tuple((a, b) for a, b in TELLURIC_BANDS if b > lam[0] and a < lam[-1])
    return Sensitivity(wavelength=_frozen(lam[inside]), sensitivity=_frozen(curve), standard=standard.name,
                       airmass=airmass, exptime=exptime, masked=masked, points=int(keep.sum()), rms=rms)


def _frozen(a) -> np.ndarray:
    out = np.array(a, dtype=float)
    out.setflags(write=False)
    return out


def apply_sensitivity(wavelength, counts, variance, header, sensitivity: Sensitivity
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """(flux erg/s/cm^2/Å, its variance) of a science spectrum (`counts` ADU per pixel on
    `wavelength`, `header` with its own EXPTIME, AIRMASS and GAIN), corrected for
    extinction at its own airmass; NaN where the sensitivity is not defined. Returned in
    the order of `wavelength` as given."""
    counts = np.asarray(counts, dtype=float)
    variance = np.full(counts.shape, np.nan) if variance is None else np.asarray(variance, dtype=float)
    lam = np.asarray(wavelength, dtype=float)
    if lam.shape != counts.shape or variance.shape != counts.shape:
        raise FluxCalFailure(f"wavelength {lam.shape}, flux {counts.shape} and variance {variance.shape} differ")
    dispersion = np.abs(np.gradient(lam))
    rate, var_rate, _, _ = _rate_above_atmosphere(lam, dispersion, counts, variance, header)
    s = sensitivity.at(lam)
    return rate / s, var_rate / s ** 2


# ----------------------------------------------------------------------- products
_CARDS = (("GSP_FSTD", "standard", "flux standard"), ("GSP_FSAM", "airmass", "airmass of the standard"),
          ("GSP_FSEX", "exptime", "exposure time of the standard (s)"),
          ("GSP_FRMS", "rms", "sensitivity fit: fractional rms"),
          ("GSP_FNPT", "points", "sensitivity fit: table bins used"))


def _masked_text(bands) -> str:
    return ",".join(f"{a:g}-{b:g}" for a, b in bands)


def _sensitivity_cards(h: fits.Header, sens: Sensitivity) -> None:
    for key, attr, comment in _CARDS:
        value = getattr(sens, attr)
        h[key] = (round(value, 6) if isinstance(value, float) else value, comment)
    h["GSP_FMSK"] = (_masked_text(sens.masked), "telluric bands left out (A)")


def sensitivity_fits(sens: Sensitivity, provenance: Sequence[str] = ()) -> bytes:
    """The sensitivity as FITS: a table `SENSFUNC` (WAVELENGTH Å, SENSITIVITY) that keeps
    any grid exactly; what it was made from in the primary header (GSP_F* cards) and
    `provenance` as HISTORY."""
    primary = fits.PrimaryHDU()
    _sensitivity_cards(primary.header, sens)
    for line in provenance:
        primary.header.add_history(str(line))
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="WAVELENGTH", format="D", unit="Angstrom", array=sens.wavelength),
         fits.Column(name="SENSITIVITY", format="D", unit=SENSITIVITY_UNIT, array=sens.sensitivity)],
        name="SENSFUNC")
    table.header["COMMENT"] = "(electrons/s/Angstrom) per (erg/s/cm2/Angstrom), above the atmosphere"
    buf = io.BytesIO()
    fits.HDUList([primary, table]).writeto(buf)
    return buf.getvalue()


def read_sensitivity_fits(body: bytes) -> Sensitivity:
    """The Sensitivity that `sensitivity_fits` wrote."""
    with fits.open(io.BytesIO(body)) as hdul:
        h, data = hdul[0].header, hdul["SENSFUNC"].data
        masked = tuple(tuple(float(v) for v in band.split("-", 1))
                       for band in str(h.get("GSP_FMSK", "")).split(",") if band)
        return Sensitivity(wavelength=_frozen(data["WAVELENGTH"]), sensitivity=_frozen(data["SENSITIVITY"]),
                           standard=str(h["GSP_FSTD"]), airmass=float(h["GSP_FSAM"]), exptime=float(h["GSP_FSEX"]),
                           masked=masked, points=int(h["GSP_FNPT"]), rms=float(h["GSP_FRMS"]))


def _linear_wavelength(h: fits.Header, n: int) -> np.ndarray:
    if "CRVAL1" not in h or "CDELT1" not in h:
        raise FluxCalFailure("the spectrum has no linear wavelength axis (CRVAL1/CDELT1): not a wecfzst_ product")
    return float(h["CRVAL1"]) + (np.arange(n) + 1.0 - float(h.get("CRPIX1", 1.0))) * float(h["CDELT1"])


def flux_calibrated_fits(calibrated_body: bytes, sens: Sensitivity, standard_note: str
                         ) -> Tuple[bytes, np.ndarray, np.ndarray]:
    """From a `wecfzst_` product, the same spectrum in erg/s/cm^2/Å: primary (1-D WCS,
    BUNIT), `VAR` and `MASK` if present (the sky, in ADU, is not carried over); GSP_F*
    cards say which standard and airmasses calibrated it, `standard_note` (e.g. the
    standard's file) in GSP_FNOT. Float64: a faint galaxy's variance (~1e-38) is below
    float32's normal range. Returns (bytes, wavelength, flux) for the plot."""
    with fits.open(io.BytesIO(calibrated_body)) as hdul:
        header = hdul[0].header.copy()
        counts = np.asarray(hdul[0].data, dtype=float)
        names = [hdu.name for hdu in hdul]
        variance = np.asarray(hdul["VAR"].data, dtype=float) if "VAR" in names else None
        mask = np.asarray(hdul["MASK"].data) if "MASK" in names else None
    if counts.ndim != 1:
        raise FluxCalFailure(f"expected a 1-D spectrum, got shape {counts.shape}")
    lam = _linear_wavelength(header, counts.size)
    flux, var = apply_sensitivity(lam, counts, variance, header, sens)
    header["BUNIT"] = FLUX_UNIT
    _sensitivity_cards(header, sens)
    header["GSP_FAIR"] = (float(header["AIRMASS"]), "airmass corrected for (this frame)")
    header["GSP_FNOT"] = str(standard_note)
    header.add_history(f"flux calibrated with {sens.standard} (airmass {sens.airmass:.3f}), "
                       f"CTIO extinction at airmass {float(header['AIRMASS']):.3f}")
    hdus = [fits.PrimaryHDU(data=flux, header=header)]
    if variance is not None:
        hdus.append(fits.ImageHDU(data=var, name="VAR"))
        hdus[-1].header["BUNIT"] = (VARIANCE_UNIT, "variance of the flux")
    if mask is not None:
        hdus.append(fits.ImageHDU(data=mask.astype(np.uint8), name="MASK"))
        hdus[-1].header["COMMENT"] = "1: no good pixel in the aperture, bridged from the neighbours"
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf, output_verify="silentfix")
    return buf.getvalue(), lam, flux
