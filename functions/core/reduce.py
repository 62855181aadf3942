"""The reduction of one raw spectroscopic frame, as data: which steps, in which order, and why not.

`STEPS` says what runs for each OBSTYPE; `reduce_frame` runs them with the calibrations
it is given and reports every step it ran or skipped (with the reason), so the live
page can say "not flat-fielded: no master flat for this configuration" instead of
silently producing something different.

File-name prefixes follow goodman-pipeline (images/image_processor.py), built from the
inside out: 'o' overscan (only written when no bias was subtracted: goodman applies the
overscan only with --ignore-bias; we always subtract it, see masters.py), 't' trim, or
'st' trim + slit trim, then 'z' bias, 'f' flat, 'c' cosmic rays. As in goodman,
comparison lamps get the 'c' although they are not cleaned (lines would be taken for
cosmic rays), so a fully reduced lamp is 'cfzst_' like a science frame.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from astropy.io import fits

from . import ccd
from .ccd import Frame
from .cosmics import reject_cosmic_rays
from .parameters import ReductionSettings
from .regions import CAMERAS, overscan_section, parse_section, trim_section


class UnsupportedFrame(ValueError):
    """This frame cannot be reduced by this core (imaging, unknown camera, odd shape)."""


STEPS: Dict[str, Tuple[str, ...]] = {
    "BIAS": ("overscan", "trim"),
    "FLAT": ("overscan", "trim", "bias"),
    "COMP": ("overscan", "trim", "slit", "bias", "flat"),
    "OBJECT": ("overscan", "trim", "slit", "bias", "flat", "cosmic"),
}
#: Goodman also calls these OBSTYPEs: same steps.
ALIASES = {"ARC": "COMP", "SPECTRUM": "OBJECT", "LAMPFLAT": "FLAT"}


@dataclass
class Calibrations:
    """Masters for this frame's configuration (trimmed geometry) and the slit section."""

    master_bias: Optional[Frame] = None
    master_bias_name: Optional[str] = None
    master_flat: Optional[Frame] = None
    master_flat_name: Optional[str] = None
    slit_section: Optional[str] = None


def _is_imaging(header: fits.Header) -> bool:
    wavmode = str(header.get("WAVMODE", "")).strip().upper()
    roi = str(header.get("ROI", "")).strip().upper()
    return wavmode == "IMAGING" or "IMAGING" in roi


#: at most this many saturated pixels are listed (evenly spaced through the frame)
SATURATED_LISTED = 500


def saturated_positions(saturated_raw: Optional[np.ndarray], trimsec: Optional[str], slit: Optional[str],
                        most: int = SATURATED_LISTED) -> Tuple[int, List[List[int]]]:
    """(how many, [[x, y], ...] 0-based) of the raw frame's saturated pixels in the
    reduced frame's pixels, after the trims that ran: where a viewer marks them (the
    reduced values are bias-subtracted and flat-fielded, so the raw-ADU threshold no
    longer tells them)."""
    if saturated_raw is None:
        return 0, []
    sat = saturated_raw
    for section in (trimsec, slit):
        if section:
            rows, cols = parse_section(section)
            sat = sat[rows, cols]
    ys, xs = np.nonzero(sat)
    step = max(1, int(np.ceil(ys.size / float(most))))
    return int(ys.size), [[int(x), int(y)] for y, x in zip(ys[::step], xs[::step])]


def _prefix(ran: set) -> str:
    p = "o" if ("overscan" in ran and "bias" not in ran) else ""
    if "trim" in ran:
        p = ("st" if "slit" in ran else "t") + p
    for step, letter in (("bias", "z"), ("flat", "f"), ("cosmic", "c")):
        if step in ran:
            p = letter + p
    return p + "_"


#: Why a science frame's cosmic-ray step is skipped when `defer_cosmic` (the report's steps_skipped).
DEFERRED = ("deferred: the spectra are extracted with cosmic rays rejected in their rows; the whole frame is "
            "cleaned next")


def reduce_frame(data: np.ndarray, header: fits.Header, obstype: str, camera: str, binning: Tuple[int, int],
                 calibrations: Calibrations, settings: ReductionSettings,
                 defer_cosmic: bool = False) -> Tuple[Frame, Dict[str, Any]]:
    """Reduce one raw frame; return (reduced Frame, report).

    `defer_cosmic`: leave a science frame's cosmic rays for later (the 2-D cleaning is
    most of a frame's CPU; its spectra do not need it: spectra.extract_targets with
    clean_windows). The prefix still has the 'c' the cleaned products will carry.

    The report holds: obstype, steps_run (in order), steps_skipped {step: reason},
    prefix, overscan_region, trim_section, slit_trim_section, saturated_fraction,
    saturated (fraction above settings.saturation_threshold percent), cosmic
    (description or None), cosmic_pixels, timings {step: seconds of CPU} and wall_seconds.
    Raises UnsupportedFrame for imaging, unknown cameras or obstypes, and shapes the
    regions do not fit.
    """
    t_start = time.perf_counter()
    kind = ALIASES.get(str(obstype).strip().upper(), str(obstype).strip().upper())
    cam = str(camera).strip().upper()
    if kind not in STEPS:
        raise UnsupportedFrame(f"OBSTYPE {obstype!r} is not reduced (known: {sorted(STEPS)})")
    if cam not in CAMERAS:
        raise UnsupportedFrame(f"camera {camera!r} is not supported (known: {CAMERAS})")
    if kind != "BIAS" and _is_imaging(header):  # a bias sees no light: its readout shape decides, below
        raise UnsupportedFrame("imaging data: this core reduces spectroscopy only")
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise UnsupportedFrame(f"expected a 2-D image, got shape {arr.shape}")
    try:
        over = overscan_section(cam, binning, arr.shape)
        trimsec = trim_section(cam, binning, arr.shape)
    except ValueError as exc:
        raise UnsupportedFrame(f"{cam} {binning[0]}x{binning[1]} regions do not fit shape {arr.shape}: {exc}") from exc

    report: Dict[str, Any] = {
        "obstype": kind, "steps_run": [], "steps_skipped": {}, "prefix": None,
        "overscan_region": over, "trim_section": trimsec, "slit_trim_section": None,
        "saturated_fraction": None, "saturated": None, "cosmic": None, "cosmic_pixels": 0,
        "timings": {},
    }
    timings = report["timings"]

    def timed(name, fn, *args, **kwargs):
        t = time.process_time()
        out = fn(*args, **kwargs)
        timings[name] = round(time.process_time() - t, 4)
        return out

    def ran(step: str) -> None:
        report["steps_run"].append(step)

    def skip(step: str, reason: str) -> None:
        report["steps_skipped"][step] = reason

    frame = timed("read", ccd.frame_from_raw, arr, header)
    threshold = ccd.saturation_threshold(header)
    frame, fraction = timed("saturation", ccd.flag_saturation, frame, threshold)
    saturated_raw = frame.data >= np.float32(threshold) if fraction else None
    report["saturated_fraction"] = fraction
    report["saturation_level"] = float(threshold)
    report["saturated"] = fraction * 100.0 >= float(settings.saturation_threshold)

    steps = STEPS[kind]
    bias = calibrations.master_bias
    flat = calibrations.master_flat
    slit = calibrations.slit_section

    for step in steps:
        if step == "overscan":
            frame = timed(step, ccd.subtract_overscan, frame, over)
            ran(step)
        elif step == "trim":
            frame = timed(step, ccd.trim, frame, trimsec, "GSP_TRIM")
            trimmed_shape = frame.data.shape
            ran(step)
        elif step == "slit":
            if settings.ignore_flats:
                skip(step, "ignore_flats setting: the slit is found on the master flat")
            elif not slit:
                skip(step, "no slit trim section (no master flat for this configuration)")
            else:
                try:
                    rows, cols = parse_section(slit)
                    if frame.data[rows, cols].size == 0:
                        raise ValueError("empty")
                except ValueError:
                    skip(step, f"slit section {slit} does not fit the trimmed shape {frame.data.shape}")
                else:
                    frame = timed(step, ccd.trim, frame, slit, "GSP_SLIT")
                    report["slit_trim_section"] = slit
                    ran(step)
        elif step in ("bias", "flat"):
            is_bias = step == "bias"
            ignored = settings.ignore_bias if is_bias else settings.ignore_flats
            master = bias if is_bias else flat
            what = "master bias" if is_bias else "master flat"
            if ignored:
                skip(step, f"{'ignore_bias' if is_bias else 'ignore_flats'} setting")
                continue
            if master is None:
                skip(step, f"no {what} for this configuration")
                continue
            # Masters are kept trimmed, not slit-trimmed: their shape is compared with the
            # frame's before its slit trim (a full-frame master cut by a ZZ Ceti slit
            # section would fit the shape, from the wrong rows of the detector).
            shape = trimmed_shape if "slit" in report["steps_run"] else frame.data.shape
            if master.data.shape != shape:
                skip(step, f"{what} shape {master.data.shape} does not match the frame's {shape}")
                continue
            if "slit" in report["steps_run"]:
                master = ccd.trim(master, slit, "GSP_SLIT")
            apply = ccd.subtract_bias if is_bias else ccd.divide_flat
            name = calibrations.master_bias_name if is_bias else calibrations.master_flat_name
            frame = timed(step, apply, frame, master, name or what.replace(" ", "_"))
            ran(step)
        elif step == "cosmic":
            method = settings.cosmic_ray_rejection
            if method == "none":
                skip(step, "cosmic_ray_rejection setting is 'none'")
                continue
            if defer_cosmic:
                skip(step, DEFERRED)
                continue
            try:
                gain = float(header["GAIN"])
                rdnoise = float(header["RDNOISE"])
            except (KeyError, TypeError, ValueError):
                skip(step, "header has no usable GAIN/RDNOISE")
                continue
            if "bias" not in report["steps_run"]:
                # still fine after the overscan: the bias structure left is a few ADU
                report.setdefault("notes", []).append("cosmic rays found on data without master bias subtraction")
            clean, crmask, desc = timed(step, reject_cosmic_rays, frame.data, gain, rdnoise, method,
                                        settings.cosmic_niter, frame.mask, cam, int(binning[0]))
            mask = crmask if frame.mask is None else (frame.mask | crmask)
            new = Frame(clean, frame.header.copy(), mask)
            new.header["GSP_COSM"] = (desc.split(" ")[0] if desc != "none" else "none",
                                      "Cosmic ray rejection method")
            frame = new
            report["cosmic"] = desc
            report["cosmic_pixels"] = int(np.count_nonzero(crmask))
            ran(step)

    report["saturated_count"], report["saturated_pixels"] = saturated_positions(
        saturated_raw, trimsec if "trim" in report["steps_run"] else None, report["slit_trim_section"])
    done = set(report["steps_run"])
    if kind == "COMP" and settings.cosmic_ray_rejection != "none":
        # goodman-pipeline's convention: lamps are never cleaned, yet named 'c...'
        skip("cosmic", "comparison lamps are not cleaned of cosmic rays (goodman-pipeline adds the 'c' prefix anyway)")
        done = done | {"cosmic"}
    if report["steps_skipped"].get("cosmic") == DEFERRED:
        done = done | {"cosmic"}
    report["prefix"] = _prefix(done)
    report["wall_seconds"] = round(time.perf_counter() - t_start, 4)
    return frame, report
