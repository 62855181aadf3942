"""The API's answers to callers who get it wrong or poke at it: page tokens, cursors,
types, unknown routes, HEAD, signed download URLs and CORS (issue "Observers sign in
and see their own proposals", the API defects; sign-in itself is a later issue)."""
import base64
import http.client
import json
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from tests.conftest import comps_and_flats


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


@pytest.fixture(scope="module")
def night_of_five(system, s3, api):
    """Five frames (3 comps, 2 flats) on a night of their own."""
    night = "2031-%02d-%02d" % (uuid.uuid4().int % 12 + 1, uuid.uuid4().int % 28 + 1)
    return night, comps_and_flats(system, s3, api, night, 5)


def _first_token(api, night, **params):
    token = api.json("/api/files", night=night, limit=1, **params)["next"]
    assert token
    return token


# ---- page tokens ------------------------------------------------------------------

@pytest.mark.parametrize("token", [
    "eyJhIjoxfQ==",                                           # {"a": 1}: well formed, not ours
    _b64(json.dumps([1, 2, 3]).encode()),                     # JSON of another shape
    _b64(json.dumps({"pk": {"N": "1"}, "sk": "x"}).encode()),  # a key of the wrong types
    _b64(b"[" * 3000 + b"]" * 3000),                          # nested past Python's recursion limit
    "x" * 5000,                                               # far longer than any token we issue
    "abc.def", "a.b.c", ".", "%%%", "\u00e9t\u00e9",
])
def test_a_page_token_we_did_not_issue_is_a_400(api, night_of_five, token):
    night, _ = night_of_five
    resp = api.get("/api/files", night=night, next=token)
    assert resp.status_code == 400, resp.text
    assert "page token" in resp.json()["Message"]


def test_a_page_token_is_bound_to_its_listing(api, night_of_five):
    night, _ = night_of_five
    unfiltered = _first_token(api, night)
    flats = _first_token(api, night, type="FLAT")
    for params in ({"type": "FLAT", "next": unfiltered},       # moto crashed, DynamoDB: ValidationException
                   {"type": "COMP", "next": flats},
                   {"next": flats},
                   {"night": "2031-01-01", "next": unfiltered}):
        resp = api.get("/api/files", **{"night": night, **params})
        assert resp.status_code == 400, (params, resp.text)
        assert "another listing" in resp.json()["Message"]


def test_an_altered_page_token_is_refused(api, night_of_five):
    night, _ = night_of_five
    token = _first_token(api, night)
    body, _, signature = token.partition(".")
    position = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = _b64(json.dumps({**position, "p": ["by_night", "0005_frame.fits", "0" * 16]}).encode()).rstrip("=")
    for bad in (forged + "." + signature, body + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")):
        resp = api.get("/api/files", night=night, next=bad)
        assert resp.status_code == 400 and "page token" in resp.json()["Message"], resp.text


def test_filtered_pages_cover_the_type_once(api, night_of_five):
    night, items = night_of_five
    seen, token = [], None
    while True:
        page = api.json("/api/files", night=night, type="comp", limit=1, **({"next": token} if token else {}))
        seen += [f["file_name"] for f in page["files"]]
        token = page["next"]
        if not token:
            break
    assert seen == [f["file_name"] for f in items if f["obstype"] == "COMP"]


def test_page_tokens_are_signed_and_checked_without_the_stack():
    from golive_data.index import BadRequest
    from functions.api.chalicelib.pagetoken import issue, read

    key, scope = b"k" * 32, {"night": "2024-01-01", "type": ""}
    token = issue(["by_night", "0001.fits", "ab" * 8], scope, key)
    assert read(token, scope, key) == ("by_night", "0001.fits", "ab" * 8)
    assert issue(None, scope, key) is None and read(None, scope, key) is None and read("", scope, key) is None
    for bad_key, bad_scope in ((b"j" * 32, scope), (key, {**scope, "type": "FLAT"}), (key, {**scope, "night": "x"})):
        with pytest.raises(BadRequest, match="page token"):
            read(token, bad_scope, bad_key)


# ---- since, type, and their combinations ------------------------------------------

@pytest.mark.parametrize("params, text", [
    ({"since": "garbage"}, "since"),
    ({"since": "2024-13-45T00:00:00Z"}, "since"),
    ({"since": "2024-05-01 12:00:00"}, "since"),
    ({"since": "2024-05-01T12:00:00Z#" + "x" * 500}, "since"),
    ({"type": "bogus"}, "type"),
    ({"type": "bogus", "since": ""}, "type"),
    ({"since": "", "next": "anything"}, "since"),
])
def test_bad_cursors_types_and_combinations_are_400(api, night_of_five, params, text):
    night, _ = night_of_five
    resp = api.get("/api/files", night=night, **params)
    assert resp.status_code == 400, resp.text
    assert text in resp.json()["Message"]


def test_garbage_since_no_longer_comes_back_as_the_cursor(api, night_of_five):
    night, _ = night_of_five
    resp = api.get("/api/files", night=night, since="garbage")
    assert resp.status_code == 400 and "garbage" not in resp.json().get("cursor", "")


@pytest.mark.parametrize("since", ["", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00.000Z",   # the page's form
                                   "2000-01-01T00:00:00.123456Z#0123456789abcdef", "2000-01-01T00:00:00.5Z#~"])
def test_the_cursor_forms_clients_send_are_accepted(api, night_of_five, since):
    night, items = night_of_five
    got = api.json("/api/files", night=night, since=since)
    assert {f["file_id"] for f in got["files"]} == {f["file_id"] for f in items}


def test_since_with_type_follows_the_changes_of_that_type(api, night_of_five):
    night, items = night_of_five
    flat_ids = {f["file_id"] for f in items if f["obstype"] == "FLAT"}
    first_two = api.json("/api/files", night=night, since="", limit=2)
    flats_in_them = api.json("/api/files", night=night, since="", limit=2, type="flat")
    assert [f["file_id"] for f in flats_in_them["files"]] == [f["file_id"] for f in first_two["files"]
                                                              if f["obstype"] == "FLAT"]
    assert flats_in_them["cursor"] == first_two["cursor"]   # the cursor moves over the other types too
    seen, cursor = [], ""
    for _ in range(10):   # followed to the end: every flat, and nothing else
        page = api.json("/api/files", night=night, since=cursor, limit=2, type="FLAT")
        seen += page["files"]
        if not page["files"] and page["cursor"] == cursor:
            break
        cursor = page["cursor"]
    assert {f["file_id"] for f in seen} == flat_ids and {f["obstype"] for f in seen} == {"FLAT"}


def test_the_types_the_api_accepts_are_those_the_index_holds():
    from golive_data.item import FILE_TYPES
    from functions.core.classify import OBSTYPES
    from static_site.build import context

    assert set(FILE_TYPES) == set(OBSTYPES) | {"MASTER_BIAS", "MASTER_FLAT"}
    assert context()["obstypes"] == list(FILE_TYPES)


# ---- unknown routes and HEAD ------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/nope", "/api/files/0123456789abcdef/products", "/api/health/x/y/z",
                                  "/api/" + quote("files?x", safe="")])
def test_an_unknown_route_is_a_json_404(api, path):
    for method in ("GET", "HEAD", "POST", "DELETE"):
        resp = api.http.request(method, api.base + path, timeout=10)
        assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
        if method != "HEAD":
            body = resp.json()
            assert body["Code"] == "NotFoundError" and "no such route" in body["Message"], body


def test_head_answers_wherever_get_does_and_keeps_the_connection_usable(system, night_of_five):
    night, items = night_of_five
    paths = ["/api/health", "/api/nights", f"/api/files?night={night}", f"/api/files/{items[0]['file_id']}",
             f"/api/files?night={night}&since=", "/", "/app.js", "/api/nope"]
    host, port = urlsplit(system.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)   # one connection for everything
    try:
        for path in paths:
            conn.request("GET", path)
            got = conn.getresponse()
            get_body = got.read()
            conn.request("HEAD", path)
            head = conn.getresponse()
            assert head.read() == b"", path
            assert head.status == got.status, (path, head.status, got.status)
            assert head.getheader("Content-Type") == got.getheader("Content-Type"), path
            if path in ("/api/health", "/", "/app.js", "/api/nope"):   # the others may change between the two
                assert int(head.getheader("Content-Length")) == len(get_body), path
    finally:
        conn.close()


# ---- signed download URLs ---------------------------------------------------------

def _accepted_by_s3(url: str, credentials, region: str) -> bool:
    """Whether S3 would accept this presigned URL: its SigV4 signature recomputed from
    the request it names (moto's server does not check the signatures of presigned
    URLs, so the check storage makes is made here)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    unsigned = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if k != "X-Amz-Signature")
    request = AWSRequest(method="GET", url=f"{parts.scheme}://{parts.netloc}{parts.path}?{unsigned}")
    request.context["timestamp"] = query["X-Amz-Date"]
    signer = S3SigV4QueryAuth(credentials, "s3", region, expires=int(query["X-Amz-Expires"]))
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return expected == query["X-Amz-Signature"]


def test_download_urls_are_sigv4_and_name_only_their_object(system, s3, api, night_of_five):
    from botocore.credentials import Credentials
    from golive_data.settings import Settings

    night, items = night_of_five
    env = system.stack.environment()
    expiry = Settings.from_env(env).url_expiry_seconds
    credentials = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    first, second = (api.json(f"/api/files/{f['file_id']}")["products"][0] for f in items[:2])
    query = parse_qs(urlsplit(first["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == [str(expiry)]
    assert query["X-Amz-Credential"][0].endswith(f"/{system.stack.region}/s3/aws4_request")
    assert "AWSAccessKeyId" not in query and "Signature" not in query

    resp = requests.get(first["url"], timeout=10)
    assert resp.status_code == 200
    assert resp.content == s3.get_object(Bucket=first["bucket"], Key=first["key"])["Body"].read()
    assert _accepted_by_s3(first["url"], credentials, system.stack.region)

    # The same URL edited to name another product: storage must refuse it. moto serves
    # it (it does not verify presigned signatures); the signature shows S3 would not.
    edited = first["url"].replace(quote(first["key"], safe="/"), quote(second["key"], safe="/"))
    assert edited != first["url"]
    assert not _accepted_by_s3(edited, credentials, system.stack.region)


# ---- CORS -------------------------------------------------------------------------

def test_cors_allows_only_the_pages_own_origin(system, api):
    for path in ("/api/health", "/api/files?night=2031-01-01", "/api/nope"):
        resp = api.http.get(api.base + path, headers={"Origin": "https://elsewhere.example"}, timeout=10)
        assert resp.headers.get("Access-Control-Allow-Origin") == system.url, (path, dict(resp.headers))


def test_the_allowed_origin_is_a_setting():
    from golive_data.settings import Settings

    base = {"RAW_BUCKET": "r", "PRODUCTS_BUCKET": "p", "INDEX_TABLE": "t"}
    assert Settings.from_env(base).allowed_origin is None      # same origin only: no CORS header at all
    assert Settings.from_env({**base, "ALLOWED_ORIGIN": "https://live.example"}).allowed_origin == "https://live.example"
    # the page-token key: from the environment in AWS, else derived from the deployment
    assert Settings.from_env({**base, "PAGE_TOKEN_KEY": "s3cret"}).page_token_key == b"s3cret"
    derived = Settings.from_env(base).page_token_key
    assert derived == Settings.from_env(base).page_token_key != Settings.from_env({**base, "INDEX_TABLE": "u"}).page_token_key
    assert "s3cret" not in repr(Settings.from_env({**base, "PAGE_TOKEN_KEY": "s3cret"}))


def test_api_gateway_is_given_head_beside_get_a_catch_all_and_the_one_origin(monkeypatch):
    """What `chalice package` hands API Gateway (its swagger): a HEAD method wherever
    there is a GET, the greedy catch-all that answers 404, CORS naming only the page."""
    from chalice.deploy.swagger import SwaggerGenerator
    from infra.local.server import load_api_app

    for name, value in {"RAW_BUCKET": "r", "PRODUCTS_BUCKET": "p", "INDEX_TABLE": "t",
                        "ALLOWED_ORIGIN": "https://live.example"}.items():
        monkeypatch.setenv(name, value)
    doc = SwaggerGenerator("us-east-1", {"api_handler_arn": "arn:aws:lambda:us-east-1:1:function:api",
                                         "api_handler_name": "api", "lambda_functions": {
                                             "api-signed_in": {"arn": "arn:aws:lambda:us-east-1:1:function:auth"}}}
                           ).generate_swagger(load_api_app())
    assert all("head" in methods for methods in doc["paths"].values() if "get" in methods)
    assert {"get", "head", "post", "put", "patch", "delete"} <= set(doc["paths"]["/{proxy+}"])
    # the token authorizer guards every route but the health check, the sign-in
    # configuration and the catch-all 404
    open_paths = {"/api/health", "/api/auth/config", "/{proxy+}"}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if method != "options":
                assert bool(op.get("security")) is (path not in open_paths), (path, method)
    assert doc["securityDefinitions"]["signed_in"]["x-amazon-apigateway-authorizer"]["type"] == "token"
    preflight = doc["paths"]["/api/files"]["options"]["x-amazon-apigateway-integration"]["responses"]["default"]
    assert preflight["responseParameters"]["method.response.header.Access-Control-Allow-Origin"] == \
        "'https://live.example'"


# ---- the local server answers each request as its own ------------------------------

def test_requests_at_the_same_moment_are_answered_each_as_its_own(system, api, night_of_five):
    """The local server answers in threads: each must see its own method, query and
    caller (with one shared `current_request`, a POST was answered as a GET)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import new_user

    night, _ = night_of_five
    other = new_user(system, "parallel")
    sessions = {api.json("/api/me")["username"]: api.http,
                other.username: system.signed_in(other.username, other.password).session(api.base)}

    def ask(i):
        who = list(sessions)[i % 2]
        session = sessions[who]
        if i % 3 == 0:
            resp = session.get(api.base + "/api/me", timeout=20)
            return resp.status_code == 200 and resp.json()["username"] == who
        if i % 3 == 1:
            resp = session.get(api.base + "/api/files", params={"night": night, "limit": 1 + i % 4}, timeout=20)
            return resp.status_code == 200 and resp.json()["night"] == night
        resp = session.post(api.base + "/api/files/reduce", json={"file_id": f"nofile{i}"}, timeout=20)
        return resp.status_code == 404 and f"nofile{i}" in resp.json()["Message"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(ask, range(240)))
    assert all(answers), f"{answers.count(False)} of {len(answers)} answered as another request"


def test_a_targets_products_are_found_by_their_whole_name_not_a_tail():
    """'0011_obj.fits' must not take the products of '0111_obj.fits' (or '1_obj.fits'
    those of '11_obj.fits'): names end alike but are other frames."""
    from functions.api.chalicelib.products import of_target

    def entry(kind, name):
        return {"kind": kind, "file_name": name}

    products = [entry("calibrated", "wecfzst_0111_obj_target_1.fits"), entry("extracted", "ecfzst_0111_obj_target_1.fits"),
                entry("lamp_calibrated", "wecfzst_0100_lamp_for_0111_obj_target_1.fits"),
                entry("calibrated", "wecfzst_0011_obj_target_1.fits"), entry("extracted", "ecfzst_0011_obj_target_1.fits"),
                entry("lamp_calibrated", "wecfzst_0100_lamp_for_0011_obj_target_1.fits"),
                entry("calibrated", "wecfzst_0011_obj_target_12.fits")]
    mine = of_target(products, "0011_obj.fits", 1, ("calibrated", "extracted", "lamp_calibrated"))
    assert {k: p["file_name"] for k, p in mine.items()} == {
        "calibrated": "wecfzst_0011_obj_target_1.fits", "extracted": "ecfzst_0011_obj_target_1.fits",
        "lamp_calibrated": "wecfzst_0100_lamp_for_0011_obj_target_1.fits"}
    assert of_target(products, "11_obj.fits", 1, ("calibrated",)) == {}
    assert of_target(products, "0011_obj.fits", 1, ("extracted",)) == {"extracted": products[4]}
