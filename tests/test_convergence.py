"""Faults between the instrument and the page, on the local stack, two at once: a
lagging GSI with every event delivered five times at once; a storage outage
mid-reduction with a worker process killed mid-batch. Each run ends with the files lost, duplicated and
stuck (all 0) and the time the system took to converge, and the consistency check
finds nothing left to repair.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from functions import consistency
from golive_data.index import file_id_for
from golive_data.item import FINAL_STATUSES
from functions.reduction import config_for
from functions.services import warm_services
from tests.conftest import ROOT

#: Enough for both masters (10 each), one lamp and two science frames.
NIGHT_FRAMES = dict(n_bias=10, n_flat=10, n_comp=1, n_science=2)


@pytest.fixture(scope="module")
def small_night(tmp_path_factory):
    from infra.simulator import make_night, write_night

    out = tmp_path_factory.mktemp("convergence_night")
    write_night(out, make_night(seed=3, **NIGHT_FRAMES))
    return sorted(out.glob("*.fits"))


def _upload(system, s3, night, paths):
    def put(path):
        s3.put_object(Bucket=system.raw_bucket, Key=f"{system.raw_prefix}{night}/{path.name}", Body=path.read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, paths))


def _converged(system, api, night, names):
    files = {f["file_name"]: f for f in api.json("/api/files", night=night, limit=500)["files"]}
    raw = [files.get(n) for n in names]
    if not system.idle() or any(f is None or f["status"] not in FINAL_STATUSES for f in raw):
        return None
    science = [f for f in raw if f["obstype"] == "OBJECT"]
    if any(f.get("spectra_status") != "calibrated" for f in science):
        return None
    if not any(f["obstype"] == "MASTER_FLAT" for f in files.values()):
        return None
    return files


def converge(system, api, night, paths, started, timeout=180.0):
    """Wait for the night to be whole (every file final, masters built, spectra
    calibrated, queues empty) three looks in a row; the audit figures and seconds taken."""
    names = [p.name for p in paths]
    deadline, quiet, files = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        files = _converged(system, api, night, names)
        quiet = quiet + 1 if files else 0
        if quiet >= 3:
            break
        time.sleep(0.5)
    else:
        seen = api.json("/api/files", night=night, limit=500)["files"]
        raise AssertionError(f"night {night} did not converge in {timeout} s: "
                             f"{[(f['file_name'], f['status'], f.get('spectra_status')) for f in seen]}")
    seconds = time.monotonic() - started
    audit = _audit(system, api, night, paths, files)
    print(f"\n{night}: lost {audit['lost']}, duplicated {audit['duplicated']}, stuck {audit['stuck']}, "
          f"failed {audit['failed']}; converged in {seconds:.1f} s")
    return audit, seconds, files


def _audit(system, api, night, paths, files):
    s3 = system.stack.client("s3")
    raw_files = [files.get(p.name) for p in paths]
    lost = sum(1 for f in raw_files if f is None)
    failed = sum(1 for f in raw_files if f and f["status"] == "failed")
    stuck = sum(1 for f in files.values() if f["status"] not in FINAL_STATUSES)
    keys = [p["key"] for f in files.values() for p in f.get("products", [])]
    duplicated = len(keys) - len(set(keys))
    if duplicated:
        print("products listed twice:", sorted(k for k in set(keys) if keys.count(k) > 1))
    # one item per raw object, and the night's count agrees
    nights = {n["night"]: n for n in api.json("/api/nights")["nights"]}
    duplicated += abs(int(nights[night]["files"]) - len(files))
    # one master version per group and frame count
    masters = [f["file_name"] for f in files.values() if f["obstype"].startswith("MASTER_")]
    duplicated += len(masters) - len(set(masters))
    print("masters:", masters, "night count", nights[night]["files"])
    listed = {p["key"] for f in files.values() for p in f.get("products", [])}
    stored = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=system.stack.definition["products_bucket"]["name"], Prefix=f"{night}/") for o in page.get("Contents", [])}
    services = warm_services()
    report = consistency.check(services, config_for(services), nights=[night], orphan_grace=0, raw_grace=0)
    return {"lost": lost + len(listed - stored), "duplicated": duplicated, "stuck": stuck, "failed": failed,
            "orphans": len(stored - listed), "findings": [f"{f.kind}: {f.what}" for f in report.findings]}


def _assert_whole(audit):
    assert audit == {"lost": 0, "duplicated": 0, "stuck": 0, "failed": 0, "orphans": 0, "findings": []}, \
        json.dumps(audit, indent=1)  # whole: pytest's comparison would cut the findings short


def test_a_lagging_gsi_and_every_event_delivered_five_times_converge(system, s3, sqs, api, small_night):
    """Every night listing answered from a table 1.5 s old, and each raw file's
    notification arriving six times (S3's own and five copies sent concurrently, as
    at-least-once delivery allows): a lamp and the science frames it serves, a master and
    the frames that wait for it, decided in the same instants by lagging listings and
    duplicate work. The work looks again once a listing has caught up
    (GSI_SETTLE_SECONDS, 2 s on the local stack), and converges on that alone: the
    scheduled sweep leaves files changed in the last two minutes to the work under way
    (a lag longer than the settle is the sweep's to catch, later)."""
    night = "2033-01-11"
    faults = system.stack.faults
    assert float(os.environ["GSI_SETTLE_SECONDS"]) > 1.5
    with faults.lagging_gsi(1.5):
        before = faults.lagged_queries
        started = time.monotonic()
        _upload(system, s3, night, small_night)
        bodies = [json.dumps(consistency.s3_event(system.raw_bucket, f"{system.raw_prefix}{night}/{p.name}"))
                  for p in small_night]
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda body: sqs.send_message(QueueUrl=system.stack.queue_url, MessageBody=body),
                          [b for b in bodies for _ in range(5)]))
        # every file changes after `started`: converged within SWEEP_BUSY_WITHIN of it,
        # none of them can have been the sweep's to repair
        audit, seconds, files = converge(system, api, night, small_night, started,
                                         timeout=consistency.SWEEP_BUSY_WITHIN - 2)
        assert faults.lagged_queries > before
    _assert_whole(audit)
    flat = next(f for f in files.values() if f["obstype"] == "MASTER_FLAT")
    assert len(flat["members"]) == NIGHT_FRAMES["n_flat"]
    assert sum(1 for f in files.values() if f["obstype"] == "MASTER_BIAS") >= 1
    assert all(file_id_for(system.raw_bucket, f"{system.raw_prefix}{night}/{p.name}") == files[p.name]["file_id"]
               for p in small_night)


def _worker(system):
    env = {**os.environ, **system.stack.environment(), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "infra.local.worker", "reduce", "--workers", "2"], cwd=str(ROOT),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_storage_outage_and_a_worker_killed_mid_batch_converge(system, s3, api, small_night):
    """S3 and DynamoDB refuse every request for 10 s while the night is being reduced,
    and a reduction worker process beside the embedded ones is killed with SIGKILL three
    times (and started again): before the outage, during it, and after it."""
    night = "2033-01-12"
    started = time.monotonic()
    worker = _worker(system)
    kills = 0

    def kill():
        nonlocal worker, kills
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
        worker = _worker(system)
        assert "polling" in worker.stdout.readline()

    try:
        assert "polling" in worker.stdout.readline()
        _upload(system, s3, night, small_night)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:     # wait until the reduction is under way
            files = api.json("/api/files", night=night, limit=500)["files"]
            if any(f["obstype"] == "MASTER_BIAS" for f in files):
                break
            time.sleep(0.2)
        kill()
        refused = system.stack.faults.refused
        system.stack.faults.start_outage(10.0)
        time.sleep(5.0)
        kill()
        time.sleep(5.5)
        assert system.stack.faults.refused > refused
        time.sleep(3.0)
        kill()
        audit, seconds, _ = converge(system, api, night, small_night, started)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert kills == 3
    _assert_whole(audit)
