"""A quick-look PNG of a frame for the live web page.

Why zscale + block averaging + Pillow: zscale (IRAF's display scaling) shows the sky and
faint spectra without being dominated by cosmic rays or bright lines; averaging blocks
of pixels (rather than picking every n-th) keeps faint features visible and noise down
when a 2071-column frame becomes a 1024-px image; Pillow writes an 8-bit grayscale PNG
in a few milliseconds, without matplotlib's import cost. The zscale limits are computed
on the downsampled image, which is what is displayed (and ~4x cheaper).
"""
from __future__ import annotations

import io
from typing import Any, Dict, Tuple

import numpy as np


def _factor(nx: int, max_width: int) -> int:
    return int(np.ceil(nx / float(max_width))) if nx > max_width else 1


def _block_average(data: np.ndarray, max_width: int) -> np.ndarray:
    """Average factor x factor blocks so that the width is at most `max_width`."""
    ny, nx = data.shape
    factor = _factor(nx, max_width)
    if factor == 1:
        return data
    ny2, nx2 = (ny // factor) * factor, (nx // factor) * factor
    if ny2 == 0:  # fewer rows than the factor: average columns only
        cut = data[:, :nx2]
        return cut.reshape(ny, nx2 // factor, factor).mean(axis=2)
    cut = data[:ny2, :nx2]
    return cut.reshape(ny2 // factor, factor, nx2 // factor, factor).mean(axis=(1, 3))


def png_preview(data: np.ndarray, max_width: int = 1024) -> bytes:
    """8-bit grayscale PNG bytes of `data` (zscale, block-averaged to <= max_width columns).

    Non-finite pixels are shown black. Row 0 is put at the bottom, as astronomers (and
    ds9) display FITS images. The input is not modified.
    """
    return render_preview(data, max_width)[0]


def render_preview(data: np.ndarray, max_width: int = 1024) -> Tuple[bytes, Dict[str, Any]]:
    """The PNG of `png_preview` and its layout, which a viewer needs to map a click on
    the image back to a frame pixel: the frame's `shape` [ny, nx], the block `factor`
    (PNG pixel (i, j), counted from the top left, covers frame columns j*factor ..
    (j+1)*factor-1 and rows (ny_png-1-i)*row_factor ..; `row_factor` is `factor` but
    for a frame of fewer rows than that), and the `zscale` limits shown black and white."""
    from astropy.visualization import ZScaleInterval
    from PIL import Image

    if max_width < 1:
        raise ValueError("max_width must be >= 1")
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"need a non-empty 2-D image, got shape {arr.shape}")
    small = _block_average(arr, max_width)
    finite = np.isfinite(small)
    if finite.any():
        vmin, vmax = ZScaleInterval().get_limits(small[finite])
    else:
        vmin, vmax = 0.0, 1.0
    if not np.isfinite(vmin) or not np.isfinite(vmax) or vmax <= vmin:
        vmin, vmax = float(np.nanmin(small[finite])) if finite.any() else 0.0, (float(np.nanmax(small[finite])) if finite.any() else 1.0)
        if vmax <= vmin:
            vmax = vmin + 1.0
    scaled = (small - vmin) * (255.0 / (vmax - vmin))
    scaled = np.where(finite, scaled, 0.0)
    img8 = np.clip(scaled, 0, 255).astype(np.uint8)[::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img8), mode="L").save(buf, format="PNG", optimize=False, compress_level=6)
    factor = _factor(arr.shape[1], max_width)
    layout = {"shape": [int(arr.shape[0]), int(arr.shape[1])], "factor": factor,
              "row_factor": factor if arr.shape[0] >= factor else 1,
              "zscale": [round(float(vmin), 3), round(float(vmax), 3)]}
    return buf.getvalue(), layout
