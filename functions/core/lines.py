"""Emission lines in a 1-D spectrum: continuum, noise, detection and sub-pixel centres.

Shared by the wavelength calibration (lamp lines), the flexure measurement (sky lines)
and anything else that needs line centres. Pure functions of arrays; no header, no
wavelength. ``j`` is the 0-based column, pixel ``j`` spans ``[j-0.5, j+0.5]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal
from scipy.special import ndtr

#: MAD -> standard deviation.
MAD_TO_SIGMA = 1.4826
#: Gaussian sigma -> full width at half maximum.
SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _continuum(flux: np.ndarray, width: int) -> np.ndarray:
    """A smooth lower envelope (running minimum, then running mean), below every line."""
    floor = ndimage.minimum_filter1d(flux, size=width, mode="nearest")
    return ndimage.uniform_filter1d(floor, size=width, mode="nearest")


def noise_sigma(resid: np.ndarray) -> float:
    """Pixel noise from the MAD of first differences: blind to lines and continuum slopes."""
    d = np.diff(resid)
    sigma = MAD_TO_SIGMA * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0)
    return float(sigma) if sigma > 0 else float(np.std(d) / np.sqrt(2.0) or 1.0)


def fit_lines(y: np.ndarray, guesses: np.ndarray, half: int, sigma0: float = 1.0, n_iter: int = 12):
    """Pixel-integrated Gaussian + constant fitted to each line (vectorised Gauss-Newton).

    Why integrated: binned lamp lines are 1-2 px wide, and the samples are integrals over
    each pixel, not values at its centre; a model that integrates is unbiased at any
    sub-pixel phase, where a parabola or a moment is off by a few hundredths of a pixel.
    Returns (centre, sigma, flux, ok) arrays.
    """
    n = y.size
    g = np.asarray(guesses, dtype=float)
    k0 = np.clip(np.round(g).astype(int), half, n - 1 - half)
    offs = np.arange(-half, half + 1)
    idx = k0[:, None] + offs[None, :]
    Y = y[idx]
    kk = idx.astype(float)
    back = np.minimum(Y[:, 0], Y[:, -1])
    amp = np.clip((Y - back[:, None]).sum(axis=1), 1e-12, None)
    w = np.clip(Y - back[:, None], 0, None)
    mu = np.where(w.sum(1) > 0, (w * kk).sum(1) / np.maximum(w.sum(1), 1e-30), g)
    sig = np.full(g.size, float(sigma0))
    p = np.stack([amp, mu, sig, back], axis=1)
    lam = np.full(g.size, 1e-3)
    sq2pi = np.sqrt(2.0 * np.pi)

    def model_jac(p):
        A, m, s, B = (p[:, i:i + 1] for i in range(4))
        u1 = (kk + 0.5 - m) / s
        u0 = (kk - 0.5 - m) / s
        f1 = np.exp(-0.5 * u1 * u1) / sq2pi
        f0 = np.exp(-0.5 * u0 * u0) / sq2pi
        prof = ndtr(u1) - ndtr(u0)
        M = B + A * prof
        J = np.stack([prof, A * (f0 - f1) / s, A * (f0 * u0 - f1 * u1) / s, np.ones_like(prof)], axis=2)
        return M, J

    M, J = model_jac(p)
    chi = ((Y - M) ** 2).sum(1)
    for _ in range(n_iter):
        r = Y - M
        JTJ = np.einsum("nki,nkj->nij", J, J)
        JTr = np.einsum("nki,nk->ni", J, r)
        diag = np.einsum("nii->ni", JTJ)
        H = JTJ + (lam[:, None] * (diag + 1e-12))[:, :, None] * np.eye(4)[None]
        try:
            step = np.linalg.solve(H, JTr[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            break
        trial = p + step
        trial[:, 2] = np.clip(trial[:, 2], 0.25, 3.0 * half)
        Mt, Jt = model_jac(trial)
        chit = ((Y - Mt) ** 2).sum(1)
        better = chit < chi
        p = np.where(better[:, None], trial, p)
        M = np.where(better[:, None], Mt, M)
        J = np.where(better[:, None, None], Jt, J)
        chi = np.where(better, chit, chi)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    centre, sigma, flux = p[:, 1], p[:, 2], p[:, 0]
    ok = (flux > 0) & (np.abs(centre - g) < half) & (sigma > 0.25) & (sigma < 2.5 * half) & np.isfinite(centre)
    return centre, sigma, flux, ok


@dataclass(frozen=True)
class Lines:
    """Lines detected in a spectrum: fitted centres, widths, fluxes, peak heights."""

    centre: np.ndarray
    sigma: np.ndarray
    flux: np.ndarray
    height: np.ndarray
    noise: float
    half: int

    def fwhm(self, index=None) -> float:
        """Median FWHM (px) of the lines (of `index` if given): NaN when there are none."""
        sigma = self.sigma if index is None else self.sigma[np.asarray(index, dtype=int)]
        return float(np.median(sigma) * SIGMA_TO_FWHM) if sigma.size else float("nan")


def residual_spectrum(flux: np.ndarray, binning: int) -> np.ndarray:
    width = max(15, int(round(61 / binning)) | 1)
    return flux - _continuum(flux, width)


def detect_lines(flux: np.ndarray, binning: int, threshold: float) -> Lines:
    """Emission lines above `threshold` x noise, with sub-pixel centres."""
    resid = residual_spectrum(flux, binning)
    noise = noise_sigma(resid)
    peaks, props = signal.find_peaks(resid, height=threshold * noise, prominence=threshold * noise)
    empty = np.array([])
    if peaks.size == 0:
        return Lines(empty, empty, empty, empty, noise, 3)
    # width of the instrumental profile from the brightest lines sets the fit window
    top = peaks[np.argsort(props["peak_heights"])[::-1][:15]]
    _, s0, _, ok0 = fit_lines(resid, top.astype(float), 4, 2.0 / binning)
    sigma = float(np.median(s0[ok0])) if ok0.any() else 2.0 / binning
    half = int(np.clip(np.ceil(2.5 * sigma), 2, 8))
    keep = (peaks >= half) & (peaks < resid.size - half)
    peaks = peaks[keep]
    heights = props["peak_heights"][keep]
    centre, sig, fl, ok = fit_lines(resid, peaks.astype(float), half, sigma)
    ok &= (sig < 3.0 * sigma) & (sig > 0.3 * sigma)
    return Lines(centre[ok], sig[ok], fl[ok], heights[ok], noise, half)
