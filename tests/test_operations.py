"""Nothing lost between the instrument and the page: what a queue gives up on is listed
with its file and reason and can be sent again after a fix; the consistency check finds
abandoned uploads; and the operator's commands run against a running local stack."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import boto3
import pytest

from functions import consistency, operations, reduction
from golive_data.index import FileIndex, file_id_for
from functions.services import warm_services
from tests.conftest import ROOT, real_fits

NIGHT = "2034-04-04"


@pytest.fixture
def fast_retries(system):
    """Retries after 1, 2, 4 s instead of 5, 10, 20 s, so a message is dead-lettered in
    seconds (the queue's three deliveries and its redrive policy are unchanged)."""
    services = warm_services()
    before = services.settings
    services.settings = replace(before, retry_backoff_seconds=1)
    yield
    services.settings = before


@pytest.fixture(scope="module")
def lamp_frame(tmp_path_factory):
    """A simulated comparison lamp: reduced on its own, without masters."""
    from infra.simulator import make_night, write_night

    out = tmp_path_factory.mktemp("operations_lamp")
    write_night(out, make_night(seed=5, n_bias=0, n_flat=0, n_comp=1, n_science=0))
    return next(out.glob("*.fits")).read_bytes()



def _letters_of(file_id, listing):
    return [d for d in listing.letters if any(f["file_id"] == file_id for f in d.files)]


def _upload_unannounced(s3, bucket, key, body):
    """An object whose S3 events the ingest never got to handle (as when every delivery
    failed): uploaded with the bucket's notification off."""
    conf = {k: v for k, v in s3.get_bucket_notification_configuration(Bucket=bucket).items()
            if k != "ResponseMetadata"}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=conf)


def test_a_reduction_that_fails_every_delivery_is_dead_lettered_listed_and_redriven_after_the_fix(
        system, s3, api, monkeypatch, fast_retries, lamp_frame):
    marker = f"bug-{uuid.uuid4().hex[:6]}"
    key = f"{system.raw_prefix}{NIGHT}/0301_{marker}.fits"
    fid = file_id_for(system.raw_bucket, key)
    real_reduce_file = reduction.reduce_file

    def buggy(item, *args, **kwargs):    # a reduction bug this frame runs into
        if marker in item["raw_key"]:
            raise RuntimeError("injected bug: cannot reduce this frame")
        return real_reduce_file(item, *args, **kwargs)

    monkeypatch.setattr(reduction, "reduce_file", buggy)
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=lamp_frame)
    failed = api.wait_for(fid, statuses=("failed",), timeout=40)
    assert failed["error"].startswith("gave up after 3 deliveries") and "injected bug" in failed["error"]
    assert failed["dead_letter"]["queue"] == "reduce" and failed["dead_letter"]["deliveries"] == 3

    services = warm_services()
    listing = operations.list_dead_letters(services)
    [letter] = _letters_of(fid, listing)
    assert letter.queue == "reduce" and letter.recorded and "injected bug" in letter.reason
    assert letter.files == [{"file_id": fid, "night": NIGHT, "file_name": f"0301_{marker}.fits", "status": "failed"}]
    assert json.loads(letter.body) == {"goodman_live_task": {"task": "after_index", "file_id": fid}}
    text = "\n".join(listing.lines())
    assert f"0301_{marker}.fits" in text and "injected bug" in text and fid in text

    monkeypatch.undo()                   # the fix is deployed
    [done] = operations.redrive(services, [fid])
    assert done.sent and done.letter.redrives == 1 and done.queue_url == services.settings.work_queue_url
    reduced = api.wait_for(fid, statuses=("reduced",), timeout=30)
    assert reduced["error"] is None and "dead_letter" not in reduced
    keys = [p["key"] for p in reduced["products"]]
    assert len(keys) == len(set(keys)) and any(p["kind"] == "reduced" for p in reduced["products"])
    assert _letters_of(fid, operations.list_dead_letters(services)) == []
    [kept] = _letters_of(fid, operations.list_dead_letters(services, include_redriven=True))
    assert kept.state == "redriven" and kept.redrives == 1
    system.wait_idle(30)
    report = consistency.check(services, reduction.config_for(services), nights=[NIGHT], orphan_grace=0,
                               raw_grace=0)
    assert report.findings == [], report.lines()     # no product twice, none left over


@pytest.fixture(scope="module")
def science_frame(tmp_path_factory):
    """A simulated science frame: reduced and extracted on its own, without masters or a lamp."""
    from infra.simulator import make_night, write_night

    out = tmp_path_factory.mktemp("operations_science")
    write_night(out, make_night(seed=6, n_bias=0, n_flat=0, n_comp=0, n_science=1))
    return next(out.glob("*.fits")).read_bytes()


def test_a_cleaning_that_gives_up_leaves_the_spectra_and_says_so_then_is_redriven(
        system, s3, api, monkeypatch, fast_retries, science_frame):
    """The whole-frame cleaning runs after the spectra are listed: its failure is the 2-D
    frame's, not the file's. The file ends `reduced` with its spectra and quicklook,
    `cleaning: failed` and why; a redrive after the fix cleans it."""
    marker = f"cleanbug-{uuid.uuid4().hex[:6]}"
    key = f"{system.raw_prefix}{NIGHT}/0305_{marker}.fits"
    fid = file_id_for(system.raw_bucket, key)
    real_clean_file = reduction.clean_file

    def buggy(file_id, *args, **kwargs):
        if file_id == fid:
            raise RuntimeError("injected bug: cannot clean this frame")
        return real_clean_file(file_id, *args, **kwargs)

    monkeypatch.setattr(reduction, "clean_file", buggy)
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=science_frame)
    deadline = time.monotonic() + 60
    while True:
        seen = api.get(f"/api/files/{fid}").json()
        if seen.get("cleaning") == "failed" or time.monotonic() > deadline:
            break
        assert seen.get("status") in ("reducing", "retrying", None), seen   # never failed, never reduced clean
        time.sleep(0.2)
    assert seen["status"] == "reduced" and seen["cleaning"] == "failed", seen
    assert seen["error"].startswith("cleaning of the 2-D frame: gave up after 3 deliveries")
    assert "injected bug" in seen["error"] and seen["dead_letter"]["deliveries"] == 3
    kinds = {p["kind"] for p in seen["products"]}
    assert "extracted" in kinds and "quicklook" in kinds and "reduced" not in kinds, kinds

    monkeypatch.undo()
    services = warm_services()
    [done] = operations.redrive(services, [fid])
    assert done.sent
    deadline = time.monotonic() + 30
    while (seen := api.get(f"/api/files/{fid}").json()).get("cleaning") is not None:
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert seen["status"] == "reduced" and seen["error"] is None and "dead_letter" not in seen
    kinds = {p["kind"] for p in seen["products"]}
    assert "reduced" in kinds and "quicklook" not in kinds and "extracted" in kinds, kinds


def test_a_reduction_that_fails_after_listing_its_products_leaves_no_orphans(system, s3, api, monkeypatch,
                                                                             fast_retries, science_frame):
    """A reduction lists its new products, then fails (its calibration cannot read the
    lamp): the earlier reduction's products that it does not list (the cleaned 2-D frame
    and its preview) are deleted all the same. The retry would no longer know them, and
    they stayed behind as objects no item lists, for good once the file gave up."""
    from functions import spectroscopy

    night = "2034-04-05"
    key = f"{system.raw_prefix}{night}/0306_again.fits"
    fid = file_id_for(system.raw_bucket, key)
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=science_frame)
    first = api.wait_for(fid, statuses=("reduced",), timeout=60)
    assert any(p["kind"] == "reduced" for p in first["products"])
    system.wait_idle(30)
    real_calibrate = spectroscopy.calibrate

    def failing(item, *args, **kwargs):
        if item["file_id"] == fid:
            raise RuntimeError("injected: the lamp could not be read")
        return real_calibrate(item, *args, **kwargs)

    monkeypatch.setattr(spectroscopy, "calibrate", failing)
    services = warm_services()
    services.sqs.send_message(QueueUrl=services.settings.work_queue_url,
                              MessageBody=json.dumps({"goodman_live_task": {"task": "reduce", "file_id": fid,
                                                                            "force": True}}))
    failed = api.wait_for(fid, statuses=("failed",), timeout=60)
    assert "injected" in failed["error"] and any(p["kind"] == "extracted" for p in failed["products"])
    system.wait_idle(30)
    report = consistency.check(services, reduction.config_for(services), nights=[night], orphan_grace=0,
                               raw_grace=0)
    assert [f.kind for f in report.findings if f.kind == "orphan_object"] == [], report.lines()


def test_a_message_left_in_a_dead_letter_queue_is_listed_and_redriven(system, s3, sqs, api):
    """The dead-letter function disabled: the message waits in the queue, and is found
    there, read without being taken, and redriven from it."""
    services = warm_services()
    key = f"{system.raw_prefix}{NIGHT}/0302_unheard.fits"
    fid = file_id_for(system.raw_bucket, key)
    poller = system.poller("ingest-dlq")
    poller.disable()
    try:
        _upload_unannounced(s3, system.raw_bucket, key, real_fits("goodman_blue_flat.fits"))
        sqs.send_message(QueueUrl=system.stack.dlq_url,
                         MessageBody=json.dumps(consistency.s3_event(system.raw_bucket, key)))
        [letter] = _letters_of(fid, operations.list_dead_letters(services))
        assert letter.in_queue and not letter.recorded and letter.queue == "ingest"
        assert letter.files == [{"file_id": fid, "night": NIGHT, "file_name": "0302_unheard.fits",
                                 "status": "not indexed"}]
        attrs = sqs.get_queue_attributes(QueueUrl=system.stack.dlq_url,
                                         AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "1", "listing reads a dead letter and leaves it there"
        [done] = operations.redrive(services, [fid])
        assert done.sent and done.queue_url == services.settings.ingest_queue_url
        assert api.wait_for(fid, statuses=("indexed",), timeout=20)["obstype"] == "FLAT"
        attrs = sqs.get_queue_attributes(QueueUrl=system.stack.dlq_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert set(attrs.values()) == {"0"}
        [kept] = _letters_of(fid, operations.list_dead_letters(services, include_redriven=True))
        assert kept.state == "redriven" and kept.redrives == 1
    finally:
        poller.enable()


def test_a_message_left_in_the_background_dead_letter_queue_is_redriven_to_the_work_queue(system, sqs):
    """The background queue's dead letters are the reduction's: read from its dead-letter
    queue, kept as `reduce`, and sent back to the work queue (any task runs from either)."""
    services = warm_services()
    body = json.dumps({"not a task": uuid.uuid4().hex})   # the reduction drops it once redriven
    poller = system.poller("background-dlq")
    poller.disable()
    try:
        sqs.send_message(QueueUrl=system.stack.background_dlq_url, MessageBody=body)
        listing = operations.list_dead_letters(services)
        [letter] = [d for d in listing.letters if d.body == body]
        assert letter.in_queue and not letter.recorded and letter.queue == "reduce"
        assert listing.queues["background"]["url"] == system.stack.background_dlq_url
        [done] = operations.redrive(services, [letter.id])
        assert done.sent and done.queue_url == services.settings.work_queue_url
        attrs = sqs.get_queue_attributes(QueueUrl=system.stack.background_dlq_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert set(attrs.values()) == {"0"}, "the redriven letter is taken out of its dead-letter queue"
        [kept] = [d for d in operations.list_dead_letters(services, include_redriven=True).letters if d.body == body]
        assert kept.state == "redriven" and kept.redrives == 1
    finally:
        poller.enable()


def test_an_abandoned_multipart_upload_is_reported_and_aborted(system, s3):
    services = warm_services()
    config = reduction.config_for(services)
    key = f"{system.raw_prefix}{NIGHT}/0303_never_finished.fits"
    s3.create_multipart_upload(Bucket=system.raw_bucket, Key=key)
    fresh = consistency.check(services, config, nights=[NIGHT])
    assert "abandoned_upload" not in {f.kind for f in fresh.findings}, "an upload just begun is left alone"
    report = consistency.check(services, config, nights=[NIGHT], abandoned_after=0)
    [found] = [f for f in report.findings if f.kind == "abandoned_upload"]
    assert found.key == key and not found.repaired
    report = consistency.check(services, config, nights=[NIGHT], abandoned_after=0, repair=True)
    assert [f.repaired for f in report.findings if f.kind == "abandoned_upload"] == [True]
    assert s3.list_multipart_uploads(Bucket=system.raw_bucket, Prefix=key).get("Uploads", []) == []


def test_the_commands_run_against_a_running_local_stack(tmp_path):
    state_file = tmp_path / "stack.json"
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([sys.executable, "-m", "infra.local", "serve", "--port", "0", "--workers", "1",
                              "--state-file", str(state_file)], cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "infra.local", *args, "--state-file", str(state_file)],
                              cwd=str(ROOT), capture_output=True, text=True, timeout=90)

    try:
        deadline = time.monotonic() + 60
        while not state_file.exists():
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        env = json.loads(state_file.read_text())["environment"]
        session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], region_name=env["AWS_REGION"],
                                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        s3, sqs = (session.client(s, endpoint_url=env["AWS_ENDPOINT_URL"]) for s in ("s3", "sqs"))
        index = FileIndex(session.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"]), env["INDEX_TABLE"])
        bucket, key = env["RAW_BUCKET"], f"{env['RAW_PREFIX']}{NIGHT}/0304_flat.fits"
        fid = file_id_for(bucket, key)

        def wait_status(status):
            deadline = time.monotonic() + 20
            while (index.get_file(fid) or {}).get("status") != status:
                assert time.monotonic() < deadline, index.get_file(fid)
                time.sleep(0.2)

        # The ingest gave up on a file: its message lands in the dead-letter queue, whose
        # function marks the file failed and keeps the message.
        _upload_unannounced(s3, bucket, key, real_fits("goodman_blue_flat.fits"))
        dlq = sqs.get_queue_url(QueueName="goodman-live-ingest-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(consistency.s3_event(bucket, key)))
        wait_status("failed")
        listed = run("dead-letters")
        assert listed.returncode == 0, listed.stderr
        assert "1 dead letter(s)" in listed.stdout and "0304_flat.fits" in listed.stdout
        assert "failed" in listed.stdout and "gave up after 3 deliveries" in listed.stdout and fid in listed.stdout
        redriven = run("redrive", fid)
        assert redriven.returncode == 0, redriven.stderr
        assert f"redriven: ingest 0304_flat.fits (file {fid})" in redriven.stdout and "[redrive 1]" in redriven.stdout
        wait_status("indexed")
        assert run("dead-letters").stdout.startswith("no dead letters")

        s3.create_multipart_upload(Bucket=bucket, Key=f"{env['RAW_PREFIX']}{NIGHT}/0305_half.fits")
        found = run("check", "--night", NIGHT, "--abandoned-after", "0")
        assert found.returncode == 1 and "abandoned_upload" in found.stdout and "1 finding(s)" in found.stdout
        repaired = run("check", "--night", NIGHT, "--abandoned-after", "0", "--repair")
        assert repaired.returncode == 0 and "[repaired]" in repaired.stdout, repaired.stdout + repaired.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()
    assert not state_file.exists()
    stopped = run("dead-letters")
    assert stopped.returncode == 2 and "the local stack is not running" in stopped.stderr
