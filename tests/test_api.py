"""The API's listing, paging, filtering and change feed, over HTTP."""
import uuid

import pytest

from golive_data.index import file_id_for
from tests.conftest import comps_and_flats, real_fits


@pytest.fixture(scope="module")
def night_of_seven(system, s3, api):
    """Seven frames (4 comps, 3 flats) on a night of their own."""
    night = "2029-0%d-1%d" % (uuid.uuid4().int % 9 + 1, uuid.uuid4().int % 9)
    return night, [f["file_id"] for f in comps_and_flats(system, s3, api, night, 7)]


def test_nights_are_listed_newest_first_with_counts(system, s3, api, night_of_seven):
    night, ids = night_of_seven
    # a stray object outside raw/{night}/, with no DATE-OBS to tell its night: `unsorted`,
    # listed last, so the page still opens on the newest real night
    stray = f"{system.raw_prefix}stray-{uuid.uuid4().hex[:6]}.fits"
    s3.put_object(Bucket=system.raw_bucket, Key=stray, Body=b"not a FITS file")
    assert api.wait_for(file_id_for(system.raw_bucket, stray))["night"] == "unsorted"
    nights = api.json("/api/nights")["nights"]
    names = [n["night"] for n in nights]
    assert names[-1] == "unsorted" and names.count("unsorted") == 1
    assert names[:-1] == sorted(names[:-1], reverse=True)
    assert {"night": night, "files": 7}.items() <= next(n for n in nights if n["night"] == night).items()


def test_pages_cover_the_night_once_in_observation_order(api, night_of_seven):
    night, ids = night_of_seven
    seen, token, pages = [], None, 0
    while True:
        params = {"night": night, "limit": 3}
        if token:
            params["next"] = token
        page = api.json("/api/files", **params)
        assert len(page["files"]) <= 3
        seen += [f["file_name"] for f in page["files"]]
        pages += 1
        token = page["next"]
        if not token:
            break
    assert seen == [f"{i:04d}_frame.fits" for i in range(1, 8)]
    assert pages >= 3


def test_filter_by_type(api, night_of_seven):
    night, _ = night_of_seven
    flats = api.json("/api/files", night=night, type="FLAT")["files"]
    comps = api.json("/api/files", night=night, type="comp")["files"]
    assert len(flats) == 3 and {f["obstype"] for f in flats} == {"FLAT"}
    assert len(comps) == 4 and {f["obstype"] for f in comps} == {"COMP"}


def test_change_feed_returns_what_changed_after_the_cursor(api, s3, system, night_of_seven):
    night, ids = night_of_seven
    everything = api.json("/api/files", night=night, since="")
    assert {f["file_id"] for f in everything["files"]} == set(ids)
    newest = max(f["updated_at"] for f in everything["files"])
    after = api.json("/api/files", night=night, since=newest + "#~")
    assert after["files"] == [] and after["cursor"] >= newest
    key = f"{system.raw_prefix}{night}/0008_frame.fits"
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=real_fits("goodman_blue_flat.fits"))
    api.wait_for(file_id_for(system.raw_bucket, key))
    later = api.json("/api/files", night=night, since=after["cursor"])
    assert "0008_frame.fits" in [f["file_name"] for f in later["files"]]


@pytest.mark.parametrize("params, status, text", [
    ({}, 400, "night"),
    ({"night": "2024-01-01", "limit": "0"}, 400, "limit"),
    ({"night": "2024-01-01", "limit": "x"}, 400, "limit"),
    ({"night": "2024-01-01", "next": "%%%"}, 400, "token"),
])
def test_bad_requests_are_explained(api, params, status, text):
    resp = api.get("/api/files", **params)
    assert resp.status_code == status and text in resp.text


def test_unknown_file_is_404(api):
    resp = api.get("/api/files/0000000000000000")
    assert resp.status_code == 404 and "no file" in resp.text
