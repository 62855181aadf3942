"""One-dimensional light sources, in electrons per binned pixel, on the truth wavelength scale.

Every spectrum here is a function of the *truth coordinate* ``x`` (unbinned reference
pixels, see `geometry`), whose wavelength is exactly the reference lamp's Chebyshev
solution ``lambda = chebval(x, coefficients)``.

Why the comparison lamp is *rebuilt* from the reference lamp instead of being resampled
verbatim: the lines of the shipped reference spectrum sit up to ~0.6 unbinned px away
from where its own solution puts their laboratory wavelengths (the fit's residuals), so
a verbatim copy would make the recorded solution wrong by that much. Instead the lamp
is decomposed once into a smooth continuum plus Gaussian lines:

* every identified line (``GSP_P``/``GSP_A`` pair) whose measured position agrees with the
  solution to within 1.5 px is placed *exactly* at ``x = solution^-1(GSP_A)``;
* every other peak of the reference spectrum (unidentified lines, and identified ones
  whose position disagrees, i.e. misidentifications) keeps its measured position,
  corrected by the offset interpolated between the neighbouring identified lines;
* each line keeps its reference peak height; all lines share one Gaussian width,
  measured on the brightest lines (the instrumental profile). The reference lines
  have a weaker shoulder ~3 px redward; it is treated as part of the profile and not
  rendered, and peaks fainter than PEAK_THRESHOLD of the brightest are dropped.

The comparison frames therefore differ from the reference spectrum in line shape
(symmetric, no shoulder) and by up to ~0.6 unbinned px in line positions, which is
exactly the reference's own calibration error; the whole night is scaled once so the
brightest lamp pixel reaches COMP_PEAK_ADU.

Symmetric lines make the truth independent of the centroid estimator a test or a
reduction uses, and the full line list keeps the lamp looking like the reference lamp,
so cross-correlation against it still finds the frame's shift.

Lines (lamp and night sky) are integrated over each binned pixel (flux conserving,
error functions at the pixel edges, which sit at ``x_centre -/+ sb/2``, i.e. -/+ 1 at
2x2); smooth continua (quartz, sky continuum, the target) are evaluated at the pixel centre.

The slit: everything above is for the reference lamps' 0.45" slit. Through a slit k times
wider (`LineSet.through_slit`, `LampModel.through_slit`) every line is k times wider
(sigma * k: the slit image dominates the line profile) and k times brighter, as is any
slit-filling continuum, so line peaks stay where they were.

Physical sources (opt-in: nights with a spectrophotometric standard, see `plan`): a
target then has an absolute spectrum F_lambda in erg/s/cm^2/A above the atmosphere
(`input_flux` of its flux model: a standard's table, or a black body with H-alpha
absorption scaled to its flux at 5500 A), and `electron_rate` is the one instrument
model that turns it into electrons, the same for the standard and the science targets:

    e-/s/A = F_lambda * COLLECTING_AREA_CM2 * PEAK_EFFICIENCY * throughput(lambda)
             * lambda/(h c) * 10**(-0.4 * k(lambda) * airmass)

with k the CTIO extinction curve and the airmass the frame's AIRMASS card. A flux
calibration that recovers F_lambda from the standard therefore has exactly this
sensitivity to find; the sky and lamps keep their arbitrary rates.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy.special import ndtr

from . import standards
from .reference import ReferenceLamp, WavelengthSolution, load_reference_lamp

H_C_OVER_K = 1.438777e8  # angstrom * K

#: Night-sky emission lines (air, angstrom) and their rates in e-/s per slit row at the
#: peak of the system throughput: [OI], NaD and the strongest OH bands in the red.
SKY_LINES = (
    (5577.34, 30.0), (5889.95, 4.0), (5895.92, 3.2), (6300.30, 10.0), (6363.78, 3.5),
    (6863.96, 2.5), (7316.28, 3.5), (7340.89, 3.0), (7750.64, 3.0), (7794.11, 3.0),
    (7821.50, 2.5), (7913.71, 4.5), (7993.33, 6.0), (8344.60, 10.0), (8399.17, 7.5),
    (8430.17, 7.5), (8465.21, 6.0), (8827.10, 9.0),
)
#: Sky continuum, e-/s per binned pixel at the throughput peak.
SKY_CONTINUUM_RATE = 0.8
#: Quartz lamp colour temperature, and the flat level at its brightest pixel.
QUARTZ_TEMPERATURE = 3100.0
FLAT_PEAK_ADU = 25000.0
#: The brightest comparison-lamp pixel (at full slit illumination), in ADU above bias.
COMP_PEAK_ADU = 42000.0
H_ALPHA = 6562.80
#: The physical instrument model: SOAR's 4.1 m primary less a ~10 % central obstruction,
#: and the end-to-end efficiency (atmosphere excluded) at the peak of `throughput`.
SOAR_APERTURE_CM = 410.0
CENTRAL_OBSTRUCTION = 0.10  # fraction of the aperture's area
COLLECTING_AREA_CM2 = np.pi * (SOAR_APERTURE_CM / 2.0) ** 2 * (1.0 - CENTRAL_OBSTRUCTION)
PEAK_EFFICIENCY = 0.20
H_C = 6.62607015e-27 * 2.99792458e18  # erg * angstrom
#: Black-body flux models are scaled to their continuum here (angstrom).
FLUX_REFERENCE_WAVELENGTH = 5500.0
#: Peaks of the reference lamp kept as lines: higher than this fraction of the brightest.
PEAK_THRESHOLD = 3e-4
#: The reference lines have a shoulder ~3 px redward at ~40% height; a peak that close to
#: a line more than 1/0.6 times brighter is treated as profile, not as a separate line.
SHOULDER_PX = 4.5
SHOULDER_MAX_RATIO = 0.6
#: An identified line further than this (unbinned px) from where the solution puts its
#: wavelength is taken as misidentified and rendered where it was measured instead.
MAX_LINE_OFFSET = 1.5


@dataclass(frozen=True)
class LineSet:
    """Gaussian emission lines on the truth scale: centre x, integrated flux, width sigma (unbinned px)."""

    x: np.ndarray
    flux: np.ndarray
    sigma: float
    wavelength: np.ndarray  # angstrom (air) where known, NaN otherwise

    def through_slit(self, k: float) -> "LineSet":
        """The same lines through a slit `k` times the reference width: k times wider and brighter."""
        if k == 1.0:
            return self
        return LineSet(x=self.x, flux=self.flux * k, sigma=self.sigma * k, wavelength=self.wavelength)

    def integrate(self, lo, hi, grid_step: float = 1.0 / 16.0) -> np.ndarray:
        """Sum over lines of the flux between x=lo and x=hi (arrays of any matching shape).

        Small requests are evaluated exactly; large ones (a tilted 2-D frame) through a
        cumulative table on a 1/16 px grid, linear in between (error << 1e-3 of a line).
        """
        lo = np.asarray(lo, dtype=float)
        hi = np.asarray(hi, dtype=float)
        if self.x.size == 0:
            return np.zeros(np.broadcast(lo, hi).shape)
        if lo.size <= 8192:
            return self._cumulative(hi) - self._cumulative(lo)
        start = min(lo.min(), hi.min()) - 1.0
        stop = max(lo.max(), hi.max()) + 1.0
        grid = np.arange(start, stop + grid_step, grid_step)
        table = self._cumulative(grid)
        return np.interp(hi, grid, table) - np.interp(lo, grid, table)

    def _cumulative(self, edges: np.ndarray) -> np.ndarray:
        flat = edges.reshape(-1)
        out = np.zeros(flat.size)
        # chunks keep the (lines x points) temporary small
        step = max(1, 2_000_000 // max(1, self.x.size))
        for i in range(0, flat.size, step):
            e = flat[i:i + step]
            out[i:i + step] = ndtr((e[None, :] - self.x[:, None]) / self.sigma).T @ self.flux
        return out.reshape(edges.shape)


@dataclass(frozen=True)
class LampModel:
    """A reference lamp rebuilt as continuum + Gaussian lines on the truth scale (reference units)."""

    lines: LineSet
    continuum: np.ndarray  # per unbinned reference pixel, smooth
    identified: np.ndarray  # bool per line: placed exactly at solution^-1(GSP_A)
    scale: float  # e- per reference unit so that the brightest binned pixel is COMP_PEAK_ADU

    def binned(self, x_centre, gain: float, width: float = 2.0) -> np.ndarray:
        """Electrons in pixels `width` unbinned px wide (the serial binning; 2 for 2x2) centred
        at truth coordinate `x_centre` (any shape), per 2x2-row of slit."""
        x_centre = np.asarray(x_centre, dtype=float)
        half = width / 2.0
        lines = self.lines.integrate(x_centre - half, x_centre + half)
        cont = width * np.interp(x_centre, np.arange(self.continuum.size), self.continuum)
        return self.scale * (lines + cont)

    def through_slit(self, k: float) -> "LampModel":
        """The lamp through a slit `k` times the reference width (lines and continuum k times brighter)."""
        if k == 1.0:
            return self
        return LampModel(lines=self.lines.through_slit(k), continuum=self.continuum * k,
                         identified=self.identified, scale=self.scale)


def _fit_line(flux: np.ndarray, centre: float, half: int = 3) -> Optional[Tuple[float, float, float]]:
    """(height, centre, sigma) of the line peaking within `half` px of `centre`, or None.

    Height and width from a parabola through the logarithm of the three highest samples
    (exact for a Gaussian, cheap, and it keeps scipy.optimize out of the import time).
    """
    k0 = int(round(centre))
    lo, hi = max(1, k0 - half), min(flux.size - 1, k0 + half + 1)
    if hi - lo < 1:
        return None
    k = lo + int(np.argmax(flux[lo:hi]))
    a, b, c = flux[k - 1], flux[k], flux[k + 1]
    if min(a, b, c) <= 0 or not (b >= a and b >= c):
        return None
    la, lb, lc = np.log([a, b, c])
    curv = la - 2.0 * lb + lc
    if curv >= 0:
        return None
    delta = 0.5 * (la - lc) / curv
    sigma2 = -1.0 / curv
    height = float(np.exp(lb - 0.25 * (la - lc) * delta))
    # the centre as a first moment over +-3 px: the reference lines are asymmetric (a
    # shoulder redward), and the moment is what a symmetric rebuilt line must preserve
    w = slice(max(0, k - 3), min(flux.size, k + 4))
    xs = np.arange(w.start, w.stop, dtype=float)
    ys = np.clip(flux[w], 0.0, None)
    return height, float((xs * ys).sum() / ys.sum()), float(np.sqrt(sigma2))


def _local_maxima(values: np.ndarray, height: float, prominence: float, window: int = 10) -> np.ndarray:
    """Indices of local maxima above `height` that stand `prominence` above both sides."""
    v = values
    k = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:]) & (v[1:-1] > height)) + 1
    padded = np.pad(v, window, mode="edge")
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(padded, window + 1)
    left_min = win[k].min(axis=1)  # v[k-window .. k]
    right_min = win[k + window].min(axis=1)  # v[k .. k+window]
    return k[v[k] - np.maximum(left_min, right_min) > prominence]


def _smooth_floor(values: np.ndarray, width: int = 51) -> np.ndarray:
    """A smooth lower envelope: running minimum then running mean (both `width` px)."""
    from numpy.lib.stride_tricks import sliding_window_view

    half = width // 2
    floor = sliding_window_view(np.pad(values, half, mode="edge"), width).min(axis=1)
    kernel = np.ones(width) / width
    return np.convolve(np.pad(floor, half, mode="edge"), kernel, mode="valid")


@functools.lru_cache(maxsize=8)
def lamp_model(lamp_name: str, gain: float) -> LampModel:
    """The reference lamp `lamp_name` rebuilt on the truth scale (cached: same for every frame)."""
    return build_lamp_model(load_reference_lamp(lamp_name), gain)


def build_lamp_model(lamp: ReferenceLamp, gain: float, n_phases: int = 16) -> LampModel:
    """A `ReferenceLamp` (or anything with its flux, solution, line_pixels and
    line_wavelengths) rebuilt on the truth scale; split from `lamp_model` so tests can
    rebuild lamps the simulator's frames cannot host (other widths, Blue camera).
    `n_phases` sub-pixel phases set the scale (fewer: faster, a scale off by <1%)."""
    flux = np.asarray(lamp.flux, dtype=float)
    continuum = _smooth_floor(flux)
    resid = flux - continuum
    continuum = np.clip(continuum, 0.0, None)  # some references are over-subtracted
    top = resid.max()
    sol = lamp.solution

    # identified lines: measured centre vs where the solution puts the laboratory wavelength
    fits_ = [_fit_line(resid, p) for p in lamp.line_pixels]
    truth_x = sol.pixel(lamp.line_wavelengths) if lamp.line_wavelengths.size else np.array([])
    ok = np.array([f is not None and np.isfinite(t) and abs(f[1] - t) <= MAX_LINE_OFFSET
                   for f, t in zip(fits_, truth_x)], dtype=bool)
    measured = np.array([f[1] if f is not None else np.nan for f in fits_])
    bright = sorted(((f[0], f[2]) for f, good in zip(fits_, ok) if good), reverse=True)[:10]
    # the samples are pixel integrals: remove the pixel's own width (1/12 px^2)
    sigma = float(np.sqrt(max(np.median([s for _, s in bright]) ** 2 - 1.0 / 12.0, 0.25))) if bright else 1.4

    anchors_ref = measured[ok]
    anchors_off = measured[ok] - truth_x[ok]
    order = np.argsort(anchors_ref)
    anchors_ref, anchors_off = anchors_ref[order], anchors_off[order]

    peaks = _local_maxima(resid, PEAK_THRESHOLD * top, 0.5 * PEAK_THRESHOLD * top)
    xs, fl, wl, ident = [], [], [], []
    norm = sigma * np.sqrt(2.0 * np.pi)
    for i in np.flatnonzero(ok):
        xs.append(truth_x[i])
        fl.append(fits_[i][0] * norm)
        wl.append(lamp.line_wavelengths[i])
        ident.append(True)
    for k in peaks:
        if anchors_ref.size and np.min(np.abs(anchors_ref - k)) < 2.5:
            continue  # this peak is an identified line, already placed
        near = np.abs(peaks - k) <= SHOULDER_PX
        if np.any(resid[peaks[near]] > resid[k] / SHOULDER_MAX_RATIO):
            continue  # the shoulder of a brighter line: part of its profile, not a line
        if 0 < k < resid.size - 1:
            a, b, c = resid[k - 1], resid[k], resid[k + 1]
            den = a - 2 * b + c
            pos = k + (0.5 * (a - c) / den if den < 0 else 0.0)
        else:
            pos = float(k)
        offset = np.interp(pos, anchors_ref, anchors_off) if anchors_ref.size else 0.0
        xs.append(pos - offset)
        fl.append(resid[k] * norm)
        wl.append(np.nan)
        ident.append(False)
    xs, fl, wl, ident = map(np.asarray, (xs, fl, wl, ident))
    order = np.argsort(xs)
    lines = LineSet(x=xs[order], flux=fl[order], sigma=sigma, wavelength=wl[order])
    model = LampModel(lines=lines, continuum=continuum, identified=ident[order].astype(bool), scale=1.0)

    # one scale for the whole night: the brightest binned pixel over all sub-pixel phases
    phases = np.linspace(0.0, 2.0, n_phases, endpoint=False)
    centres = np.arange(0.5, flux.size, 2.0)
    peak = max(model.binned(centres + p, gain).max() for p in phases)
    scale = COMP_PEAK_ADU * gain / peak
    return LampModel(lines=lines, continuum=continuum, identified=model.identified, scale=float(scale))


def _cut_on(filter_name: str) -> Optional[float]:
    """Cut-on wavelength (50% point, angstrom) of Goodman's long-pass filters: GG455 -> 4550."""
    m = re.search(r"(GG|OG)[_-]?(\d{3})", filter_name.upper())
    return float(m.group(2)) * 10.0 if m else None


def throughput(wavelength, solution: WavelengthSolution, filter_name: str) -> np.ndarray:
    """Relative system efficiency (peak ~1): VPH grating envelope x CCD QE x long-pass filter."""
    lam = np.asarray(wavelength, dtype=float)
    centre = float(solution.wavelength(2030.0))
    grating = np.exp(-0.5 * ((lam - centre) / 2600.0) ** 2)
    qe = 1.0 / (1.0 + np.exp((lam - 9700.0) / 350.0)) / (1.0 + np.exp(-(lam - 3700.0) / 150.0))
    cut = _cut_on(filter_name)
    filt = 1.0 / (1.0 + np.exp(-(lam - cut) / 40.0)) if cut else 1.0
    return grating * qe * filt


def planck(wavelength, temperature: float) -> np.ndarray:
    """B_lambda(T) up to a constant (per angstrom)."""
    lam = np.asarray(wavelength, dtype=float)
    return lam ** -5 / np.expm1(H_C_OVER_K / (lam * temperature))


def quartz(wavelength, solution: WavelengthSolution, filter_name: str) -> np.ndarray:
    """Relative quartz flat spectrum seen through the instrument (not normalised)."""
    return planck(wavelength, QUARTZ_TEMPERATURE) * throughput(wavelength, solution, filter_name)


def source_spectrum(wavelength, temperature: float, rate: float, halpha_depth: float, halpha_sigma: float,
                    exptime: float, solution: WavelengthSolution, filter_name: str) -> np.ndarray:
    """Electrons per binned column (summed along the slit) of a point source.

    ``rate * exptime * B(lambda, T)/B(6000 A, T) * (1 - depth * exp(-(lambda - 6562.80)^2 / (2 sigma^2)))
    * throughput(lambda)``: a black-body continuum with an H-alpha absorption line.
    """
    lam = np.asarray(wavelength, dtype=float)
    cont = planck(lam, temperature) / planck(6000.0, temperature)
    line = halpha_absorption(lam, halpha_depth, halpha_sigma)
    return rate * exptime * cont * line * throughput(lam, solution, filter_name)


def halpha_absorption(wavelength, depth: float, sigma: float) -> np.ndarray:
    """The targets' H-alpha line as a transmission: ``1 - depth * exp(-(lambda - 6562.80)^2 / (2 sigma^2))``."""
    return 1.0 - depth * np.exp(-0.5 * ((np.asarray(wavelength, dtype=float) - H_ALPHA) / sigma) ** 2)


def input_flux(flux_model: dict, wavelength) -> np.ndarray:
    """F_lambda (erg/s/cm^2/A, above the atmosphere) of a target's flux model at `wavelength` (A, air).

    The model as truth.json records it (``frames[i].flux_model``): ``{"kind": "table",
    "standard": name}`` (the standard's tabulated flux, PCHIP between bin centres, NaN off
    the table) or ``{"kind": "blackbody", "temperature", "flux_5500", "halpha_depth",
    "halpha_sigma"}`` (``flux_5500 * B(lambda, T) / B(5500 A, T) * halpha_absorption``).
    Exactly what the frames were rendered from.
    """
    kind = flux_model["kind"]
    if kind == "table":
        return standards.flux(flux_model["standard"], wavelength)
    if kind == "blackbody":
        lam = np.asarray(wavelength, dtype=float)
        t = flux_model["temperature"]
        cont = flux_model["flux_5500"] * planck(lam, t) / planck(FLUX_REFERENCE_WAVELENGTH, t)
        return cont * halpha_absorption(lam, flux_model["halpha_depth"], flux_model["halpha_sigma"])
    raise ValueError(f"unknown flux model kind {kind!r}")


def electron_rate(flux, wavelength, airmass: float, solution: WavelengthSolution, filter_name: str) -> np.ndarray:
    """Electrons per second per angstrom collected from F_lambda `flux` (erg/s/cm^2/A above the
    atmosphere) at `wavelength` through `airmass`: the physical instrument model (module docstring)."""
    lam = np.asarray(wavelength, dtype=float)
    photons = np.asarray(flux, dtype=float) * COLLECTING_AREA_CM2 * lam / H_C
    atmosphere = 10.0 ** (-0.4 * standards.extinction(lam) * airmass)
    return photons * atmosphere * PEAK_EFFICIENCY * throughput(lam, solution, filter_name)


def physical_source_spectrum(flux_model: dict, wavelength, dispersion, airmass: float, exptime: float,
                             solution: WavelengthSolution, filter_name: str) -> np.ndarray:
    """Electrons per binned column (summed along the slit) of a target with an absolute flux model.

    `dispersion`: angstrom per binned pixel at each `wavelength` (the pixel's width in
    wavelength), so the rate per angstrom becomes electrons per pixel; evaluated at the
    pixel centre like every smooth continuum here. Zero where the model has no flux (off a
    standard's table).
    """
    rate = electron_rate(input_flux(flux_model, wavelength), wavelength, airmass, solution, filter_name)
    return np.nan_to_num(rate * np.asarray(dispersion, dtype=float) * exptime, nan=0.0)


def sky_lines(solution: WavelengthSolution, filter_name: str, sigma: float, exptime: float) -> LineSet:
    """The night-sky emission lines for one exposure, e- per slit row, on the truth scale."""
    wl, rate = visible_sky_lines(solution)
    flux = rate * exptime * throughput(wl, solution, filter_name)
    return LineSet(x=solution.pixel(wl), flux=flux, sigma=sigma, wavelength=wl)


def visible_sky_lines(solution: WavelengthSolution) -> Tuple[np.ndarray, np.ndarray]:
    """(wavelength, rate) of the SKY_LINES that fall within the solution's range."""
    wl = np.array([w for w, _ in SKY_LINES])
    rate = np.array([r for _, r in SKY_LINES])
    keep = np.isfinite(solution.pixel(wl))
    return wl[keep], rate[keep]


def sky_continuum(wavelength, exptime: float, solution: WavelengthSolution, filter_name: str) -> np.ndarray:
    lam = np.asarray(wavelength, dtype=float)
    return SKY_CONTINUUM_RATE * exptime * (lam / 6500.0) ** 0.5 * throughput(lam, solution, filter_name)
