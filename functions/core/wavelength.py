"""Wavelength calibration of a 1-D comparison-lamp spectrum: pixels of the reduced frame → angstrom.

The entry point, `solve`, and the names the rest of Goodman Live imports from here.
The work is split by concern (as PypeIt's ``core/wavecal`` splits waveio, wvutils,
wv_fitting, patterns and autoid, with line finding in ``core/arc.py``):

* `lines` – continuum, noise, line detection and pixel-integrated Gaussian centres;
* `waveheader` – grating, angles, binning, trim and lamp elements from the header;
* `wavesettings` – the knobs (one DEFAULTS table) and `setting`;
* `wavesolution` – the solution model, the clipped fit and its quality limits, the FITS
  cards, the inverse and the linear resampling;
* `registration` – the **reference** path: a goodman-pipeline reference lamp of the same
  configuration registered on the lamp over the whole plausible range of shifts, the
  lag chosen by the quality of the identified lines;
* `gratingeq` – the **grating-equation** path: the dispersion predicted from
  ``m*lambda = d*(sin(alpha) + sin(beta))`` and the header's angles, refined by a scale
  and offset search against the NIST lines of the lamp's elements and a smooth
  alignment on all the lamp's lines before they are paired one by one.

Either way the answer is a Chebyshev fit of laboratory wavelengths against *measured*
line centres, with iterative clipping, refused (`WavelengthFailure`, with the reason for
the observer) when too few lines are identified, the RMS is above a limit that follows
the binning and the line width, the lamp's bright lines are unexplained, or the solution
is not monotonic. When the reference path refuses, the grating equation is tried before
refusing, and a refusal then gives both reasons.

Nothing here imports goodman-pipeline; its data files are read by `lampdata`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from astropy.io import fits

from .gratingeq import (ANGLE_OFFSETS, AXIS_PIXEL, CAMERA_FOCAL_MM, DEFAULT_ANGLE_OFFSET, OFFSET_RANGE,
                        PIXEL_SIZE_MM, SCALE_RANGE, fit_grating_constants, grating_wavelength,
                        solve_with_grating_equation)
from .lines import MAD_TO_SIGMA, Lines, detect_lines, fit_lines, noise_sigma, residual_spectrum
from .registration import ReferenceFailure, find_reference, solve_with_reference
from .waveheader import LAMP_KEYWORDS, lamp_elements, lines_per_mm, spectral_binning
from .wavesettings import DEFAULTS, _setting, setting
from .wavesolution import WavelengthFailure, WavelengthSolution, _invert, linearize, monotonic_turn, rms_limit

#: What the rest of Goodman Live (and the tests) take from here; the modules above own them.
__all__ = [
    "solve", "WavelengthFailure", "WavelengthSolution", "linearize", "DEFAULTS", "setting", "_setting",
    "find_reference", "solve_with_reference", "solve_with_grating_equation", "ReferenceFailure",
    "lines_per_mm", "spectral_binning", "lamp_elements", "LAMP_KEYWORDS",
    "fit_lines", "noise_sigma", "residual_spectrum", "detect_lines", "Lines", "MAD_TO_SIGMA",
    "grating_wavelength", "fit_grating_constants", "CAMERA_FOCAL_MM", "AXIS_PIXEL", "ANGLE_OFFSETS",
    "DEFAULT_ANGLE_OFFSET", "PIXEL_SIZE_MM", "SCALE_RANGE", "OFFSET_RANGE", "rms_limit", "monotonic_turn", "_invert",
]


def solve(flux: np.ndarray, header: fits.Header, settings=None) -> WavelengthSolution:
    """The wavelength solution of a 1-D lamp spectrum (reduced-frame columns, binned as CCDSUM).

    Uses a matching reference lamp when there is one (and `wavelength_use_reference`),
    else the grating equation. When the reference path refuses (the lamp does not
    register, or its lines do not fit) the grating equation is tried
    (`wavelength_grating_fallback`); its solution then carries the reference's reason in
    `note`, and if it refuses too, WavelengthFailure gives both reasons: the lamp may
    not be what the header says.
    """
    arr = np.asarray(flux, dtype=float)
    if arr.ndim != 1 or arr.size < 50:
        raise WavelengthFailure(f"expected a 1-D lamp spectrum of at least 50 pixels, got shape {arr.shape}")
    if not np.any(np.isfinite(arr)):
        raise WavelengthFailure("the lamp spectrum has no finite value")
    if not np.all(np.isfinite(arr)):
        arr = np.where(np.isfinite(arr), arr, np.nanmedian(arr))
    if not setting(settings, "wavelength_use_reference"):
        return solve_with_grating_equation(arr, header, settings)
    reference = find_reference(header, settings)
    if reference is None:
        return solve_with_grating_equation(arr, header, settings)
    identified = (np.array([]), np.array([]))
    try:
        return solve_with_reference(arr, header, reference, settings)
    except WavelengthFailure as exc:
        if not setting(settings, "wavelength_grating_fallback"):
            raise
        first = str(exc)
        if isinstance(exc, ReferenceFailure):
            identified = exc.identified
    try:
        solution = solve_with_grating_equation(arr, header, settings)
        _agrees_with_reference_lines(solution, *identified)
    except WavelengthFailure as exc:
        raise WavelengthFailure(f"{first}; then {exc}") from exc
    return replace(solution, note=f"reference lamp not used: {first}")


#: A grating-equation solution replacing a refused reference must put at least this
#: fraction of the reference lines the registration found in the lamp within
#: `AGREEMENT_PX` binned px of where they are. Why: a lamp with too few lines for the
#: reference path has few for the grating equation too, and a wrong identification
#: of 7-10 lines can pass its RMS and bright-line checks (seen on simulated 930 HgAr
#: lamps, 5-60 px off); the lines the reference did identify contradict it.
MIN_AGREEMENT = 0.75
AGREEMENT_PX = 1.0


def _agrees_with_reference_lines(solution: WavelengthSolution, j: np.ndarray, wavelengths: np.ndarray) -> None:
    if j.size < 2:
        return
    try:
        pix = solution.pixel(wavelengths)
    except WavelengthFailure:
        pix = np.full(j.size, np.nan)
    close = np.abs(pix - j) <= AGREEMENT_PX
    if close.mean() < MIN_AGREEMENT:
        raise WavelengthFailure(
            f"grating-equation: its solution puts only {int(close.sum())} of the {j.size} lines the reference "
            f"identified in the lamp within {AGREEMENT_PX:g} px of where they are: a wrong identification")
