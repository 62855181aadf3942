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

#: Night-sky emission lines, air wavelengths (angstrom): [OI] 5577/6300/6364 and the
#: strongest isolated OH lines of the red (Osterbrock et al. 1996). NaD is left out:
#: its doublet blends at Goodman's low resolutions and its strength varies with the
#: city lights.
SKY_LINES = (5577.338, 6300.304, 6363.776, 6863.955, 7316.282, 7340.885, 7750.640, 7794.112, 7821.503,
             7913.708, 7993.332, 8344.602, 8399.170, 8430.174, 8465.208, 8827.096)
#: A sky line is used when its peak stands this many noise sigmas above the continuum.
MIN_SNR = 8.0
#: Larger shifts are not flexure (a wrong lamp or setup): they are not applied.
MAX_SHIFT_PX = 4.0


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
    puts them, or None when no sky line is bright enough to tell."""
    from .wavelength import fit_lines, noise_sigma, residual_spectrum

    sky = np.nan_to_num(np.asarray(sky, dtype=float))
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
    return Flexure(shift=shift, scatter=scatter, lines=tuple(zip(map(float, wl[keep]), map(float, offsets[keep]))))


def shifted_coefficients(coefficients, shift: float) -> Tuple[float, ...]:
    """Chebyshev coefficients of lambda'(j) = lambda(j - shift): the lamp's solution moved
    by the flexure, in the same plain chebval(j, c) form."""
    moved = chebyshev.Chebyshev(coefficients)(chebyshev.Chebyshev([-shift, 1.0]))
    return tuple(float(c) for c in moved.coef[:len(coefficients)])
