"""The ingest path end to end on the local stack: S3 put -> notification -> SQS ->
handler -> DynamoDB -> API over HTTP."""
import json
import time
import uuid

from golive_data.index import file_id_for
from tests.conftest import real_fits


def _put(system, s3, name, body, night="2018-03-19"):
    key = f"{system.raw_prefix}{night}/{name}"
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=body)
    return key, file_id_for(system.raw_bucket, key)


def _unique(stem):
    return f"{stem}_{uuid.uuid4().hex[:6]}"


def test_a_real_frame_is_indexed_with_its_classification_and_header(system, s3, api):
    key, fid = _put(system, s3, _unique("0101_HgArNe") + ".fits", real_fits("goodman_red_comp.fits"))
    item = api.wait_for(fid)
    # The real header is whole; its pixels were cut to 10x10 by the data's publisher,
    # which the reduction refuses with the reason.
    assert item["status"] == "unsupported", item
    assert "regions do not fit shape (10, 10)" in item["error"]
    assert (item["obstype"], item["camera"], item["technique"]) == ("COMP", "RED", "Spectroscopy")
    assert item["configuration"] == "RED_400_G6.9-C13.9_NO_FILTER_0.45LS_1x2_USER-DEFINED"
    assert item["night"] == "2018-03-19" and item["raw_key"] == key
    (product,) = item["products"]
    assert product["kind"] == "header"
    text = api.http.get(product["url"], timeout=10).text
    assert "OBSTYPE = 'COMP" in text and text.rstrip().endswith("END")


def test_keys_with_spaces_and_plus_signs(system, s3, api):
    name = _unique("0102_HD 12345+B") + ".fits"
    key, fid = _put(system, s3, name, real_fits("goodman_blue_flat.fits"))
    item = api.wait_for(fid)
    assert item["file_name"] == name and item["raw_key"] == key and item["status"] == "indexed"


def test_files_of_two_folders_below_one_night_keep_apart(system, s3, api):
    """The agent keeps the path below a dated folder in the key (raw/2018-03-19/red/...):
    the item is named as the file is, and the two files' products cannot collide."""
    name = _unique("0106_flat") + ".fits"
    items = []
    for folder in ("red", "blue/RAW"):
        _, fid = _put(system, s3, f"{folder}/{name}", real_fits("goodman_blue_flat.fits"))
        items.append(api.wait_for(fid))
    for folder, item in zip(("red", "blue/RAW"), items):
        assert item["status"] == "indexed" and item["night"] == "2018-03-19", item
        assert item["file_name"] == name and item["path"] == f"{folder}/{name}"
        (product,) = item["products"]
        assert product["key"] == f"2018-03-19/{folder}/{name[:-5]}/{name[:-5]}.header.txt"
    assert items[0]["file_id"] != items[1]["file_id"]


def test_truncated_upload_fails_with_the_reason(system, s3, api):
    raw = real_fits("goodman_red_comp.fits")
    _, fid = _put(system, s3, _unique("0103_cut") + ".fits", raw[: len(raw) - 2880])
    item = api.wait_for(fid)
    assert item["status"] == "failed"
    assert "truncated" in item["error"] and str(len(raw) - 2880) in item["error"]


def test_non_fits_upload_fails_with_the_reason(system, s3, api):
    _, fid = _put(system, s3, _unique("0104_notes") + ".fits", b"observing log: clouds at 02:00\n")
    item = api.wait_for(fid)
    assert item["status"] == "failed" and "not a FITS file" in item["error"]


def test_empty_upload_fails_with_the_reason(system, s3, api):
    _, fid = _put(system, s3, _unique("0105_empty") + ".fits", b"")
    item = api.wait_for(fid)
    assert item["status"] == "failed" and "empty" in item["error"]


def test_a_duplicate_event_gives_one_item_and_one_count(system, s3, sqs, api):
    night = "2030-01-0" + str(uuid.uuid4().int % 9 + 1)
    name = _unique("0106_dup") + ".fits"
    key, fid = _put(system, s3, name, real_fits("goodman_red_comp.fits"), night=night)
    first = api.wait_for(fid)
    head = s3.head_object(Bucket=system.raw_bucket, Key=key)
    event = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                          "s3": {"bucket": {"name": system.raw_bucket},
                                 "object": {"key": key.replace(" ", "+"), "size": head["ContentLength"],
                                            "eTag": head["ETag"].strip('"')}}}]}
    for _ in range(3):
        sqs.send_message(QueueUrl=system.stack.queue_url, MessageBody=json.dumps(event))
    deadline = time.monotonic() + 15
    while not system.idle() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert system.idle()
    files = api.json("/api/files", night=night)["files"]
    assert [f["file_id"] for f in files] == [fid]
    assert files[0]["updated_at"] == first["updated_at"]  # the repeats changed nothing
    (n,) = [n for n in api.json("/api/nights")["nights"] if n["night"] == night]
    assert n["files"] == 1


def test_a_new_version_of_a_file_is_indexed_again(system, s3, api):
    night = "2031-02-02"
    name = _unique("0107_again") + ".fits"
    _, fid = _put(system, s3, name, b"not yet", night=night)
    assert api.wait_for(fid)["status"] == "failed"
    _put(system, s3, name, real_fits("goodman_blue_flat.fits"), night=night)
    item = api.wait_for(fid, statuses=("indexed",))
    assert item["obstype"] == "FLAT" and item.get("error") is None
    (n,) = [n for n in api.json("/api/nights")["nights"] if n["night"] == night]
    assert n["files"] == 1


def test_test_events_are_acknowledged(system, sqs):
    sqs.send_message(QueueUrl=system.stack.queue_url,
                     MessageBody=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "x"}))
    deadline = time.monotonic() + 10
    while not system.idle() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert system.idle()
    dlq = sqs.get_queue_attributes(QueueUrl=system.stack.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert dlq["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_an_event_redelivered_while_the_file_is_reduced_leaves_its_item_alone(system, s3, sqs):
    """A frame's item while its reduction runs (`reducing`, products and calibrations
    listed) is not written afresh by the same event delivered again: that would unlist
    what the reduction wrote and leave its objects behind. The work is handed on."""
    from functions.services import warm_services

    night = "2030-02-0" + str(uuid.uuid4().int % 9 + 1)
    key, fid = _put(system, s3, _unique("0108_redelivered") + ".fits", real_fits("goodman_red_comp.fits"), night)
    services = warm_services()
    deadline = time.monotonic() + 15
    while (services.index.get_file(fid) or {}).get("status") != "unsupported" or not system.idle():
        assert time.monotonic() < deadline, "the frame was not reduced"
        time.sleep(0.2)
    reduced = services.index.get_file(fid)
    listed = {"file_name": "czt_x.fits", "kind": "reduced", "bucket": "b", "key": f"{night}/x/czt_x.fits"}
    services.index.update_file(fid, {"status": "reducing", "products": [listed],
                                     "calibrations": {"master_bias": {"file_name": "mb.fits"}}})
    before = services.index.get_file(fid)
    try:
        _redeliver(system, s3, sqs, services, key, fid, before, listed)
    finally:  # the item as the reduction left it, for the sweeps of later tests
        services.index.update_file(fid, {k: reduced.get(k) for k in ("status", "products", "calibrations")})


def _redeliver(system, s3, sqs, services, key, fid, before, listed):
    import dataclasses

    from functions import ingest
    from functions.s3events import ObjectCreated
    from functions.services import TASK_KEY

    queue = sqs.create_queue(QueueName=_unique("handed-on"))["QueueUrl"]
    elsewhere = dataclasses.replace(services, settings=dataclasses.replace(services.settings, work_queue_url=queue))
    head = s3.head_object(Bucket=system.raw_bucket, Key=key)
    # S3's own event, and one without the ETag (the consistency check's, an operator's):
    # the object's own ETag then tells that it is the same
    for etag in (head["ETag"].strip('"'), None):
        ingest.ingest_object(ObjectCreated(system.raw_bucket, key, etag, head["ContentLength"]), elsewhere)
        after = services.index.get_file(fid)
        assert (after["status"], after["products"], after["calibrations"], after["updated_at"]) == \
            ("reducing", [listed], before["calibrations"], before["updated_at"]), etag
        (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
        assert json.loads(message["Body"])[TASK_KEY] == {"task": "after_index", "file_id": fid}
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_queue(QueueUrl=queue)

