"""Single-frame CCD steps on plain numpy arrays: overscan, trim, bias, flat, saturation.

Why not ccdproc/CCDData: the live reduction runs in a short-lived function per frame, so
each step should be a cheap, obvious numpy operation with no unit or uncertainty
bookkeeping we never use. The numbers are the same as goodman-pipeline's (which wraps
ccdproc): tests/test_against_goodman.py compares them pixel by pixel.

Every function takes a `Frame` and returns a NEW `Frame` (fresh data array, copied
header, copied mask); inputs are never modified, so the orchestration may keep a raw
frame around, reuse a master for many frames, and retry a step safely. What a step did is
recorded in the header with the GSP_* keywords goodman-pipeline writes, so a reduced file
of ours reads like one of theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from astropy.io import fits

from .regions import parse_section

#: Digital ceiling of the 16-bit converters.
ADC_MAX = 65535.0

#: goodman-pipeline's SaturationValues table (camera, gain e-/ADU, read noise e-,
#: half full well in ADU). Only gain and read noise identify the readout in a header.
HALF_FULL_WELL = (
    ("BLUE", 0.25, 3.33, 279600), ("BLUE", 0.47, 3.35, 148723), ("BLUE", 0.91, 3.41, 76813),
    ("BLUE", 0.56, 3.69, 124821), ("BLUE", 1.06, 3.72, 65943), ("BLUE", 2.06, 3.99, 33932),
    ("BLUE", 1.4, 4.74, 49928), ("BLUE", 2.67, 5.12, 26179), ("BLUE", 5.67, 8.62, 12328),
    ("RED", 1.54, 3.45, 66558), ("RED", 3.48, 5.88, 29454), ("RED", 1.48, 3.89, 69257),
    ("RED", 3.87, 7.05, 26486), ("RED", 1.47, 5.27, 69728), ("RED", 1.45, 5.27, 69728),
    ("RED", 3.77, 8.99, 27188), ("RED", 3.78, 8.99, 27188),
)


@dataclass
class Frame:
    """Pixels (float32), their header, and an optional bad-pixel mask (True = bad)."""

    data: np.ndarray
    header: fits.Header
    mask: Optional[np.ndarray] = None

    def copy(self) -> "Frame":
        return Frame(self.data.copy(), self.header.copy(), None if self.mask is None else self.mask.copy())


def _new(frame: Frame, data: np.ndarray, mask: Optional[np.ndarray] = None, keep_mask: bool = True) -> Frame:
    """A new Frame with `data`, a copy of the header and (a copy of) the mask."""
    if mask is None and keep_mask and frame.mask is not None:
        mask = frame.mask.copy()
    return Frame(np.asarray(data, dtype=np.float32), frame.header.copy(), mask)


def frame_from_raw(data: np.ndarray, header: fits.Header) -> Frame:
    """Raw uint16/int pixels → float32 Frame (copies both, so the raw input stays intact).

    float32 is exact for 16-bit integers and halves memory against float64; the noise in
    any reduced pixel is far above float32 rounding.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {arr.shape}")
    return Frame(arr.astype(np.float32, copy=True), fits.Header(header).copy(), None)


def subtract_overscan(frame: Frame, section: Optional[str]) -> Frame:
    """Subtract, from every row, the median of that row's overscan pixels.

    The same estimate as ccdproc.subtract_overscan(median=True) on a serial overscan:
    a median per row follows slow bias drifts along the read while ignoring the odd hot
    pixel. `section` None (imaging) returns an unchanged copy without GSP_OVER, as
    goodman does.
    """
    if section is None:
        return frame.copy()
    rows, cols = parse_section(section)
    over = frame.data[rows, cols]
    if over.size == 0:
        raise ValueError(f"overscan section {section} is empty for shape {frame.data.shape}")
    level = np.median(over, axis=1).astype(np.float32)
    # ccdproc subtracts the per-row value from the rows the overscan covers; Goodman
    # overscans always span all rows, so this is the whole frame.
    out = frame.data.copy()
    out[rows] -= level[:, None]
    new = _new(frame, out)
    new.header["GSP_OVER"] = (section, "Overscan region")
    return new


def trim(frame: Frame, section: str, keyword: str = "GSP_TRIM") -> Frame:
    """Keep only `section` (FITS 1-based) of the frame and of its mask.

    `keyword` is GSP_TRIM for the detector trim and GSP_SLIT for the slit trim, the two
    trims goodman-pipeline records.
    """
    rows, cols = parse_section(section)
    data = frame.data[rows, cols]
    if data.size == 0:
        raise ValueError(f"trim section {section} is empty for shape {frame.data.shape}")
    mask = None if frame.mask is None else frame.mask[rows, cols].copy()
    new = Frame(data.copy(), frame.header.copy(), mask)
    comment = "Slit trim section, slit illuminated area only." if keyword == "GSP_SLIT" else "Trim section"
    new.header[keyword] = (section, comment)
    return new


def put_name(header: fits.Header, key: str, value: str, comment: str) -> None:
    """A file name in a header card: long names (master flats are named by their
    configuration) go in the CONTINUE convention, where a comment would be cut."""
    value = str(value)
    header[key] = (value, comment if len(value) <= 45 else "")


def _check_shapes(frame: Frame, master: Frame, what: str) -> None:
    if frame.data.shape != master.data.shape:
        raise ValueError(f"{what} shape {master.data.shape} differs from the frame's {frame.data.shape}: "
                         "the master must be trimmed the same way")


def subtract_bias(frame: Frame, master_bias: Frame, name: str) -> Frame:
    """Subtract a master bias of the same shape; record its name in GSP_BIAS."""
    _check_shapes(frame, master_bias, "master bias")
    new = _new(frame, frame.data - master_bias.data)
    put_name(new.header, "GSP_BIAS", name, "Master bias image")
    return new


#: Flat values below this are treated as unilluminated: dividing by them would turn
#: noise into huge numbers (e.g. beyond the slit ends or in vignetted corners).
MIN_FLAT = 0.05


def divide_flat(frame: Frame, master_flat: Frame, name: str) -> Frame:
    """Divide by a normalised master flat; record its name (GSP_FLAT) and normalisation (GSP_NORM).

    Pixels where the flat is not finite or below MIN_FLAT are left undivided (divided by
    1) and marked bad in the mask: the flat carries no information there, and a silent
    division by ~0 would create spikes that later steps (cosmic rays, extraction) choke on.
    """
    _check_shapes(frame, master_flat, "master flat")
    flat = master_flat.data
    bad = ~np.isfinite(flat) | (flat < MIN_FLAT)
    safe = np.where(bad, np.float32(1.0), flat)
    data = frame.data / safe
    mask = None
    if bad.any():
        mask = bad if frame.mask is None else (frame.mask | bad)
    new = _new(frame, data, mask=mask)
    put_name(new.header, "GSP_FLAT", name, "Master flat image")
    norm = master_flat.header.get("GSP_NORM")
    if norm is not None:
        new.header["GSP_NORM"] = (norm, "Flat normalization method")
    return new


def saturation_threshold(header: fits.Header) -> float:
    """Saturation level in raw ADU for the header's readout.

    goodman-pipeline uses half the full well for the camera/gain/read-noise readout
    (its SaturationValues table, in ADU). Several readouts reach the 16-bit ceiling
    first, so the threshold is min(half full well, 65535). An unknown readout falls back
    to 65535 (digital saturation only) rather than failing: saturation is a warning, not
    a reason to refuse the frame.
    """
    cam = str(header.get("INSTCONF", "")).strip().upper()
    try:
        gain = float(header.get("GAIN"))
        rdnoise = float(header.get("RDNOISE"))
    except (TypeError, ValueError):
        return ADC_MAX
    for c, g, r, hfw in HALF_FULL_WELL:
        if c == cam and abs(g - gain) < 1e-6 and abs(r - rdnoise) < 1e-6:
            return float(min(hfw, ADC_MAX))
    return ADC_MAX


def flag_saturation(frame: Frame, threshold_adu: float) -> Tuple[Frame, float]:
    """Mask pixels at or above `threshold_adu`; return (new Frame, fraction of pixels flagged).

    Call it on the RAW frame (before overscan/bias): the threshold is a raw-ADU level
    (the ADC ceiling or half full well counted from zero, as the camera reads it), so
    comparing it with bias-subtracted values would miss pixels sitting at 65535 raw.
    The mask travels with the frame through trims; the fraction is over the whole
    array passed in (goodman's saturation_threshold setting is that fraction in percent).
    """
    sat = frame.data >= np.float32(threshold_adu)
    mask = sat if frame.mask is None else (frame.mask | sat)
    new = _new(frame, frame.data.copy(), mask=mask)
    fraction = float(np.count_nonzero(sat)) / sat.size if sat.size else 0.0
    new.header["GSP_SATU"] = (float(threshold_adu), "Saturation threshold used [raw ADU]")
    return new, fraction
