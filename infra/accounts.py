"""Accounts: a Cognito user and its place in the directory (staff, proposals, PI of),
made the same way by the admin CLI (infra/admin.py), `python -m infra.local serve
--users FILE`, the demo and the tests; and signing in as the page does.

A users file is a JSON list of
    {"username": "ana", "password": "...", "proposals": ["SO2024A-001"], "pi_of": [], "staff": false}
(`pi_of` proposals are joined as PI; the proposals named are created if new).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from golive_data.access import ROLE_OBSERVER, ROLE_PI, AccessError, Directory, check_username, proposal_id


@dataclass(frozen=True)
class UserSpec:
    username: str
    password: str
    proposals: Sequence[str] = ()
    pi_of: Sequence[str] = ()
    staff: bool = False

    @classmethod
    def from_dict(cls, d: Any) -> "UserSpec":
        if not isinstance(d, dict):
            raise AccessError(f"a user must be a JSON object, got {d!r}")
        unknown = sorted(set(d) - {"username", "password", "proposals", "pi_of", "staff"})
        if unknown:
            raise AccessError(f"unknown field(s) {unknown} for user {d.get('username')!r}")
        if not isinstance(d.get("password"), str) or not d["password"]:
            raise AccessError(f"user {d.get('username')!r} needs a password")
        lists = {k: d.get(k) or [] for k in ("proposals", "pi_of")}
        for name, value in lists.items():
            if not isinstance(value, list):
                raise AccessError(f"{name} of user {d.get('username')!r} must be a list of proposal ids")
        return cls(username=check_username(d.get("username")), password=d["password"],
                   proposals=tuple(proposal_id(p) for p in lists["proposals"]),
                   pi_of=tuple(proposal_id(p) for p in lists["pi_of"]), staff=bool(d.get("staff", False)))


def load_users(path: Path) -> List[UserSpec]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AccessError(f"cannot read the users file {path}: {exc}")
    if not isinstance(data, list):
        raise AccessError(f"{path}: a JSON list of users is expected")
    return [UserSpec.from_dict(d) for d in data]


class Accounts:
    """Cognito (identity) and the directory (what each user may see), kept together."""

    def __init__(self, cognito, directory: Directory, user_pool_id: str):
        self.cognito = cognito
        self.directory = directory
        self.pool = user_pool_id

    def create(self, spec: UserSpec) -> None:
        """The user as `spec` says, created or brought up to date (password included)."""
        try:
            self.cognito.admin_create_user(UserPoolId=self.pool, Username=spec.username, MessageAction="SUPPRESS")
        except self.cognito.exceptions.UsernameExistsException:
            pass
        self.cognito.admin_set_user_password(UserPoolId=self.pool, Username=spec.username, Password=spec.password,
                                             Permanent=True)
        self.directory.put_user(spec.username, staff=spec.staff)
        for proposal in dict.fromkeys([*spec.pi_of, *spec.proposals]):
            if self.directory.get_proposal(proposal) is None:
                self.directory.put_proposal(proposal)
            self.directory.add_member(proposal, spec.username, ROLE_PI if proposal in spec.pi_of else ROLE_OBSERVER)

    def delete(self, username: str) -> None:
        try:
            self.cognito.admin_delete_user(UserPoolId=self.pool, Username=username)
        except self.cognito.exceptions.UserNotFoundException:
            pass
        self.directory.delete_user(username)

    def cognito_users(self) -> List[Dict[str, Any]]:
        users, kwargs = [], {"UserPoolId": self.pool}
        while True:
            resp = self.cognito.list_users(**kwargs)
            users += [{"username": u["Username"], "enabled": u.get("Enabled", True), "status": u.get("UserStatus")}
                      for u in resp.get("Users", [])]
            if not resp.get("PaginationToken"):
                return users
            kwargs["PaginationToken"] = resp["PaginationToken"]


def sign_in(endpoint: Optional[str], region: str, client_id: str, username: str, password: str) -> Dict[str, Any]:
    """Cognito's AuthenticationResult for a username and password, asked as the page
    asks it: an unsigned InitiateAuth (USER_PASSWORD_AUTH) to the pool's endpoint."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    client = boto3.client("cognito-idp", region_name=region, endpoint_url=endpoint,
                          config=Config(signature_version=UNSIGNED))
    result = client.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                  AuthParameters={"USERNAME": username, "PASSWORD": password})
    return result["AuthenticationResult"]


@dataclass
class SignedIn:
    """A user's API session for scripts and tests: the Authorization header to send,
    signed in again a few minutes before the access token runs out."""
    endpoint: Optional[str]
    region: str
    client_id: str
    username: str
    password: str
    _token: str = ""
    _until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token(self) -> str:
        with self._lock:
            if time.monotonic() > self._until:
                result = sign_in(self.endpoint, self.region, self.client_id, self.username, self.password)
                self._token = result["AccessToken"]
                self._until = time.monotonic() + int(result.get("ExpiresIn", 3600)) - 300
            return self._token

    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def session(self, api_url: str):
        """A requests.Session that sends this user's token with every request to the API
        at `api_url`, and to nothing else (a signed download URL carries its own
        signature: storage refuses a second authorization)."""
        import requests

        signed, base = self, api_url.rstrip("/") + "/"

        class _Session(requests.Session):
            def request(self, method, url, **kwargs):
                if str(url).startswith(base):
                    kwargs["headers"] = {**signed.headers(), **(kwargs.get("headers") or {})}
                return super().request(method, url, **kwargs)

        return _Session()
