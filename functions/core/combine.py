"""Sigma-clipped combination of a stack of frames (master bias, master flat).

Why our own instead of ccdproc.combine: ccdproc builds masked arrays and, by default,
clips around the mean with the standard deviation. With 10 frames a single outlier can
never be 3 sigma from a mean and standard deviation that include it (the largest
possible z-score of n values is (n-1)/sqrt(n) = 2.85 for n = 10), so that clipping
removes next to nothing. Here the centre is the median and the width the MAD (scaled to
a Gaussian sigma), which a single cosmic ray cannot inflate; and everything is done
with one sort along the stack axis, so 10 frames of 947 x 2030 combine in well under a
second.

Because the kept values of a pixel are exactly those within ``median +- sigma*s``, they
form one contiguous run of the sorted stack; the clipped median is then read straight
from that run with `take_along_axis`, no masked arrays.
"""
from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np

#: MAD → Gaussian sigma.
MAD_TO_SIGMA = 1.4826

METHODS = ("median", "mean")


def _median_of_sorted(s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Median of s[lo:hi] along axis 0 for a stack `s` sorted along axis 0 (per pixel lo/hi)."""
    a = ((lo + hi - 1) // 2)[None]
    b = ((lo + hi) // 2)[None]
    va = np.take_along_axis(s, a, axis=0)[0]
    vb = np.take_along_axis(s, b, axis=0)[0]
    return 0.5 * (va + vb)


def sigma_clipped_combine(stack: Union[Sequence[np.ndarray], np.ndarray], sigma: float = 3.0,
                          method: str = "median", overwrite: bool = False) -> np.ndarray:
    """Combine frames along axis 0, rejecting values beyond `sigma` robust sigmas of the median.

    One clipping pass: centre = median, width = 1.4826 * MAD of each pixel's values
    (at least the frame-wide median of those MADs, see below). Values
    with ``|x - median| > sigma * width`` are rejected, then the rest are combined with the
    median (default) or the mean. A pixel whose MAD is 0 (e.g. identical values) keeps
    everything equal to its median, unless the frame-wide floor is larger. Returns float32; the inputs are not
    modified, unless `overwrite` with a float32 array (sorted in place: a master's stack is not copied again).
    """
    if method not in METHODS:
        raise ValueError(f"unknown combine method {method!r}: choose one of {METHODS}")
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    if isinstance(stack, np.ndarray):
        arr = stack if overwrite and stack.dtype == np.float32 else stack.astype(np.float32, copy=True)
    else:
        frames: List[np.ndarray] = list(stack)
        if not frames:
            raise ValueError("nothing to combine")
        shape = np.shape(frames[0])
        arr = np.empty((len(frames),) + tuple(shape), dtype=np.float32)
        for i, f in enumerate(frames):
            if np.shape(f) != shape:
                raise ValueError(f"frame {i} has shape {np.shape(f)}, expected {shape}")
            arr[i] = f
    if arr.ndim < 2:
        raise ValueError("stack must have a frame axis first")
    n = arr.shape[0]
    if n == 1:
        return arr[0].copy()
    arr.sort(axis=0)  # in place on our private copy
    med = 0.5 * (arr[(n - 1) // 2] + arr[n // 2])
    dev = np.subtract(arr, med[None])
    np.abs(dev, out=dev)
    dev.sort(axis=0)
    mad = 0.5 * (dev[(n - 1) // 2] + dev[n // 2])
    del dev
    # A MAD of ~10 values is itself noisy (and quantised on integer data): alone it
    # would clip ~10 % of good values and make the master noisier than a plain median.
    # Floor it with the typical MAD of the whole frame, which a hit cannot move.
    floor = np.float32(np.median(mad)) if mad.size > 1 else np.float32(0)
    limit = np.float32(sigma * MAD_TO_SIGMA) * np.maximum(mad, floor)
    # sorted stack: the kept run is [lo, hi); int16 sums are 2x faster than count_nonzero
    lo = (arr < (med - limit)[None]).sum(axis=0, dtype=np.int16).astype(np.intp)
    hi = n - (arr > (med + limit)[None]).sum(axis=0, dtype=np.int16).astype(np.intp)
    if method == "median":
        out = _median_of_sorted(arr, lo, hi)
    else:
        idx = np.arange(n).reshape((n,) + (1,) * (arr.ndim - 1))
        keep = (idx >= lo[None]) & (idx < hi[None])
        out = np.where(keep, arr, 0).sum(axis=0, dtype=np.float64) / np.maximum(hi - lo, 1)
    return np.asarray(out, dtype=np.float32)
