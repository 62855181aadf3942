"""Pixel synthesis: (plan, frame) in, (uint16 array, astropy Header) out. Pure numpy, no I/O.

The electrons a pixel collects are

    e(r, c) = [ diffuse(c) * illumination(r) + source(c) * P(r; trace(c)) * illumination(r) ] * prnu(r, c)

* ``diffuse(c)``: the slit-filling light per pixel (quartz for flats, the rebuilt reference
  lamp for comparison lamps, sky continuum + night-sky lines for science), on the truth
  wavelength scale ``lambda = chebval(2*(c - 25) + 0.5 + shift [+ tilt term], coefficients)``
  (for another readout ``x = sb*c + (sb - 1)/2 - 50 + shift``, see `geometry`);
* ``illumination(r)``: the slit image along the rows, 1 inside rows 90..905 (1-based) with
  error-function edges (sigma 1.5 rows) and a 3 % gradient end to end (2x2 full frame;
  the same unbinned rows in any other readout, cut to its window);
* ``source(c) * P``: the target, its electrons per column spread over rows by a Gaussian of
  the frame's FWHM centred on ``trace.row(c)``, integrated over each row; on physical
  nights (a standard) from its absolute flux, `spectra.physical_source_spectrum`, with
  each pixel's width in angstrom and the frame's AIRMASS card;
* ``prnu``: pixel response non-uniformity, 1 % rms, the same for every frame of the night.

Then ADU = Poisson(e)/GAIN (Gaussian limit from 200 e- up) + cosmic-ray electrons/GAIN + bias(r, c) + bias_offset + N(0, RDNOISE/GAIN),
rounded to the nearest integer and clipped to 0..65535. The bias is the nominal 1000 ADU
plus a gentle column ramp (+2 ADU across), a decay over the first rows (+1.5 ADU at row 0,
e-folding 40 rows), a fixed column pattern (0.6 ADU rms) and two warm leading columns;
the same structure in every frame of the night (seeded), plus a per-read offset.

Every frame is rendered on its own readout (`FramePlan.geometry`). Light per pixel scales
with the pixel's area (sb*pb/4 of a 2x2 pixel), the slit width (slit-filling light only)
and the exposure factor of flats and lamps (`FramePlan.exposure_factor`). Each binning has
its own fixed pattern (for 2x2 the one above); a row window is cut out of its binning's
full-window pattern, so a window sees the same pixels as the full frame.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np
from astropy.io import fits
from scipy.special import ndtr

from . import geometry, spectra
from .geometry import Geometry
from .headers import build_header, frame_airmass
from .plan import FramePlan, NightPlan
from .reference import load_reference_lamp

ILLUMINATION_GRADIENT = 0.03
PRNU_RMS = 0.01
GAUSSIAN_LIMIT = 200.0
#: Beyond this many rows from the slit edges the illumination is treated as zero (2x2 rows).
_BAND_MARGIN = 12


@functools.lru_cache(maxsize=8)
def illumination(geom: Geometry = geometry.DEFAULT) -> np.ndarray:
    """Slit illumination per row (0-based index) of readout `geom`, ~1 inside the slit image, 0 outside."""
    r = np.arange(geom.n_rows, dtype=float)
    lo, hi = geom.slit_edges
    s = geom.slit_edge_sigma
    edge = ndtr((r - lo) / s) - ndtr((r - hi) / s)
    mid = 0.5 * (lo + hi)
    profile = edge * (1.0 + ILLUMINATION_GRADIENT * (r - mid) / (hi - lo))
    profile[np.abs(profile) < 1e-9] = 0.0
    profile.setflags(write=False)
    return profile


def _band(geom: Geometry = geometry.DEFAULT) -> slice:
    return geom.band()


@functools.lru_cache(maxsize=6)
def fixed_pattern(seed: int, geom: Geometry = geometry.DEFAULT) -> Tuple[np.ndarray, np.ndarray]:
    """(bias structure in ADU without the per-read offset, prnu) of readout `geom`: the same all night."""
    sb, pb = geom.binning
    rng = np.random.default_rng([seed, 4] if (sb, pb) == geometry.DEFAULT.binning else [seed, 4, sb, pb])
    n_rows, n_cols = geom.shape
    r = np.arange(n_rows, dtype=float)[:, None]
    c = np.arange(n_cols, dtype=float)[None, :]
    columns = rng.normal(0.0, 0.6, n_cols)
    columns[0] += 35.0  # the first columns of the Red camera read warm
    columns[1] += 12.0
    bias = geometry.BIAS_LEVEL + 2.0 * c / (n_cols - 1) + 1.5 * np.exp(-r / 40.0) + columns[None, :]
    prnu = np.ones(geom.shape)
    lit = slice(geom.first_lit_col, geom.last_lit_col + 1)
    full_rows = geometry.DETECTOR_ROWS // pb
    response = 1.0 + rng.normal(0.0, PRNU_RMS, (full_rows, geom.n_lit_cols))
    first = geom.roi.first_row
    if first % pb == 0 and first // pb + n_rows <= full_rows:
        prnu[:, lit] = response[first // pb:first // pb + n_rows]
    else:  # a window not on this binning's row grid: its own pixels
        window = np.random.default_rng([seed, 4, sb, pb, first])
        prnu[:, lit] = 1.0 + window.normal(0.0, PRNU_RMS, (n_rows, geom.n_lit_cols))
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

    ``diffuse``: per pixel, shape (n_cols,) of the frame's readout evaluated at the tilt
    reference row, or (len(rows), n_cols) when `rows` is given and the night has a tilt.
    ``source``: per column summed along the slit, shape (n_cols,), None unless science.
    Zero outside the illuminated columns.
    """
    ref = load_reference_lamp(plan.lamp)
    sol = ref.solution
    filt = str(ref.header.get("FILTER2", ""))
    geom = frame.geometry
    sb, pb = geom.binning
    k = frame.slit_factor
    cols = geom.lit_columns()
    tilted = rows is not None and plan.tilt != 0.0
    if tilted:
        x = geom.column_to_x(cols[None, :], frame.shift or 0.0, np.asarray(rows)[:, None], plan.tilt)
        shape = (len(rows), geom.n_cols)
    else:
        x = geom.column_to_x(cols, frame.shift or 0.0)
        shape = (geom.n_cols,)
    diffuse = np.zeros(shape)
    source = None
    lit = (Ellipsis, slice(geom.first_lit_col, geom.last_lit_col + 1))
    if frame.kind == "flat":
        diffuse[lit] = _flat_scale(plan.lamp) * spectra.quartz(sol.wavelength(x), sol, filt) * (
            geom.pixel_scale * k * frame.exposure_factor)
    elif frame.kind == "comp":
        model = spectra.lamp_model(plan.lamp, geometry.GAIN).through_slit(k)
        diffuse[lit] = model.binned(x, geometry.GAIN, float(sb)) * (pb / 2.0 * frame.exposure_factor)
    elif frame.kind == "science":
        sigma = spectra.lamp_model(plan.lamp, geometry.GAIN).lines.sigma
        sky = spectra.sky_lines(sol, filt, sigma, frame.exptime).through_slit(k)
        diffuse[lit] = (spectra.sky_continuum(sol.wavelength(x), frame.exptime, sol, filt) * (geom.pixel_scale * k)
                        + sky.integrate(x - sb / 2.0, x + sb / 2.0) * (pb / 2.0))
        source = np.zeros(geom.n_cols)
        source[geom.first_lit_col:geom.last_lit_col + 1] = _target_spectrum(plan, frame, sol, filt)
    return diffuse, source


def _target_spectrum(plan: NightPlan, frame: FramePlan, sol, filt: str) -> np.ndarray:
    """The target's electrons per lit column (summed along the slit), at the wavelength of the trace.

    A `rate` target is scaled from its 2x2 column (sb/2); a physical one gets each
    pixel's own width in angstrom (dispersion * sb) and the frame's AIRMASS card.
    """
    t = frame.target
    geom = frame.geometry
    cols = geom.lit_columns()
    xs = geom.column_to_x(cols, frame.shift or 0.0, frame.trace.row(cols), plan.tilt)
    if t.flux_model is None:
        return spectra.source_spectrum(sol.wavelength(xs), t.temperature, t.rate, t.halpha_depth, t.halpha_sigma,
                                       frame.exptime, sol, filt) * (geom.sb / 2.0)
    return spectra.physical_source_spectrum(t.flux_model, sol.wavelength(xs), sol.dispersion(xs) * geom.sb,
                                            frame_airmass(plan, frame), frame.exptime, sol, filt)


def expected_electrons(plan: NightPlan, frame: FramePlan) -> np.ndarray:
    """Noise-free electrons per pixel from light (no cosmic rays, no bias)."""
    geom = frame.geometry
    light = np.zeros(geom.shape)
    if frame.kind == "bias":
        return light
    band = _band(geom)
    rows = np.arange(geom.n_rows)[band]
    illum = illumination(geom)
    diffuse, source = frame_spectra(plan, frame, rows=rows)
    if diffuse.ndim == 1:
        light[band] = illum[band, None] * diffuse[None, :]
    else:
        light[band] = illum[band, None] * diffuse
    if source is not None:
        tr = frame.trace
        cols = geom.lit_columns()
        centre = tr.row(cols)
        sigma = tr.fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        half = int(np.ceil(8 * sigma)) + 2
        rr = np.floor(centre).astype(int)[None, :] + np.arange(-half, half + 1)[:, None]
        inside = (rr >= 0) & (rr <= geom.n_rows - 1)
        rr = np.clip(rr, 0, geom.n_rows - 1)
        frac = ndtr((rr + 0.5 - centre[None, :]) / sigma) - ndtr((rr - 0.5 - centre[None, :]) / sigma)
        frac = np.where(inside, frac, 0.0)  # starlight off the window is not read out
        light[rr, cols[None, :]] += frac * source[cols][None, :] * illum[rr]
    light *= fixed_pattern(plan.seed, geom)[1]
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
    geom = frame.geometry
    bias, _ = fixed_pattern(plan.seed, geom)
    rng = np.random.default_rng([plan.seed, 3, frame.seq])
    # float32 throughout: ample for 16-bit values, half the memory traffic
    adu = rng.standard_normal(geom.shape, dtype=np.float32)
    adu *= np.float32(geometry.RDNOISE / geometry.GAIN)
    adu += bias
    adu += np.float32(frame.bias_offset)
    if frame.kind != "bias":
        light = expected_electrons(plan, frame)
        band = _band(geom)
        lit = slice(geom.first_lit_col, geom.last_lit_col + 1)
        adu[band, lit] += (photon_noise(rng, light[band, lit]) / geometry.GAIN).astype(np.float32)
    hits = frame.cosmic_rays
    if cosmic_rays and len(hits):
        adu[np.array(hits.rows), np.array(hits.cols)] += np.array(hits.electrons, dtype=np.float32) / np.float32(
            geometry.GAIN)
    np.rint(adu, out=adu)
    np.clip(adu, 0, geometry.SATURATION, out=adu)
    data = adu.astype(np.uint16)
    return data, build_header(plan, frame)
