"""Re-reduction with settings, on the local stack: a requested version is reduced into
its own folder and shown by the file item, the automatic reduction stays listed and
kept, later automatic reductions refine the version shown, and a version that fails
says why and is not adopted. The items are read from the index directly (the API's
routes for versions are the API's business)."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions import reduction
from functions.core.reduce import UnsupportedFrame
from functions.services import Services, send_task
from golive_data import versions
from golive_data.index import file_id_for
from golive_data.settings import Settings

NIGHT = "2024-08-20"   # no other test's night within the calibration window
SCIENCE = "0022_EG21_400M2_GG455.fits"
LAMP = "0021_HgArNe_400M2_GG455.fits"
ASKED = {"extraction_type": "optimal", "max_targets": 1}


@pytest.fixture(scope="module")
def services(system):
    return Services.from_settings(Settings.from_env())


@pytest.fixture(scope="module")
def store(services):
    return versions.store_of(services.index)


def _wait(what, timeout=30.0):
    """Poll `what()` until it returns something truthy; fail with the last value seen."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        seen = what()
        if seen:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting after {timeout} s")


def _objects(services, prefix):
    listed = services.s3.list_objects_v2(Bucket=services.settings.products_bucket, Prefix=prefix)
    return {o["Key"] for o in listed.get("Contents", [])}


def _body(services, product):
    return services.s3.get_object(Bucket=product["bucket"], Key=product["key"])["Body"].read()


def _by_kind(products, kind):
    return next(p for p in products if p["kind"] == kind)


def _finished(system, store, file_id, n):
    """Version n once it is done or failed and the work it set off has ended."""
    _wait(lambda: (versions.get_version(*store, file_id, n) or {}).get("status") in (versions.DONE, versions.FAILED))
    system.wait_idle(timeout=30)
    return versions.get_version(*store, file_id, n)


@pytest.fixture(scope="module")
def frames(system, services, sim_night):
    """A lamp and a science frame (no bias or flat: it is reduced without them), reduced
    and calibrated automatically."""
    ids = {}
    for name in (LAMP, SCIENCE):
        key = f"{system.raw_prefix}{NIGHT}/{name}"
        services.s3.put_object(Bucket=system.raw_bucket, Key=key, Body=(sim_night / name).read_bytes())
        ids[name] = file_id_for(system.raw_bucket, key)
    _wait(lambda: (services.index.get_file(ids[SCIENCE]) or {}).get("spectra_status") == "calibrated", timeout=45)
    system.wait_idle(timeout=30)
    return ids


@pytest.fixture(scope="module")
def automatic(services, frames):
    """The science frame as the automatic reduction left it."""
    return services.index.get_file(frames[SCIENCE])


@pytest.fixture(scope="module")
def version1(system, services, store, frames, automatic):
    file_id = frames[SCIENCE]
    n = versions.request_version(*store, file_id, ASKED, "alice")
    assert n == 1
    queued = versions.get_version(*store, file_id, n)
    assert queued["status"] == versions.QUEUED and queued["settings"] == ASKED and queued["requested_by"] == "alice"
    send_task(services, {"task": "rereduce", "file_id": file_id, "version": n})
    return _finished(system, store, file_id, n)


def test_a_requested_version_is_reduced_into_its_own_folder_and_shown(services, store, frames, automatic, version1):
    file_id = frames[SCIENCE]
    assert version1["status"] == versions.DONE, version1
    assert version1["started_at"] <= version1["finished_at"] and version1.get("error") is None
    item = services.index.get_file(file_id)
    assert item["settings_version"] == 1 and item["settings"] == ASKED
    assert item["status"] == "reduced" and item["spectra_status"] == "calibrated"
    assert item["products"] == version1["products"] and version1["spectra_status"] == "calibrated"
    assert [s["extraction"] for s in item["spectra"]] == ["optimal"]
    assert [s["extraction"] for s in automatic["spectra"]] == ["fractional"]
    folder = f"{NIGHT}/{SCIENCE[:-5]}/"
    for p in item["products"]:
        if p["kind"] == "header":   # the raw header is every version's
            assert p["key"] == folder + p["file_name"]
        else:
            assert p["key"] == f"{folder}v1/{p['file_name']}", p
    assert {p["key"] for p in item["products"]} <= _objects(services, folder)
    # its spectra differ from the automatic reduction's
    for kind in ("extracted", "calibrated"):
        assert _body(services, _by_kind(item["products"], kind)) != _body(services, _by_kind(automatic["products"],
                                                                                            kind))


def test_the_automatic_reduction_stays_listed_and_kept(services, store, frames, automatic, version1):
    listed = versions.list_versions(*store, frames[SCIENCE])
    assert [v["version"] for v in listed] == [0, 1]
    v0 = listed[0]
    assert v0["status"] == versions.DONE and v0["requested_by"] == versions.AUTOMATIC and v0["settings"] == {}
    assert v0["products"] == automatic["products"] and v0["spectra_status"] == "calibrated"
    assert {p["key"] for p in automatic["products"]} <= _objects(services, f"{NIGHT}/{SCIENCE[:-5]}/")
    assert not any("/v1/" in p["key"] for p in v0["products"])
    # a version item is no file of the night, nor a change of it
    files, _ = services.index.list_files(NIGHT)
    assert sorted(f["file_name"] for f in files) == [LAMP, SCIENCE]
    assert {f["file_name"] for f in services.index.changes(NIGHT)[0]} <= {LAMP, SCIENCE}


def test_a_later_automatic_reduction_refines_the_version_shown(system, services, store, frames, automatic,
                                                               version1):
    file_id = frames[SCIENCE]
    before = services.index.get_file(file_id)
    send_task(services, {"task": "reduce", "file_id": file_id, "force": True})
    _wait(lambda: (lambda i: i["reduction_version"] > before["reduction_version"] and i["status"] == "reduced"
                   and i.get("spectra_status") == "calibrated")(services.index.get_file(file_id)))
    system.wait_idle(timeout=30)
    item = services.index.get_file(file_id)
    assert item["settings_version"] == 1 and item["settings"] == ASKED
    assert [s["extraction"] for s in item["spectra"]] == ["optimal"]
    assert all("/v1/" in p["key"] for p in item["products"] if p["kind"] != "header")
    v0, v1 = versions.list_versions(*store, file_id)
    assert v1["products"] == item["products"] and v1["status"] == versions.DONE
    keys = _objects(services, f"{NIGHT}/{SCIENCE[:-5]}/")
    assert {p["key"] for p in v0["products"] + v1["products"]} <= keys
    # nothing else stays behind: every object is some version's
    assert keys == {p["key"] for p in v0["products"] + v1["products"]}


def test_a_version_the_reduction_cannot_handle_fails_and_is_not_adopted(system, services, store, frames, version1,
                                                                      monkeypatch):
    file_id = frames[SCIENCE]
    shown = services.index.get_file(file_id)
    real = reduction.reduce_frame

    def refusing(data, header, obstype, camera, binning, calibrations, settings, **kw):
        if settings.max_targets == 2:
            raise UnsupportedFrame("RED 2x2 regions do not fit these settings (test)")
        return real(data, header, obstype, camera, binning, calibrations, settings, **kw)

    monkeypatch.setattr(reduction, "reduce_frame", refusing)
    n = versions.request_version(*store, file_id, {"max_targets": 2}, "bob")
    send_task(services, {"task": "rereduce", "file_id": file_id, "version": n})
    failed = _finished(system, store, file_id, n)
    assert failed["status"] == versions.FAILED and "regions do not fit these settings" in failed["error"]
    assert failed["products"] == []
    item = services.index.get_file(file_id)
    for name in ("settings_version", "settings", "status", "error", "products", "spectra", "spectra_status"):
        assert item.get(name) == shown.get(name), name
    assert not _objects(services, f"{NIGHT}/{SCIENCE[:-5]}/v{n}/")
    # settings the reduction refuses fail the version without reducing anything
    n = versions.request_version(*store, file_id, {"max_targets": 0}, "bob")
    send_task(services, {"task": "rereduce", "file_id": file_id, "version": n})
    refused = _finished(system, store, file_id, n)
    assert refused["status"] == versions.FAILED
    assert refused["error"] == "settings refused: max_targets must be within 1..20, got 0"
    assert services.index.get_file(file_id)["products"] == shown["products"]


def test_racing_requests_get_distinct_numbers(services, store, frames):
    file_id = frames[LAMP]
    start = threading.Barrier(8)

    def request(i):
        start.wait()
        return versions.request_version(*store, file_id, {"max_targets": 1}, f"user{i}")

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(request, range(8)))
    assert sorted(numbers) == list(range(1, 9))
    assert [v["version"] for v in versions.list_versions(*store, file_id)] == list(range(1, 9))
    assert services.index.get_file(file_id)["versions_requested"] == 8
    with pytest.raises(versions.NoSuchFile):
        versions.request_version(*store, "0000000000000000", {}, "alice")


def test_a_proposals_settings_apply_to_its_frames_automatic_reductions(system, services, sim_night):
    """A PI's settings for their proposal (PUT /api/proposals/{id}/settings) are what the
    automatic reduction of its frames uses; another proposal's frames keep the defaults."""
    import io

    from astropy.io import fits

    from golive_data.access import Directory

    night = "2024-09-03"
    directory = Directory(*versions.store_of(services.index))
    directory.put_proposal("SO2024B-OPT")
    directory.set_settings("SO2024B-OPT", {"extraction_type": "optimal"})
    ids = {}
    for name, proposal in ((LAMP, "SO2024B-OPT"), (SCIENCE, "S02024B-OPT"), ("other_" + SCIENCE, "SO2024B-DEF")):
        with fits.open(sim_night / name.replace("other_", "")) as hdul:
            hdul[0].header["PROPOSAL"] = proposal      # S0...: the zero for the O is read as an O
            body = io.BytesIO()
            hdul.writeto(body)
        key = f"{system.raw_prefix}{night}/{name}"
        services.s3.put_object(Bucket=system.raw_bucket, Key=key, Body=body.getvalue())
        ids[name] = file_id_for(system.raw_bucket, key)
    for name in (SCIENCE, "other_" + SCIENCE):
        _wait(lambda: (services.index.get_file(ids[name]) or {}).get("spectra_status") == "calibrated", timeout=60)
    system.wait_idle(timeout=30)
    assert [s["extraction"] for s in services.index.get_file(ids[SCIENCE])["spectra"]] == ["optimal"]
    assert [s["extraction"] for s in services.index.get_file(ids["other_" + SCIENCE])["spectra"]] == ["fractional"]


def test_the_consistency_check_keeps_every_versions_objects(services, frames, version1):
    """Earlier versions' objects are listed by their version items only: the sweep must
    not take them for orphans."""
    from functions import consistency
    from functions.reduction import config_for

    report = consistency.check(services, config_for(services), nights=[NIGHT], orphan_grace=0, raw_grace=0)
    assert [f for f in report.findings if f.kind == "orphan_object"] == []
