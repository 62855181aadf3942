"""Writing a night to disk the way the instrument does: a file appears, grows, closes.

Why not ``HDUList.writeto``: a watcher must be tested against what the Goodman data
system really does, which is to create the file under its final name and fill it while
the camera reads out. Here each file is created, its header blocks written, the pixel
data written in several flushed chunks spread over `write_seconds`, then closed. A
watcher polling the folder sees an incomplete FITS file of growing size in between.

The bytes are assembled directly (header cards from astropy, big-endian int16 pixels
with BZERO=32768, zero padding to 2880-byte blocks), so a file is byte-identical for the
same plan on any machine: no timestamps, no checksums with dates.

truth.json is written first (atomically, via a temporary name), as everything in it
is known from the plan; it never lags behind the frames.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
from astropy.io import fits

from .frames import render_frame
from .plan import NightPlan
from .truth import truth_dict

BLOCK = 2880
TRUTH_NAME = "truth.json"


def fits_bytes(data: np.ndarray, header: fits.Header) -> Tuple[bytes, int]:
    """(file bytes, header length) of a single-HDU uint16 image, as the camera stores it."""
    if data.dtype != np.uint16 or data.ndim != 2:
        raise ValueError(f"expected a 2-D uint16 array, got {data.dtype} {data.shape}")
    if header.get("NAXIS1") != data.shape[1] or header.get("NAXIS2") != data.shape[0]:
        raise ValueError("header NAXIS1/NAXIS2 do not match the data shape")
    head = header.tostring(sep="", endcard=True, padding=True).encode("ascii")
    # uint16 v stored as int16 v - 32768 (BZERO = 32768): flipping the top bit is exactly that
    body = (data ^ np.uint16(0x8000)).view(np.int16).astype(">i2").tobytes()
    pad = (-len(body)) % BLOCK
    return head + body + b"\0" * pad, len(head)


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line but lists of numbers (and short lists) kept on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        if len(obj) <= 6 and all(not isinstance(v, (dict, list, tuple)) for v in obj.values()):
            return json.dumps(obj)
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj) or \
                all(isinstance(v, (list, tuple)) and len(v) <= 3 for v in obj):
            return json.dumps(obj, separators=(",", ":"))
        return "[\n" + ",\n".join(pad + " " + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def write_truth(out_dir, plan: NightPlan) -> Path:
    """Write truth.json into `out_dir` atomically and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / TRUTH_NAME
    tmp = out / f".{TRUTH_NAME}.tmp"
    tmp.write_text(dumps(truth_dict(plan)) + "\n")
    os.replace(tmp, path)
    return path


def write_night(out_dir, plan: NightPlan, cadence: float = 0.0, write_seconds: float = 0.0,
                on_close: Optional[Callable[[Path, float], None]] = None, chunks: int = 8) -> List[Path]:
    """Write every frame of `plan` into `out_dir`, in order, like the instrument.

    * ``write_seconds``: how long each file takes to be written; its data arrives in
      `chunks` flushed pieces spread evenly over that time (0: all at once).
    * ``cadence``: seconds from one file's close to the next file's close. The next frame
      is synthesised right after a close, then its file appears ``cadence - write_seconds``
      later; if synthesis plus writing takes longer than `cadence`, files simply follow
      each other as fast as they can.
    * ``on_close(path, time.time())`` is called after each file is closed.

    Returns the paths written. truth.json is written before the first frame.
    """
    if cadence < 0 or write_seconds < 0:
        raise ValueError("cadence and write_seconds must be >= 0")
    out = Path(out_dir)
    write_truth(out, plan)
    paths: List[Path] = []
    next_open = None
    for frame in plan.frames:
        data, header = render_frame(plan, frame)
        blob, head_len = fits_bytes(data, header)
        if next_open is not None:
            delay = next_open - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        path = out / frame.filename
        body = blob[head_len:]
        n = max(1, int(chunks)) if write_seconds > 0 else 1
        bounds = np.linspace(0, len(body), n + 1).astype(int)
        opened = time.monotonic()
        with open(path, "wb") as fh:
            fh.write(blob[:head_len])
            fh.flush()
            for k in range(n):
                if write_seconds > 0:
                    delay = opened + write_seconds * (k + 1) / n - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                fh.write(body[bounds[k]:bounds[k + 1]])
                fh.flush()
        closed = time.monotonic()
        paths.append(path)
        if on_close is not None:
            on_close(path, time.time())
        next_open = closed + max(0.0, cadence - write_seconds)
    return paths
