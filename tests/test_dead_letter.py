"""A file whose processing keeps failing for reasons outside the file (storage or
index unreachable) is retried by the queue, shows `retrying` meanwhile, and ends
`failed` with the last error once the queue dead-letters it: never silently lost."""
import time
import uuid

import pytest

from functions import ingest
from golive_data.index import file_id_for
from tests.conftest import real_fits


@pytest.fixture
def storage_down_for(system):
    """Make reads of keys containing a marker fail as an unreachable endpoint does."""
    marker = f"outage-{uuid.uuid4().hex[:6]}"
    real_read_head = ingest.read_head

    def failing_read_head(s3, bucket, key):
        if marker in key:
            raise ConnectionError("Could not connect to the endpoint URL (injected outage)")
        return real_read_head(s3, bucket, key)

    ingest.read_head = failing_read_head
    yield marker
    ingest.read_head = real_read_head


def test_persistent_failures_end_failed_with_the_last_error(system, s3, sqs, api, storage_down_for):
    key = f"{system.raw_prefix}2032-05-05/0201_{storage_down_for}.fits"
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=real_fits("goodman_red_comp.fits"))
    fid = file_id_for(system.raw_bucket, key)
    retrying = api.wait_for(fid, statuses=("retrying",), timeout=15)
    assert "attempt 1 failed" in retrying["error"] and "ConnectionError" in retrying["error"]
    failed = api.wait_for(fid, statuses=("failed",), timeout=40)
    assert failed["error"].startswith("gave up after 3 deliveries")
    assert "injected outage" in failed["error"] and "attempt 3 failed" in failed["error"]
    deadline = time.monotonic() + 10
    while not system.idle() and time.monotonic() < deadline:
        time.sleep(0.2)
    for url in (system.stack.queue_url, system.stack.dlq_url):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                        "ApproximateNumberOfMessagesNotVisible"])
        assert set(attrs["Attributes"].values()) == {"0"}


def test_a_transient_failure_recovers_on_retry(system, s3, api):
    marker = f"blip-{uuid.uuid4().hex[:6]}"
    real_read_head = ingest.read_head
    calls = []

    def flaky(s3_client, bucket, key):
        if marker in key and not calls:
            calls.append(key)
            raise ConnectionError("connection reset by peer (injected)")
        return real_read_head(s3_client, bucket, key)

    ingest.read_head = flaky
    try:
        key = f"{system.raw_prefix}2032-05-05/0202_{marker}.fits"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=real_fits("goodman_blue_flat.fits"))
        item = api.wait_for(file_id_for(system.raw_bucket, key), statuses=("indexed",), timeout=30)
    finally:
        ingest.read_head = real_read_head
    assert calls and item["obstype"] == "FLAT" and item.get("error") is None
