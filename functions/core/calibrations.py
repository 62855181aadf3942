"""Which master calibrations a frame belongs to, and which one to use.

Pure functions of a frame's classification: the index query that finds candidates
lives in the adapter, the choice lives here, so it can be tested without storage.

Groups follow goodman-pipeline's own rules: a master bias serves one camera,
binning and readout mode (gain and read noise: 'RED_SP_2x2_R03.89_G01.48' in its
file names); a master flat serves one camera and configuration (which includes the
binning, grating angles, blocking filter, slit and ROI).
"""
from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any, Dict, Iterable, List, Mapping, Optional

BIAS, FLAT = "BIAS", "FLAT"
REDUCED_TYPES = ("COMP", "OBJECT")


def reason_not_reducible(info: Mapping[str, Any]) -> Optional[str]:
    """None if the reduction can handle the frame, else why not (for the file's status)."""
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
    return f"{info['camera']}_SP_{info['binning']}_R{float(info['rdnoise']):05.2f}_G{float(info['gain']):05.2f}"


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
