"""Who may read and change what, over HTTP against the running system: every principal
(anonymous, an observer of proposal A, one of B, A's PI, staff, a signed-in user of no
proposal, and every kind of bad token) against every route and every kind of frame.

The rules are written here a second time, on their own (`visible`, `reduce_status`,
...), from the paper's access model: calibrations are every signed-in user's; a
proposal's frames are its members' and staff's, and everyone's once the proprietary
period is over; a frame of unknown proposal is staff's alone; whatever a caller may not
see is a 404, as if it did not exist, and is left out of every listing, count and
change feed. Each request's status is compared with the rule's, listings with the
exact set the rule allows, and each write refused is checked not to have happened.

The frames are real FITS files (the red comp fixture with OBSTYPE, PROPOSAL and
DATE-OBS rewritten) uploaded to a night of this module's own and indexed by the ingest;
the master bias is a master entry written as the reduction writes one.
"""
from __future__ import annotations

import base64
import io
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, FrozenSet, List, Optional

import pytest
import requests
from astropy.io import fits

from golive_data.access import Directory
from golive_data.index import FileIndex, file_id_for
from infra import definition as stackdef
from infra.accounts import sign_in
from tests.conftest import FIXTURES, new_user

# ---- the world: two proposals, their people, a night of frames --------------------------
TAG = secrets.token_hex(3).upper()
A, B = f"SO2098A-{TAG}1", f"SO2098B-{TAG}2"
NIGHT = f"2091-{secrets.randbelow(12) + 1:02d}-{secrets.randbelow(28) + 1:02d}"  # no other test's year
NOW = datetime.now(timezone.utc).replace(microsecond=0)
T = NOW - timedelta(days=2)          # the night's frames: well inside the proprietary period
OLD = NOW - timedelta(days=400)      # past it (365 days)
CALIBRATION = "calibration"


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000")


@dataclass(frozen=True)
class Frame:
    """A frame of the night, and what it belongs to as the rules say (not as the API does)."""
    name: str
    obstype: str
    header: str            # PROPOSAL as written in the file
    date_obs: datetime
    proposal: Optional[str]  # A, B, None (unknown) or CALIBRATION
    source: str            # how the API must say it found the proposal
    written_as: str = ""   # OBSTYPE as written in the file, where it is not `obstype`

    @property
    def released(self) -> bool:
        return NOW - self.date_obs >= timedelta(days=365)


FRAMES = [
    Frame("0001_a_recent.fits", "OBJECT", A, T, A, "header"),
    Frame("0002_b_recent.fits", "OBJECT", f"S02098B-{TAG}2", T + timedelta(minutes=10), B, "header"),  # 0 for O
    Frame("0003_a_old.fits", "OBJECT", f"so2098a {TAG.lower()}1", OLD, A, "header"),
    Frame("0004_comp.fits", "COMP", A, T - timedelta(hours=1), CALIBRATION, "calibration"),
    Frame("0005_unknown.fits", "OBJECT", "", T + timedelta(hours=3), None, "unknown"),
    Frame("0006_scheduled_a.fits", "OBJECT", "", T + timedelta(hours=1), A, "schedule"),
    Frame("0007_alias_a.fits", "OBJECT", f"Team {TAG} Alpha", T + timedelta(minutes=20), A, "alias"),
    Frame("0008_focus_b.fits", "FOCUS", B, T + timedelta(hours=4), B, "header"),
    Frame("0009_unknown_type_a.fits", "UNKNOWN", A, T + timedelta(hours=5), A, "header", written_as="TWILIGHT"),
]
MASTER = Frame("zz_master_bias.fits", "MASTER_BIAS", "", T, CALIBRATION, "calibration")
ALL_FRAMES = FRAMES + [MASTER]
#: a schedule entry of the night for A that covers 0006 (T+1h) and not 0005 (T+3h)
SCHEDULE = (T + timedelta(minutes=30), T + timedelta(hours=2))


@dataclass
class Principal:
    name: str
    headers: Dict[str, str]
    username: Optional[str] = None     # None: the API must answer 401 wherever a token is needed
    staff: bool = False
    member_of: FrozenSet[str] = frozenset()
    pi_of: FrozenSet[str] = frozenset()

    @property
    def signed_in(self) -> bool:
        return self.username is not None


# ---- the rules, written independently of the API ----------------------------------------
def visible(p: Principal, f: Frame) -> bool:
    if p.staff or f.proposal == CALIBRATION:
        return True
    if f.proposal is None:
        return False
    return f.proposal in p.member_of or f.released


#: what is reduced on its own, and so reduced again on request (masters, focus frames ... are not)
REDUCED_ALONE = {"COMP", "OBJECT"}


def reduce_status(p: Principal, f: Frame) -> int:
    if not p.signed_in:
        return 401
    if not visible(p, f):
        return 404
    if f.obstype not in REDUCED_ALONE:
        return 403
    if p.staff:
        return 202
    if f.proposal == CALIBRATION:
        return 403
    return 202 if f.proposal in p.member_of else 403


def manage_status(p: Principal, proposal: str) -> int:
    """Read or replace a proposal's settings; add or remove an observer."""
    if not p.signed_in:
        return 401
    if p.staff:
        return 200
    if proposal not in p.member_of:
        return 404
    return 200 if proposal in p.pi_of else 403


def members_read_status(p: Principal, proposal: str) -> int:
    if not p.signed_in:
        return 401
    return 200 if p.staff or proposal in p.member_of else 404


def pi_change_status(p: Principal, proposal: str) -> int:
    """Add or remove a PI: staff only (a PI may not, and a non-member gets 404)."""
    status = manage_status(p, proposal)
    return 403 if status == 200 and not p.staff else status


# ---- bookkeeping --------------------------------------------------------------------------
class Tally:
    """Every comparison made, the wrong ones, and among them the leaks: something read or
    changed that the rules refuse."""

    def __init__(self, title: str):
        self.title = title
        self.checks = 0
        self.wrong: List[str] = []
        self.leaks: List[str] = []

    def status(self, what: str, resp: requests.Response, expected: int) -> bool:
        self.checks += 1
        if resp.status_code != expected:
            line = f"{what}: {resp.status_code} (expected {expected}) {resp.text[:160]}"
            self.wrong.append(line)
            if resp.status_code < 300 <= expected:
                self.leaks.append(line)
        return resp.status_code == expected

    def same(self, what: str, got, expected, leak=None) -> None:
        self.checks += 1
        if got != expected:
            line = f"{what}: got {got!r}, expected {expected!r}"
            self.wrong.append(line)
            if leak is not None and leak(got, expected):
                self.leaks.append(line)

    def done(self) -> None:
        print(f"\n{self.title}: {self.checks} checks, {len(self.wrong)} wrong, "
              f"{len(self.leaks)} refused reads/writes that went through")
        assert not self.leaks, "refused and yet done:\n" + "\n".join(self.leaks)
        assert not self.wrong, "\n".join(self.wrong)


def _more_than_allowed(got, expected) -> bool:
    return bool(set(got) - set(expected)) if isinstance(got, (set, frozenset)) else False


# ---- tokens ---------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims(token: str) -> Dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _moto_signed(claims: Dict[str, Any]) -> str:
    """A token signed as moto's Cognito signs every pool's tokens (one fixed key)."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey
    from moto.utilities.utils import load_resource

    key = RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    return jwt.encode({"kid": "dummy", "alg": "RS256"}, claims, key)


def _bearer(token: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _other_pool_token(system, username: str) -> str:
    """An access token of another user pool (same moto, same signing key), for a user
    of the same name as one of ours."""
    cognito = system.stack.client("cognito-idp")
    d = dict(system.stack.definition)
    d["user_pool"] = {**d["user_pool"], "name": f"other-pool-{TAG}", "client_name": f"other-client-{TAG}"}
    pool = cognito.create_user_pool(**stackdef.user_pool_kwargs(d))["UserPool"]["Id"]
    client = cognito.create_user_pool_client(UserPoolId=pool, **stackdef.user_pool_client_kwargs(d))
    password = secrets.token_urlsafe(18) + "a1"
    cognito.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
    result = sign_in(system.stack.endpoint_url, system.stack.region, client["UserPoolClient"]["ClientId"],
                     username, password)
    return result["AccessToken"]


# ---- the world, built once ----------------------------------------------------------------
@dataclass
class World:
    url: str
    index: FileIndex
    directory: Directory
    principals: List[Principal]
    ids: Dict[str, str]                   # frame name -> file_id
    victim: str                           # an observer of A that writes remove and restore
    outsider: str                         # a user of no proposal that writes add and remove

    def call(self, method: str, path: str, p: Principal, **kwargs) -> requests.Response:
        # A connection per request: on a kept-alive one the local server's two writes per
        # answer (headers, then body) meet Nagle and the client's delayed ACK, 40 ms each.
        return requests.request(method, self.url + path, headers=p.headers, timeout=20, **kwargs)

    def members(self, proposal: str) -> set:
        """Who the world made members of a proposal."""
        people = {q.username for q in self.principals if q.username and proposal in q.member_of}
        return people | ({self.victim} if proposal == A else set())

    def frame(self, file_id: str) -> Frame:
        return next(f for f in ALL_FRAMES if self.ids[f.name] == file_id)


def goodman_frame(obstype: str, proposal: str, date_obs: datetime) -> bytes:
    """A real Goodman file (the 10x10 red comp fixture) with OBSTYPE, PROPOSAL and
    DATE-OBS rewritten: indexed as such, and unsupported by the reduction in a moment."""
    with fits.open(FIXTURES / "real" / "goodman_red_comp.fits") as hdul:
        hdul[0].header["OBSTYPE"] = obstype
        hdul[0].header["PROPOSAL"] = proposal
        hdul[0].header["DATE-OBS"] = _iso(date_obs)
        hdul[0].header["DATE"] = date_obs.strftime("%Y-%m-%d")
        buf = io.BytesIO()
        hdul.writeto(buf)
    return buf.getvalue()


def _upload(system, s3, frame: Frame) -> str:
    key = f"{system.raw_prefix}{NIGHT}/{frame.name}"
    body = goodman_frame(frame.written_as or frame.obstype, frame.header, frame.date_obs)
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=body)
    return file_id_for(system.raw_bucket, key)


def _master_entry(system, s3, index: FileIndex) -> str:
    """A master bias listed beside the night's files, as functions/reduction.py lists one."""
    bucket = system.stack.definition["products_bucket"]["name"]
    key = f"{NIGHT}/masters/{TAG}_MasterBias.fits"
    s3.put_object(Bucket=bucket, Key=key, Body=b"a master bias" * 10)
    file_id = file_id_for(bucket, key)
    index.record_file({
        "file_id": file_id, "night": NIGHT, "file_name": MASTER.name, "obstype": "MASTER_BIAS", "status": "reduced",
        "object": "5 bias frames", "date_obs": _iso(MASTER.date_obs), "raw_bucket": bucket, "raw_key": key,
        "products": [{"kind": "master", "file_name": MASTER.name, "bucket": bucket, "key": key,
                      "content_type": "application/fits"}]})
    return file_id


@pytest.fixture(scope="module")
def world(system, s3, api) -> World:
    table = system.stack.definition["index_table"]["name"]
    index = FileIndex(system.stack.client("dynamodb"), table)
    directory = Directory(system.stack.client("dynamodb"), table)
    observer_a = new_user(system, "obs-a", proposals=[A])
    observer_b = new_user(system, "obs-b", proposals=[B])
    pi_a = new_user(system, "pi-a", pi_of=[A])
    staff = new_user(system, "staff", staff=True)
    plain = new_user(system, "plain")
    victim = new_user(system, "victim", proposals=[A])
    outsider = new_user(system, "outsider")
    directory.set_alias(f"team {TAG.lower()} alpha", A)
    directory.add_schedule(NIGHT, _iso(SCHEDULE[0]), _iso(SCHEDULE[1]), A)

    ids = {f.name: _upload(system, s3, f) for f in FRAMES}
    ids[MASTER.name] = _master_entry(system, s3, index)
    for f in FRAMES:
        api.wait_for(ids[f.name])
    system.wait_idle(30)

    def session(name, spec, **rights) -> Principal:
        return Principal(name, system.signed_in(spec.username, spec.password).headers(), spec.username, **rights)

    a_rights = dict(member_of=frozenset({A}))
    of_a = session("observer of A", observer_a, **a_rights)
    principals = [
        Principal("anonymous", {}),
        of_a,
        session("observer of B", observer_b, member_of=frozenset({B})),
        session("PI of A", pi_a, member_of=frozenset({A}), pi_of=frozenset({A})),
        session("staff", staff, staff=True),
        session("user of no proposal", plain),
    ]

    # the ID token instead of the access token: the same user
    id_token = sign_in(system.stack.endpoint_url, system.stack.region, system.stack.user_pool_client_id,
                       observer_a.username, observer_a.password)["IdToken"]
    principals.append(Principal("observer of A, ID token", _bearer(id_token), observer_a.username, **a_rights))

    # Tokens that must be refused. The access token of A's observer, forged again with the
    # key moto signs with: with `exp` in the future it is accepted (the control: the forgery
    # is a valid token), with `exp` past it must not be, so expiry itself is checked.
    real = of_a.headers["Authorization"].split(" ", 1)[1]
    claims = _claims(real)
    head, body, signature = real.split(".")
    control = _moto_signed({**claims, "iat": int(time.time()) - 60, "exp": int(time.time()) + 600})
    principals.append(Principal("observer of A, re-signed here (control)", _bearer(control), observer_a.username,
                                **a_rights))
    expired = _moto_signed({**claims, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600})
    as_staff = _b64(json.dumps({**claims, "username": staff.username}).encode())
    flipped = signature[:20] + ("A" if signature[20] != "A" else "B") + signature[21:]
    alg_none = ".".join([_b64(b'{"alg":"none","typ":"JWT"}'), as_staff, ""])
    principals += [
        Principal("expired (signed with the pool's key)", _bearer(expired)),
        Principal("signature edited", _bearer(f"{head}.{body}.{flipped}")),
        Principal("payload edited (username -> staff)", _bearer(f"{head}.{as_staff}.{signature}")),
        Principal("alg none (username -> staff)", _bearer(alg_none)),
        Principal("another pool's token (a user named as our staff)",
                  _bearer(_other_pool_token(system, staff.username))),
        Principal("garbage", {"Authorization": "Bearer garbage.garbage"}),
        Principal("not a bearer token", {"Authorization": "Basic " + base64.b64encode(b"staff:password").decode()}),
    ]
    return World(system.url, index, directory, principals, ids, victim.username, outsider.username)


# ---- reads -------------------------------------------------------------------------------
def _names(w: World, resp: requests.Response) -> set:
    """The frames of a listing, by name (any other file of the night by its id)."""
    names = {file_id: name for name, file_id in w.ids.items()}
    return {names.get(f["file_id"], f["file_id"]) for f in resp.json()["files"]}


def _pages(w: World, p: Principal, **params) -> Optional[set]:
    """Every page of a listing; None (and the status tallied by the caller) if refused."""
    seen, token = set(), None
    while True:
        resp = w.call("GET", "/api/files", p, params={**params, **({"next": token} if token else {})})
        if resp.status_code != 200:
            return None
        seen |= _names(w, resp)
        token = resp.json().get("next")
        if not token:
            return seen


def test_reads(world, system):
    w, tally = world, Tally("reads")
    nonexistent = "0123456789abcdef"
    for p in w.principals:
        ok = 200 if p.signed_in else 401
        # open to anyone, whatever the token
        tally.status(f"{p.name} GET /api/health", w.call("GET", "/api/health", p), 200)
        tally.status(f"{p.name} GET /api/auth/config", w.call("GET", "/api/auth/config", p), 200)
        tally.status(f"{p.name} GET /api/no-such-route", w.call("GET", "/api/no-such-route", p), 404)
        tally.status(f"{p.name} POST /api/no-such-route", w.call("POST", "/api/no-such-route", p, json={}), 404)
        # signed in
        me = w.call("GET", "/api/me", p)
        if tally.status(f"{p.name} GET /api/me", me, ok) and ok == 200:
            tally.same(f"{p.name} /api/me username", me.json()["username"], p.username)
            tally.same(f"{p.name} /api/me staff", me.json()["staff"], p.staff)
            tally.same(f"{p.name} /api/me proposals", set(me.json()["proposals"]), set(p.member_of))
        for path in ("/api/settings", "/api/openapi.json"):
            tally.status(f"{p.name} GET {path}", w.call("GET", path, p), ok)

        allowed = {f.name for f in ALL_FRAMES if visible(p, f)}
        nights = w.call("GET", "/api/nights", p)
        if tally.status(f"{p.name} GET /api/nights", nights, ok) and ok == 200:
            counts = {n["night"]: n["files"] for n in nights.json()["nights"]}
            tally.same(f"{p.name} /api/nights count of {NIGHT}", counts.get(NIGHT), len(allowed) or None,
                       leak=lambda got, exp: (got or 0) > (exp or 0))

        listing = w.call("GET", "/api/files", p, params={"night": NIGHT})
        if tally.status(f"{p.name} GET /api/files", listing, ok) and ok == 200:
            tally.same(f"{p.name} /api/files", _names(w, listing), allowed, leak=_more_than_allowed)
            if p.staff:   # how each frame's proposal was found, as the API says
                for f in listing.json()["files"]:
                    frame = w.frame(f["file_id"])
                    expected = None if frame.proposal == CALIBRATION else frame.proposal
                    tally.same(f"proposal of {frame.name}", (f["proposal"], f["proposal_source"]),
                               (expected, frame.source))
                    tally.same(f"access note of {frame.name}", bool(f.get("access_note")), frame.proposal is None)
        if ok == 200:
            paged = _pages(w, p, night=NIGHT, limit=2)
            tally.same(f"{p.name} /api/files pages of 2", paged, allowed, leak=_more_than_allowed)
            for obstype in sorted({f.obstype for f in ALL_FRAMES}):
                of_type = {f.name for f in ALL_FRAMES if visible(p, f) and f.obstype == obstype}
                resp = w.call("GET", "/api/files", p, params={"night": NIGHT, "type": obstype})
                if tally.status(f"{p.name} GET /api/files type={obstype}", resp, 200):
                    tally.same(f"{p.name} /api/files type={obstype}", _names(w, resp), of_type, leak=_more_than_allowed)
        feed = w.call("GET", "/api/files", p, params={"night": NIGHT, "since": "2000-01-01T00:00:00.000Z"})
        if tally.status(f"{p.name} GET /api/files since", feed, ok) and ok == 200:
            tally.same(f"{p.name} change feed", _names(w, feed), allowed, leak=_more_than_allowed)

        for f in ALL_FRAMES:
            fid = w.ids[f.name]
            expected = 401 if not p.signed_in else 200 if visible(p, f) else 404
            tally.status(f"{p.name} GET {f.name}", w.call("GET", f"/api/files/{fid}", p), expected)
            tally.status(f"{p.name} HEAD {f.name}", w.call("HEAD", f"/api/files/{fid}", p), expected)
        missing = w.call("GET", f"/api/files/{nonexistent}", p)
        tally.status(f"{p.name} GET a file that does not exist", missing, 404 if p.signed_in else 401)
        if p.signed_in:   # an invisible file's 404 says no more than a missing one's
            hidden = [f for f in ALL_FRAMES if not visible(p, f)]
            for f in hidden:
                resp = w.call("GET", f"/api/files/{w.ids[f.name]}", p)
                tally.same(f"{p.name} 404 of {f.name} as of a missing file",
                           resp.text.replace(w.ids[f.name], "<id>"), missing.text.replace(nonexistent, "<id>"))

        nosuch = f"SO2098A-{TAG}9"
        no_proposal = w.call("GET", f"/api/proposals/{nosuch}/settings", p)
        tally.status(f"{p.name} GET settings of a proposal that does not exist", no_proposal,
                     404 if p.signed_in else 401)
        for proposal in (A, B):
            status = manage_status(p, proposal)
            resp = w.call("GET", f"/api/proposals/{proposal}/settings", p)
            tally.status(f"{p.name} GET settings of {proposal}", resp, status)
            if status == 404:   # a proposal the caller is not in says no more than one that does not exist
                tally.same(f"{p.name} 404 of {proposal} as of a missing proposal", resp.text.replace(proposal, "<p>"),
                           no_proposal.text.replace(nosuch, "<p>"))
            status = members_read_status(p, proposal)
            resp = w.call("GET", f"/api/proposals/{proposal}/members", p)
            if tally.status(f"{p.name} GET members of {proposal}", resp, status) and status == 200:
                tally.same(f"{p.name} members of {proposal}", {m["username"] for m in resp.json()["members"]},
                           w.members(proposal))
        # a proposal named as a header may spell it: the same proposal
        odd = f"so2098a-{TAG.lower()}1"
        tally.status(f"{p.name} GET settings of {odd!r}",
                     w.call("GET", f"/api/proposals/{odd}/settings", p), manage_status(p, A))
    tally.done()


# ---- writes --------------------------------------------------------------------------------
def _versions_requested(w: World, file_id: str) -> int:
    return int((w.index.get_file(file_id) or {}).get("versions_requested") or 0)


def _member_role(w: World, proposal: str, username: str) -> Optional[str]:
    return {m["username"]: m["role"] for m in w.directory.members(proposal)}.get(username)


def test_writes(world, system):
    w, tally = world, Tally("writes")
    for p in w.principals:
        # a re-reduction of every frame (a 202 queues real work: a new version)
        for f in ALL_FRAMES:
            fid = w.ids[f.name]
            before = _versions_requested(w, fid)
            expected = reduce_status(p, f)
            resp = w.call("POST", "/api/files/reduce/", p, json={"file_id": fid, "settings": {}})
            if tally.status(f"{p.name} POST reduce {f.name}", resp, expected) and expected == 202:
                tally.same(f"{p.name} reduce {f.name} answer", (resp.json()["status"], resp.json()["version"]),
                           ("queued", before + 1))
            tally.same(f"{p.name} reduce {f.name}: versions requested", _versions_requested(w, fid),
                       before + (1 if resp.status_code == 202 else 0),
                       leak=lambda got, exp: expected != 202 and got > before)

        for proposal in (A, B):
            # replace the proposal's settings, then put them back
            original = w.directory.settings(proposal)
            wanted = {"ignore_bias": not original.get("ignore_bias", False)}
            expected = manage_status(p, proposal)
            resp = w.call("PUT", f"/api/proposals/{proposal}/settings", p, json={"settings": wanted})
            tally.status(f"{p.name} PUT settings of {proposal}", resp, expected)
            tally.same(f"{p.name} PUT settings of {proposal}: stored", w.directory.settings(proposal),
                       wanted if expected == 200 else original,
                       leak=lambda got, exp: expected != 200 and got != original)
            w.directory.set_settings(proposal, original)

            # add an observer, then remove them again
            resp = w.call("POST", f"/api/proposals/{proposal}/members", p,
                          json={"username": w.outsider, "role": "observer"})
            tally.status(f"{p.name} POST member of {proposal}", resp, expected)
            tally.same(f"{p.name} POST member of {proposal}: stored", _member_role(w, proposal, w.outsider),
                       "observer" if expected == 200 else None, leak=lambda got, exp: expected != 200 and got)
            w.directory.remove_member(proposal, w.outsider)

            # add a PI: staff only
            pi_expected = pi_change_status(p, proposal)
            resp = w.call("POST", f"/api/proposals/{proposal}/members", p, json={"username": w.outsider, "role": "pi"})
            tally.status(f"{p.name} POST PI of {proposal}", resp, pi_expected)
            tally.same(f"{p.name} POST PI of {proposal}: stored", _member_role(w, proposal, w.outsider),
                       "pi" if pi_expected == 200 else None, leak=lambda got, exp: pi_expected != 200 and got)
            w.directory.remove_member(proposal, w.outsider)

        # remove an observer of A (then put them back), and A's PI (staff only)
        resp = w.call("DELETE", f"/api/proposals/{A}/members", p, params={"username": w.victim})
        expected = manage_status(p, A)
        tally.status(f"{p.name} DELETE observer of {A}", resp, expected)
        tally.same(f"{p.name} DELETE observer of {A}: stored", _member_role(w, A, w.victim),
                   None if expected == 200 else "observer", leak=lambda got, exp: expected != 200 and got is None)
        w.directory.add_member(A, w.victim, "observer")
        pi_a = next(q.username for q in w.principals if q.name == "PI of A")
        resp = w.call("DELETE", f"/api/proposals/{A}/members", p, params={"username": pi_a})
        expected = pi_change_status(p, A)
        tally.status(f"{p.name} DELETE the PI of {A}", resp, expected)
        tally.same(f"{p.name} DELETE the PI of {A}: stored", _member_role(w, A, pi_a),
                   None if expected == 200 else "pi", leak=lambda got, exp: expected != 200 and got is None)
        w.directory.add_member(A, pi_a, "pi")

    # the state the writes found is the state they leave
    for proposal in (A, B):
        tally.same(f"members of {proposal} at the end", {m["username"] for m in w.directory.members(proposal)},
                   w.members(proposal))
    system.wait_idle(60)     # the re-reductions queued here end before the next module's tests
    tally.done()
