"""A frame's proposal settings, for the reductions the functions run on their own.

A PI sets the reduction settings of their proposal (PUT /api/proposals/{id}/settings);
every automatic reduction of its frames uses them. The frame's proposal is resolved as
the API resolves it (golive_data/access.py: header, aliases, schedule). The answers are
kept for a short while per warm worker, so a night's frames cost a few reads, not a few
per frame, and a change of settings applies within SETTLE_SECONDS.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional, Tuple

from golive_data.access import Directory
from golive_data.versions import store_of

SETTLE_SECONDS = 30.0
_cache: Dict[Tuple[str, ...], Tuple[float, Any]] = {}
_lock = threading.Lock()


def _cached(key: Tuple[str, ...], load):
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < SETTLE_SECONDS:
            return hit[1]
    value = load()
    with _lock:
        _cache[key] = (now, value)
    return value


def proposal_settings(item: Dict[str, Any], services) -> Dict[str, Any]:
    """The overrides of the proposal `item` belongs to ({} for calibrations, frames of no
    known proposal, and proposals without settings)."""
    directory = Directory(*store_of(services.index))
    night = item.get("night") or ""
    resolver = _cached(("resolver", services.settings.index_table, night), lambda: directory.resolver([night]))
    proposal: Optional[str] = resolver.resolve(item).proposal
    if not proposal:
        return {}
    return _cached(("settings", services.settings.index_table, proposal), lambda: directory.settings(proposal))


def forget() -> None:
    """Drop what is kept (tests that change settings and want them at once)."""
    with _lock:
        _cache.clear()
