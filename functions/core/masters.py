"""Master bias and master flat from raw frames (arrays + headers in, Frames out).

Why both are overscan-subtracted and trimmed (goodman-pipeline combines RAW bias frames
and subtracts that from overscan-free data): the bias level of each read drifts by a few
ADU during a night. Subtracting each frame's own overscan first removes that drift from
bias, flats and science alike, and the master bias then holds only the 2-D structure
(column pattern, the first rows' decay) - which stays put. The masters come out in the
trimmed geometry, the one every reduced frame has before the slit trim.

Combination is `sigma_clipped_combine` (median, MAD-based 3-sigma clipping); see
combine.py for why not ccdproc's mean/std clipping.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from astropy.io import fits

from .ccd import (
    Frame, flag_saturation, frame_from_raw, put_name, saturation_threshold, subtract_bias, subtract_overscan, trim,
)
from .combine import sigma_clipped_combine
from .flats import normalize_flat, slit_trim_section
from .regions import overscan_section, parse_section, trim_section

RawFrame = Tuple[np.ndarray, fits.Header]


def camera_binning(header: fits.Header) -> Tuple[str, Tuple[int, int]]:
    """('RED'|'BLUE'|..., (serial, parallel)) from INSTCONF and CCDSUM."""
    camera = str(header.get("INSTCONF", "")).strip().upper()
    try:
        serial, parallel = (int(v) for v in str(header.get("CCDSUM", "1 1")).split())
    except ValueError as exc:
        raise ValueError(f"bad CCDSUM {header.get('CCDSUM')!r}") from exc
    return camera, (serial, parallel)


def _prepare(data: np.ndarray, header: fits.Header) -> Tuple[Frame, str, str]:
    """Raw → overscan-subtracted, trimmed Frame (and the two sections used)."""
    camera, binning = camera_binning(header)
    shape = np.shape(data)
    over = overscan_section(camera, binning, shape)
    trimsec = trim_section(camera, binning, shape)
    frame = frame_from_raw(data, header)
    frame = subtract_overscan(frame, over)
    frame = trim(frame, trimsec)
    return frame, over, trimsec


def _check_same(frames: Sequence[RawFrame]) -> None:
    if not frames:
        raise ValueError("no frames to combine")
    shape = np.shape(frames[0][0])
    ref = camera_binning(frames[0][1])
    for i, (d, h) in enumerate(frames):
        if np.shape(d) != shape or camera_binning(h) != ref:
            raise ValueError(f"frame {i} ({np.shape(d)}, {camera_binning(h)}) does not match the first "
                             f"({shape}, {ref}): masters must be built from one readout configuration")


def _record_inputs(header: fits.Header, names: Optional[List[str]], kind: str) -> None:
    for n, name in enumerate(names or []):
        put_name(header, f"GSP_IC{n + 1:02d}", name, f"Image used to create master {kind}")


class _Stack:
    """The frames of a master, each written into one float32 array as it is prepared
    and combined there in place: a worker holds the stack once, not a list of frames
    and then its copy (15 2x2 frames: 115 MB less at the peak)."""

    def __init__(self, count: int):
        self.count, self.used, self.array, self.header = count, 0, None, None

    def add(self, frame: Frame) -> None:
        if self.array is None:
            self.array = np.empty((self.count,) + frame.data.shape, dtype=np.float32)
            self.header = frame.header
        self.array[self.used] = frame.data
        self.used += 1

    def combine(self, sigma: float) -> np.ndarray:
        return sigma_clipped_combine(self.array[:self.used], sigma=sigma, method="median", overwrite=True)


def make_master_bias(frames: List[RawFrame], sigma: float = 3.0, names: Optional[List[str]] = None) -> Frame:
    """Overscan-subtract and trim each raw bias, then sigma-clip-combine them (median).

    The header is the first frame's plus GSP_OVER, GSP_TRIM, NCOMBINE, GSP_COMB (method)
    and GSP_IC01.. with `names` when given (goodman's keywords for the inputs).
    """
    _check_same(frames)
    stack = _Stack(len(frames))
    for d, h in frames:
        stack.add(_prepare(d, h)[0])
    data = stack.combine(sigma)
    header = stack.header.copy()
    header["NCOMBINE"] = (len(frames), "Number of images combined")
    header["GSP_COMB"] = (f"median, {sigma:g}-sigma MAD clipping", "Combination method")
    _record_inputs(header, names, "bias")
    return Frame(data, header, None)


def make_master_flat(frames: List[RawFrame], master_bias: Optional[Frame], method: str = "simple",
                     order: int = 15, names: Optional[List[str]] = None, sigma: float = 3.0,
                     max_saturated_percent: float = 1.0,
                     bias_name: Optional[str] = None) -> Tuple[Frame, str]:
    """(normalised master flat in the trimmed geometry, slit trim section of it).

    Each flat: overscan, trim, master bias (if given). Flats with at least
    `max_saturated_percent` % of pixels saturated (raw ADU, see ccd.flag_saturation) are
    left out, as goodman does; if all are, ValueError. The combined flat's slit section
    is found first and the normalisation profile is taken from the slit rows only (what
    goodman does, since it normalises the slit-trimmed flat); the flat is returned
    untrimmed so that a caller may also reduce without the slit trim - the rows beyond
    the slit are ~0 there, which `divide_flat` guards against.
    """
    _check_same(frames)
    threshold = saturation_threshold(frames[0][1])
    stack, kept_names = _Stack(len(frames)), []
    for i, (d, h) in enumerate(frames):
        _, fraction = flag_saturation(frame_from_raw(d, h), threshold)
        if fraction * 100.0 >= max_saturated_percent:
            continue
        frame, _, _ = _prepare(d, h)
        if master_bias is not None:
            frame = subtract_bias(frame, master_bias, bias_name or "master_bias")
        stack.add(frame)
        if names:
            kept_names.append(names[i])
    if not stack.used:
        raise ValueError(f"all {len(frames)} flats have >= {max_saturated_percent}% saturated pixels")
    combined = stack.combine(sigma)
    slit = slit_trim_section(combined)
    rows, _ = parse_section(slit)
    data = normalize_flat(combined, method=method, order=order, rows=rows)
    header = stack.header.copy()
    header["NCOMBINE"] = (stack.used, "Number of images combined")
    header["GSP_COMB"] = (f"median, {sigma:g}-sigma MAD clipping", "Combination method")
    header["GSP_NORM"] = (method, "Flat normalization method")
    if method in ("simple", "function"):
        header["GSP_NORD"] = (int(order), "Flat normalization Chebyshev order")
    header["GSP_SLTS"] = (slit, "Slit illuminated section found on this flat")
    _record_inputs(header, kept_names if names else None, "flat")
    return Frame(data, header, None), slit
