"""Cosmic-ray rejection for science spectra: astroscrappy's L.A.Cosmic, or DCR if installed.

Why L.A.Cosmic with the header's gain and read noise: its detection threshold is in
units of the expected noise, sqrt(signal*gain + rdnoise^2)/gain per pixel, computed from
the image itself. goodman-pipeline calls ``detect_cosmics(data)`` with astroscrappy's
defaults (gain 1, read noise 6.5 e-), i.e. noise estimates that are wrong by sqrt(1.48)
for the Red camera's 1.48 e-/ADU; we pass the real values.

Sky level: L.A.Cosmic has no separate sky term; the signal in its noise model is the
pixel value itself. So the data must be bias-free (overscan and bias subtracted), in
ADU, with the sky still in it (the sky's Poisson noise is real noise). Pass data after
bias subtraction (and optionally after flat division, which rescales by ~1). Raw data
with the ~1000 ADU bias still in would overstate the noise and miss faint hits.
Negative pixels (read noise around zero) are harmless: the model clips them.

Sky lines: on a spectrum they are as narrow as a hit along the dispersion axis, and
without help L.A.Cosmic flags them (measured: 1.3e-3 of clean pixels, nearly all on one
bright sky line). Like van Dokkum's lacos_spec we hand astroscrappy a background
(`inbkg`, a 25-row running median along the slit) that is subtracted for detection
only and kept in the noise model; false detections drop tenfold.

Targets: a trace is as narrow along the slit as a hit, and with the sky alone taken
off, L.A.Cosmic's fine-structure test kept most hits that fell on it, in the very
pixels a spectrum sums. The background therefore also holds the targets' continua, a
running median along the dispersion (25 columns at 2x2) of what the sky leaves
(lacos_spec's object fit; `lacosmic_background`).

niter, measured on binned 2x2 Red data: the simulator's 3 science frames of seed 1 (real
rate 0.5 hits/s, 1-12 px hits, median 3000 e-), overscan + master bias subtracted and
trimmed; "found" = fraction of the truth CR pixels (every pixel with >= 60 e-) flagged,
"false" = fraction of the other pixels flagged, CPU/wall seconds per 947x2030 frame on
one thread (OMP_NUM_THREADS=1; incl. 0.3 s for the background):

    niter 1: found 0.952/0.930/0.916, false 1.4e-4, 1.2 s CPU, 1.3 s wall
    niter 2: found 0.970/0.948/0.935, false 1.5e-4, 1.8 s CPU, 1.9 s wall
    niter 3: found 0.970/0.948/0.935, false 1.5e-4, 2.5 s CPU, 2.6 s wall
    niter 4: found 0.970/0.948/0.935, false 1.5e-4, 3.2 s CPU, 3.7 s wall

(with the sky alone as background: found 0.970/0.949/0.937 and false 1.3e-4 at niter 2;
the continua add a few false flags in the sky rows and at the slit's edges, and remove
most of those on the traces.) Beyond 2 iterations nothing more is found (the pixels
still missed are mostly faint wings of streaks, ~100 e-, within ~1 sigma of the sky
noise; of pixels with > 300 e- over 98 % are found), while each iteration costs ~0.6 s.
DEFAULT_NITER is therefore 2 (goodman uses astroscrappy's default of 4).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np


def _openmp_controller():
    """threadpoolctl's view of the loaded thread pools, built once, when this module is
    imported (by the reduction, before its workers start), with astroscrappy's OpenMP
    runtime loaded first so that it is among them.

    Why once: building one walks the loaded libraries with dl_iterate_phdr, which holds
    the dynamic loader's lock while it calls back into Python. A worker thread that
    imports an extension module at that moment (dlopen) waits for that lock while
    holding the GIL, the callback waits for the GIL, and both workers wait for ever:
    seen when one worker drew its first plot (PIL's ImageFont) while two others were
    cleaning cosmic rays, each building its own controller per call."""
    import importlib

    from threadpoolctl import ThreadpoolController

    importlib.import_module("astroscrappy")  # its OpenMP runtime, to be found by the walk

    return ThreadpoolController()


_OPENMP = _openmp_controller()

METHODS = ("lacosmic", "dcr", "none", "default")
DEFAULT_NITER = 2
#: astroscrappy's detection thresholds (its defaults, also what goodman uses).
SIGCLIP = 4.5
SIGFRAC = 0.3
OBJLIM = 5.0
#: Rows of the running median that models the sky (see `sky_background`).
BKG_ROWS = 25
#: Columns of the running median that models the targets' continua at serial binning 2
#: (see `lacosmic_background`); the same 50 unbinned pixels at other binnings.
CONTINUUM_COLUMNS = 25

#: goodman-pipeline's dcr.par values per (camera, serial binning).
_DCR_PARAMS = {
    ("RED", 1): (3.0, 9, 9, 5, 0, 1, 3, 1), ("RED", 2): (4.0, 7, 9, 5, 0, 1, 3, 0),
    ("RED", 3): (3.0, 9, 9, 5, 0, 1, 3, 1), ("BLUE", 1): (3.0, 8, 8, 5, 0, 1, 3, 1),
    ("BLUE", 2): (3.0, 9, 9, 5, 0, 1, 3, 1), ("BLUE", 3): (3.0, 9, 9, 5, 0, 1, 3, 1),
}


def sky_background(data: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Running median along the slit (BKG_ROWS rows, one column wide): sky lines and continua.

    Sky lines are as narrow as a cosmic ray along the dispersion axis but long along
    the slit; a median along the rows keeps them (and any light that is smooth along the
    slit) and drops hits, which cover a few pixels of a column at most.

    The same numbers as scipy's ``median_filter(size=(BKG_ROWS, 1), mode="nearest")``
    (a test holds them equal), four times faster: a partial sort of each window, a few
    rows at a time, where the general filter re-sorts its window at every pixel (0.18
    instead of 0.68 s of CPU on a 947x2030 frame).
    """
    arr = np.asarray(data, dtype=np.float32)
    half = BKG_ROWS // 2
    padded = np.pad(arr, ((half, BKG_ROWS - 1 - half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, BKG_ROWS, axis=0)
    out = np.empty_like(arr)
    for i in range(0, arr.shape[0], chunk):
        out[i:i + chunk] = np.partition(windows[i:i + chunk], half, axis=-1)[..., half]
    return out


def continuum_columns(serial_binning: int = 2) -> int:
    """The (odd) width of the continuum model's running median at this serial binning."""
    return (2 * CONTINUUM_COLUMNS // max(int(serial_binning), 1)) | 1


def lacosmic_background(data: np.ndarray, columns: int = CONTINUUM_COLUMNS, chunk: int = 64) -> np.ndarray:
    """What L.A.Cosmic is handed as its background: the sky (`sky_background`) plus the
    targets' continua, a running median along the dispersion (`columns` wide, one row
    high, edges repeated; `continuum_columns`) of what the sky model leaves.

    Why the continua: a trace is as narrow along the slit as a hit (2-3 rows FWHM), so
    with the sky alone taken off, L.A.Cosmic's fine-structure test (objlim) takes a hit
    on the trace for part of a star and keeps it, in the very pixels a spectrum sums.
    Hits span a few columns of a row (streaks at most 12 at 2x2, 24 at 1x1), under half
    the window, so the median does not follow them; nor does it follow a narrow
    emission line, which objlim protects as before. This is lacos_spec's object fit
    along the dispersion, and what astroscrappy's `inbkg` asks for ("sky lines and the
    cross-section of an object continuum"). Measured on twelve simulated 1200 s 2x2
    frames (seeds 1-4): of the hit pixels in the extraction aperture with >= 10 sigma of
    the local noise, 67 % were flagged with the sky alone, 99 % with the continua (85 and
    100 % on the six frames of tests/test_cosmic_windows.py). Costs 0.14 s of CPU more
    on a 947x2030 frame.
    """
    arr = np.asarray(data, dtype=np.float32)
    sky = sky_background(arr, chunk)
    rest = arr - sky
    half = columns // 2
    padded = np.pad(rest, ((0, 0), (half, columns - 1 - half)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, columns, axis=1)
    for i in range(0, arr.shape[0], chunk):
        sky[i:i + chunk] += np.partition(windows[i:i + chunk], half, axis=-1)[..., half]
    return sky


def _lacosmic(data: np.ndarray, gain: float, rdnoise: float, niter: int,
              mask: Optional[np.ndarray], serial_binning: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """astroscrappy on one OpenMP thread: a worker already shares its cores with another
    worker (or, in Lambda, runs one frame per execution), and astroscrappy's second
    thread spends most of its time waiting: on a busy 2-core machine a science frame's
    extraction rows cost 0.2 s of CPU on one thread and 0.5 s on two, the whole frame
    1.9 against 2.3 s."""
    from astroscrappy import detect_cosmics

    arr = np.ascontiguousarray(data, dtype=np.float32)
    inmask = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    bkg = lacosmic_background(arr, continuum_columns(serial_binning))
    with _OPENMP.limit(limits=1, user_api="openmp"):
        crmask, clean = detect_cosmics(arr, inmask=inmask, inbkg=bkg, gain=float(gain), readnoise=float(rdnoise),
                                       sigclip=SIGCLIP, sigfrac=SIGFRAC, objlim=OBJLIM,
                                       satlevel=np.inf, niter=int(niter), sepmed=True,
                                       cleantype="meanmask", fsmode="median")
    crmask = np.asarray(crmask, dtype=bool)
    # astroscrappy round-trips every pixel through its background subtraction; keep the
    # unflagged pixels bit-identical to the input
    return np.where(crmask, np.asarray(clean, dtype=np.float32), arr), crmask


def _dcr(data: np.ndarray, camera: str, serial_binning: int) -> Tuple[np.ndarray, np.ndarray]:
    """Run Wojtek Pych's `dcr` on a temporary copy (it only works on files).

    This is the one place the core touches the file system, in a private temporary
    directory removed afterwards. Untested here: no dcr binary in the test image.
    """
    from astropy.io import fits

    params = _DCR_PARAMS.get((camera.upper(), int(serial_binning)), _DCR_PARAMS[("RED", 2)])
    par = ("THRESH  = {:.1f}\nXRAD    = {:d}\nYRAD    = {:d}\nNPASS   = {:d}\nDIAXIS  = {:d}\n"
           "LRAD    = {:d}\nURAD    = {:d}\nGRAD    = {:d}\nVERBOSE = 0\nEND\n").format(*params)
    with tempfile.TemporaryDirectory(prefix="dcr_") as tmp:
        with open(os.path.join(tmp, "dcr.par"), "w") as fh:
            fh.write(par)
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32)).writeto(os.path.join(tmp, "in.fits"))
        subprocess.run([shutil.which("dcr"), "in.fits", "out.fits", "cr.fits"], cwd=tmp,
                       check=True, capture_output=True, timeout=300)
        clean = fits.getdata(os.path.join(tmp, "out.fits")).astype(np.float32)
        crs = fits.getdata(os.path.join(tmp, "cr.fits"))
    return clean, np.asarray(crs != 0, dtype=bool)


def reject_cosmic_rays(data: np.ndarray, gain: float, rdnoise: float, method: str = "lacosmic",
                       niter: Optional[int] = None, mask: Optional[np.ndarray] = None,
                       camera: str = "RED", serial_binning: int = 2) -> Tuple[np.ndarray, np.ndarray, str]:
    """Return (cleaned copy of `data`, bool mask of cosmic-ray pixels, description).

    `data`: bias-subtracted ADU (see the module docstring about the sky); `gain` e-/ADU,
    `rdnoise` e-. `mask`: known bad pixels (e.g. saturated) that must not be taken for,
    or used to clean, cosmic rays. method: 'lacosmic'; 'dcr' (falls back to lacosmic if
    the `dcr` program is not on PATH, saying so in the description); 'default' (goodman's
    choice: dcr for 1x1 binning, else lacosmic); 'none' (copy, empty mask).
    `niter` None means DEFAULT_NITER. The input is never modified.
    """
    if method not in METHODS:
        raise ValueError(f"unknown cosmic ray method {method!r}: choose one of {METHODS}")
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError("data must be a 2-D image")
    if not gain or gain <= 0 or rdnoise is None or rdnoise < 0:
        raise ValueError(f"need a positive gain and non-negative read noise, got {gain!r}, {rdnoise!r}")
    n = DEFAULT_NITER if niter is None else int(niter)
    if n < 1:
        raise ValueError("niter must be >= 1")
    if method == "none":
        return arr.astype(np.float32, copy=True), np.zeros(arr.shape, dtype=bool), "none"
    note = ""
    if method == "default":
        method = "dcr" if int(serial_binning) == 1 else "lacosmic"
        note = f" (default for {serial_binning}x binning)"
    if method == "dcr":
        if shutil.which("dcr"):
            clean, crmask = _dcr(arr, camera, serial_binning)
            return clean, crmask, "DCR" + note
        note += " (dcr requested but the dcr program is not installed: used LACosmic)"
    clean, crmask = _lacosmic(arr, gain, rdnoise, n, mask, serial_binning)
    desc = f"LACosmic astroscrappy niter={n} sigclip={SIGCLIP} gain={gain:g} rdnoise={rdnoise:g}{note}"
    return clean, crmask, desc


#: Rows of context around a window cleaned on its own: farther than L.A.Cosmic's filters
#: reach (7x7 medians on the twice-subsampled Laplacian, the BKG_ROWS running median of
#: the sky), so that the window's rows come out as they do when the whole frame is cleaned.
WINDOW_PAD = BKG_ROWS // 2 + 8


def merged_windows(windows: Sequence[Tuple[int, int]], nrows: int, pad: int = WINDOW_PAD
                   ) -> List[Tuple[int, int]]:
    """Row ranges [lo, hi) clipped to the frame, joined where their context would overlap
    (cleaning the rows between two close windows costs less than their context twice)."""
    out: List[List[int]] = []
    for lo, hi in sorted((max(0, int(lo)), min(nrows, int(hi))) for lo, hi in windows):
        if hi <= lo:
            continue
        if out and lo - pad <= out[-1][1] + pad:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def reject_in_rows(data: np.ndarray, windows: Sequence[Tuple[int, int]], gain: float, rdnoise: float,
                   method: str = "lacosmic", niter: Optional[int] = None, mask: Optional[np.ndarray] = None,
                   camera: str = "RED", serial_binning: int = 2) -> Tuple[np.ndarray, np.ndarray, str]:
    """`reject_cosmic_rays` in the row ranges `windows` ([lo, hi), 0-based) only, each with
    WINDOW_PAD rows of context; the other rows come back as they are, with no pixel flagged.

    Why: a spectrum reads only the rows of its aperture and sky windows, a tenth of a
    2x2 frame, so it need not wait for the whole frame to be cleaned (2 s of CPU): it is
    extracted from these rows as soon as the frame is reduced, and the whole frame is
    cleaned later (functions/reduction.py). Returns (cleaned copy, mask, description)
    like reject_cosmic_rays; the input is never modified.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError("data must be a 2-D image")
    clean = arr.astype(np.float32, copy=True)
    crmask = np.zeros(arr.shape, dtype=bool)
    desc = "none"
    for lo, hi in merged_windows(windows, arr.shape[0]):
        plo, phi = max(0, lo - WINDOW_PAD), min(arr.shape[0], hi + WINDOW_PAD)
        sub_mask = None if mask is None else np.asarray(mask)[plo:phi]
        c, m, desc = reject_cosmic_rays(arr[plo:phi], gain, rdnoise, method, niter, sub_mask, camera, serial_binning)
        clean[lo:hi] = c[lo - plo:hi - plo]
        crmask[lo:hi] = m[lo - plo:hi - plo]
    return clean, crmask, desc
