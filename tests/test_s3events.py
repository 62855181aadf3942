import json

import pytest

from functions.s3events import BadMessage, Ignored, ObjectCreated, parse_body
from tests.conftest import FIXTURES

EVENTS = FIXTURES / "events"
KEY = "raw/2024-03-14/0023_HD 12345 B+.fits"


@pytest.mark.parametrize("name", ["aws_put.json", "minio_put.json", "sns_wrapped.json"])
def test_keys_are_decoded_the_same_whatever_the_sender(name):
    (event,) = parse_body((EVENTS / name).read_text())
    assert isinstance(event, ObjectCreated)
    assert event.bucket == "goodman-live-raw"
    assert event.key == KEY
    assert event.size == 3928320
    assert event.etag and not event.etag.startswith('"')


def test_s3_test_event_is_acknowledged_and_ignored():
    (event,) = parse_body((EVENTS / "s3_test_event.json").read_text())
    assert isinstance(event, Ignored) and "TestEvent" in event.why


def test_removals_need_no_ingest():
    body = json.loads((EVENTS / "aws_put.json").read_text())
    body["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    (event,) = parse_body(body)
    assert isinstance(event, Ignored)


@pytest.mark.parametrize("body", ["not json", "[1, 2]", '{"hello": "world"}'])
def test_other_messages_are_rejected_with_a_reason(body):
    with pytest.raises(BadMessage):
        parse_body(body)
