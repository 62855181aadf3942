"""truth.json: everything a test needs to know what a simulated frame should contain.

Written beside the frames, from the plan alone (so before the first frame appears).
Schema (all pixel coordinates 0-based, ``data[row, col]``; pixel i spans [i-0.5, i+0.5]):

``seed, night, n_frames, tilt_px_per_100_rows``
``reference_lamp``: name, file, lamps, setup (and the goodman-pipeline directory it came from)
``geometry``: shape [948, 2071], naxis1/naxis2, overscan/trim sections (FITS 1-based),
    first_lit_col 25 and n_lit_cols 2030, illuminated rows (1-based and 0-based, inclusive),
    slit edge sigma, the illumination formula, tilt_reference_row, bias_level_adu (nominal),
    gain, rdnoise (e- and ADU), saturation, readout.
``wavelength_solution``: model "Chebyshev1D", degree, coefficients, and ``pixel_mapping``:
    for raw column c and row r of a frame with shift s (per frame, below),
    ``x = 2*(c - 25) + 0.5 + s + tilt*(r - tilt_reference_row)/100`` and
    ``lambda(c) = Chebyshev1D(degree, c0.., cn)(x)`` with astropy's default domain/window,
    i.e. ``numpy.polynomial.chebyshev.chebval(x, coefficients)``, in angstrom (air), at
    the centre of the pixel. Same coefficients for every frame; only the shift differs.
``comparison_lamp``: the lines the comparison frames are built from: sigma (unbinned px,
    Gaussian), and per line x (truth coordinate), wavelength (null if unidentified),
    identified (placed exactly at solution^-1(wavelength)), electrons (integrated, per
    slit row at illumination 1, before pixel response).
``sky_lines``: wavelength, x, electrons per second per slit row (throughput applied; times exptime).
``frames``: per file, in observation order:
    name, seq, kind, obstype, object, exptime, date_obs, bias_level_adu (this read),
    shift (unbinned px; null for bias), wavelength_solution (as above with this frame's
    shift; null for bias), target (name, ra, dec, ...; science and the lamps that bracket
    it), trace (science: y0, a, b, xc, fwhm, profile, formula), cosmic_rays [[row, col], ..],
    cosmic_ray_electrons [..] (same order), n_cosmic_ray_events, and spectrum:
    ``diffuse_electrons`` (per pixel at illumination 1 and pixel response 1, along the
    tilt reference row; 2071 values, 0 outside the lit columns) and
    ``source_electrons`` (science: per column summed over the slit; else null).
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from . import cosmics, geometry, spectra
from .frames import ILLUMINATION_GRADIENT, PRNU_RMS, frame_spectra
from .plan import FramePlan, NightPlan
from .reference import goodman_data_dir, load_reference_lamp

PIXEL_MAPPING = ("x_unbinned = 2*(c - 25) + 0.5 + shift + tilt*(r - tilt_reference_row)/100, "
                 "c = 0-based raw column, r = 0-based raw row; lambda = Chebyshev1D(degree, coefficients)(x_unbinned) "
                 "with astropy's default domain/window (= numpy.polynomial.chebyshev.chebval), angstrom, air, "
                 "at the pixel centre")


def _round(values, digits: int = 3):
    return [round(float(v), digits) for v in np.asarray(values).ravel()]


def _solution(plan: NightPlan, shift) -> Dict[str, Any]:
    sol = load_reference_lamp(plan.lamp).solution
    out = sol.as_dict()
    out.update({"shift": shift, "tilt_px_per_100_rows": plan.tilt,
                "tilt_reference_row": geometry.TILT_REFERENCE_ROW, "pixel_mapping": PIXEL_MAPPING})
    return out


def frame_truth(plan: NightPlan, frame: FramePlan) -> Dict[str, Any]:
    hits = frame.cosmic_rays
    entry: Dict[str, Any] = {
        "name": frame.filename,
        "seq": frame.seq,
        "kind": frame.kind,
        "obstype": frame.obstype,
        "object": frame.object,
        "exptime": frame.exptime,
        "date_obs": frame.date_obs,
        "bias_level_adu": frame.bias_level,
        "shift": frame.shift,
        "wavelength_solution": None if frame.kind == "bias" else _solution(plan, frame.shift),
        "target": None,
        "trace": None,
        "n_cosmic_ray_events": hits.n_events,
        "cosmic_rays": [[r, c] for r, c in zip(hits.rows, hits.cols)],
        "cosmic_ray_electrons": list(hits.electrons),
        "spectrum": None,
    }
    if frame.target is not None:
        t = frame.target
        entry["target"] = {"name": t.name, "ra": t.ra, "dec": t.dec, "temperature_k": t.temperature,
                           "rate_e_per_s_at_6000": t.rate, "halpha_depth": t.halpha_depth,
                           "halpha_sigma_angstrom": t.halpha_sigma}
    if frame.trace is not None:
        tr = frame.trace
        entry["trace"] = {"y0": tr.y0, "a": tr.a, "b": tr.b, "xc": tr.xc, "fwhm": tr.fwhm,
                          "profile": tr.profile,
                          "formula": "row(c) = y0 + a*(c - xc) + b*(c - xc)**2, 0-based row of the profile centre "
                                     "at 0-based raw column c; Gaussian of fwhm rows integrated over each row"}
    if frame.kind != "bias":
        diffuse, source = frame_spectra(plan, frame)
        entry["spectrum"] = {
            "diffuse_electrons": _round(diffuse, 2),
            "source_electrons": None if source is None else _round(source, 2),
        }
    return entry


def truth_dict(plan: NightPlan) -> Dict[str, Any]:
    ref = load_reference_lamp(plan.lamp)
    sol = ref.solution
    model = spectra.lamp_model(plan.lamp, geometry.GAIN)
    filt = str(ref.header.get("FILTER2", ""))
    sky_wl, sky_rate = spectra.visible_sky_lines(sol)
    return {
        "format": "goodman-night-simulator truth v1",
        "seed": plan.seed,
        "night": plan.night,
        "n_frames": len(plan.frames),
        "tilt_px_per_100_rows": plan.tilt,
        "reference_lamp": {
            "name": ref.name, "file": ref.filename, "lamps": ref.lamps, "setup": ref.setup,
            "source": str(goodman_data_dir().relative_to(goodman_data_dir().parent.parent)) + "/ref_comp",
            "filter2": filt, "grating": str(ref.header.get("GRATING", "")), "wavmode": str(ref.header.get("WAVMODE", "")),
        },
        "geometry": {
            "shape": list(geometry.SHAPE),
            "naxis1": geometry.N_COLS,
            "naxis2": geometry.N_ROWS,
            "binning": [geometry.BINNING, geometry.BINNING],
            "overscan": geometry.OVERSCAN_SECTION,
            "trim": geometry.TRIM_SECTION,
            "first_lit_col": geometry.FIRST_LIT_COL,
            "n_lit_cols": geometry.N_LIT_COLS,
            "illuminated_rows_1based": list(geometry.ILLUMINATED_ROWS_1BASED),
            "illuminated_rows": list(geometry.ILLUMINATED_ROWS),
            "slit_edge_sigma_rows": geometry.SLIT_EDGE_SIGMA,
            "illumination": ("I(r) = [Phi((r - (r0 - 0.5))/s) - Phi((r - (r1 + 0.5))/s)] * (1 + g*(r - m)/(r1 - r0 + 1)), "
                             "r0, r1 = illuminated_rows, s = slit_edge_sigma_rows, m = (r0 + r1)/2, "
                             f"g = {ILLUMINATION_GRADIENT}, Phi = standard normal CDF"),
            "pixel_response_rms": PRNU_RMS,
            "tilt_reference_row": geometry.TILT_REFERENCE_ROW,
            "bias_level_adu": geometry.BIAS_LEVEL,
            "gain": geometry.GAIN,
            "rdnoise_e": geometry.RDNOISE,
            "rdnoise_adu": round(geometry.RDNOISE / geometry.GAIN, 4),
            "saturation_adu": geometry.SATURATION,
            "readout": geometry.READOUT_MODE,
            "electrons_model": ("e(r, c) = [diffuse(c)*I(r) + source(c)*P(r; trace(c))*I(r)] * prnu(r, c); "
                                "ADU = Poisson(e)/gain + cosmic_ray_electrons/gain + bias(r, c) + "
                                "(bias_level_adu - nominal) + N(0, rdnoise_adu), rounded, clipped to 0..65535"),
        },
        "wavelength_solution": {**sol.as_dict(), "pixel_mapping": PIXEL_MAPPING,
                                "tilt_reference_row": geometry.TILT_REFERENCE_ROW},
        "comparison_lamp": {
            "sigma_unbinned": round(model.lines.sigma, 6),
            "lines": [
                {"x": float(x), "wavelength": None if np.isnan(w) else float(w),
                 "identified": bool(i), "electrons": round(float(f * model.scale), 1)}
                for x, w, i, f in zip(model.lines.x, model.lines.wavelength, model.identified, model.lines.flux)
            ],
        },
        "sky_lines": [
            {"wavelength": float(w), "x": float(x), "rate_e_per_s_per_row": round(float(r), 4)}
            for w, x, r in zip(sky_wl, sol.pixel(sky_wl),
                               sky_rate * spectra.throughput(sky_wl, sol, filt))
        ],
        "cosmic_rays": {"events_per_second": cosmics.EVENTS_PER_SECOND, "dead_time_s": cosmics.DEAD_TIME,
                        "min_pixel_electrons": cosmics.MIN_PIXEL_ELECTRONS},
        "frames": [frame_truth(plan, f) for f in plan.frames],
    }
