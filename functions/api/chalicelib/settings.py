"""Configuration read from the environment in one place, then passed around.

Lambda, the Chalice API and the local stack all set the same variables; boto3 itself
honours AWS_ENDPOINT_URL, which is how the code reaches moto, MinIO or AWS unchanged.
"""
import os
from dataclasses import dataclass
from typing import Mapping, Optional


@dataclass(frozen=True)
class Settings:
    raw_bucket: str
    products_bucket: str
    index_table: str
    raw_prefix: str = "raw/"
    region: str = "us-east-1"
    endpoint_url: Optional[str] = None
    url_expiry_seconds: int = 3600
    max_receive_count: int = 3
    work_queue_url: Optional[str] = None
    calibration_window_days: int = 7
    reduction_overrides: str = "{}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        missing = [k for k in ("RAW_BUCKET", "PRODUCTS_BUCKET", "INDEX_TABLE") if not environ.get(k)]
        if missing:
            raise RuntimeError("missing environment variables: " + ", ".join(missing))
        return cls(
            raw_bucket=environ["RAW_BUCKET"],
            products_bucket=environ["PRODUCTS_BUCKET"],
            index_table=environ["INDEX_TABLE"],
            raw_prefix=environ.get("RAW_PREFIX", "raw/"),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
            url_expiry_seconds=int(environ.get("URL_EXPIRY_SECONDS", "3600")),
            max_receive_count=int(environ.get("MAX_RECEIVE_COUNT", "3")),
            work_queue_url=environ.get("WORK_QUEUE_URL") or None,
            calibration_window_days=int(environ.get("CALIBRATION_WINDOW_DAYS", "7")),
            reduction_overrides=environ.get("REDUCTION_SETTINGS", "{}"),
        )

    def client(self, service: str):
        """A boto3 client for this deployment; created by callers once, at the edge."""
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def resource(self, service: str):
        import boto3

        return boto3.resource(service, region_name=self.region, endpoint_url=self.endpoint_url)
