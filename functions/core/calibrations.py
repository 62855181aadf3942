"""Which master calibrations a frame belongs to, and which one to use.

Pure functions of a frame's classification: the index query that finds candidates
lives in the adapter, the choice lives here, so it can be tested without storage.

Groups follow goodman-pipeline's own rules: a master bias serves one camera,
binning and readout mode (gain and read noise: 'RED_SP_2x2_R03.89_G01.48' in its
file names); a master flat is built from the flats of one configuration (which
includes the binning, grating angles, blocking filter, slit and ROI).

Which calibration *fits* a frame is looser than which frames make one: `CRITERIA`
says, per calibration kind, what must agree and what may differ (BANZAI's
CALIBRATION_SET_CRITERIA, with tolerances). A lamp of another binning, slit or ROI
still shows the lines where the same optics put them (its solution is mapped onto the
frame's pixels, see mapping.py); a flat through another slit width still measures the
same pixels and the same long slit. What differed is returned with the choice, so the
product and the page can say it.
"""
from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from golive_data.item import REDUCED_TYPES  # noqa: F401 (what the reduction reduces, the API re-reduces)

BIAS, FLAT = "BIAS", "FLAT"


def reason_not_reducible(info: Mapping[str, Any]) -> Optional[str]:
    """None if the reduction can handle the frame, else why not (for the file's status)."""
    if info.get("obstype") == BIAS:
        # Slit, grating and WAVMODE do not matter to a bias (classify.py); its readout does.
        from .classify import readout_problem

        problem = readout_problem(info)
        if problem:
            return f"bias not usable for spectroscopy: {problem}"
    if info.get("technique") != "Spectroscopy":
        return "imaging frames are not reduced (Goodman Live reduces spectroscopy)"
    if info.get("camera") not in ("RED", "BLUE"):
        return "unknown camera (INSTCONF missing or not Red/Blue): overscan and trim regions unknown"
    if not info.get("binning"):
        return "binning unknown (CCDSUM missing or unreadable)"
    if info.get("obstype") not in (BIAS, FLAT) + REDUCED_TYPES:
        return f"{info.get('obstype')} frames are not reduced"
    if info.get("gain") is None or info.get("rdnoise") is None:
        return "GAIN or RDNOISE missing: noise model and master bias grouping unknown"
    return None


def bias_group(info: Mapping[str, Any]) -> str:
    """goodman-pipeline's readout name; a readout shape other than the full spectroscopic
    one (ZZ Ceti's 200 rows, a user-defined ROI) is added ('..._G01.48_2071x200'), so
    that a master bias is never combined from, or applied to, another shape: a night with
    both readouts gets a master of each."""
    from .classify import partial_readout

    group = f"{info['camera']}_SP_{info['binning']}_R{float(info['rdnoise']):05.2f}_G{float(info['gain']):05.2f}"
    shape = partial_readout(info)
    return f"{group}_{shape}" if shape else group


def flat_group(info: Mapping[str, Any]) -> str:
    return str(info["configuration"])


def group_of(kind: str, info: Mapping[str, Any]) -> str:
    return bias_group(info) if kind == BIAS else flat_group(info)


def members_hash(file_ids: Iterable[str]) -> str:
    """A master version is named by the frames in it: same frames, same version."""
    return hashlib.sha1("\n".join(sorted(file_ids)).encode()).hexdigest()[:12]


def master_file_name(kind: str, group: str, night: str, count: int) -> str:
    """goodman-pipeline's names, plus the night and the number of frames combined
    (several versions of a master coexist; a product names the one it used)."""
    stem = "master_bias" if kind == BIAS else "norm_master_flat"
    return f"{stem}_{group}_{night}_n{count:02d}.fits"


def window_start(night: str, days: int) -> str:
    return (date.fromisoformat(night) - timedelta(days=days)).isoformat()


def nights_from(night: str, days: int, step: int = -1) -> List[str]:
    """The `days` nights before `night` (step -1, nearest first) or after it (step +1)."""
    d = date.fromisoformat(night)
    return [(d + timedelta(days=step * k)).isoformat() for k in range(1, days + 1)]


def choose_master(candidates: List[Dict[str, Any]], night: str) -> Optional[Dict[str, Any]]:
    """The master to use for a frame of `night`: one made that night with the most
    frames; else the one from the nearest earlier night (most frames); else None.
    Masters of later nights are never used: a replay gives the answer the live
    night gave."""
    same = [m for m in candidates if m["night"] == night]
    if same:
        return max(same, key=lambda m: (m["count"], m["sk"]))
    earlier = [m for m in candidates if m["night"] < night]
    if earlier:
        return max(earlier, key=lambda m: (m["night"], m["count"], m["sk"]))
    return None


#: Per calibration kind: the setup fields that must be equal, and those that may differ
#: (each difference is recorded). Grating and camera angles must agree within a
#: tolerance (`calibration_angle_tolerance`), or name the same preset mode.
CRITERIA: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "COMP": {"match": ("camera", "grating", "filter2"), "may_differ": ("binning", "slit", "roi", "wavmode")},
    "FLAT": {"match": ("camera", "grating", "filter2", "binning", "roi"), "may_differ": ("slit", "wavmode")},
}
SETUP_FIELDS = ("camera", "grating", "mode", "grt_angle", "cam_angle", "filter2", "slit", "binning", "roi", "wavmode")


def setup_of(info: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields of a classification that the matching looks at."""
    return {k: info.get(k) for k in SETUP_FIELDS}


def _angles_agree(frame: Mapping[str, Any], calib: Mapping[str, Any], tolerance: float) -> Tuple[bool, str]:
    if frame.get("mode") and frame.get("mode") == calib.get("mode") and frame.get("mode") != "CUSTOM":
        return True, ""  # the same preset (or the same written-out angles)
    worst = 0.0
    for key in ("grt_angle", "cam_angle"):
        a, b = frame.get(key), calib.get(key)
        if a is None or b is None:
            return False, f"grating/camera angles unknown ({key})"
        worst = max(worst, abs(float(a) - float(b)))
    if worst > tolerance:
        return False, (f"angles differ by {worst:.3f} deg (GRT_ANG {calib.get('grt_angle')} vs "
                       f"{frame.get('grt_angle')}, CAM_ANG {calib.get('cam_angle')} vs {frame.get('cam_angle')}), "
                       f"more than {tolerance} deg")
    return True, ""


def compare_setup(kind: str, frame: Mapping[str, Any], calib: Mapping[str, Any],
                  angle_tolerance: float = 0.05) -> Tuple[bool, List[str]]:
    """Whether a calibration of `kind` ('COMP' | 'FLAT') fits `frame`: (fits, notes).

    When it fits, the notes list what differs ("binning 1x2 vs 2x2"); when it does not,
    they say why not. Both arguments are classifications (index items)."""
    rules = CRITERIA[kind]
    for key in rules["match"]:
        if (frame.get(key) or None) != (calib.get(key) or None):
            return False, [f"{key} {calib.get(key)} vs {frame.get(key)}"]
    ok, why = _angles_agree(frame, calib, angle_tolerance)
    if not ok:
        return False, [why]
    return True, [f"{key} {calib.get(key)} vs {frame.get(key)}" for key in rules["may_differ"]
                  if (frame.get(key) or None) != (calib.get(key) or None)]


def rank_calibrations(kind: str, frame: Mapping[str, Any], candidates: Iterable[Dict[str, Any]],
                      angle_tolerance: float = 0.05) -> List[Tuple[Dict[str, Any], List[str]]]:
    """The candidates that fit `frame`, best first, each with what differs.

    Preference: the frame's own night, then exact matches, then the nearest in time
    (before or after: flexure moves the lines through the night, the lamp closest to
    the exposure has moved least), then the earlier, then the name, so the order never
    depends on the order the index returns them in. Candidates carry `night`,
    `date_obs` and `file_name` beside their setup fields."""
    t = _seconds(frame.get("date_obs"))
    out = []
    for c in candidates:
        ok, notes = compare_setup(kind, frame, c, angle_tolerance)
        if ok:
            out.append((c, notes))

    def rank(pair):
        c, notes = pair
        tc = _seconds(c.get("date_obs"))
        dt = abs(tc - t) if (tc is not None and t is not None) else float("inf")
        return (c.get("night") != frame.get("night"), bool(notes), dt, tc if tc is not None else 0.0,
                c.get("file_name") or "")

    return sorted(out, key=rank)


def _seconds(iso: Optional[str]) -> Optional[float]:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except (TypeError, ValueError):
        return None


def choose_lamp(candidates: List[Dict[str, Any]], date_obs: Optional[str]) -> Optional[Dict[str, Any]]:
    """The comparison lamp for a science frame: the one of its configuration nearest in
    time (before or after: flexure moves the lines through the night, and the lamp
    closest to the exposure has moved least). Ties go to the earlier lamp, then the name,
    so the choice never depends on the order the index returns them in. The caller
    passes lamps of the frame's night and configuration that are already reduced."""
    t = _seconds(date_obs)
    if not candidates:
        return None
    if t is None:
        return min(candidates, key=lambda c: c["file_name"])

    def distance(c):
        tc = _seconds(c.get("date_obs"))
        return (abs(tc - t) if tc is not None else float("inf"), tc if tc is not None else 0.0, c["file_name"])

    return min(candidates, key=distance)
