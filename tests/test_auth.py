"""The API's token check (functions/api/chalicelib/auth.py) on tokens made here with
a real RSA key, the way Cognito makes them, and on every way a token can be wrong."""
import base64
import json
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import padding, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions" / "api"))
from chalicelib import auth  # noqa: E402

POOL = auth.Pool("us-east-1", "us-east-1_pool", "client-1", "http://127.0.0.1:1")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwk(key, kid: str) -> dict:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": _b64(n), "e": _b64(b"\x01\x00\x01")}


def _keys(*pairs) -> auth.Keys:
    body = json.dumps({"keys": [_jwk(k, kid) for k, kid in pairs]}).encode()
    keys = auth.Keys(POOL.jwks_url, fetch=lambda url: body)
    return keys


def _claims(**over) -> dict:
    now = int(time.time())
    claims = {"iss": POOL.issuer, "sub": "s-1", "client_id": POOL.client_id, "token_use": "access",
              "username": "ana", "iat": now, "exp": now + 3600}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _token(claims: dict, key=KEY, kid="k1", alg="RS256", header=None) -> str:
    head = _b64(json.dumps(header or {"kid": kid, "alg": alg}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()) if key else b""
    return f"{head}.{body}.{_b64(signature)}"


def test_a_cognito_access_token_and_id_token_verify():
    keys = _keys((KEY, "k1"))
    assert auth.verify("Bearer " + _token(_claims()), POOL, keys)["username"] == "ana"
    assert auth.verify(_token(_claims()), POOL, keys)["username"] == "ana"    # the bare token too
    id_token = _claims(token_use="id", client_id=None, aud=POOL.client_id, username=None,
                       **{"cognito:username": "ben"})
    assert auth.verify("bearer " + _token(id_token), POOL, keys)["username"] == "ben"


def _hs256(claims: dict, secret: bytes) -> str:
    head = _b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
    body = _b64(json.dumps(claims).encode())
    mac = crypto_hmac.HMAC(secret, hashes.SHA256())
    mac.update(f"{head}.{body}".encode())
    return f"{head}.{body}.{_b64(mac.finalize())}"


def _tampered_payload() -> str:
    head, _, signature = _token(_claims()).split(".")
    return ".".join([head, _b64(json.dumps(_claims(username="root")).encode()), signature])


def _tampered_signature() -> str:
    token = _token(_claims())
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


PUBLIC_PEM_AS_SECRET = _jwk(KEY, "k1")["n"].encode()

WRONG = {
    "alg none": lambda: _token(_claims(), key=None, alg="none"),
    "alg none, no signature part": lambda: _token(_claims(), key=None, alg="none")[:-1],
    "HS256 with the public key as secret": lambda: _hs256(_claims(), PUBLIC_PEM_AS_SECRET),
    "payload edited": _tampered_payload,
    "signature edited": _tampered_signature,
    "another key": lambda: _token(_claims(), key=OTHER_KEY),
    "another pool": lambda: _token(_claims(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_other")),
    "another app client": lambda: _token(_claims(client_id="client-2")),
    "an ID token of another client": lambda: _token(_claims(token_use="id", client_id=None, aud="client-2",
                                                            **{"cognito:username": "ana"})),
    "no token_use": lambda: _token(_claims(token_use=None)),
    "a refresh token's use": lambda: _token(_claims(token_use="refresh")),
    "expired": lambda: _token(_claims(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
    "issued in the future": lambda: _token(_claims(iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)),
    "no exp": lambda: _token(_claims(exp=None)),
    "exp not a number": lambda: _token(_claims(exp="tomorrow")),
    "no username": lambda: _token(_claims(username=None)),
    "unknown key id": lambda: _token(_claims(), kid="k9"),
    "empty": lambda: "",
    "Bearer alone": lambda: "Bearer ",
    "not a JWT": lambda: "hello",
    "four parts": lambda: _token(_claims()) + ".x",
    "header not JSON": lambda: "bm90IGpzb24." + _token(_claims()).split(".", 1)[1],
    "header a list": lambda: _b64(b"[1]") + "." + _token(_claims()).split(".", 1)[1],
    "deeply nested header": lambda: _b64(b"[" * 100000 + b"]" * 100000) + ".e30.e30",
    "not base64": lambda: "a$b.c$d.e$f",
    "huge": lambda: "a" * 100000 + ".b.c",
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_every_wrong_token_is_refused(case):
    keys = _keys((KEY, "k1"))
    with pytest.raises(auth.Unauthorized) as info:
        auth.verify(WRONG[case](), POOL, keys)
    assert str(info.value) == "Unauthorized"   # what API Gateway turns into a 401


def test_keys_are_fetched_again_for_a_new_key_id_but_not_on_every_unknown_one(monkeypatch):
    fetched = []
    bodies = [{"keys": [_jwk(KEY, "k1")]}, {"keys": [_jwk(KEY, "k1"), _jwk(OTHER_KEY, "k2")]}]

    def fetch(url):
        fetched.append(url)
        return json.dumps(bodies[min(len(fetched) - 1, 1)]).encode()

    keys = auth.Keys(POOL.jwks_url, fetch=fetch)
    assert auth.verify(_token(_claims()), POOL, keys)
    assert len(fetched) == 1
    with pytest.raises(auth.Unauthorized):          # k2 is not known yet, and the last fetch is recent
        auth.verify(_token(_claims(), key=OTHER_KEY, kid="k2"), POOL, keys)
    assert len(fetched) == 1
    monkeypatch.setattr(auth, "REFETCH_SECONDS", 0)  # a minute later: the rotated key is fetched
    assert auth.verify(_token(_claims(), key=OTHER_KEY, kid="k2"), POOL, keys)["username"] == "ana"
    assert len(fetched) == 2


def test_keys_too_small_are_not_trusted():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(auth.Unauthorized):
        auth.verify(_token(_claims(), key=small), POOL, _keys((small, "k1")))


def test_the_rsa_check_agrees_with_a_reference_implementation():
    numbers = KEY.public_key().public_numbers()
    for i in range(40):
        message = f"message {i}".encode() * (i + 1)
        signature = KEY.sign(message, padding.PKCS1v15(), hashes.SHA256())
        assert auth.rsa_sha256_verify(numbers.n, numbers.e, message, signature)
        assert not auth.rsa_sha256_verify(numbers.n, numbers.e, message + b"!", signature)
        pss = KEY.sign(message, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        assert not auth.rsa_sha256_verify(numbers.n, numbers.e, message, pss)   # another scheme
        sha1 = KEY.sign(message, padding.PKCS1v15(), hashes.SHA1())
        assert not auth.rsa_sha256_verify(numbers.n, numbers.e, message, sha1)  # another digest


def test_moto_cognito_tokens_verify_against_the_pool_keys_served_over_http(system):
    """The local stack's own pool: a user signs in as the page does and the token
    verifies against the keys fetched from the pool's JWKS URL."""
    from golive_data.settings import Settings
    from infra.accounts import UserSpec

    system.add_users([UserSpec("auth-unit", "auth-unit-pass-1")])
    s = Settings.from_env()
    pool = auth.Pool(s.region, s.user_pool_id, s.user_pool_client_id, s.cognito_endpoint)
    token = system.signed_in("auth-unit", "auth-unit-pass-1").token
    assert auth.verify(token, pool, auth.Keys(pool.jwks_url))["username"] == "auth-unit"
    other = auth.Pool(s.region, s.user_pool_id + "x", s.user_pool_client_id, s.cognito_endpoint)
    with pytest.raises(auth.Unauthorized):
        auth.verify(token, other, auth.Keys(pool.jwks_url))
