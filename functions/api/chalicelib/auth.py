"""Verifying the Cognito tokens the API is called with, the same way locally and in AWS.

The API's authorizer (app.py) calls `verify` on the Authorization header. Nothing here
knows whether it runs against moto or AWS: the user pool's keys are fetched from its
JWKS URL, the token's signature is checked with them, then its issuer (this pool), its
client (this app), its use (an access or an ID token) and its expiry. A token that fails
any check raises Unauthorized, which API Gateway answers with 401 (and so does
infra/local/server.py).

RS256 is verified here with the standard library (EMSA-PKCS1-v1_5: the expected
encoding is built and compared whole, never parsed), so the API needs no compiled
package: Cognito signs with RS256 only, and every other `alg` (`none`, HS256 with the
public key as secret, ...) is refused before any key is looked at.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

#: DER prefix of a SHA-256 DigestInfo (RFC 8017, section 9.2, note 1)
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
MIN_KEY_BITS = 2048
MAX_TOKEN_CHARS = 8192
#: seconds of clock difference tolerated on `exp`, `iat` and `nbf`
LEEWAY = 30
#: an unknown key id makes the keys be fetched again, but not more often than this
REFETCH_SECONDS = 60


class Unauthorized(Exception):
    """A request whose token is missing or does not verify. Its message is what API
    Gateway needs to answer 401 ("Unauthorized"); `reason` is for the log."""

    def __init__(self, reason: str):
        super().__init__("Unauthorized")
        self.reason = reason


@dataclass(frozen=True)
class Pool:
    """The user pool tokens must come from, and the app client they must be for."""
    region: str
    user_pool_id: str
    client_id: str
    #: where the pool's keys are served: https://cognito-idp.<region>.amazonaws.com in AWS
    endpoint: str

    @property
    def issuer(self) -> str:
        # Cognito (and moto) name the AWS URL as issuer wherever the pool is served from
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint.rstrip('/')}/{self.user_pool_id}/.well-known/jwks.json"


def _b64decode(part: str) -> bytes:
    if not part or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in part):
        raise Unauthorized("not base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json_object(part: str) -> Dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (ValueError, RecursionError):
        raise Unauthorized("a token part is not JSON")
    if not isinstance(value, dict):
        raise Unauthorized("a token part is not a JSON object")
    return value


def rsa_sha256_verify(n: int, e: int, message: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2.2): the signature's encoding is
    compared with the one expected for `message`."""
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    encoded = pow(s, e, n).to_bytes(k, "big")
    digest_info = _SHA256_PREFIX + hashlib.sha256(message).digest()
    if k < len(digest_info) + 11:
        return False
    expected = b"\x00\x01" + b"\xff" * (k - len(digest_info) - 3) + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)


class Keys:
    """The pool's public keys by key id, fetched when first needed and again when a
    token names a key not seen (Cognito rotates keys), at most once a minute."""

    def __init__(self, url: str, fetch: Optional[Callable[[str], bytes]] = None):
        self.url = url
        self._fetch = fetch or _http_get
        self._keys: Dict[str, Tuple[int, int]] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def get(self, kid: str) -> Tuple[int, int]:
        with self._lock:
            if kid not in self._keys and time.monotonic() - self._fetched_at >= REFETCH_SECONDS:
                self._keys = _parse_jwks(self._fetch(self.url))
                self._fetched_at = time.monotonic()
            if kid not in self._keys:
                raise Unauthorized(f"no key {kid!r} in the pool's keys")
            return self._keys[kid]


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as resp:   # noqa: S310 (the pool's own https URL)
        return resp.read()


def _parse_jwks(body: bytes) -> Dict[str, Tuple[int, int]]:
    keys = {}
    for jwk in json.loads(body).get("keys", []):
        if jwk.get("kty") != "RSA" or jwk.get("alg", "RS256") != "RS256" or jwk.get("use", "sig") != "sig":
            continue
        n = int.from_bytes(_b64decode(jwk["n"]), "big")
        e = int.from_bytes(_b64decode(jwk["e"]), "big")
        if n.bit_length() >= MIN_KEY_BITS:
            keys[jwk["kid"]] = (n, e)
    return keys


def bearer(header: Optional[str]) -> str:
    """The token of an Authorization header: `Bearer <jwt>` or the bare token."""
    value = (header or "").strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not value:
        raise Unauthorized("no token")
    return value


def verify(header: Optional[str], pool: Pool, keys: Keys, now: Optional[float] = None) -> Dict[str, Any]:
    """The claims of the token in an Authorization header, once every check has passed."""
    token = bearer(header)
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise Unauthorized("not a JWT")
    head_part, body_part, signature_part = token.split(".")
    head = _json_object(head_part)
    if head.get("alg") != "RS256":
        raise Unauthorized(f"alg {head.get('alg')!r} refused: Cognito signs with RS256")
    if not isinstance(head.get("kid"), str):
        raise Unauthorized("no key id")
    n, e = keys.get(head["kid"])
    if not rsa_sha256_verify(n, e, f"{head_part}.{body_part}".encode("ascii"), _b64decode(signature_part)):
        raise Unauthorized("bad signature")
    claims = _json_object(body_part)
    if claims.get("iss") != pool.issuer:
        raise Unauthorized(f"issued by {claims.get('iss')!r}, not this pool")
    use = claims.get("token_use")
    if use == "access":
        if claims.get("client_id") != pool.client_id:
            raise Unauthorized("an access token of another app client")
    elif use == "id":
        if claims.get("aud") != pool.client_id:
            raise Unauthorized("an ID token of another app client")
    else:
        raise Unauthorized(f"token_use {use!r} refused: an access or ID token is needed")
    now = time.time() if now is None else now
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), (int, float)) or isinstance(claims.get(name), bool):
            raise Unauthorized(f"no {name}")
    if claims["exp"] <= now - LEEWAY:
        raise Unauthorized("expired")
    if claims["iat"] > now + LEEWAY or claims.get("nbf", 0) > now + LEEWAY:
        raise Unauthorized("not valid yet")
    username = claims.get("username") if use == "access" else claims.get("cognito:username")
    if not isinstance(username, str) or not username:
        raise Unauthorized("no username")
    return {**claims, "username": username}
