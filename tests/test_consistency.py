"""The consistency check on the local stack: a reduced night made wrong in each way the
check knows (an orphan object, a lost product, a product listed twice, a file stuck,
a raw object never indexed, a raw object gone), found, and repaired; and a
re-reduction that no longer makes a product deletes it."""
from __future__ import annotations

import time

import pytest

from functions import consistency
from functions.reduction import config_for
from functions.services import send_task, warm_services
from tests.test_convergence import converge, small_night, _upload  # noqa: F401  (a fixture)

NIGHT = "2033-02-01"


@pytest.fixture(scope="module")
def night(system, s3, api, small_night):  # noqa: F811
    _upload(system, s3, NIGHT, small_night)
    _, _, files = converge(system, api, NIGHT, small_night, time.monotonic())
    return files


def _check(**kwargs):
    services = warm_services()
    return consistency.check(services, config_for(services), nights=[NIGHT], orphan_grace=0, raw_grace=0, **kwargs)



def _kinds(report):
    return sorted(f.kind for f in report.findings)


def _science(night):
    return next(f for f in night.values() if f["obstype"] == "OBJECT")


def test_a_reduced_night_is_consistent(night):
    report = _check()
    assert report.findings == [], report.lines()
    assert report.files == len(night) and report.objects > len(night)
    assert "all consistent" in report.lines()[-1]


def test_an_orphan_object_is_found_and_deleted(system, s3, night):
    bucket = system.stack.definition["products_bucket"]["name"]
    key = f"{NIGHT}/0099_stray/left_behind.fits"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert _kinds(_check()) == ["orphan_object"]
    assert consistency.check(warm_services(), config_for(warm_services()), nights=[NIGHT]).findings == [], \
        "an object younger than the grace period is left alone"
    report = _check(repair=True)
    assert report.findings[0].repaired and report.as_dict()["problems"] == 0
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0


def test_a_lost_product_is_made_again(system, s3, api, night):
    science = _science(night)
    product = next(p for p in science["products"] if p["kind"] == "calibrated")
    s3.delete_object(Bucket=product["bucket"], Key=product["key"])
    report = _check(repair=True)
    assert _kinds(report) == ["missing_product"] and report.findings[0].action == "reduce it again"
    system.wait_idle(60)
    assert s3.head_object(Bucket=product["bucket"], Key=product["key"])["ContentLength"] > 0
    assert _check().findings == []


def test_the_sweep_leaves_a_file_being_worked_on_to_its_work(system, s3, night):
    """A sweep that lands while a reduction replaces a file's products (or that reads the
    file from a lagging listing) sees products missing that are only being replaced: it
    leaves a file changed in the last SWEEP_BUSY_WITHIN seconds alone, rather than
    reduce it again for nothing. The same loss, once the file is quiet, is repaired."""
    services = warm_services()
    science = _science(night)
    product = next(p for p in science["products"] if p["kind"] == "spectrum_plot")
    services.index.update_file(science["file_id"], {"check_requeues": 0})   # just changed
    s3.delete_object(Bucket=product["bucket"], Key=product["key"])
    busy = _check(busy_within=consistency.SWEEP_BUSY_WITHIN)
    assert "missing_product" not in _kinds(busy), busy.lines()
    report = _check(repair=True)
    assert _kinds(report) == ["missing_product"]
    system.wait_idle(60)
    assert s3.head_object(Bucket=product["bucket"], Key=product["key"])["ContentLength"] > 0


def test_a_product_listed_twice_is_listed_once(system, night):
    services = warm_services()
    item = services.index.get_file(_science(night)["file_id"])
    services.index.update_file(item["file_id"], {"products": item["products"] + item["products"][:1]})
    report = _check(repair=True)
    assert _kinds(report) == ["duplicate_product"]
    assert len(services.index.get_file(item["file_id"])["products"]) == len(item["products"])


def test_a_stuck_file_is_queued_again(system, night):
    services = warm_services()
    fid = _science(night)["file_id"]
    services.index.update_file(fid, {"status": "reducing"})
    report = _check(repair=True, stuck_after=0)
    assert _kinds(report) == ["stuck"] and report.findings[0].action == "queue after_index"
    system.wait_idle(60)
    item = services.index.get_file(fid)
    assert item["status"] == "reduced" and item["check_requeues"] == 1


def test_a_file_stuck_for_good_ends_failed_with_the_reason(system, night):
    services = warm_services()
    fid = _science(night)["file_id"]
    services.index.update_file(fid, {"status": "retrying", "check_requeues": consistency.MAX_REQUEUES,
                                     "error": "attempt 3 failed: boom"})
    report = _check(repair=True, stuck_after=0)
    assert report.findings[0].action == "mark failed"
    item = services.index.get_file(fid)
    assert item["status"] == "failed" and "requeued 3 times" in item["error"] and "boom" in item["error"]
    services.index.update_file(fid, {"check_requeues": None})
    send_task(services, {"task": "reduce", "file_id": fid, "force": True})
    system.wait_idle(60)
    assert services.index.get_file(fid)["status"] == "reduced"


def test_a_raw_object_never_indexed_is_ingested(system, night):
    services = warm_services()
    bias = next(f for f in night.values() if f["obstype"] == "BIAS")
    table = system.stack.definition["index_table"]["name"]
    system.stack.client("dynamodb").delete_item(TableName=table, Key={"pk": {"S": f"FILE#{bias['file_id']}"},
                                                                      "sk": {"S": "FILE"}})
    report = _check(repair=True)
    assert _kinds(report) == ["raw_without_item"]
    system.wait_idle(60)
    assert services.index.get_file(bias["file_id"])["status"] == "indexed"


def test_a_raw_object_gone_ends_failed(system, s3, night):
    services = warm_services()
    bias = sorted((f for f in night.values() if f["obstype"] == "BIAS"), key=lambda f: f["file_name"])[-1]
    body = s3.get_object(Bucket=bias["raw_bucket"], Key=bias["raw_key"])["Body"].read()
    s3.delete_object(Bucket=bias["raw_bucket"], Key=bias["raw_key"])
    try:
        report = _check(repair=True)
        assert _kinds(report) == ["missing_raw"]
        item = services.index.get_file(bias["file_id"])
        assert item["status"] == "failed" and "no longer in storage" in item["error"]
    finally:
        s3.put_object(Bucket=bias["raw_bucket"], Key=bias["raw_key"], Body=body)
        system.wait_idle(60)


def test_a_re_reduction_deletes_what_it_no_longer_makes(system, s3, night):
    """An earlier reduction found a target this one does not: its spectrum goes."""
    services = warm_services()
    fid = _science(night)["file_id"]
    item = services.index.get_file(fid)
    bucket = system.stack.definition["products_bucket"]["name"]
    stale = f"{NIGHT}/{item['file_name'][:-5]}/ecfzst_target_9.fits"
    s3.put_object(Bucket=bucket, Key=stale, Body=b"old spectrum")
    entry = {"file_name": "ecfzst_target_9.fits", "kind": "extracted", "bucket": bucket, "key": stale,
             "size": 12, "content_type": "application/fits", "version": item["reduction_version"]}
    services.index.update_file(fid, {"products": item["products"] + [entry]})
    send_task(services, {"task": "reduce", "file_id": fid, "force": True})
    system.wait_idle(60)
    after = services.index.get_file(fid)
    assert stale not in {p["key"] for p in after["products"]}
    assert s3.list_objects_v2(Bucket=bucket, Prefix=stale)["KeyCount"] == 0
    assert after["reduction_version"] == item["reduction_version"] + 1
    assert {p["version"] for p in after["products"] if p["kind"] != "header"} == {after["reduction_version"]}
    assert _check().findings == []
