"""Pixel synthesis: (plan, frame) in, (uint16 array, astropy Header) out. Pure numpy, no I/O.

The electrons a pixel collects are

    e(r, c) = [ diffuse(c) * illumination(r) + source(c) * P(r; trace(c)) * illumination(r) ] * prnu(r, c)

* ``diffuse(c)``: the slit-filling light per pixel (quartz for flats, the rebuilt reference
  lamp for comparison lamps, sky continuum + night-sky lines for science), on the truth
  wavelength scale ``lambda = chebval(2*(c - 25) + 0.5 + shift [+ tilt term], coefficients)``;
* ``illumination(r)``: the slit image along the rows, 1 inside rows 90..905 (1-based) with
  error-function edges (sigma 1.5 rows) and a 3 % gradient end to end;
* ``source(c) * P``: the target, its electrons per column spread over rows by a Gaussian of
  the frame's FWHM centred on ``trace.row(c)``, integrated over each row;
* ``prnu``: pixel response non-uniformity, 1 % rms, the same for every frame of the night.

Then ADU = Poisson(e)/GAIN (Gaussian limit from 200 e- up) + cosmic-ray electrons/GAIN + bias(r, c) + bias_offset + N(0, RDNOISE/GAIN),
rounded to the nearest integer and clipped to 0..65535. The bias is the nominal 1000 ADU
plus a gentle column ramp (+2 ADU across), a decay over the first rows (+1.5 ADU at row 0,
e-folding 40 rows), a fixed column pattern (0.6 ADU rms) and two warm leading columns;
the same structure in every frame of the night (seeded), plus a per-read offset.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np
from astropy.io import fits
from scipy.special import ndtr

from . import geometry, spectra
from .headers import build_header
from .plan import FramePlan, NightPlan
from .reference import load_reference_lamp

ILLUMINATION_GRADIENT = 0.03
PRNU_RMS = 0.01
GAUSSIAN_LIMIT = 200.0
#: Beyond this many rows from the slit edges the illumination is treated as zero.
_BAND_MARGIN = 12


@functools.lru_cache(maxsize=1)
def illumination() -> np.ndarray:
    """Slit illumination per row (0-based index), ~1 inside the illuminated rows, 0 outside."""
    r = np.arange(geometry.N_ROWS, dtype=float)
    lo = geometry.ILLUMINATED_ROWS[0] - 0.5
    hi = geometry.ILLUMINATED_ROWS[1] + 0.5
    s = geometry.SLIT_EDGE_SIGMA
    edge = ndtr((r - lo) / s) - ndtr((r - hi) / s)
    mid = 0.5 * (lo + hi)
    profile = edge * (1.0 + ILLUMINATION_GRADIENT * (r - mid) / (hi - lo))
    profile[np.abs(profile) < 1e-9] = 0.0
    profile.setflags(write=False)
    return profile


def _band() -> slice:
    return slice(geometry.ILLUMINATED_ROWS[0] - _BAND_MARGIN, geometry.ILLUMINATED_ROWS[1] + _BAND_MARGIN + 1)


@functools.lru_cache(maxsize=4)
def fixed_pattern(seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """(bias structure in ADU without the per-read offset, prnu): the same all night."""
    rng = np.random.default_rng([seed, 4])
    r = np.arange(geometry.N_ROWS, dtype=float)[:, None]
    c = np.arange(geometry.N_COLS, dtype=float)[None, :]
    columns = rng.normal(0.0, 0.6, geometry.N_COLS)
    columns[0] += 35.0  # the first columns of the Red camera read warm
    columns[1] += 12.0
    bias = geometry.BIAS_LEVEL + 2.0 * c / (geometry.N_COLS - 1) + 1.5 * np.exp(-r / 40.0) + columns[None, :]
    prnu = np.ones(geometry.SHAPE)
    lit = slice(geometry.FIRST_LIT_COL, geometry.LAST_LIT_COL + 1)
    prnu[:, lit] = 1.0 + rng.normal(0.0, PRNU_RMS, (geometry.N_ROWS, geometry.N_LIT_COLS))
    bias = bias.astype(np.float32)
    bias.setflags(write=False)
    prnu.setflags(write=False)
    return bias, prnu


@functools.lru_cache(maxsize=8)
def _flat_scale(lamp_name: str) -> float:
    ref = load_reference_lamp(lamp_name)
    x = geometry.column_to_x(geometry.lit_columns())
    q = spectra.quartz(ref.solution.wavelength(x), ref.solution, str(ref.header.get("FILTER2", "")))
    return spectra.FLAT_PEAK_ADU * geometry.GAIN / float(q.max())


def frame_spectra(plan: NightPlan, frame: FramePlan, rows=None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(diffuse, source) electrons of `frame` before slit illumination and pixel response.

    ``diffuse``: per pixel, shape (N_COLS,) evaluated at the tilt reference row, or
    (len(rows), N_COLS) when `rows` is given and the night has a tilt. ``source``: per
    column summed along the slit, shape (N_COLS,), None unless science. Zero outside
    the illuminated columns.
    """
    ref = load_reference_lamp(plan.lamp)
    sol = ref.solution
    filt = str(ref.header.get("FILTER2", ""))
    cols = geometry.lit_columns()
    tilted = rows is not None and plan.tilt != 0.0
    if tilted:
        x = geometry.column_to_x(cols[None, :], frame.shift or 0.0, np.asarray(rows)[:, None], plan.tilt)
        shape = (len(rows), geometry.N_COLS)
    else:
        x = geometry.column_to_x(cols, frame.shift or 0.0)
        shape = (geometry.N_COLS,)
    diffuse = np.zeros(shape)
    source = None
    lit = (Ellipsis, slice(geometry.FIRST_LIT_COL, geometry.LAST_LIT_COL + 1))
    if frame.kind == "flat":
        diffuse[lit] = _flat_scale(plan.lamp) * spectra.quartz(sol.wavelength(x), sol, filt)
    elif frame.kind == "comp":
        diffuse[lit] = spectra.lamp_model(plan.lamp, geometry.GAIN).binned(x, geometry.GAIN)
    elif frame.kind == "science":
        sigma = spectra.lamp_model(plan.lamp, geometry.GAIN).lines.sigma
        sky = spectra.sky_lines(sol, filt, sigma, frame.exptime)
        diffuse[lit] = (spectra.sky_continuum(sol.wavelength(x), frame.exptime, sol, filt)
                        + sky.integrate(x - 1.0, x + 1.0))
        t = frame.target
        row = frame.trace.row(cols)
        xs = geometry.column_to_x(cols, frame.shift or 0.0, row, plan.tilt)
        source = np.zeros(geometry.N_COLS)
        source[geometry.FIRST_LIT_COL:geometry.LAST_LIT_COL + 1] = spectra.source_spectrum(
            sol.wavelength(xs), t.temperature, t.rate, t.halpha_depth, t.halpha_sigma, frame.exptime, sol, filt)
    return diffuse, source


def expected_electrons(plan: NightPlan, frame: FramePlan) -> np.ndarray:
    """Noise-free electrons per pixel from light (no cosmic rays, no bias)."""
    light = np.zeros(geometry.SHAPE)
    if frame.kind == "bias":
        return light
    band = _band()
    rows = np.arange(geometry.N_ROWS)[band]
    illum = illumination()
    diffuse, source = frame_spectra(plan, frame, rows=rows)
    if diffuse.ndim == 1:
        light[band] = illum[band, None] * diffuse[None, :]
    else:
        light[band] = illum[band, None] * diffuse
    if source is not None:
        tr = frame.trace
        cols = geometry.lit_columns()
        centre = tr.row(cols)
        sigma = tr.fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        half = int(np.ceil(8 * sigma)) + 2
        rr = np.floor(centre).astype(int)[None, :] + np.arange(-half, half + 1)[:, None]
        rr = np.clip(rr, 0, geometry.N_ROWS - 1)
        frac = ndtr((rr + 0.5 - centre[None, :]) / sigma) - ndtr((rr - 0.5 - centre[None, :]) / sigma)
        light[rr, cols[None, :]] += frac * source[cols][None, :] * illum[rr]
    light *= fixed_pattern(plan.seed)[1]
    return light


def photon_noise(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Whole electrons collected for `expected` mean electrons.

    Poisson draws; from GAUSSIAN_LIMIT electrons up the Gaussian limit N(mean, mean),
    rounded to whole electrons (indistinguishable at that level, and 3x faster, which
    keeps a 25-frame night within a couple of seconds).
    """
    out = np.empty_like(expected)
    big = expected >= GAUSSIAN_LIMIT
    out[~big] = rng.poisson(expected[~big])
    mean = expected[big]
    out[big] = np.rint(mean + np.sqrt(mean) * rng.standard_normal(mean.size, dtype=np.float32))
    return out


def render_frame(plan: NightPlan, frame: FramePlan, cosmic_rays: bool = True) -> Tuple[np.ndarray, fits.Header]:
    """The raw frame as the camera would read it: uint16 pixels and the raw header.

    Deterministic in (plan, frame). ``cosmic_rays=False`` renders the identical frame
    without the hits (same noise), so a test can isolate exactly what the hits added.
    """
    bias, _ = fixed_pattern(plan.seed)
    rng = np.random.default_rng([plan.seed, 3, frame.seq])
    # float32 throughout: ample for 16-bit values, half the memory traffic
    adu = rng.standard_normal(geometry.SHAPE, dtype=np.float32)
    adu *= np.float32(geometry.RDNOISE / geometry.GAIN)
    adu += bias
    adu += np.float32(frame.bias_offset)
    if frame.kind != "bias":
        light = expected_electrons(plan, frame)
        band = _band()
        lit = slice(geometry.FIRST_LIT_COL, geometry.LAST_LIT_COL + 1)
        adu[band, lit] += (photon_noise(rng, light[band, lit]) / geometry.GAIN).astype(np.float32)
    hits = frame.cosmic_rays
    if cosmic_rays and len(hits):
        adu[np.array(hits.rows), np.array(hits.cols)] += np.array(hits.electrons, dtype=np.float32) / np.float32(
            geometry.GAIN)
    np.rint(adu, out=adu)
    np.clip(adu, 0, geometry.SATURATION, out=adu)
    data = adu.astype(np.uint16)
    return data, build_header(plan, frame)
