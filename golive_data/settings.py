"""Configuration read from the environment in one place, then passed around.

Lambda, the Chalice API and the local stack all set the same variables; boto3 itself
honours AWS_ENDPOINT_URL, which is how the code reaches moto, MinIO or AWS unchanged.
"""
import hashlib
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional


@dataclass(frozen=True)
class Settings:
    raw_bucket: str
    products_bucket: str
    index_table: str
    raw_prefix: str = "raw/"
    region: str = "us-east-1"
    endpoint_url: Optional[str] = None
    #: how long a signed download URL works (URL_EXPIRY_SECONDS; 15 minutes)
    url_expiry_seconds: int = 900
    max_receive_count: int = 3
    work_queue_url: Optional[str] = None
    #: the reduction function's low-priority queue (BACKGROUND_QUEUE_URL), for slow work no
    #: new frame should wait behind; unset (older deployments): that work goes to the work queue
    background_queue_url: Optional[str] = None
    #: the ingest function's queue: where the consistency check sends a raw object to be
    #: indexed again, and where dead letters of the ingest are redriven
    ingest_queue_url: Optional[str] = None
    calibration_window_days: int = 7
    reduction_overrides: str = "{}"
    #: first delay before a failed message is retried; doubles per delivery
    retry_backoff_seconds: int = 30
    #: how long after a write the night's listings (GSIs) are trusted to show it: work a
    #: new master or lamp makes possible is looked for again after this long, so a frame
    #: indexed in the same instant is not missed (the consistency sweep is the last net)
    gsi_settle_seconds: int = 10
    #: the one origin the API's CORS header names (the page's, when it is served from
    #: another origin than the API); None: no CORS header, so only the API's own origin
    #: (where CloudFront serves the page in AWS) may read its answers
    allowed_origin: Optional[str] = None
    #: HMAC key that signs the API's page tokens (PAGE_TOKEN_KEY); see page_token_key_for
    page_token_key: bytes = field(default=b"", repr=False)
    #: the Cognito user pool whose users may call the API, and the page's app client
    user_pool_id: Optional[str] = None
    user_pool_client_id: Optional[str] = None
    #: where Cognito is reached (its API and the pool's keys): AWS's regional endpoint,
    #: or the local stack's
    cognito_endpoint: Optional[str] = None
    #: days after DATE-OBS a proposal's frames stay visible to its members only
    proprietary_days: int = 365

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        missing = [k for k in ("RAW_BUCKET", "PRODUCTS_BUCKET", "INDEX_TABLE") if not environ.get(k)]
        if missing:
            raise RuntimeError("missing environment variables: " + ", ".join(missing))
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(
            raw_bucket=environ["RAW_BUCKET"],
            products_bucket=environ["PRODUCTS_BUCKET"],
            index_table=environ["INDEX_TABLE"],
            raw_prefix=environ.get("RAW_PREFIX", "raw/"),
            region=region,
            endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            url_expiry_seconds=int(environ.get("URL_EXPIRY_SECONDS", "900")),
            max_receive_count=int(environ.get("MAX_RECEIVE_COUNT", "3")),
            work_queue_url=environ.get("WORK_QUEUE_URL") or None,
            background_queue_url=environ.get("BACKGROUND_QUEUE_URL") or None,
            ingest_queue_url=environ.get("INGEST_QUEUE_URL") or None,
            calibration_window_days=int(environ.get("CALIBRATION_WINDOW_DAYS", "7")),
            reduction_overrides=environ.get("REDUCTION_SETTINGS", "{}"),
            retry_backoff_seconds=int(environ.get("RETRY_BACKOFF_SECONDS", "30")),
            gsi_settle_seconds=int(environ.get("GSI_SETTLE_SECONDS", "10")),
            allowed_origin=environ.get("ALLOWED_ORIGIN") or None,
            page_token_key=page_token_key_for(environ),
            user_pool_id=environ.get("USER_POOL_ID") or None,
            user_pool_client_id=environ.get("USER_POOL_CLIENT_ID") or None,
            cognito_endpoint=(environ.get("COGNITO_ENDPOINT") or environ.get("AWS_ENDPOINT_URL")
                              or f"https://cognito-idp.{region}.amazonaws.com"),
            proprietary_days=int(environ.get("PROPRIETARY_DAYS", "365")),
        )

    def client(self, service: str, **config):
        """A boto3 client for this deployment; created by callers once, at the edge.
        `config`: botocore Config options on top of the defaults (the API signs
        download URLs with `signature_version="s3v4"`)."""
        import boto3
        from botocore.config import Config

        # botocore waits 60 s for an answer by default: in an outage that holds a worker
        # a minute per request. A request that has not answered in 20 s is retried (a
        # reduced 2x2 frame is written in well under a second inside a region).
        config = Config(**{"connect_timeout": 5, "read_timeout": 20,
                           "retries": {"mode": "standard", "max_attempts": 3}, **config})
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url, config=config)

    def resource(self, service: str):
        import boto3

        return boto3.resource(service, region_name=self.region, endpoint_url=self.endpoint_url)


def page_token_key_for(environ: Mapping[str, str]) -> bytes:
    """The key that signs page tokens: PAGE_TOKEN_KEY (set it in AWS: 32 random bytes,
    e.g. `openssl rand -base64 32`; changing it only ends the page tokens in flight).

    Without it the key is derived from the index table and the storage endpoint, which
    suits the local stack (a new stack, a new key; the same stack, tokens that outlive
    a restart of the API) but is no secret: whoever knows the table name can make
    tokens. Such a token can still only name a position in a listing the API serves to
    anyone, and its shape and its listing are checked, so it can do no more than start
    a page at a chosen file; PAGE_TOKEN_KEY makes even that impossible.
    """
    if environ.get("PAGE_TOKEN_KEY"):
        return environ["PAGE_TOKEN_KEY"].encode("utf-8")
    seed = "\0".join(("goodman-live page tokens", environ.get("INDEX_TABLE", ""), environ.get("AWS_ENDPOINT_URL", "")))
    return hashlib.sha256(seed.encode("utf-8")).digest()
