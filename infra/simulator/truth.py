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

Nights with per-frame setups (any frame not 'Spectroscopic 2x2' full frame, or with its
own slit or a lamp offset): ``format`` is "... truth v2", the top-level ``geometry`` is the
science frames' readout, and every frame also has
``readout``: binning [sb, pb], ccdsum, roi (the header's ROI), roi_first_row_unbinned and
    roi_n_rows_unbinned (the window within the 1896-row full window), parallel_origin
    (PG5_6 = 1100 + roi_first_row_unbinned), shape, naxis1/naxis2, overscan/trim (goodman's
    rules at that binning), first_lit_col, n_lit_cols, illuminated_rows (0-based, inclusive,
    null if none), slit_edges_rows and slit_edge_sigma_rows (in this frame's rows),
    row_mapping, slit_arcsec, slit_card, line_sigma_unbinned (lamp and sky lines in this
    frame), exposure_factor (exptime / the 2x2 0.45" exptime of flats and lamps);
and its ``wavelength_solution`` adds serial_binning, first_lit_col, flexure_shift,
    lamp_offset (shift = flexure_shift + lamp_offset), ``x_of_column`` [scale, offset] with
    ``x = scale*c + offset`` (+ tilt term) for this frame's own raw column c, i.e.
    ``x = sb*c + (sb - 1)/2 - 50 + shift``, and tilt_px_per_100_rows /
    tilt_reference_row in this frame's rows. The trace is in this frame's raw pixels.

Physical nights (``make_night(standard=...)``) add, at the top level, ``flux_calibration``:
the instrument model (collecting_area_cm2, peak_efficiency, the extinction curve and where
the standards' data live, the formula, units) and the standard's name; and for every target
frame (kind "science", the standard included):
``flux_model``: the input spectrum above the atmosphere, ``{"kind": "table", "standard": name}``
    or ``{"kind": "blackbody", "temperature", "flux_5500", "halpha_depth", "halpha_sigma"}``;
    ``infra.simulator.spectra.input_flux(flux_model, wavelength)`` gives F_lambda in
    erg/s/cm^2/A at any wavelength (A, air), exactly as rendered;
``airmass``: the frame's AIRMASS card, through which it was rendered;
``standard``: true for the spectrophotometric standard, false for the science targets.
Their ``target`` holds name, ra, dec (the colour fields of `rate` targets do not apply).
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from . import cosmics, geometry, headers, spectra, standards
from .frames import ILLUMINATION_GRADIENT, PRNU_RMS, frame_spectra
from .plan import REFERENCE_SLIT, FramePlan, NightPlan
from .reference import goodman_data_dir, load_reference_lamp

PIXEL_MAPPING = ("x_unbinned = 2*(c - 25) + 0.5 + shift + tilt*(r - tilt_reference_row)/100, "
                 "c = 0-based raw column, r = 0-based raw row; lambda = Chebyshev1D(degree, coefficients)(x_unbinned) "
                 "with astropy's default domain/window (= numpy.polynomial.chebyshev.chebval), angstrom, air, "
                 "at the pixel centre")


ILLUMINATION_V1 = ("I(r) = [Phi((r - (r0 - 0.5))/s) - Phi((r - (r1 + 0.5))/s)] * (1 + g*(r - m)/(r1 - r0 + 1)), "
                   "r0, r1 = illuminated_rows, s = slit_edge_sigma_rows, m = (r0 + r1)/2, "
                   f"g = {ILLUMINATION_GRADIENT}, Phi = standard normal CDF")
ILLUMINATION_V2 = ("I(r) = [Phi((r - lo)/s) - Phi((r - hi)/s)] * (1 + g*(r - m)/(hi - lo)), "
                   "lo, hi = slit_edges_rows of the frame's readout, s = slit_edge_sigma_rows, m = (lo + hi)/2, "
                   f"g = {ILLUMINATION_GRADIENT}, Phi = standard normal CDF (in u: edges 177.5 and 1809.5, s = 3)")


def _round(values, digits: int = 3):
    return [round(float(v), digits) for v in np.asarray(values).ravel()]


PIXEL_MAPPING_V2 = ("x_unbinned = sb*c + (sb - 1)/2 - 50 + shift + tilt*(r - tilt_reference_row)/100 "
                    "(= x_of_column[0]*c + x_of_column[1] + tilt term), sb = serial_binning, c = 0-based raw column "
                    "and r = 0-based raw row of this frame, tilt and tilt_reference_row in this frame's rows; "
                    "lambda = Chebyshev1D(degree, coefficients)(x_unbinned) with astropy's default domain/window "
                    "(= numpy.polynomial.chebyshev.chebval), angstrom, air, at the pixel centre")
ROW_MAPPING = ("u_unbinned = pb*r + (pb - 1)/2 + roi_first_row_unbinned: unbinned row (from the first row of the "
               "full 1896-row spectroscopic window) of the centre of raw row r; the slit image and the targets sit "
               "at fixed u, so the default 2x2 full frame's row r2 is u = 2*r2 + 0.5")


def _solution(plan: NightPlan, shift, frame: FramePlan = None) -> Dict[str, Any]:
    sol = load_reference_lamp(plan.lamp).solution
    out = sol.as_dict()
    if plan.legacy:
        out.update({"shift": shift, "tilt_px_per_100_rows": plan.tilt,
                    "tilt_reference_row": geometry.TILT_REFERENCE_ROW, "pixel_mapping": PIXEL_MAPPING})
        return out
    geom = frame.geometry
    sb = geom.sb
    out.update({
        "shift": shift,
        "flexure_shift": round(shift - frame.lamp_offset, 4),
        "lamp_offset": frame.lamp_offset,
        "serial_binning": sb,
        "first_lit_col": geom.first_lit_col,
        "x_of_column": [sb, round((sb - 1) / 2.0 - geometry.REFERENCE_ORIGIN + shift, 6)],
        "tilt_px_per_100_rows": geom.tilt_per_100_rows(plan.tilt),
        "tilt_reference_row": geom.tilt_reference_row,
        "pixel_mapping": PIXEL_MAPPING_V2,
    })
    return out


def readout_truth(plan: NightPlan, frame: FramePlan) -> Dict[str, Any]:
    """The frame's own setup: readout geometry, window and slit (nights with per-frame setups)."""
    geom = frame.geometry
    sigma = spectra.lamp_model(plan.lamp, geometry.GAIN).lines.sigma
    ref_slit = str(load_reference_lamp(plan.lamp).header.get("SLIT", ""))
    lit = geom.illuminated_rows
    return {
        "binning": list(geom.binning),
        "ccdsum": geom.ccdsum,
        "roi": geom.roi_name,
        "roi_first_row_unbinned": geom.roi.first_row,
        "roi_n_rows_unbinned": geom.roi.n_rows,
        "parallel_origin": geom.parallel_origin,
        "shape": list(geom.shape),
        "naxis1": geom.n_cols,
        "naxis2": geom.n_rows,
        "overscan": geom.overscan_section,
        "trim": geom.trim_section,
        "first_lit_col": geom.first_lit_col,
        "n_lit_cols": geom.n_lit_cols,
        "illuminated_rows": None if lit is None else list(lit),
        "slit_edges_rows": [round(v, 6) for v in geom.slit_edges],
        "slit_edge_sigma_rows": geom.slit_edge_sigma,
        "row_mapping": ROW_MAPPING,
        "slit_arcsec": frame.slit if frame.slit is not None else REFERENCE_SLIT,
        "slit_card": headers.slit_card(frame.slit) if frame.slit is not None else ref_slit,
        "line_sigma_unbinned": round(sigma * frame.slit_factor, 6),
        "exposure_factor": round(frame.exposure_factor, 6),
    }


def geometry_truth(geom: geometry.Geometry) -> Dict[str, Any]:
    lit = geom.illuminated_rows
    return {
        "shape": list(geom.shape),
        "naxis1": geom.n_cols,
        "naxis2": geom.n_rows,
        "binning": list(geom.binning),
        "overscan": geom.overscan_section,
        "trim": geom.trim_section,
        "first_lit_col": geom.first_lit_col,
        "n_lit_cols": geom.n_lit_cols,
        "illuminated_rows_1based": None if lit is None else [lit[0] + 1, lit[1] + 1],
        "illuminated_rows": None if lit is None else list(lit),
        "slit_edge_sigma_rows": geom.slit_edge_sigma,
    }


def _target(t) -> Dict[str, Any]:
    if t.flux_model is not None:  # physical: the frame's flux_model says the rest
        return {"name": t.name, "ra": t.ra, "dec": t.dec}
    return {"name": t.name, "ra": t.ra, "dec": t.dec, "temperature_k": t.temperature,
            "rate_e_per_s_at_6000": t.rate, "halpha_depth": t.halpha_depth,
            "halpha_sigma_angstrom": t.halpha_sigma}


def flux_calibration_truth(plan: NightPlan) -> Dict[str, Any]:
    """The physical instrument model of a night with a standard, for tests that redo the arithmetic."""
    std = [f.target.standard for f in plan.frames if f.kind == "science" and f.target.standard is not None]
    return {
        "standard": std[0] if std else None,
        "collecting_area_cm2": round(spectra.COLLECTING_AREA_CM2, 3),
        "peak_efficiency": spectra.PEAK_EFFICIENCY,
        "h_c_erg_angstrom": spectra.H_C,
        "extinction": standards.EXTINCTION_FILE,
        "standards_data": standards.DATA_SUBDIR,
        "flux_units": "erg/s/cm^2/A (F_lambda above the atmosphere)",
        "model": ("source_electrons(c) = F_lambda * collecting_area_cm2 * peak_efficiency * throughput(lambda) "
                  "* lambda/h_c * 10**(-0.4 * k(lambda) * airmass) * exptime * dispersion(c), lambda and the "
                  "dispersion (A per binned pixel) at the trace row; k = CTIO extinction (linear in lambda), "
                  "throughput = infra.simulator.spectra.throughput, F_lambda = spectra.input_flux(flux_model, "
                  "lambda); then spread over rows and slit illumination like every target"),
    }


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
        "wavelength_solution": None if frame.kind == "bias" else _solution(plan, frame.shift, frame),
        "target": None,
        "trace": None,
        "n_cosmic_ray_events": hits.n_events,
        "cosmic_rays": [[r, c] for r, c in zip(hits.rows, hits.cols)],
        "cosmic_ray_electrons": list(hits.electrons),
        "spectrum": None,
    }
    if frame.target is not None:
        entry["target"] = _target(frame.target)
    if frame.kind == "science" and frame.target.flux_model is not None:
        entry.update({"flux_model": frame.target.flux_model, "airmass": headers.frame_airmass(plan, frame),
                      "standard": frame.target.standard is not None})
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
    if not plan.legacy:
        entry["readout"] = readout_truth(plan, frame)
    return entry


def truth_dict(plan: NightPlan) -> Dict[str, Any]:
    ref = load_reference_lamp(plan.lamp)
    sol = ref.solution
    model = spectra.lamp_model(plan.lamp, geometry.GAIN)
    filt = str(ref.header.get("FILTER2", ""))
    sky_wl, sky_rate = spectra.visible_sky_lines(sol)
    geom = plan.science_geometry
    extra = {"flux_calibration": flux_calibration_truth(plan)} if plan.physical else {}
    return {
        "format": "goodman-night-simulator truth " + ("v1" if plan.legacy else "v2"),
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
            **geometry_truth(geom),
            "illumination": ILLUMINATION_V1 if plan.legacy else ILLUMINATION_V2,
            "pixel_response_rms": PRNU_RMS,
            "tilt_reference_row": geom.tilt_reference_row,
            "bias_level_adu": geometry.BIAS_LEVEL,
            "gain": geometry.GAIN,
            "rdnoise_e": geometry.RDNOISE,
            "rdnoise_adu": round(geometry.RDNOISE / geometry.GAIN, 4),
            "saturation_adu": geometry.SATURATION,
            "readout": geom.readout_mode,
            "electrons_model": ("e(r, c) = [diffuse(c)*I(r) + source(c)*P(r; trace(c))*I(r)] * prnu(r, c); "
                                "ADU = Poisson(e)/gain + cosmic_ray_electrons/gain + bias(r, c) + "
                                "(bias_level_adu - nominal) + N(0, rdnoise_adu), rounded, clipped to 0..65535"),
        },
        "wavelength_solution": {**sol.as_dict(), "pixel_mapping": PIXEL_MAPPING if plan.legacy else PIXEL_MAPPING_V2,
                                "tilt_reference_row": geom.tilt_reference_row},
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
        **extra,
        "frames": [frame_truth(plan, f) for f in plan.frames],
    }
