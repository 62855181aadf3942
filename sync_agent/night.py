"""Which observing night a frame belongs to, and the object key it goes under.

A night is named by the local date on which it begins. At SOAR (UTC-3/-4) the day
turns over at local noon, 16:00 UTC at the latest: afternoon calibrations, the night
and next morning's calibrations all fall on one night.

Observers and pipelines already name their folders by night (2018-02-04, 20180203,
jsreding_930_20180203, /pipeline/data/20200131/RAW): where a file sits in such a
folder, the folder is the truth about its night, even when a clock or a header is
off. Only a file outside every dated folder is placed by its DATE-OBS. Everything
below the dated folder stays in the key, so two folders cannot write the same object.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Optional, Tuple

NIGHT_ROLLOVER_UTC = timedelta(hours=16)
YEARS = (1990, 2100)
# Four digits, month, day, with one separator (or none) used twice; the date must be a
# token of its own: no letter or digit right before or after it, so "0267" or the
# middle of "1201802031" is never read as a date, and neither is "v20180203b".
_DATE = re.compile(r"(?<![0-9A-Za-z])(\d{4})([-_.]?)(\d{2})\2(\d{2})(?![0-9A-Za-z])")


def night_of(date_obs: Optional[str], fallback_epoch: float) -> str:
    when = None
    if date_obs:
        try:
            when = datetime.fromisoformat(date_obs.strip().replace("Z", "")).replace(tzinfo=timezone.utc)
        except ValueError:
            when = None
    if when is None:
        when = datetime.fromtimestamp(fallback_epoch, tz=timezone.utc)
    return (when - NIGHT_ROLLOVER_UTC).date().isoformat()


def night_in_name(name: str) -> Optional[str]:
    """The night a folder's name gives (YYYY-MM-DD), or None. A name that holds two
    different dates says nothing for sure and gives None."""
    found = set()
    for match in _DATE.finditer(name):
        year, _, month, day = match.groups()
        if not YEARS[0] <= int(year) <= YEARS[1]:
            continue
        try:
            found.add(date(int(year), int(month), int(day)).isoformat())
        except ValueError:          # 2018-02-30, month 13: not a date
            continue
    return found.pop() if len(found) == 1 else None


def night_from_folders(relpath: str, root_name: str = "") -> Optional[Tuple[str, str]]:
    """(night, the path below the dated folder) from the nearest enclosing folder of
    `relpath` (posix, relative to the watch root) whose name is a date, the watch
    root's own name last; None when no folder is dated."""
    parts = relpath.split("/")
    for i in range(len(parts) - 2, -1, -1):
        night = night_in_name(parts[i])
        if night:
            return night, "/".join(parts[i + 1:])
    night = night_in_name(root_name) if root_name else None
    return (night, relpath) if night else None


def object_key(prefix: str, relpath: str, root_name: str, date_obs: Optional[str], fallback_epoch: float) -> str:
    """`{prefix}{night}/{rest}`: the night and rest from a dated folder, else the night
    from DATE-OBS (or the file's mtime) and the whole relative path as rest."""
    found = night_from_folders(relpath, root_name)
    night, rest = found if found else (night_of(date_obs, fallback_epoch), relpath)
    return f"{prefix}{night}/{rest}"


def read_date_obs(path: str) -> Optional[str]:
    """DATE-OBS from the primary header, read with the standard library."""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(2880)
            if len(block) < 2880:
                return None
            for i in range(0, 2880, 80):
                card = block[i:i + 80].decode("ascii", "replace")
                if card.startswith("DATE-OBS="):
                    return card[10:].split("/", 1)[0].strip().strip("'").strip()
                if card.startswith("END     "):
                    return None
