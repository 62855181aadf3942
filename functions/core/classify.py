"""What a raw Goodman frame is, from its primary header alone.

Real Goodman headers spell the same setup many ways (GRATING 'SYZY_400' or
'400_SYZY', WAVMODE '400 m1', '400WD', 'Custom' or empty for the same angles, slit
'0.45" long slit' or '0.45_LONG_SLIT', OBSTYPE missing on old frames). The
configuration key is therefore built from normalised values and the grating and
camera angles, not from WAVMODE, so that frames of one physical setup share a key.
Every guess is recorded in `notes`, so a surprising classification can be explained.

A bias sees no light: whatever slit mask, grating or WAVMODE the instrument had when
it was read, it is a spectroscopic bias as long as its readout (raw shape) fits the
spectroscopic overscan and trim regions. `readout_problem` says when it does not,
`nonstandard_readout` when its shape is not one of Goodman's spectroscopic ROIs (so
that masters never mix readouts of different shapes).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .regions import CAMERAS, overscan_section, trim_section

# Goodman's preset wavelength modes: grating lines/mm, mode, camera and grating
# angles (degrees), blocking filter. Published instrument settings (SOAR's Goodman
# pages); goodman-pipeline uses the same presets.
PRESET_MODES: Tuple[Tuple[str, str, float, float, str], ...] = (
    ("400", "M1", 11.6, 5.8, "NO_FILTER"),
    ("400", "M2", 16.1, 7.5, "GG455"),
    ("600", "UV", 15.25, 7.0, "NO_FILTER"),
    ("600", "BLUE", 17.0, 7.0, "NO_FILTER"),
    ("600", "MID", 20.0, 10.0, "GG385"),
    ("600", "RED", 27.0, 12.0, "GG495"),
    ("930", "M1", 20.6, 10.3, "NO_FILTER"),
    ("930", "M2", 25.2, 12.6, "NO_FILTER"),
    ("930", "M3", 29.9, 15.0, "GG385"),
    ("930", "M4", 34.6, 18.3, "GG495"),
    ("930", "M5", 39.4, 19.7, "GG495"),
    ("930", "M6", 44.2, 22.1, "OG570"),
    ("1200", "M0", 26.0, 16.3, "NO_FILTER"),
    ("1200", "M1", 29.5, 16.3, "NO_FILTER"),
    ("1200", "M2", 34.4, 18.7, "NO_FILTER"),
    ("1200", "M3", 39.4, 20.2, "NO_FILTER"),
    ("1200", "M4", 44.4, 22.2, "GG455"),
    ("1200", "M5", 49.6, 24.8, "GG455"),
    ("1200", "M6", 54.8, 27.4, "GG495"),
    ("1200", "M7", 60.2, 30.1, "OG570"),
)
# Angles within this many degrees of a preset are that preset (real frames of one
# preset scatter by < 0.1 deg; the next preset of a grating is > 1 deg away).
ANGLE_TOLERANCE = 0.1

OBSTYPES = ("BIAS", "FLAT", "COMP", "OBJECT", "DARK", "FOCUS", "UNKNOWN")
_OBSTYPE_ALIASES = {
    "BIAS": "BIAS", "ZERO": "BIAS",
    "FLAT": "FLAT", "DFLAT": "FLAT", "SFLAT": "FLAT", "DOMEFLAT": "FLAT", "SKYFLAT": "FLAT",
    "QUARTZ": "FLAT", "LAMPFLAT": "FLAT",
    "COMP": "COMP", "ARC": "COMP", "LAMP": "COMP", "COMPARISON": "COMP",
    "OBJECT": "OBJECT", "SCIENCE": "OBJECT", "STANDARD": "OBJECT", "EXPOSE": "OBJECT", "SPECTRUM": "OBJECT",
    "DARK": "DARK",
    "FOCUS": "FOCUS",
}
# Comparison-lamp switches and the element names they stand for.
_LAMP_KEYS = (("LAMP_HGA", "HgAr"), ("LAMP_NE", "Ne"), ("LAMP_AR", "Ar"), ("LAMP_FE", "Fe"), ("LAMP_CU", "Cu"))
_VENDOR_WORDS = {"SYZY", "KOSI"}
#: Goodman's spectroscopic readouts, unbinned (columns, rows): the full 'Spectroscopic
#: NxN' ROI and 'Spectroscopic ZZ Ceti'. Real frames: 2071x948 at 2x2 (quickreduce, the
#: simulator), 4142x948 at 1x2 (dragons-soar Red), 2071x200 at 2x2 (jsreding 930).
SPECTROSCOPIC_READOUTS = ((4142, 1896), (4142, 400))


def _text(header: Mapping[str, Any], key: str) -> str:
    value = header.get(key)
    return "" if value is None else str(value).strip()


def _number(header: Mapping[str, Any], key: str) -> Optional[float]:
    try:
        return float(header.get(key))
    except (TypeError, ValueError):
        return None


def _airmass(header: Mapping[str, Any]) -> Optional[float]:
    """AIRMASS as the list shows it; a placeholder (Goodman writes -1 or 0 when the
    telescope did not answer) or a value below 1 is no airmass."""
    value = _number(header, "AIRMASS")
    return round(value, 3) if value is not None and 1.0 <= value < 100.0 else None


def _is_true(value: Any) -> bool:
    return value is True or str(value).strip().upper() in ("TRUE", "T", "ON", "1")


def _token(text: str) -> str:
    """Upper case, runs of anything but letters, digits and dots turned into '-'."""
    return re.sub(r"[^A-Z0-9.]+", "-", text.upper()).strip("-")


def normalise_grating(value: str) -> Optional[str]:
    """'SYZY_400' / '400_SYZY' -> '400'; 'SYZY_600-OLD' -> '600-OLD'; no grating -> None."""
    text = value.upper()
    if not text or "NO GRATING" in text or "NO_GRATING" in text:
        return None
    words = [w for w in re.split(r"[^A-Z0-9]+", text) if w and w not in _VENDOR_WORDS]
    return "-".join(words) or None


def grating_lines(grating: Optional[str]) -> Optional[str]:
    match = re.match(r"(\d+)", grating or "")
    return match.group(1) if match else None


def normalise_filter(value: str) -> str:
    text = value.upper()
    if not text or "NO FILTER" in text or "NO_FILTER" in text:
        return "NO_FILTER"
    return _token(text)


def normalise_slit(value: str) -> str:
    """'0.45" long slit' / '0.45_LONG_SLIT' -> '0.45LS'; '<NO MASK>' -> 'NO_MASK'."""
    text = value.upper()
    if not text or "NO MASK" in text or "NO_MASK" in text:
        return "NO_MASK"
    match = re.match(r'\s*(\d+(?:\.\d+)?)\s*(?:"|ARCSEC)?[\s_]*LONG[\s_]*SLIT', text)
    if match:
        return f"{float(match.group(1)):g}LS"
    return _token(text)


def normalise_binning(value: str) -> Optional[str]:
    parts = value.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return f"{parts[0]}x{parts[1]}"
    return None


def binning_pair(binning: Optional[str]) -> Optional[Tuple[int, int]]:
    """'2x2' -> (2, 2) (serial, parallel); None if unknown."""
    try:
        serial, parallel = (int(v) for v in str(binning).split("x"))
    except (TypeError, ValueError):
        return None
    return (serial, parallel) if serial > 0 and parallel > 0 else None


def raw_shape(info: Mapping[str, Any]) -> Optional[Tuple[int, int]]:
    """(rows, columns) of the raw data from NAXIS2/NAXIS1; None if unknown."""
    try:
        return int(info["naxis2"]), int(info["naxis1"])
    except (KeyError, TypeError, ValueError):
        return None


def readout_problem(info: Mapping[str, Any]) -> Optional[str]:
    """Why this frame's raw shape does not fit the spectroscopic overscan/trim regions
    of its camera and binning, or None (it fits, or camera, binning or shape is unknown:
    other checks say so)."""
    camera, bins, shape = info.get("camera"), binning_pair(info.get("binning")), raw_shape(info)
    if camera not in CAMERAS or bins is None or shape is None:
        return None
    try:
        overscan_section(camera, bins, shape)
        trim_section(camera, bins, shape)
    except ValueError as exc:
        return (f"raw shape {shape[1]}x{shape[0]} does not fit the spectroscopic overscan/trim regions of the "
                f"{camera} camera at {bins[0]}x{bins[1]} ({exc})")
    return None


def nonstandard_readout(info: Mapping[str, Any]) -> Optional[str]:
    """'COLSxROWS' when the raw shape is known and is not one of Goodman's spectroscopic
    readouts at this binning (a user-defined ROI), else None."""
    return _readout_other_than(info, SPECTROSCOPIC_READOUTS)


def partial_readout(info: Mapping[str, Any]) -> Optional[str]:
    """'COLSxROWS' when the raw shape is known and is not the full spectroscopic readout
    at this binning (ZZ Ceti's 200 rows, a user-defined ROI), else None."""
    return _readout_other_than(info, SPECTROSCOPIC_READOUTS[:1])


def _readout_other_than(info: Mapping[str, Any], readouts) -> Optional[str]:
    bins, shape = binning_pair(info.get("binning")), raw_shape(info)
    if bins is None or shape is None:
        return None
    rows, cols = shape
    if any(cols == c // bins[0] and rows == r // bins[1] for c, r in readouts):
        return None
    return f"{cols}x{rows}"


def _bias_setup_note(header: Mapping[str, Any], info: Mapping[str, Any], usable: bool, problem: Optional[str]) -> str:
    cards = ", ".join(f"{key} '{_text(header, key)}'" for key in ("SLIT", "GRATING", "WAVMODE", "ROI")
                      if _text(header, key))
    how = "without a slit mask" if info["slit"] == "NO_MASK" else "with the imaging setup"
    if usable:
        return f"bias taken {how} ({cards}): a bias sees no light, so it is used as a spectroscopic bias"
    return f"bias taken {how} ({cards}): not usable as a spectroscopic bias: {problem}"


def find_mode(lines: Optional[str], cam_angle: Optional[float], grt_angle: Optional[float]) -> Optional[str]:
    """The preset whose angles these are, or None for a custom setting."""
    if lines is None or cam_angle is None or grt_angle is None:
        return None
    for preset_lines, name, cam, grt, _ in PRESET_MODES:
        if preset_lines == lines and abs(cam - cam_angle) <= ANGLE_TOLERANCE and abs(grt - grt_angle) <= ANGLE_TOLERANCE:
            return name
    return None


def _obstype(header: Mapping[str, Any], lamps: List[str], notes: List[str]) -> str:
    raw = _text(header, "OBSTYPE").upper()
    if raw:
        if raw in _OBSTYPE_ALIASES:
            return _OBSTYPE_ALIASES[raw]
        notes.append(f"OBSTYPE '{raw}' is not a Goodman frame type")
        return "UNKNOWN"
    obj = _text(header, "OBJECT").upper()
    if obj in ("ZERO", "BIAS") or _number(header, "EXPTIME") == 0:
        guess = "BIAS"
    elif _is_true(header.get("LAMP_QUA")) or "FLAT" in obj or "QUARTZ" in obj:
        guess = "FLAT"
    elif lamps:
        guess = "COMP"
    else:
        guess = "OBJECT"
    notes.append(f"OBSTYPE missing: taken as {guess} from OBJECT, EXPTIME and lamp keywords")
    return guess


def _camera(header: Mapping[str, Any], notes: List[str]) -> str:
    conf = _text(header, "INSTCONF").upper()
    if conf in ("RED", "BLUE"):
        return conf
    notes.append("INSTCONF missing: camera unknown" if not conf else f"INSTCONF '{conf}' is not a Goodman camera")
    return "UNKNOWN"


def _lamps(header: Mapping[str, Any]) -> List[str]:
    return [name for key, name in _LAMP_KEYS if _is_true(header.get(key))]


def classify(header: Mapping[str, Any]) -> Dict[str, Any]:
    """A plain dict describing the frame; never raises on odd values, notes them."""
    notes: List[str] = []
    instrument = _text(header, "INSTRUME")
    if "GOODMAN" not in instrument.upper():
        notes.append(f"INSTRUME '{instrument}' is not Goodman" if instrument else "INSTRUME missing")
    lamps = _lamps(header)
    obstype = _obstype(header, lamps, notes)
    camera = _camera(header, notes)
    grating = normalise_grating(_text(header, "GRATING"))
    wavmode = _text(header, "WAVMODE")
    roi_text = _text(header, "ROI")
    binning = normalise_binning(_text(header, "CCDSUM"))
    if binning is None:
        notes.append(f"CCDSUM '{_text(header, 'CCDSUM')}' unreadable: binning unknown")
    if grating is None or wavmode.upper() == "IMAGING" or "IMAGING" in roi_text.upper():
        technique = "Imaging"
    else:
        technique = "Spectroscopy"
    filter1 = normalise_filter(_text(header, "FILTER"))
    filter2 = normalise_filter(_text(header, "FILTER2"))
    slit = normalise_slit(_text(header, "SLIT"))
    roi = _token(roi_text) or "UNKNOWN-ROI"
    if obstype == "BIAS" and (technique == "Imaging" or slit == "NO_MASK"):
        readout = {"camera": camera, "binning": binning, "slit": slit,
                   "naxis1": header.get("NAXIS1"), "naxis2": header.get("NAXIS2")}
        problem = readout_problem(readout)
        if camera in CAMERAS and binning and problem is None:
            technique = "Spectroscopy"
            notes.append(_bias_setup_note(header, readout, True, None))
        elif problem:
            notes.append(_bias_setup_note(header, readout, False, problem))
    cam_angle = _number(header, "CAM_ANG")
    grt_angle = _number(header, "GRT_ANG")
    if cam_angle is None or grt_angle is None:
        cam_angle, grt_angle = _number(header, "CAM_TARG"), _number(header, "GRT_TARG")
    lines = grating_lines(grating)
    mode = None
    if technique == "Spectroscopy" and grating is None:
        parts = [camera, "NO-GRATING", "NO-MODE", filter2, slit, binning or "?x?", roi]  # a bias, see above
    elif technique == "Spectroscopy":
        mode = find_mode(lines, cam_angle, grt_angle)
        if mode is None:
            if cam_angle is None or grt_angle is None:
                mode = "CUSTOM"
                notes.append("grating and camera angles missing: mode unknown")
            else:
                mode = f"G{grt_angle:.1f}-C{cam_angle:.1f}"
        parts = [camera, grating or "NO-GRATING", mode, filter2, slit, binning or "?x?", roi]
    else:
        parts = [camera, "IMAGING", filter1, filter2, binning or "?x?", roi]
    return {
        "obstype": obstype,
        "technique": technique,
        "camera": camera,
        "object": _text(header, "OBJECT"),
        "exptime": _number(header, "EXPTIME"),
        "date_obs": _text(header, "DATE-OBS") or None,
        "ra": _text(header, "RA") or None,
        "dec": _text(header, "DEC") or None,
        "airmass": _airmass(header),
        "proposal_header": _text(header, "PROPOSAL") or None,
        "grating": grating,
        "mode": mode,
        "wavmode": wavmode or None,
        "filter": filter1,
        "filter2": filter2,
        "slit": slit,
        "binning": binning,
        "roi": roi,
        "lamps": lamps,
        "cam_angle": cam_angle,
        "grt_angle": grt_angle,
        "gain": _number(header, "GAIN"),
        "rdnoise": _number(header, "RDNOISE"),
        "naxis1": header.get("NAXIS1"),
        "naxis2": header.get("NAXIS2"),
        "configuration": "_".join(parts),
        "notes": notes,
    }
