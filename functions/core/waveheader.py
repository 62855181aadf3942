"""What the wavelength calibration reads from a header: grating, angles, binning, trim,
lamp elements. Pure functions of an astropy Header."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from astropy.io import fits

from .wavesolution import WavelengthFailure

#: Lamp keywords → the elements whose lines the lamp shows. The Fe and Cu hollow
#: cathodes are FeHeAr and CuHeAr lamps: their fill gas lines dominate many modes.
LAMP_KEYWORDS = {
    "LAMP_HGA": ("Hg", "Ar"),
    "LAMP_NE": ("Ne",),
    "LAMP_AR": ("Ar",),
    "LAMP_FE": ("Fe", "He", "Ar"),
    "LAMP_CU": ("Cu", "He", "Ar"),
}
ELEMENT_ORDER = ("Hg", "Cu", "Fe", "He", "Ar", "Ne")
_ELEMENT_RE = re.compile(r"(Hg|Ar|Ne|Fe|Cu|He|Xe|Kr|Th)")
#: Elements implied by a hollow cathode named alone in OBJECT ('Fe' is the FeHeAr lamp).
_CATHODE_GAS = {"Fe": ("He", "Ar"), "Cu": ("He", "Ar"), "Hg": ("Ar",)}


def lines_per_mm(grating) -> Optional[int]:
    """'SYZY_400' → 400, '930_Hz' → 930, '1200_RALC_BLUE' → 1200; None when there is no number."""
    m = re.findall(r"(?<!\d)(\d{3,4})(?!\d)", str(grating or ""))
    return int(m[0]) if m else None


def spectral_binning(header: fits.Header) -> int:
    """The dispersion-axis (serial) binning: the first number of CCDSUM ('1 2' → 1)."""
    try:
        return int(str(header.get("CCDSUM", "1 1")).split()[0])
    except (ValueError, IndexError) as exc:
        raise WavelengthFailure(f"cannot read the binning from CCDSUM={header.get('CCDSUM')!r}") from exc


def _true(value) -> bool:
    return str(value).strip().upper() in ("TRUE", "T", "ON", "1") or value is True


def lamp_elements(header: fits.Header) -> Tuple[str, ...]:
    """Elements whose lines the lamp shows, from LAMP_* = TRUE, else from OBJECT ('HgArNe', 'Fe')."""
    found = set()
    for key, elements in LAMP_KEYWORDS.items():
        if _true(header.get(key, False)):
            found.update(elements)
    if not found:
        named = _ELEMENT_RE.findall(str(header.get("OBJECT", "")))
        found.update(named)
        if len(set(named)) == 1:
            found.update(_CATHODE_GAS.get(named[0], ()))
    return tuple(sorted(found, key=lambda e: ELEMENT_ORDER.index(e) if e in ELEMENT_ORDER else 99))


def _first_column_unbinned(header: fits.Header, binning: int) -> float:
    """Unbinned detector column (0-based, of the raw frame) where reduced column 0 starts.

    From GSP_TRIM (plus GSP_SLIT columns if any), else goodman's spectroscopic trim rule
    (first column ceil(51/b), 1-based). Used only to line up data and reference; the
    cross-correlation absorbs what it gets wrong within the tolerance.
    """
    start = None
    trim = header.get("GSP_TRIM")
    m = re.match(r"\[\s*(\d+)\s*:", str(trim or ""))
    if m:
        start = int(m.group(1)) - 1
    else:
        start = int(np.ceil(51.0 / binning)) - 1
    m = re.match(r"\[\s*(\d+)\s*:", str(header.get("GSP_SLIT") or ""))
    if m and trim:
        start += int(m.group(1)) - 1
    return float(start * binning)


@dataclass(frozen=True)
class _Config:
    grating: Optional[int]
    grt_targ: Optional[float]
    cam_targ: Optional[float]
    filter2: str
    elements: Tuple[str, ...]
    camera: str


def _float(header, key) -> Optional[float]:
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return None


def _config(header: fits.Header) -> _Config:
    grt = _float(header, "GRT_TARG")
    cam = _float(header, "CAM_TARG")
    return _Config(
        grating=lines_per_mm(header.get("GRATING")),
        grt_targ=grt if grt is not None else _float(header, "GRT_ANG"),
        cam_targ=cam if cam is not None else _float(header, "CAM_ANG"),
        filter2=str(header.get("FILTER2", "")).strip().upper(),
        elements=lamp_elements(header),
        camera=str(header.get("INSTCONF", "")).strip().upper(),
    )


def _norm(text) -> str:
    return re.sub(r"[^A-Z0-9]", "", str(text or "").upper())
