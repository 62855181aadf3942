"""From a reduced science frame to its 1-D spectra, and from its lamp to their wavelengths.

This is the spectroscopic half of the pipeline as goodman-pipeline's `redspec` runs
it, on arrays: find the targets, trace and extract each one (`ecfzst_`), extract the
comparison lamp along the very same trace and aperture (the lines are tilted, so a
lamp summed elsewhere on the slit would be shifted), solve it, and resample the
science spectrum onto a linear wavelength grid (`wecfzst_`) that any FITS reader
understands, keeping the fitted non-linear solution in `GSP_*` cards.

The FITS products are built here so their layout is decided in one place: the flux
in the primary HDU with a 1-D WCS and `BUNIT`, its variance in an image extension
named `VAR` (what specutils' `wcs1d-fits` reader recognises as a variance).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from astropy.io import fits

from .cosmics import merged_windows, reject_in_rows
from .extract import (ExtractedSpectrum, Target, Trace, _overlap, detect_targets, extract, extraction_rows,
                      trace_target)
from .masters import camera_binning

#: Header cards of a 2-D frame that make no sense on a 1-D product.
_IMAGE_ONLY = ("NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "CD1_1", "CD1_2",
               "CD2_1", "CD2_2", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "LTV1", "LTV2", "LTM1_1", "LTM2_2",
               "WCSDIM", "WAT0_001", "WAT1_001", "WAT2_001", "DATASEC", "CCDSEC", "BIASSEC", "TRIMSEC")


@dataclass(frozen=True)
class TargetSpectrum:
    """One source on the slit: where it was found, its trace, and its extracted spectrum
    (one value per detector column of the reduced frame)."""

    number: int  # 1-based, brightest first
    target: Target
    trace: Trace
    spectrum: ExtractedSpectrum

    def summary(self) -> Dict[str, Any]:
        """What the index keeps of it: enough to extract a lamp along it later."""
        s = self.spectrum
        with np.errstate(all="ignore"):
            snr = s.flux / np.sqrt(s.variance)
        finite = snr[np.isfinite(snr)]
        return {
            "number": self.number, "row": round(self.target.center, 3), "fwhm": round(self.target.fwhm, 3),
            "amplitude": round(self.target.amplitude, 2), "model": self.target.model,
            "trace": [float(c) for c in self.trace.coefficients], "trace_rms": round(self.trace.rms, 4),
            "trace_columns": [self.trace.col_min, self.trace.col_max],
            "extraction": s.method, "aperture_rows": round(s.aperture, 3),
            "median_snr": round(float(np.median(finite)), 2) if finite.size else None,
        }


def trace_from_summary(summary: Dict[str, Any]) -> Trace:
    lo, hi = summary["trace_columns"]
    return Trace(coefficients=tuple(summary["trace"]), rms=summary["trace_rms"], col_min=int(lo), col_max=int(hi),
                 fwhm=summary["fwhm"])


def _gain_rdnoise(header: fits.Header) -> Tuple[float, float]:
    try:
        return float(header["GAIN"]), float(header["RDNOISE"])
    except (KeyError, TypeError, ValueError):
        return 1.0, 0.0


def extract_targets(data: np.ndarray, mask: Optional[np.ndarray], header: fits.Header, settings,
                    clean_windows: bool = False, report: Optional[Dict[str, Any]] = None
                    ) -> Tuple[List[TargetSpectrum], List[str]]:
    """Every target above the detection level, traced and extracted over all columns.

    All columns, not only where the trace was measured: the low-order trace is a fair
    guide into the faint ends, and a spectrum aligned with the detector's columns is
    what the wavelength solution (a function of column) applies to. Returns the
    spectra and notes on targets that could not be traced (nothing is dropped silently).

    `clean_windows`: `data` has not been cleaned of cosmic rays; they are rejected
    (settings.cosmic_ray_rejection) in the rows the extractions read only, once the
    targets are traced (finding and tracing use medians, which hits do not move), so a
    spectrum need not wait for the whole frame's cleaning (cosmics.reject_in_rows);
    `report` (the reduction's report), if given, gets `cosmic_windows`: the rows
    cleaned, the pixels flagged and how, or why nothing was cleaned.
    """
    gain, rdnoise = _gain_rdnoise(header)
    notes: List[str] = []
    try:
        camera, (serial_binning, spatial_binning) = camera_binning(header)  # CCDSUM 'serial parallel'
    except ValueError:
        camera, serial_binning, spatial_binning = "", 2, None  # unknown: detect_targets assumes the coarsest
    search = detect_targets(data, max_targets=settings.max_targets, background_threshold=settings.background_threshold,
                            model=settings.target_fit_model, mask=mask, spatial_binning=spatial_binning,
                            min_snr=settings.target_min_snr, min_fwhm_arcsec=settings.target_min_fwhm_arcsec,
                            edge_margin_arcsec=settings.slit_edge_margin_arcsec,
                            column_blocks=settings.target_column_blocks,
                            min_block_fraction=settings.target_min_block_fraction)
    targets = search.targets
    if not targets:
        notes.append(f"no target above the detection level (background_threshold {settings.background_threshold})")
    notes.extend(search.notes())
    shape = np.shape(data)
    columns = np.arange(shape[1])
    traced = []
    for target in targets:
        try:
            traced.append((target, trace_target(data, target, mask=mask)))
        except ValueError as exc:
            notes.append(f"target at row {target.center:.1f} not extracted: {exc}")
    if clean_windows and traced:
        data, mask, cleaned = _clean_extraction_rows(data, mask, header, settings, traced, columns,
                                                     camera or "RED", serial_binning)
        if report is not None:
            report["cosmic_windows"] = cleaned
    out: List[TargetSpectrum] = []
    for target, trace in traced:
        try:
            spec = extract(data, trace, target.fwhm, method=settings.extraction_type, gain=gain, rdnoise=rdnoise,
                           mask=mask, columns=columns)
        except ValueError as exc:
            notes.append(f"target at row {target.center:.1f} not extracted: {exc}")
            continue
        out.append(TargetSpectrum(len(out) + 1, target, trace, spec))
    return out, notes


def _clean_extraction_rows(data, mask, header, settings, traced, columns, camera: str, serial_binning: int):
    """(data, mask, what was done) with cosmic rays rejected in the rows the extractions read."""
    method = settings.cosmic_ray_rejection
    if method == "none":
        return data, mask, {"rows": [], "pixels": 0, "method": "none"}
    try:
        gain, rdnoise = float(header["GAIN"]), float(header["RDNOISE"])
    except (KeyError, TypeError, ValueError):
        return data, mask, {"rows": [], "pixels": 0, "method": None,
                            "note": "not cleaned before extraction: the header has no usable GAIN/RDNOISE"}
    nrows, ncols = np.shape(data)
    windows = [extraction_rows(trace, target.fwhm, nrows, ncols, columns) for target, trace in traced]
    clean, crmask, desc = reject_in_rows(data, windows, gain, rdnoise, method, settings.cosmic_niter, mask, camera,
                                         serial_binning)
    done = {"rows": [[lo, hi - 1] for lo, hi in merged_windows(windows, nrows)], "pixels": int(crmask.sum()),
            "method": desc}
    return clean, (crmask if mask is None else (np.asarray(mask) | crmask)), done


def lamp_spectrum(data: np.ndarray, trace: Trace, aperture_rows: float) -> np.ndarray:
    """The lamp summed over the science aperture (+-`aperture_rows` about the trace).

    No sky is subtracted: the lamp fills the slit, so 'sky' beside the trace is lamp.
    """
    arr = np.asarray(data, dtype=float)
    return _sum_along(arr, trace.center(np.arange(arr.shape[1])), aperture_rows)


def _sum_along(arr: np.ndarray, y: np.ndarray, half: float) -> np.ndarray:
    rows = np.arange(arr.shape[0], dtype=float)[:, None]
    w = _overlap(rows, y[None, :] - half, y[None, :] + half)
    return (w * np.where(np.isfinite(arr), arr, 0.0)).sum(axis=0)


def lamp_spectrum_for(lamp_data: np.ndarray, lamp_header: fits.Header, science_header: fits.Header, trace: Trace,
                      aperture_rows: float) -> Tuple[np.ndarray, List[str]]:
    """The lamp under a science target's aperture, whatever the two frames' readouts.

    Same geometry: exactly `lamp_spectrum`. Otherwise the trace and the aperture are
    carried to the lamp's rows and columns through detector coordinates (mapping.py),
    and the aperture is kept inside the lamp's rows. Returns the lamp's spectrum (one
    value per lamp column) and notes on what the mapping bridged."""
    from .mapping import FrameGeometry, differences, lamp_rows

    arr = np.asarray(lamp_data, dtype=float)
    lamp_geo, sci_geo = FrameGeometry.from_header(lamp_header), FrameGeometry.from_header(science_header)
    notes = differences(lamp_geo, sci_geo)
    if lamp_geo == sci_geo:
        return lamp_spectrum(arr, trace, aperture_rows), notes
    y = lamp_rows(lamp_geo, sci_geo, arr.shape[1], trace.center)
    half = max(aperture_rows * sci_geo.parallel / lamp_geo.parallel, 0.5)
    lo, hi = half - 0.5, arr.shape[0] - 0.5 - half
    if lo >= hi:
        y, half = np.full(arr.shape[1], (arr.shape[0] - 1) / 2.0), arr.shape[0] / 2.0
    elif np.any((y < lo) | (y > hi)):
        notes.append("the science aperture falls outside the lamp's rows: the lamp is summed at its nearest rows")
        y = np.clip(y, lo, hi)
    return _sum_along(arr, y, half), notes


#: Rows summed either side of the slit's centre for a lamp's own spectrum (no science trace):
#: 40 rows keep the faint lines of real Fe arcs above the noise; the tilt of the lines
#: over them is a fraction of a pixel, symmetric about the centre.
LAMP_CENTRE_HALF_ROWS = 20.0


def central_lamp_spectrum(data: np.ndarray) -> np.ndarray:
    """The lamp summed over rows about the middle of the slit: its own spectrum, solved
    as soon as it arrives so that the observer knows the setup before the science."""
    arr = np.asarray(data, dtype=float)
    return _sum_along(arr, np.full(arr.shape[1], (arr.shape[0] - 1) / 2.0),
                      min(LAMP_CENTRE_HALF_ROWS, arr.shape[0] / 2.0))


# ------------------------------------------------------------------------- products
def _one_d_header(header: fits.Header) -> fits.Header:
    out = header.copy()
    for key in _IMAGE_ONLY:
        out.remove(key, ignore_missing=True, remove_all=True)
    return out


def _hdul(flux: np.ndarray, variance: Optional[np.ndarray], header: fits.Header,
          sky: Optional[np.ndarray] = None, mask: Optional[np.ndarray] = None) -> bytes:
    primary = fits.PrimaryHDU(data=np.asarray(flux, dtype=np.float32), header=header)
    hdus = [primary]
    if variance is not None:
        var = fits.ImageHDU(data=np.asarray(variance, dtype=np.float32), name="VAR")
        var.header["BUNIT"] = ("adu2", "variance of the flux")
        hdus.append(var)
    if sky is not None:
        sky_hdu = fits.ImageHDU(data=np.asarray(sky, dtype=np.float32), name="SKY")
        sky_hdu.header["BUNIT"] = ("adu", "sky subtracted, per pixel row")
        hdus.append(sky_hdu)
    if mask is not None:
        mask_hdu = fits.ImageHDU(data=np.asarray(mask, dtype=np.uint8), name="MASK")
        mask_hdu.header["COMMENT"] = "1: no good pixel in the aperture, bridged from the neighbours"
        hdus.append(mask_hdu)
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def _target_cards(header: fits.Header, ts: TargetSpectrum) -> None:
    s = ts.summary()
    header["GSP_TNUM"] = (ts.number, "target number, brightest first")
    header["GSP_TROW"] = (s["row"], "target row at the middle column (0-based)")
    header["GSP_TFWH"] = (s["fwhm"], "target FWHM (rows)")
    header["GSP_TMOD"] = (s["model"], "target profile model")
    header["GSP_EXTR"] = (ts.spectrum.method, "extraction type")
    header["GSP_EAPR"] = (s["aperture_rows"], "aperture half-width (rows)")
    for i, c in enumerate(ts.trace.coefficients):
        header[f"GSP_TRC{i}"] = (float(c), f"trace row = sum c_k col^k, k={i}")


def extracted_fits(ts: TargetSpectrum, header: fits.Header) -> bytes:
    """`ecfzst_`: flux per detector column (pixel WCS), variance in `VAR`, and the sky
    that was subtracted in `SKY` (its lines measure the flexure, see flexure.py)."""
    h = _one_d_header(header)
    _target_cards(h, ts)
    h["BUNIT"] = "adu"
    h["CTYPE1"], h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = "PIXEL", 1.0, 0.0, 1.0
    return _hdul(ts.spectrum.flux, ts.spectrum.variance, h, ts.spectrum.sky)


def _wavelength_cards(h: fits.Header, solution, crval1: float, cdelt1: float, n: int, lamp_name: str) -> None:
    h["BUNIT"] = "adu"
    h["CTYPE1"] = ("WAVE", "air wavelength, linear after resampling")
    h["CUNIT1"] = "Angstrom"
    h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = 1.0, float(crval1), float(cdelt1)
    h["GSP_WRES"] = (n, "pixels resampled onto the linear grid")
    h["GSP_LAMP"] = (lamp_name, "comparison lamp used")
    for key, value, comment in solution.to_header_cards():
        h[key] = (value, comment)


def calibrated_fits(flux: np.ndarray, variance: Optional[np.ndarray], header: fits.Header, solution,
                    lamp_name: str, flexure=None, notes=(), sky: Optional[np.ndarray] = None
                    ) -> Tuple[bytes, np.ndarray, np.ndarray]:
    """`wecfzst_`: the spectrum on a linear wavelength grid. Returns the FITS bytes and
    the (wavelength, flux) it holds, for the plot. `solution` is the one that applies
    to this spectrum (for a science frame: the lamp's, mapped to its pixels and moved
    by `flexure`); `notes` say what differed between the frame and its lamp (GSP_CD##).
    The sky that was subtracted, resampled onto the same grid, goes into `SKY`: the
    page shows it on demand, to tell a residual sky line from the target's."""
    from .wavelength import linearize

    flux = np.asarray(flux, dtype=float)
    var = np.zeros_like(flux) if variance is None else np.asarray(variance, dtype=float)
    bad = ~(np.isfinite(flux) & np.isfinite(var))
    if bad.all():
        raise ValueError("no finite flux to resample")
    # A column with no good pixel in the aperture (a cosmic ray across it) has no flux:
    # bridged from its neighbours for the resampling, and flagged in MASK, rather than
    # read as zero flux (a false absorption line).
    j = np.arange(flux.size)
    filled = np.where(bad, np.interp(j, j[~bad], flux[~bad]), flux)
    filled_var = np.where(bad, np.interp(j, j[~bad], var[~bad]), var)
    flux_lin, var_lin, crval1, cdelt1 = linearize(filled, filled_var, solution)
    mask = linearize(bad.astype(float), None, solution)[0] > 1e-6 if bad.any() else None
    h = _one_d_header(header)
    _wavelength_cards(h, solution, crval1, cdelt1, len(flux_lin), lamp_name)
    if flexure is not None:
        h["GSP_FLEX"] = (round(flexure.shift, 4), "flexure from sky lines, px (applied)")
        h["GSP_FLXN"] = (len(flexure.lines), "sky lines measuring the flexure")
    for i, note in enumerate(notes, start=1):  # long values continue on CONTINUE cards: no comment
        h[f"GSP_CD{i:02d}"] = str(note)
    sky_lin = None
    if sky is not None and np.size(sky) == flux.size:
        sky = np.asarray(sky, dtype=float)
        good = np.isfinite(sky)
        if good.any():
            sky_lin = linearize(np.where(good, sky, np.interp(j, j[good], sky[good])), None, solution)[0]
    body = _hdul(flux_lin, None if variance is None else var_lin, h, sky_lin, mask=mask)
    return body, crval1 + cdelt1 * np.arange(len(flux_lin)), flux_lin


@dataclass(frozen=True)
class CalibratedTarget:
    """A target's spectrum calibrated with its lamp: the lamp's solution, the flexure
    the sky lines measured (None: not measurable, not corrected), the solution applied
    to the science spectrum, and the two `wecfzst_` products with what they hold."""

    solution: Any
    flexure: Any
    science_solution: Any
    science_fits: bytes
    wavelength: np.ndarray
    flux: np.ndarray
    lamp_fits: bytes
    lamp_wavelength: np.ndarray
    lamp_flux: np.ndarray


def solve_target(header: fits.Header, sky: Optional[np.ndarray], lamp_flux: np.ndarray, lamp_header: fits.Header,
                 settings, n_pixels: Optional[int] = None):
    """(lamp solution in the lamp's own columns, flexure or None, the solution of the
    science spectrum: the lamp's mapped to the science frame's columns (another binning
    or first column, see mapping.py) and moved by the flexure the sky lines measure).
    `n_pixels` is the science spectrum's length (default: the sky's, else the lamp's).
    Raises WavelengthFailure."""
    from dataclasses import replace

    from .flexure import measure_flexure, shifted_coefficients
    from .mapping import FrameGeometry, map_solution
    from .wavelength import solve, spectral_binning

    solution = solve(lamp_flux, lamp_header, settings)
    n = int(n_pixels or (np.size(sky) if sky is not None else solution.n_pixels))
    base = map_solution(solution, FrameGeometry.from_header(lamp_header), FrameGeometry.from_header(header), n)
    flexure = measure_flexure(sky, base, spectral_binning(header)) if sky is not None else None
    science_solution = base if flexure is None else replace(
        base, coefficients=shifted_coefficients(base.coefficients, flexure.shift))
    return solution, flexure, science_solution


def calibrate_target(flux: np.ndarray, variance: Optional[np.ndarray], header: fits.Header, sky: Optional[np.ndarray],
                     lamp_flux: np.ndarray, lamp_header: fits.Header, settings, lamp_name: str,
                     notes=()) -> CalibratedTarget:
    """Solve the lamp extracted along this target, map its solution to this frame's
    pixels, correct the flexure from the sky lines, and build both calibrated products.
    Raises WavelengthFailure when the lamp gives no acceptable solution."""
    solution, flexure, science_solution = solve_target(header, sky, lamp_flux, lamp_header, settings, np.size(flux))
    body, wl, fl = calibrated_fits(flux, variance, header, science_solution, lamp_name, flexure, notes, sky)
    lamp_body, lwl, lfl = calibrated_fits(lamp_flux, None, lamp_header, solution, lamp_name)
    return CalibratedTarget(solution, flexure, science_solution, body, wl, fl, lamp_body, lwl, lfl)
