"""A spectrum plot (flux against wavelength, with axes) as PNG bytes, drawn with Pillow.

Why not matplotlib: a figure costs ~0.2 s of CPU to draw and save, and the reduction
function draws two per target (the spectrum and its lamp) on the path from the shutter
to the observer's screen; Pillow draws the same plot in a few milliseconds, as
preview.py does for the 2-D frames. The font is the one Pillow ships, so a Lambda
image without system fonts draws the same labels.
"""
from __future__ import annotations

import io
from typing import List, Sequence, Tuple

import numpy as np

INK, GRID, LINE, MARK = (40, 40, 40), (225, 225, 225), (31, 78, 121), (197, 90, 17)
MARGIN = (70, 34, 16, 44)  # left, top, right, bottom


def nice_ticks(lo: float, hi: float, target: int = 7) -> List[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^n steps) inside [lo, hi]."""
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return []
    raw = (hi - lo) / max(target, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = np.ceil(lo / step) * step
    return [float(v) + 0.0 for v in np.arange(first, hi + step * 1e-9, step)]  # + 0.0: no "-0"


def _label(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def _limits(flux: np.ndarray) -> Tuple[float, float]:
    finite = flux[np.isfinite(flux)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.2, 99.8])
    pad = 0.1 * (hi - lo if hi > lo else max(abs(hi), 1.0))
    return float(lo - pad), float(hi + pad)


def spectrum_png(wavelength, flux, title: str, lines: Sequence[float] = (), width: int = 1000,
                 height: int = 360, xlabel: str = "wavelength (Angstrom, air)", ylabel: str = "flux (ADU)") -> bytes:
    """Flux against wavelength; `lines` (e.g. a lamp's identified lines) marked as ticks."""
    from PIL import Image, ImageDraw, ImageFont

    x = np.asarray(wavelength, dtype=float)
    y = np.asarray(flux, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(f"need two 1-D arrays of the same length >= 2, got {x.shape} and {y.shape}")
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    left, top, right, bottom = MARGIN[0], MARGIN[1], width - MARGIN[2], height - MARGIN[3]
    x0, x1 = float(np.nanmin(x)), float(np.nanmax(x))
    y0, y1 = _limits(y)

    def px(v):
        return left + (v - x0) / (x1 - x0 or 1.0) * (right - left)

    def py(v):
        return bottom - (v - y0) / (y1 - y0 or 1.0) * (bottom - top)

    for t in nice_ticks(x0, x1):
        draw.line([(px(t), top), (px(t), bottom)], fill=GRID)
        draw.text((px(t), bottom + 4), _label(t), fill=INK, font=font, anchor="ma")
    for t in nice_ticks(y0, y1, 5):
        draw.line([(left, py(t)), (right, py(t))], fill=GRID)
        draw.text((left - 5, py(t)), _label(t), fill=INK, font=font, anchor="rm")
    for w in lines:
        if x0 <= w <= x1:
            draw.line([(px(w), top), (px(w), top + 10)], fill=MARK, width=1)
    # one vertex per output column at most (min and max of each), so a 4000-pixel
    # spectrum keeps its narrow lines without drawing 4000 segments
    good = np.isfinite(y)
    cols = np.clip(np.round(px(x[good])).astype(int), left, right)
    ys = np.clip(py(y[good]), top, bottom)
    points = []
    for c in np.unique(cols):
        sel = ys[cols == c]
        points += [(float(c), float(sel.max())), (float(c), float(sel.min()))]
    if len(points) >= 2:
        draw.line(points, fill=LINE, width=1)
    draw.rectangle([left, top, right, bottom], outline=INK)
    draw.text(((left + right) / 2, 8), title, fill=INK, font=font, anchor="ma")
    draw.text(((left + right) / 2, height - 6), xlabel, fill=INK, font=font, anchor="md")
    label = Image.new("RGB", (bottom - top, 16), "white")
    ImageDraw.Draw(label).text(((bottom - top) / 2, 8), ylabel, fill=INK, font=font, anchor="mm")
    img.paste(label.rotate(90, expand=True), (4, top))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
