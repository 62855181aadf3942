"""Flexure between a science exposure and its comparison lamp, measured on the sky lines.

Why: the lamp is taken minutes to hours away from the science exposure, with the
telescope pointing elsewhere; the spectrograph bends, and the whole spectrum moves by a
fraction of a pixel (Goodman: a few tenths of an unbinned pixel per hour). A lamp
solution, however exact, is then off by that much for the science frame. The night
sky's own emission lines sit in every long-slit science frame, at wavelengths known to
a few hundredths of an angstrom, so the frame carries its own correction: measure where
the lines are on the sky beside the target, compare with where the lamp's solution puts
them, and move the solution by the median offset (as PypeIt and IRAF's `specshift` do;
goodman-pipeline does not correct flexure).

Only a shift is fitted: over one exposure the flexure is a translation of the spectrum
on the detector to well below a hundredth of a pixel of change in scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from numpy.polynomial import chebyshev

from .lines import fit_lines, noise_sigma, residual_spectrum
from .wavesolution import EDGE_MARGIN_PX, WavelengthFailure, monotonic_turn

#: Night-sky emission lines, air wavelengths (angstrom): [OI] 5577/6300/6364 and the
#: strongest isolated OH lines of the red (Osterbrock et al. 1996). NaD is left out:
#: its doublet blends at Goodman's low resolutions and its strength varies with the
#: city lights.
SKY_LINES = (5577.338, 6300.304, 6363.776, 6863.955, 7316.282, 7340.885, 7750.640, 7794.112, 7821.503,
             7913.708, 7993.332, 8344.602, 8399.170, 8430.174, 8465.208, 8827.096)
#: A sky line is used when its peak stands this many noise sigmas above the continuum.
MIN_SNR = 8.0
#: Larger shifts are not flexure (a wrong lamp or setup): they are not applied. An
#: accepted lamp solution is monotonic `EDGE_MARGIN_PX` beyond the spectrum's ends, so a
#: shift up to this size always leaves a monotonic solution.
MAX_SHIFT_PX = 4.0
assert MAX_SHIFT_PX <= EDGE_MARGIN_PX


@dataclass(frozen=True)
class Flexure:
    """The science frame's offset from its lamp, in binned pixels (science = lamp + shift)."""

    shift: float
    scatter: float  # MAD-sigma of the per-line offsets (px)
    lines: Tuple[Tuple[float, float], ...]  # (wavelength, offset px) of the lines used

    def as_dict(self):
        return {"shift_pixels": round(self.shift, 4), "scatter_pixels": round(self.scatter, 4),
                "n_lines": len(self.lines), "lines": [round(w, 3) for w, _ in self.lines]}


def measure_flexure(sky: np.ndarray, solution, binning: int) -> Optional[Flexure]:
    """The shift of the sky lines in `sky` (one value per column) from where `solution`
    puts them, or None when no sky line is bright enough to tell.

    Raises WavelengthFailure (with the reason) when the solution cannot be inverted or
    would not stay monotonic over the spectrum once moved by the shift measured.
    """
    sky = np.nan_to_num(np.asarray(sky, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    resid = residual_spectrum(sky, binning)
    noise = noise_sigma(resid)
    predicted = solution.pixel(np.asarray(SKY_LINES))
    half = max(3, int(round(8 / binning)))
    usable = np.isfinite(predicted) & (predicted > half + MAX_SHIFT_PX) & (predicted < sky.size - half - MAX_SHIFT_PX - 1)
    if not usable.any() or not noise > 0:
        return None
    wl, guess = np.asarray(SKY_LINES)[usable], predicted[usable]
    centre, sigma, flux, ok = fit_lines(resid, guess, half)
    peak = flux / (np.sqrt(2 * np.pi) * np.maximum(sigma, 0.25))
    offset = centre - guess
    good = ok & (peak > MIN_SNR * noise) & (np.abs(offset) < MAX_SHIFT_PX)
    if not good.any():
        return None
    offsets, wl = offset[good], wl[good]
    median = float(np.median(offsets))
    scatter = float(1.4826 * np.median(np.abs(offsets - median))) if offsets.size > 2 else 0.0
    keep = np.abs(offsets - median) <= max(3 * scatter, 0.1)
    shift = float(np.mean(offsets[keep]))
    n = int(getattr(solution, "n_pixels", sky.size))
    turn = monotonic_turn(shifted_coefficients(solution.coefficients, shift), -0.5, n - 0.5)
    if turn is not None:
        raise WavelengthFailure(f"flexure: the sky lines move the spectrum by {shift:+.2f} px, which takes the "
                                f"lamp's wavelength solution past its turning point (column {turn:.0f})")
    return Flexure(shift=shift, scatter=scatter, lines=tuple(zip(map(float, wl[keep]), map(float, offsets[keep]))))


def shifted_coefficients(coefficients, shift: float) -> Tuple[float, ...]:
    """Chebyshev coefficients of lambda'(j) = lambda(j - shift): the lamp's solution moved
    by the flexure, in the same plain chebval(j, c) form. WavelengthFailure for a
    non-finite shift or coefficients (they would only travel on to a crash)."""
    if not (np.isfinite(shift) and np.all(np.isfinite(np.asarray(coefficients, dtype=float)))):
        raise WavelengthFailure(f"flexure: cannot move the wavelength solution by {shift} px "
                                f"(coefficients {tuple(coefficients)})")
    moved = chebyshev.Chebyshev(coefficients)(chebyshev.Chebyshev([-shift, 1.0]))
    return tuple(float(c) for c in moved.coef[:len(coefficients)])
