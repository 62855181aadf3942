"""Sync agent v1 against the local stack's S3 over HTTP."""
import hashlib
import os
import subprocess
import time

import pytest

from sync_agent.agent import SyncAgent
from sync_agent.fitscheck import fits_state
from sync_agent.night import night_of, read_date_obs
from tests.conftest import real_fits

RAW = real_fits("goodman_red_comp.fits")  # DATE-OBS 2018-03-19T19:20:13


def test_fits_state_follows_a_file_as_it_is_written(tmp_path):
    path = tmp_path / "0001.fits"
    path.write_bytes(b"")
    assert fits_state(str(path)) == "incomplete"
    for cut in (5, 80, 2880, len(RAW) - 2880, len(RAW) - 1):
        path.write_bytes(RAW[:cut])
        assert fits_state(str(path)) == "incomplete", cut
    path.write_bytes(RAW)
    assert fits_state(str(path)) == "complete"
    path.write_bytes(b"# a log file, not FITS\n")
    assert fits_state(str(path)) == "invalid"


def test_night_turns_over_at_local_noon():
    assert night_of("2018-02-03T19:39:20.317", 0) == "2018-02-03"   # afternoon calibrations
    assert night_of("2018-02-04T09:11:28.989", 0) == "2018-02-03"   # dawn lamps, same night
    assert night_of("2018-02-04T15:59:00", 0) == "2018-02-03"
    assert night_of("2018-02-04T16:01:00", 0) == "2018-02-04"
    assert night_of(None, 1517680800) == "2018-02-03"                # 2018-02-03T18:00Z from mtime


def test_reads_date_obs_without_astropy(tmp_path):
    path = tmp_path / "f.fits"
    path.write_bytes(RAW)
    assert read_date_obs(str(path)) == "2018-03-19T19:20:13.175"


@pytest.fixture
def agent(system, s3, tmp_path):
    watch = tmp_path / "RAW"
    watch.mkdir()
    return SyncAgent(watch, system.raw_bucket, s3, prefix="sync-test/", state_dir=tmp_path / "state", settle=0.2)


def test_uploads_only_complete_files_once_with_checksum(agent, s3, system):
    path = agent.watch_dir / "0001_arc.fits"
    with open(path, "wb") as fh:
        fh.write(RAW[:4000])
        fh.flush()
        time.sleep(0.3)
        assert agent.scan_once() == []          # half-written: nothing goes up
        fh.write(RAW[4000:])
    time.sleep(0.3)
    (key,) = agent.scan_once()
    assert key == "sync-test/2018-03-19/0001_arc.fits"
    obj = s3.get_object(Bucket=system.raw_bucket, Key=key)
    assert obj["Body"].read() == RAW
    assert obj["Metadata"]["sha256"] == hashlib.sha256(RAW).hexdigest()
    assert agent.scan_once() == []              # done is done
    again = SyncAgent(agent.watch_dir, system.raw_bucket, s3, prefix="sync-test/", state_dir=agent.state_dir,
                      settle=0.2)
    assert again.scan_once() == []              # ... across a restart too


def test_a_rewritten_file_goes_up_again(agent, s3, system):
    path = agent.watch_dir / "0002_arc.fits"
    path.write_bytes(RAW)
    os.utime(path, (time.time() - 5, time.time() - 5))
    assert len(agent.scan_once()) == 1
    changed = bytearray(RAW)
    changed[-10] = 7
    path.write_bytes(bytes(changed))
    os.utime(path, (time.time() - 4, time.time() - 4))
    (key,) = agent.scan_once()
    assert s3.get_object(Bucket=system.raw_bucket, Key=key)["Body"].read() == bytes(changed)


def test_cli_once(system, tmp_path):
    watch = tmp_path / "RAW"
    watch.mkdir()
    (watch / "0003_arc.fits").write_bytes(RAW)
    (watch / "notes.txt").write_text("not a frame")
    proc = system.start_sync_agent(watch, tmp_path / "state", "--once", "--settle", "0",
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "uploaded 0003_arc.fits" in out and "notes.txt" not in out
