"""Who may see what: proposals, their members, and which proposal a frame belongs to.

Identity comes from Cognito (the API verifies the token: functions/api/chalicelib/auth.py);
everything else is here, in the index table, so a PI's change of members takes effect on
the next request and the same rules serve the API, the admin CLI and the workers.

  user        pk=USERS                sk=<username>          {username, staff}
  membership  pk=USER#<username>      sk=MEMBER#<proposal>   {proposal, username, role}
              pk=PROPOSAL#<proposal>  sk=MEMBER#<username>   the same, seen from the proposal
  proposal    pk=PROPOSALS            sk=<proposal>          {proposal, title, settings}
  alias       pk=ALIASES              sk=<normalised alias>  {alias, proposal}
  schedule    pk=SCHEDULE             sk=<night>#<start>#<proposal>  {night, start, end, proposal}

None of these carries the night listings' attributes, so no listing shows them.

A frame's proposal is read from its PROPOSAL header, which real files spell many ways
(`SO2017A-016`, `S02016B-104` with a zero for the O, `N188 - Hermes` and `N188 Hermes` on
consecutive nights, empty): it is normalised, looked up in the operator's alias table, and
where it is empty the operator's schedule (proposal by night and UT range) decides. It is
resolved when read, not when indexed, so an alias or a schedule entry added after the night
applies at once to every frame it covers.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

from .index import _decode, _encode, query_partition, utcnow

#: Frames every signed-in user may see: calibrations are the observatory's, not a proposal's.
CALIBRATION_TYPES = frozenset({"BIAS", "FLAT", "COMP", "DARK", "MASTER_BIAS", "MASTER_FLAT"})
ROLE_PI = "pi"
ROLE_OBSERVER = "observer"
ROLES = (ROLE_OBSERVER, ROLE_PI)
DEFAULT_PROPRIETARY_DAYS = 365

_USER, _PROPOSAL, _MEMBER = "USER#", "PROPOSAL#", "MEMBER#"
ALIASES_PK, SCHEDULE_PK, USERS_PK, PROPOSALS_PK = "ALIASES", "SCHEDULE", "USERS", "PROPOSALS"
_BLANK = {"", "NONE", "N-A", "NA", "NULL", "UNKNOWN", "-"}
_SEPARATORS = re.compile(r"[\s_\-./]+")
_ZERO_FOR_O = re.compile(r"^S0(\d{4}[AB]-)")        # S02016B-104 -> SO2016B-104
_USERNAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
_PROPOSAL_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{0,63}")
_NIGHT = re.compile(r"\d{4}-\d{2}-\d{2}")


class AccessError(ValueError):
    """A request about users or proposals that cannot be done as asked; the message says why."""


def normalise_proposal(raw: Any) -> Optional[str]:
    """The canonical spelling of a proposal id, or None for none: upper case, any run of
    spaces, dashes, dots or underscores as one dash, a zero written for the O of `SO`
    corrected."""
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", str(raw)).strip().upper()
    text = _SEPARATORS.sub("-", text).strip("-")
    if text in _BLANK:
        return None
    return _ZERO_FOR_O.sub(r"SO\1", text)


def proposal_id(raw: Any) -> str:
    """A proposal id an operator or a PI names, normalised; AccessError if it cannot be one."""
    pid = normalise_proposal(raw)
    if not pid or not _PROPOSAL_ID.fullmatch(pid):
        raise AccessError(f"not a proposal id: {raw!r} (letters, digits and dashes, e.g. SO2024A-001)")
    return pid


def check_username(username: Any) -> str:
    if not isinstance(username, str) or not _USERNAME.fullmatch(username):
        raise AccessError(f"not a username: {username!r} (letters, digits and _.@+-, at most 128)")
    return username


def _parse_utc(text: Any) -> Optional[datetime]:
    """DATE-OBS or a schedule bound as a UTC datetime (naive ISO is UTC), else None."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def schedule_bound(night: str, when: str) -> str:
    """A schedule entry's start or end as an ISO UTC time: a full ISO time as given, or a
    UT clock time `HH:MM` of the night (from noon on: the night's date; before: the next
    day, since a night runs across 0 UT)."""
    if not _NIGHT.fullmatch(night or ""):
        raise AccessError(f"night must be YYYY-MM-DD, got {night!r}")
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", when.strip())
    if clock:
        hour, minute = int(clock.group(1)), int(clock.group(2))
        if hour > 23 or minute > 59:
            raise AccessError(f"not a UT time: {when!r}")
        day = datetime.strptime(night, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        if hour < 12:
            day += timedelta(days=1)
        return day.replace(hour=hour, minute=minute).strftime("%Y-%m-%dT%H:%M:%S")
    parsed = _parse_utc(when)
    if parsed is None:
        raise AccessError(f"not a UT time: {when!r} (HH:MM or YYYY-MM-DDTHH:MM:SS)")
    return parsed.strftime("%Y-%m-%dT%H:%M:%S")


# ---- which proposal a frame belongs to ------------------------------------------------
@dataclass(frozen=True)
class Resolution:
    """A frame's proposal (None: a calibration, or unknown) and how it was found."""
    proposal: Optional[str]
    source: str           # calibration, header, alias, schedule, unknown
    note: str = ""        # for the page: why the frame is visible to staff only


@dataclass(frozen=True)
class Resolver:
    """The operator's alias table and schedule, loaded once per request."""
    aliases: Mapping[str, str] = field(default_factory=dict)
    schedule: Sequence[Mapping[str, str]] = ()

    def resolve(self, item: Mapping[str, Any]) -> Resolution:
        if item.get("obstype") in CALIBRATION_TYPES:
            return Resolution(None, "calibration")
        header = normalise_proposal(item.get("proposal_header"))
        if header:
            if header in self.aliases:
                return Resolution(self.aliases[header], "alias")
            return Resolution(header, "header")
        when = _parse_utc(item.get("date_obs"))
        if when is not None:
            for entry in self.schedule:
                start, end = _parse_utc(entry.get("start")), _parse_utc(entry.get("end"))
                if start and end and start <= when < end:
                    return Resolution(entry["proposal"], "schedule")
        why = ("its PROPOSAL header is empty and no schedule entry covers its DATE-OBS "
               f"({item.get('date_obs') or 'missing'})")
        return Resolution(None, "unknown", f"proposal unknown: {why}; visible to staff only until an operator "
                                           "adds it to the schedule (python -m infra.admin schedule add)")


# ---- who is asking ---------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    username: str
    staff: bool = False
    proposals: FrozenSet[str] = frozenset()    # member of, as observer or PI
    pi_of: FrozenSet[str] = frozenset()

    def public(self) -> Dict[str, Any]:
        return {"username": self.username, "staff": self.staff, "proposals": sorted(self.proposals),
                "pi_of": sorted(self.pi_of),
                "role": "staff" if self.staff else "pi" if self.pi_of else "observer" if self.proposals else "user"}

    def may_manage(self, proposal: str) -> bool:
        """Settings and collaborators of a proposal: its PIs and staff."""
        return self.staff or proposal in self.pi_of


def released(date_obs: Any, now: datetime, proprietary_days: int) -> bool:
    """Whether a frame's proprietary period (from DATE-OBS) is over; never without a DATE-OBS."""
    when = _parse_utc(date_obs)
    return when is not None and now - when >= timedelta(days=proprietary_days)


def can_read(principal: Principal, item: Mapping[str, Any], resolution: Resolution, now: datetime,
             proprietary_days: int = DEFAULT_PROPRIETARY_DAYS) -> bool:
    """Calibrations: everyone signed in. A proposal's frames (and what was made from
    them): its members and staff, and everyone once the proprietary period is over.
    A frame of no known proposal: staff only."""
    if principal.staff or resolution.source == "calibration":
        return True
    if resolution.proposal is None:
        return False
    return resolution.proposal in principal.proposals or released(item.get("date_obs"), now, proprietary_days)


# ---- the directory in the index table --------------------------------------------------
class Directory:
    def __init__(self, client, table: str):
        self._db = client
        self._table = table

    # reads
    def _query(self, pk: str, prefix: str = "") -> List[Dict[str, Any]]:
        return query_partition(self._db, self._table, pk, prefix)

    def _get(self, pk: str, sk: str) -> Optional[Dict[str, Any]]:
        resp = self._db.get_item(TableName=self._table, Key=_encode({"pk": pk, "sk": sk}), ConsistentRead=True)
        return _decode(resp["Item"]) if "Item" in resp else None

    def principal(self, username: str) -> Principal:
        """Who `username` is here; a user the directory does not know is a plain user
        (calibrations only)."""
        user = self.get_user(username) or {}
        proposals, pi_of = set(), set()
        for entry in self._query(_USER + username, _MEMBER):
            proposals.add(entry["proposal"])
            if entry.get("role") == ROLE_PI:
                pi_of.add(entry["proposal"])
        return Principal(username, bool(user.get("staff")), frozenset(proposals), frozenset(pi_of))

    def get_user(self, username: str) -> Optional[Dict[str, Any]]:
        entry = self._get(USERS_PK, username)
        return _strip(entry) if entry else None

    def users(self) -> List[Dict[str, Any]]:
        return [_strip(e) for e in self._query(USERS_PK)]

    def get_proposal(self, proposal: str) -> Optional[Dict[str, Any]]:
        entry = self._get(PROPOSALS_PK, proposal)
        return _strip(entry) if entry else None

    def proposals(self) -> List[Dict[str, Any]]:
        return [_strip(e) for e in self._query(PROPOSALS_PK)]

    def members(self, proposal: str) -> List[Dict[str, Any]]:
        return [{"username": e["username"], "role": e.get("role", ROLE_OBSERVER)}
                for e in self._query(_PROPOSAL + proposal, _MEMBER)]

    def settings(self, proposal: Optional[str]) -> Dict[str, Any]:
        """The proposal's reduction settings (overrides of the deployment's), {} for none."""
        entry = self.get_proposal(proposal) if proposal else None
        return dict((entry or {}).get("settings") or {})

    def aliases(self) -> Dict[str, str]:
        return {e["sk"]: e["proposal"] for e in self._query(ALIASES_PK)}

    def schedule(self, nights: Iterable[str] = ()) -> List[Dict[str, Any]]:
        """Schedule entries of these nights (and of the night before each, whose UT range
        can run into it), or all of them."""
        nights = sorted(set(nights))
        if not nights:
            return [_strip(e) for e in self._query(SCHEDULE_PK)]
        wanted = set(nights) | {_night_before(n) for n in nights if _NIGHT.fullmatch(n)}
        entries: List[Dict[str, Any]] = []
        for night in sorted(wanted):
            entries += [_strip(e) for e in self._query(SCHEDULE_PK, night + "#")]
        return entries

    def resolver(self, nights: Iterable[str] = ()) -> Resolver:
        return Resolver(self.aliases(), tuple(self.schedule(nights)))

    # writes
    def put_user(self, username: str, staff: bool = False) -> None:
        check_username(username)
        self._db.put_item(TableName=self._table, Item=_encode(
            {"pk": USERS_PK, "sk": username, "username": username, "staff": bool(staff), "updated_at": utcnow()}))

    def delete_user(self, username: str) -> None:
        for entry in self._query(_USER + username, _MEMBER):
            self.remove_member(entry["proposal"], username)
        self._db.delete_item(TableName=self._table, Key=_encode({"pk": USERS_PK, "sk": username}))

    def put_proposal(self, proposal: str, title: Optional[str] = None) -> str:
        pid = proposal_id(proposal)
        existing = self.get_proposal(pid) or {}
        self._db.put_item(TableName=self._table, Item=_encode({
            **{k: v for k, v in existing.items() if k in ("title", "settings", "created_at")},
            "pk": PROPOSALS_PK, "sk": pid, "proposal": pid,
            "title": title if title is not None else existing.get("title"),
            "created_at": existing.get("created_at") or utcnow(), "updated_at": utcnow()}))
        return pid

    def set_settings(self, proposal: str, settings: Mapping[str, Any]) -> None:
        self._db.update_item(
            TableName=self._table, Key=_encode({"pk": PROPOSALS_PK, "sk": proposal}),
            UpdateExpression="SET settings = :s, updated_at = :u", ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=_encode({":s": dict(settings), ":u": utcnow()}))

    def add_member(self, proposal: str, username: str, role: str = ROLE_OBSERVER) -> None:
        check_username(username)
        if role not in ROLES:
            raise AccessError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if self.get_proposal(proposal) is None:
            raise AccessError(f"no proposal {proposal}: create it first")
        entry = {"proposal": proposal, "username": username, "role": role, "updated_at": utcnow()}
        self._db.transact_write_items(TransactItems=[
            {"Put": {"TableName": self._table, "Item": _encode({"pk": _PROPOSAL + proposal, "sk": _MEMBER + username,
                                                                  **entry})}},
            {"Put": {"TableName": self._table, "Item": _encode({"pk": _USER + username, "sk": _MEMBER + proposal,
                                                                  **entry})}},
        ])

    def remove_member(self, proposal: str, username: str) -> bool:
        """False if `username` was not a member."""
        if self._get(_PROPOSAL + proposal, _MEMBER + username) is None:
            return False
        self._db.transact_write_items(TransactItems=[
            {"Delete": {"TableName": self._table, "Key": _encode({"pk": _PROPOSAL + proposal, "sk": _MEMBER + username})}},
            {"Delete": {"TableName": self._table, "Key": _encode({"pk": _USER + username, "sk": _MEMBER + proposal})}},
        ])
        return True

    def set_alias(self, alias: str, proposal: str) -> str:
        key = normalise_proposal(alias)
        if not key:
            raise AccessError(f"an alias must name something: {alias!r}")
        self._db.put_item(TableName=self._table, Item=_encode(
            {"pk": ALIASES_PK, "sk": key, "alias": alias, "proposal": proposal_id(proposal), "updated_at": utcnow()}))
        return key

    def remove_alias(self, alias: str) -> None:
        self._db.delete_item(TableName=self._table, Key=_encode({"pk": ALIASES_PK, "sk": normalise_proposal(alias) or ""}))

    def add_schedule(self, night: str, start: str, end: str, proposal: str) -> Dict[str, str]:
        entry = {"night": night, "start": schedule_bound(night, start), "end": schedule_bound(night, end),
                 "proposal": proposal_id(proposal)}
        if entry["end"] <= entry["start"]:
            raise AccessError(f"the schedule entry ends ({entry['end']}) before it starts ({entry['start']})")
        self._db.put_item(TableName=self._table, Item=_encode(
            {"pk": SCHEDULE_PK, "sk": f"{night}#{entry['start']}#{entry['proposal']}", **entry, "updated_at": utcnow()}))
        return entry

    def remove_schedule(self, night: str, start: str, proposal: str) -> None:
        sk = f"{night}#{schedule_bound(night, start)}#{proposal_id(proposal)}"
        self._db.delete_item(TableName=self._table, Key=_encode({"pk": SCHEDULE_PK, "sk": sk}))


def _strip(entry: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("pk", "sk")}


def _night_before(night: str) -> str:
    return (datetime.strptime(night, "%Y-%m-%d") - timedelta(days=1)).strftime("%Y-%m-%d")
