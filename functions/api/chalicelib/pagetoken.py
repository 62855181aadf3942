"""Page tokens: opaque to clients, signed by the API, good only for the listing that
issued them.

A token is `<payload>.<signature>`, both base64url without padding. The payload is the
compact JSON `{"p": position, "s": scope}`: the index's position of the next page
(index.Position) and the query it pages (night and type). The signature is the
HMAC-SHA256 of the payload under the deployment's key (Settings.page_token_key). It is
checked before anything in the token is decoded, so nothing a caller makes up is ever
parsed; a token of another night or type is refused, and the index checks the
position's shape once more before it builds a key from it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Mapping, Optional, Sequence, Tuple

from golive_data.index import BadRequest

#: longer than any token issued (a position holds a path of at most 1024 characters)
MAX_TOKEN_CHARS = 4096
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")   # 43 characters: a SHA-256 digest


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signature(payload: str, key: bytes) -> str:
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def issue(position: Optional[Sequence[str]], scope: Mapping[str, str], key: bytes) -> Optional[str]:
    """The token for the page at `position` of the listing `scope`; None for no page."""
    if position is None:
        return None
    payload = _b64(json.dumps({"p": list(position), "s": dict(scope)}, separators=(",", ":"),
                              sort_keys=True).encode("utf-8"))
    return f"{payload}.{_signature(payload, key)}"


def read(token: Optional[str], scope: Mapping[str, str], key: bytes) -> Optional[Tuple[str, ...]]:
    """The position a token of this listing stands for (None for none); a BadRequest
    saying why for any other string."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS or not _SHAPE.fullmatch(token):
        raise BadRequest("malformed page token: pass back the 'next' of the previous page unchanged")
    payload, signature = token.split(".")
    if not hmac.compare_digest(_signature(payload, key), signature):
        raise BadRequest("invalid page token: not issued by this API, or altered")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if body.get("s") != dict(scope):
        raise BadRequest("this page token belongs to another listing (night, type): ask again without 'next'")
    return tuple(body["p"])
