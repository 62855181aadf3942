"""Which observing night a frame belongs to.

A night is named by the local date on which it begins. At SOAR (UTC-3/-4) the day
turns over at local noon, 16:00 UTC at the latest: afternoon calibrations, the night
and next morning's calibrations all fall on one night.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

NIGHT_ROLLOVER_UTC = timedelta(hours=16)


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
