"""The caller of a route: who they are (from the authorizer's context and the
directory) and what of the index they may see and do (golive_data/access.py's rules).

A file the caller may not see is left out of every listing and count, and is a 404
when asked for by id, as if it did not exist.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional

from golive_data.access import CALIBRATION_TYPES, Directory, Principal, Resolver, can_read
from golive_data.index import FileIndex, iter_all_files
from golive_data.item import REDUCED_TYPES

from .auth import LEEWAY, Unauthorized

#: how long a night's visible count is kept at most (see Caller.nights)
COUNT_SECONDS = 300.0


class _Counts:
    """Visible-file counts by (proposals, night, its last change, its file count, day),
    each kept COUNT_SECONDS; bounded, so a long-lived process does not grow."""

    def __init__(self, most: int = 4096):
        self.most = most
        self._kept: Dict[Any, Any] = {}

    def get(self, key) -> Optional[int]:
        hit = self._kept.get(key)
        return hit[1] if hit and time.monotonic() - hit[0] < COUNT_SECONDS else None

    def put(self, key, count: int) -> None:
        if len(self._kept) >= self.most:
            self._kept.clear()
        self._kept[key] = (time.monotonic(), count)


_counts = _Counts()


@dataclass
class Caller:
    principal: Principal
    directory: Directory
    proprietary_days: int
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    _resolvers: Dict[str, Resolver] = field(default_factory=dict)

    @classmethod
    def of(cls, request, directory: Directory, settings) -> "Caller":
        """The caller of a request the authorizer let through. The authorizer's answer is
        kept by API Gateway for a while, so the token's expiry is checked again here."""
        context = (request.context or {}).get("authorizer") or {}
        username = context.get("username") or context.get("principalId")
        try:
            expires = float(context.get("exp", 0))
        except (TypeError, ValueError):
            expires = 0
        if not username:
            raise Unauthorized("no user in the authorizer's answer")
        if expires <= time.time() - LEEWAY:
            raise Unauthorized("expired")
        return cls(directory.principal(username), directory, settings.proprietary_days)

    def resolver(self, night: str) -> Resolver:
        if night not in self._resolvers:
            self._resolvers[night] = self.directory.resolver([night])
        return self._resolvers[night]

    def visible_in(self, night: str) -> Callable[[Iterable[Dict[str, Any]]], List[Dict[str, Any]]]:
        """A filter of a night's items (as served: index.public_view): those the caller
        may see, each with the proposal it belongs to and how that was found, and for
        staff, why a frame of no known proposal is theirs alone to see."""
        resolver = self.resolver(night)

        def visible(items: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
            shown = []
            for item in items:
                resolution = resolver.resolve(item)
                if not can_read(self.principal, item, resolution, self.now, self.proprietary_days):
                    continue
                view = {**item, "proposal": resolution.proposal, "proposal_source": resolution.source}
                if resolution.note:
                    view["access_note"] = resolution.note
                shown.append(view)
            return shown

        return visible

    def nights(self, index: FileIndex) -> List[Dict[str, Any]]:
        """The nights as the caller sees them: staff, every file counted; anyone else,
        the files they may see (nights with none left out). Counting means reading a
        night's items, so a count is kept (per warm API process) until its night
        changes, the day turns (the proprietary period moves) or COUNT_SECONDS pass (an
        operator's alias or schedule entry): the page asks every 10 s."""
        nights = index.list_nights()
        if self.principal.staff:
            return nights
        seen = []
        for night in nights:
            key = (self.principal.proposals, night["night"], night.get("updated_at"), night.get("files"),
                   self.now.date())
            count = _counts.get(key)
            if count is None:
                count = len(self.visible_in(night["night"])(iter_all_files(index, night["night"])))
                _counts.put(key, count)
            if count:
                seen.append({**night, "files": count})
        return seen

    def why_not_reduce(self, item: Dict[str, Any]) -> Optional[str]:
        """None if the caller may have a (visible) file reduced again, else why not."""
        if item.get("obstype") not in REDUCED_TYPES:
            return (f"a {item.get('obstype') or 'frame of unknown type'} is not reduced on its own: only lamps (COMP) "
                    "and science frames (OBJECT) are reduced again (bias and flat frames go into masters)")
        if self.principal.staff:
            return None
        if item.get("obstype") in CALIBRATION_TYPES:
            return "calibrations serve every proposal: only staff reduce them again"
        if item.get("proposal") and item["proposal"] in self.principal.proposals:
            return None
        return f"only members of {item.get('proposal') or 'its proposal'} and staff may reduce this frame again"


def reduce_answer(api_version: str, username: str, item: Dict[str, Any], version: int,
                  settings: Dict[str, Any], requested: Dict[str, Any]) -> Dict[str, Any]:
    """The paper's answer to POST /api/files/reduce/, with S3 keys where it has paths:
    what will be reduced, with what, and where the new version will be written."""
    stem = (item.get("path") or item["file_name"]).rsplit(".", 1)[0]
    folder = f"{item['night']}/{stem}/v{version}/"
    report = item.get("reduction") or {}
    calibrations = item.get("calibrations") or {}
    bias = (calibrations.get("master_bias") or {}).get("key")
    flat = (calibrations.get("master_flat") or {}).get("key")
    reduced_name = item.get("reduced_file_name") or (report.get("prefix", "") + item["file_name"])
    return {
        "api_version": api_version, "username": username, "file_id": item["file_id"], "error": "",
        "status": "queued", "version": version, "reduced_file_id": f"{item['file_id']}.v{version}",
        "api_response": {
            "api_version": api_version, "error": "",
            "request_data": {
                "file_full_path": item.get("raw_key"), "reduced_data_path": folder,
                "master_bias_file": bias, "master_flat_file": flat, "technique": item.get("technique"),
                "settings": {**settings, "proposal": item.get("proposal")}, "requested_settings": requested,
            },
            "overscan_region": report.get("overscan_region"), "trim_section": report.get("trim_section"),
            "slit_trim_section": report.get("slit_trim_section"), "master_bias": bias, "master_flat": flat,
            "full_path": folder + reduced_name, "file_name": reduced_name,
        },
    }
