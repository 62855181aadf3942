"""Raw-frame headers: the reference lamp's instrument header, made raw again, per frame.

Why start from the reference lamp: its header is a real Goodman Red-camera header of
the very setup being simulated (GRATING, WAVMODE, FILTER2, SLIT, camera and grating
angles, lamp switches, the camera's PG* status block), so goodman-pipeline classifies
and matches our frames like real ones. What the pipeline and IRAF added when the lamp
was reduced is removed (GSP_*, APNUM*, WCS and IRAF keys, archive ingest keys,
COMMENT/HISTORY): a raw file has none of them. The cards then follow what the Red
camera writes (structural cards with its comments, BSCALE/BZERO before the rest,
`Light, Exp Time= ..., Saved as: ...` as the last COMMENT), with the frame's own readout
and per-frame times, pointing and lamp switches.

The readout is recorded as the camera records it: NAXIS1/NAXIS2, CCDSUM 'sb pb', ROI
('Spectroscopic 2x2', 'Spectroscopic ZZ Ceti', 'user-defined', ...), TRIMSEC in unbinned
pixels of the readout, and the camera's PG5 block: PG5_4 parallel binning, PG5_5 parallel
length (binned rows), PG5_6 parallel origin (unbinned detector row of the window's first
row: 1100 for the full spectroscopic window, 1800 for 'Spectroscopic ZZ Ceti'), PG5_9
serial binning, PG5_10 serial length, PG5_11 serial origin. Real Goodman headers carry no
DETSEC/CCDSEC/DATASEC/LTV*: PG5_6 is where the window offset lives. SLIT is the
reference lamp's card unless the frame has its own slit ('1.0" long slit').

Times and pointing are computed from the plan only (never the wall clock). Sidereal
time uses the IAU 1982 GMST polynomial (no IERS tables, no network): accurate to ~1 s,
which is plenty for LST/HA/AIRMASS keywords.
"""
from __future__ import annotations

import calendar
import functools
import datetime as dt
import math

from astropy.io import fits

from . import geometry
from .plan import FramePlan, NightPlan
from .reference import load_reference_lamp

SOAR_LONGITUDE = -70.73369  # deg, east positive
SOAR_LATITUDE = -30.23795  # deg
PLATE_SCALE_UNBINNED = 0.15  # arcsec per unbinned row
PLATE_SCALE = PLATE_SCALE_UNBINNED * geometry.BINNING  # arcsec per 2x2 row
OPEN_DELAY = 0.789  # s from DATE-OBS to the GPS-stamped shutter opening

_DROP_EXACT = {
    "", "COMMENT", "HISTORY", "IRAF-TLM", "ORIGIN", "CHECKSUM", "DATASUM", "EXTEND",
    "WCSDIM", "WCSAXES", "LATPOLE", "LONPOLE", "DC-FLAG", "MJDREF", "MJD-OBS",
    "RLEVEL", "L1PUBDAT", "BLKUID", "BLOCK_ID", "CONFID", "HEADERVE", "IMAGEID",
    "OBSID", "PROPID", "REQNUM", "SITEID", "TELID",
}
_DROP_PREFIX = (
    "GSP_", "APNUM", "BANDID", "CTYPE", "CRVAL", "CRPIX", "CDELT", "CUNIT", "CD1_", "CD2_",
    "LTM", "LTV", "WAT", "DCLOG", "REFSPEC",
)
_STRUCTURAL = ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BSCALE", "BZERO")
LAMP_SWITCHES = ("LAMP_HGA", "LAMP_NE", "LAMP_AR", "LAMP_FE", "LAMP_CU", "LAMP_QUA", "LAMP_BUL", "LAMP_DOM")


def is_processing_keyword(key: str) -> bool:
    """True for keywords a reduction or IRAF added, which a raw Goodman file never has."""
    return key in _DROP_EXACT or key.startswith(_DROP_PREFIX)


def _hms(hours: float) -> str:
    """Sexagesimal 'hh:mm:ss.sss' (also for degrees), '-' prefixed when negative."""
    neg = hours < 0
    ms = int(round(abs(hours) * 3600_000))
    h, rest = divmod(ms, 3600_000)
    m, rest = divmod(rest, 60_000)
    s = rest / 1000.0
    text = f"{h:02d}:{m:02d}:{s:06.3f}"
    return ("-" if neg else "") + text


def _parse_sexagesimal(text: str) -> float:
    text = text.strip()
    neg = text.startswith("-")
    parts = [abs(float(p)) for p in text.lstrip("+-").split(":")]
    value = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    return -value if neg else value


def _lst_hours(when: dt.datetime) -> float:
    unix = calendar.timegm(when.timetuple()) + when.microsecond / 1e6
    days = unix / 86400.0 + 2440587.5 - 2451545.0
    gmst = 18.697374558 + 24.06570982441908 * days
    return (gmst + SOAR_LONGITUDE / 15.0) % 24.0


def pointing(when: dt.datetime, ra_hours: float, dec_deg: float):
    """(LST h, HA h in -12..12, airmass, azimuth deg, elevation deg) at SOAR."""
    lst = _lst_hours(when)
    ha = (lst - ra_hours + 12.0) % 24.0 - 12.0
    h, d, p = math.radians(ha * 15.0), math.radians(dec_deg), math.radians(SOAR_LATITUDE)
    sin_alt = math.sin(p) * math.sin(d) + math.cos(p) * math.cos(d) * math.cos(h)
    alt = math.asin(max(-1.0, min(1.0, sin_alt)))
    az = math.atan2(-math.cos(d) * math.sin(h), math.sin(d) * math.cos(p) - math.cos(d) * math.sin(p) * math.cos(h))
    airmass = 1.0 / sin_alt if sin_alt > 0.05 else 20.0
    return lst, ha, airmass, math.degrees(az) % 360.0, math.degrees(alt)


def _exp_label(exptime: float) -> str:
    """The camera's own spelling in its COMMENT card: 00, 00.500, 35, 02:00."""
    if exptime >= 60:
        m, s = divmod(int(round(exptime)), 60)
        return f"{m:02d}:{s:02d}"
    if exptime == int(exptime):
        return f"{int(exptime):02d}"
    return f"{exptime:06.3f}"


@functools.lru_cache(maxsize=8)
def _raw_cards(lamp_name: str):
    """The reference lamp's cards made raw: (keyword, value, comment) tuples, cached."""
    cards = [
        ("SIMPLE", True, "FITS Standard"),
        ("BITPIX", 16, "FITS Bits/Pixel (-16 signifies [U16])"),
        ("NAXIS", 2, "Number of Axes"),
        ("NAXIS1", geometry.N_COLS, "Length of Axis 1 (Columns)"),
        ("NAXIS2", geometry.N_ROWS, "Length of Axis 2 (Rows)"),
        ("BSCALE", 1, "Scaling Factor (Default=1)"),
        ("BZERO", 32768, "Offset Factor (Default=0)"),
    ]
    for card in load_reference_lamp(lamp_name).header.cards:
        key = card.keyword
        if key in _STRUCTURAL or is_processing_keyword(key) or key.startswith("NAXIS"):
            continue
        cards.append((key, card.value, card.comment))
    return tuple(cards)


def _coordinates(plan: NightPlan, frame: FramePlan):
    """(RA, Dec) text the telescope points at during `frame`.

    The target (science, and lamps that bracket it); otherwise the telescope sits where
    it was parked for the afternoon: the zenith at the night's first frame. These must
    not change from frame to frame: goodman-pipeline groups calibrations by OBSRA/OBSDEC,
    and a bias with its own coordinates would be a group of one.
    """
    if frame.target is not None:
        return frame.target.ra, frame.target.dec
    return _hms(_lst_hours(plan.frames[0].start)), _hms(SOAR_LATITUDE)


def frame_airmass(plan: NightPlan, frame: FramePlan) -> float:
    """The AIRMASS card of `frame` (at the start of the exposure, 3 decimals): the airmass
    physical sources are rendered through, so a reduction that reads the card corrects
    exactly the extinction that was applied."""
    ra_text, dec_text = _coordinates(plan, frame)
    return round(pointing(frame.start, _parse_sexagesimal(ra_text), _parse_sexagesimal(dec_text))[2], 3)


def slit_card(width: float) -> str:
    """The SLIT value Goodman writes for a long slit `width` arcsec wide: '1.0" long slit', '0.45" long slit'."""
    text = f"{width:.3f}".rstrip("0")
    return (text + "0" if text.endswith(".") else text) + '" long slit'


def build_header(plan: NightPlan, frame: FramePlan) -> fits.Header:
    """The raw header of `frame` (deterministic: a function of the plan only)."""
    src = load_reference_lamp(plan.lamp).header
    h = fits.Header([fits.Card(*c) for c in _raw_cards(plan.lamp)])
    geom = frame.geometry
    h.set("NAXIS1", geom.n_cols)
    h.set("NAXIS2", geom.n_rows)

    start = frame.start
    end = start + dt.timedelta(seconds=frame.exptime)
    opened = start + dt.timedelta(seconds=OPEN_DELAY)
    closed = opened + dt.timedelta(seconds=frame.exptime)

    def hms(t: dt.datetime, digits: int = 3) -> str:
        frac = f"{t.microsecond / 1e6:.{digits}f}"[1:] if digits else ""
        return t.strftime("%H:%M:%S") + frac

    h.set("DATE-OBS", frame.date_obs, "DATE-OBS Format: YYYY-MM-DDThh:mm:ss.sss")
    h.set("DATE", start.strftime("%Y-%m-%d"), "Date Format is YYYY-MM-DD")
    h.set("TIME", f"{hms(start)} to {hms(end)}", "~ Start & Stop of Exposure")
    h.set("UT", hms(start), "time at approx. start of exposure [UTC]")
    h.set("OPENTIME", hms(opened, 7), "GPS-Synched Time for Shutter Open (UT)")
    h.set("OPENDATE", opened.strftime("%Y-%m-%d"), "GPS-Synched Time for Shutter Open (UT)")
    h.set("CLOSETIM", hms(closed, 7), "This is the GPS-Synched Time for Shutter Closi")

    ra_text, dec_text = _coordinates(plan, frame)
    lst, ha, _, az, el = pointing(start, _parse_sexagesimal(ra_text), _parse_sexagesimal(dec_text))
    h.set("RA", ra_text, "right ascension [hh:mm:ss.sss]")
    h.set("DEC", dec_text, "declination [dd:mm:ss.sss]")
    h.set("OBSRA", ra_text, "target right ascension [hh:mm:ss.sss]")
    h.set("OBSDEC", dec_text, "target declination  [hh:mm:ss.sss]")
    h.set("AIRMASS", frame_airmass(plan, frame), "airmass at approx. start of exposure")
    h.set("LST", _hms(lst), "Local Sidereal Time  [hh:mm:ss.sss]")
    h.set("HA", _hms(ha), "Hour Angle  [hh:mm:ss.sss]")
    h.set("MOUNT_AZ", round(az, 6), "SOAR mount azimuth")
    h.set("MOUNT_EL", round(el, 6), "SOAR mount elevation")
    h.set("DOME_AZ", round(az, 6), "SOAR Dome Shutter azimuth")
    seeing = round(frame.trace.fwhm * (PLATE_SCALE_UNBINNED * geom.pb), 2) if frame.trace is not None else -1.0
    h.set("SEEING", seeing, "DIMM seeing [arcsec]")

    # lamps: the reference lamp's switches for COMP, the quartz for FLAT, all off otherwise
    for key in LAMP_SWITCHES:
        on = (frame.obstype == "COMP" and str(src.get(key, "FALSE")).strip() == "TRUE") or \
             (frame.obstype == "FLAT" and key == "LAMP_QUA")
        h.set(key, "TRUE" if on else "FALSE")
    h.set("LAMP_QPE", 50 if frame.obstype == "FLAT" else 0)
    h.set("LAMP_DPE", 0)

    h.set("OBSTYPE", frame.obstype, "observation type")
    h.set("OBJECT", frame.object, "Name of the object observed")
    h.set("EXPTIME", float(frame.exptime), "integration time")
    if "PG2_0" in h:
        h.set("PG2_0", float(frame.exptime))
    h.set("GAIN", geometry.GAIN, "CCD gain [e-/ADU]")
    h.set("RDNOISE", geometry.RDNOISE, "CCD readnoise [e-]")
    h.set("INSTCONF", "Red")
    h.set("ROI", geom.roi_name)
    h.set("CCDSUM", geom.ccdsum)
    # the Red camera writes TRIMSEC in unbinned pixels of the readout
    h.set("TRIMSEC", f"[1:{geom.sb * geom.n_cols},1:{geom.pb * geom.n_rows}]")
    h.set("DISPAXIS", 1)
    if frame.slit is not None:
        h.set("SLIT", slit_card(frame.slit))
    for key, value in (("PG5_4", geom.pb), ("PG5_5", geom.n_rows), ("PG5_6", geom.parallel_origin),
                       ("PG5_9", geom.sb), ("PG5_10", geom.n_cols), ("PG5_11", 0)):
        if key in h:
            h.set(key, value)
    h.set("OBSERVER", "infra.simulator")
    h.set("PROPOSAL", "SIMULATED")
    h.set("NOTES", f"simulated night seed={plan.seed} lamp={plan.lamp}")
    h.add_comment(f"Light, Exp Time= {_exp_label(frame.exptime)}, Saved as: {frame.filename}")
    return h
