"""Missing optional keywords of a Goodman header: what each may honestly be taken from.

Why: classify and the reduction read DATE-OBS (the night of a file uploaded outside a
night folder), EXPTIME (a bias is told by EXPTIME 0 when OBSTYPE is missing), CCDSUM
(the binning: without it the overscan and trim regions are unknown) and CAM_ANG/GRT_ANG
(the mode, and the wavelength solution's first guess). Goodman records each of them a
second time: the date and the start of the exposure in DATE and TIME (or UT), exposure
time and binning in the camera controller's parameter block (PGn_m or PARAMn, found by
their comments, as the numbering differs between the cameras), the commanded angles in
CAM_TARG/GRT_TARG. A frame missing one is reduced with the value from that second
source, and a note.

Nothing else is invented. OBJECT, SLIT, GRATING and FILTER2 have no second source: their
absence is noted. OBSTYPE, INSTCONF, GAIN and RDNOISE have none either; `classify`
notes their absence and `reason_not_reducible` judges it. OPENDATE is not used for
DATE-OBS: some real headers have it a year off.
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

from astropy.io import fits

Derived = Optional[Tuple[object, str]]  # (value, where it was taken from)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK = re.compile(r"\s*(\d{1,2}:\d{2}:\d{2}(?:\.\d+)?)")
_PARAMETER = re.compile(r"PG\d+_\d+|PARAM\d+")


def _missing(header: fits.Header, keyword: str) -> bool:
    """Absent, or present without a value ('EXPTIME =')."""
    return keyword not in header or isinstance(header[keyword], fits.card.Undefined)


def _text(header: fits.Header, keyword: str) -> str:
    value = None if _missing(header, keyword) else header[keyword]
    return "" if value is None else str(value).strip()


def _parameter(header: fits.Header, comment: str) -> Optional[Tuple[str, float]]:
    """(keyword, value) of the controller parameter whose comment starts with `comment`."""
    for card in header.cards:
        if (_PARAMETER.fullmatch(card.keyword) and card.comment.lower().startswith(comment)
                and isinstance(card.value, (int, float)) and not isinstance(card.value, bool)):
            return card.keyword, card.value
    return None


def _date_obs(header: fits.Header) -> Derived:
    date = _text(header, "DATE")
    if not _DATE.fullmatch(date):
        return None
    for keyword, what in (("TIME", "the start time in TIME"), ("UT", "UT (about the start of the exposure)")):
        start = _CLOCK.match(_text(header, keyword))
        if start:
            return f"{date}T{start.group(1)}", f"DATE and {what}"
    return date, "DATE (the date only: TIME and UT are missing too)"


def _exptime(header: fits.Header) -> Derived:
    found = _parameter(header, "exposure time")
    unit = found and re.search(r"exposure time\s*,\s*(sec|ms)", header.comments[found[0]], re.I)
    if not unit:
        return None
    scale = 1e-3 if unit.group(1).lower() == "ms" else 1.0
    return round(found[1] * scale, 6), f"the camera controller's {found[0]} (exposure time)"


def _ccdsum(header: fits.Header) -> Derived:
    serial, parallel = _parameter(header, "serial binning"), _parameter(header, "parallel binning")
    if serial and parallel and float(serial[1]).is_integer() and float(parallel[1]).is_integer():
        return (f"{int(serial[1])} {int(parallel[1])}",
                f"the camera controller's {serial[0]} and {parallel[0]} (serial and parallel binning)")
    return None


def _target(keyword: str) -> Callable[[fits.Header], Derived]:
    def derive(header: fits.Header) -> Derived:
        value = None if _missing(header, keyword) else header[keyword]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value, f"{keyword} (the commanded angle)"
        return None
    return derive


#: Keyword, how it is derived, the comment its card gets.
DERIVED: Tuple[Tuple[str, Callable[[fits.Header], Derived], str], ...] = (
    ("DATE-OBS", _date_obs, "derived by Goodman Live from DATE"),
    ("EXPTIME", _exptime, "integration time, derived by Goodman Live"),
    ("CCDSUM", _ccdsum, "binning, derived by Goodman Live"),
    ("CAM_ANG", _target("CAM_TARG"), "camera angle [deg], from CAM_TARG (Goodman Live)"),
    ("GRT_ANG", _target("GRT_TARG"), "grating angle [deg], from GRT_TARG (Goodman Live)"),
)
#: Optional keywords with no second source, and what their absence means.
NOT_DERIVED = (
    ("OBJECT", "the frame has no target name"),
    ("SLIT", "the slit is unknown"),
    ("GRATING", "the grating is unknown"),
    ("FILTER2", "the second filter is unknown"),
)


def derive_missing(header: fits.Header) -> List[str]:
    """Fill in `header` (in place: it is the repaired copy being built) the missing
    keywords that have a second source; a note for each keyword filled or left missing."""
    notes: List[str] = []
    for keyword, derive, comment in DERIVED:
        if not _missing(header, keyword):
            continue
        found = derive(header)
        if found is None:
            continue  # classify notes what it cannot tell without it
        value, source = found
        header[keyword] = (value, comment)
        notes.append(f"{keyword} missing: taken from {source}: {value!r}")
    for keyword, meaning in NOT_DERIVED:
        if _missing(header, keyword):
            notes.append(f"{keyword} missing: {meaning}")
    return notes
