"""What `GET /api/files` is asked, checked before anything reaches the index.

    night=N [type=T] [limit=L] [next=TOKEN]   a page of the night's files (of one type)
    night=N [type=T] [limit=L] since=CURSOR   the night's files (of one type) changed after CURSOR

`since` follows changes and `next` pages a listing: the two do not combine.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from golive_data.index import BadRequest, check_cursor, file_type

MAX_PAGE = 500
_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}|unsorted")
DEFAULT_PAGE = 100


def check_night(night: str) -> str:
    if not _NIGHT.fullmatch(night or ""):
        raise BadRequest("night must be YYYY-MM-DD (or 'unsorted'), as /api/nights lists them")
    return night


@dataclass(frozen=True)
class FilesQuery:
    night: str
    obstype: Optional[str] = None     # one of index.FILE_TYPES, or None for all
    limit: int = DEFAULT_PAGE
    next: Optional[str] = None        # a page token, as the client sent it
    since: Optional[str] = None       # a change cursor; None: a listing, not changes

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> "FilesQuery":
        night = params.get("night")
        if not night:
            raise BadRequest("the 'night' query parameter is required (see /api/nights)")
        check_night(night)
        try:
            limit = int(params.get("limit", DEFAULT_PAGE))
        except ValueError:
            raise BadRequest("limit must be a whole number")
        if not 1 <= limit <= MAX_PAGE:
            raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
        obstype = file_type(params["type"]) if params.get("type") else None
        since = check_cursor(params["since"]) if "since" in params else None
        if since is not None and params.get("next"):
            raise BadRequest("since and next cannot be combined: follow changes with since=<the cursor "
                             "returned>, page a listing with next=<the token returned>")
        return cls(night=night, obstype=obstype, limit=limit, next=params.get("next") or None, since=since)

    def scope(self) -> dict:
        """The listing a page token of this query belongs to."""
        return {"night": self.night, "type": self.obstype or ""}
