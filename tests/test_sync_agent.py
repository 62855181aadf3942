"""Sync agent v1 against the local stack's S3 over HTTP."""
import hashlib
import sys
from pathlib import Path
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


# ---------------------------------------------------------------- v2: journal, verification, conflicts
import json  # noqa: E402
import threading  # noqa: E402

from sync_agent.checksums import digest_file  # noqa: E402
from sync_agent.journal import Journal  # noqa: E402
from sync_agent.uploader import DIFFERS, SAME, UNKNOWN, conflict_key, judge  # noqa: E402


def test_newest_file_is_claimed_first(tmp_path):
    journal = Journal(tmp_path)
    for i, name in enumerate(["old_a.fits", "old_b.fits", "tonight.fits", "old_c.fits"]):
        journal.see(name, 10, (1000 + (10**6 if name == "tonight.fits" else i)) * 10**9, "queued")
    assert [journal.claim()["name"] for _ in range(4)] == ["tonight.fits", "old_c.fits", "old_b.fits", "old_a.fits"]
    assert journal.claim() is None


def test_a_past_night_goes_up_in_the_order_it_was_taken(tmp_path):
    """`order = oldest` (a replay): the afternoon's calibrations before the frames they
    serve; files of one time (copied with `cp`) in name order, which is Goodman's."""
    import argparse

    from sync_agent.config import SETTINGS, ConfigError, load

    journal = Journal(tmp_path)
    for name, t in [("0100_science.fits", 3000), ("0001_zero.fits", 1000), ("0002_zero.fits", 1000),
                    ("0050_flat.fits", 2000)]:
        journal.see(name, 10, t * 10**9, "queued")
    assert [journal.claim(oldest=True)["name"] for _ in range(4)] == [
        "0001_zero.fits", "0002_zero.fits", "0050_flat.fits", "0100_science.fits"]
    with pytest.raises(ConfigError, match="order must be one of newest, oldest"):
        load(argparse.Namespace(config=None, **{**{x.name: None for x in SETTINGS}, "order": "random"}), required=())


def test_judge_proves_bytes_by_etag_or_checksum_never_by_an_echoed_claim(tmp_path):
    path = tmp_path / "f.fits"
    path.write_bytes(RAW)
    with open(path, "rb") as fh:
        d = digest_file(fh, len(RAW))
    head = {"ContentLength": len(RAW), "ETag": f'"{d.md5}"', "Metadata": {"sha256": d.sha256}}
    assert judge(head, d) == (SAME, "etag-md5")
    # moto stores whatever checksum the client claims: a matching checksum must not
    # hide an ETag (the server's own MD5) that says the bytes differ.
    assert judge({**head, "ETag": '"%s"' % ("0" * 32), "ChecksumSHA256": d.sha256_b64}, d)[0] == DIFFERS
    kms = {"ContentLength": len(RAW), "ETag": '"%s"' % ("0" * 32), "ServerSideEncryption": "aws:kms"}
    assert judge({**kms, "ChecksumSHA256": d.sha256_b64}, d) == (SAME, "checksum-sha256")
    assert judge(kms, d)[0] == UNKNOWN                              # read it back
    assert judge({**head, "ContentLength": 1}, d)[0] == DIFFERS
    assert judge({**head, "Metadata": {"sha256": "ab" * 32}}, d)[0] == DIFFERS


def test_multipart_digests_match_what_s3_reports(tmp_path):
    data = bytes(range(256)) * 50000                                  # 12.8 MB
    path = tmp_path / "big.fits"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        d = digest_file(fh, len(data), part_size=5 << 20)
    assert d.parts_etag.endswith("-3") and d.sha256 == hashlib.sha256(data).hexdigest()
    head = {"ContentLength": len(data), "ETag": "x", "ChecksumSHA256": d.parts_sha256 + "-3",
            "ServerSideEncryption": "aws:kms"}
    assert judge(head, d) == (SAME, "checksum-sha256")


def test_conflict_key_keeps_the_suffix_the_ingest_needs():
    assert conflict_key("raw/2018-03-19/0001_arc.fits", "0123456789abcdef" * 4) == \
        "raw/2018-03-19/0001_arc.sha256-0123456789ab.fits"


def test_a_different_object_under_the_name_is_kept_and_reported(agent, s3, system):
    s3.put_object(Bucket=system.raw_bucket, Key="sync-test/2018-03-19/0004_arc.fits", Body=b"someone else's")
    (agent.watch_dir / "0004_arc.fits").write_bytes(RAW)
    os.utime(agent.watch_dir / "0004_arc.fits", (time.time() - 5, time.time() - 5))
    (key,) = agent.scan_once()
    assert key == f"sync-test/2018-03-19/0004_arc.sha256-{hashlib.sha256(RAW).hexdigest()[:12]}.fits"
    assert s3.get_object(Bucket=system.raw_bucket, Key="sync-test/2018-03-19/0004_arc.fits")["Body"].read() == \
        b"someone else's"
    assert s3.get_object(Bucket=system.raw_bucket, Key=key)["Body"].read() == RAW
    from sync_agent.status import gather, render
    report = gather(agent.state_dir)
    assert report["counts"]["conflict"] == 1
    assert report["conflicts"][0]["stored_key"] == key
    assert "conflicts (both kept)" in render(report)


def test_the_same_bytes_already_in_storage_are_not_sent_again(agent, s3, system):
    s3.put_object(Bucket=system.raw_bucket, Key="sync-test/2018-03-19/0005_arc.fits", Body=RAW)
    (agent.watch_dir / "0005_arc.fits").write_bytes(RAW)
    os.utime(agent.watch_dir / "0005_arc.fits", (time.time() - 5, time.time() - 5))
    sent = []
    agent.uploader.send = lambda *a, **k: sent.append(a)
    assert agent.scan_once() == ["sync-test/2018-03-19/0005_arc.fits"]
    assert sent == []
    row = agent.journal.get("0005_arc.fits")
    assert row["state"] == "done" and row["verified_by"] == "already-present:etag-md5"


def test_polling_alone_finds_files_on_mounts_without_events(system, s3, tmp_path):
    watch = tmp_path / "RAW"
    watch.mkdir()
    agent = SyncAgent(watch, system.raw_bucket, s3, prefix="sync-poll/", state_dir=tmp_path / "state", settle=0.3,
                      use_inotify=False)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(0.1, stop))
    runner.start()
    try:
        (watch / "0006_arc.fits").write_bytes(RAW)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (agent.journal.get("0006_arc.fits") or {"state": ""})["state"] != "done":
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(timeout=30)
    row = agent.journal.get("0006_arc.fits")
    assert row["state"] == "done"
    assert row["done_at"] - row["mtime_ns"] / 1e9 >= 0.3                 # waited out the settle time


def test_config_file_with_cli_override_and_no_secret_in_logs(system, tmp_path):
    watch = tmp_path / "RAW"
    watch.mkdir()
    (watch / "0007_arc.fits").write_bytes(RAW)
    env = system.stack.environment()
    secret = env["AWS_SECRET_ACCESS_KEY"]
    cfg = tmp_path / "sync.toml"
    cfg.write_text(f'[sync]\nwatch = "{watch}"\nbucket = "no-such-bucket"\nendpoint_url = "{env["AWS_ENDPOINT_URL"]}"\n'
                   f'prefix = "sync-cfg/"\nstate_dir = "{tmp_path / "state"}"\nsettle = 0.0\nlog_level = "DEBUG"\n'
                   f'aws_access_key_id = "{env["AWS_ACCESS_KEY_ID"]}"\naws_secret_access_key = "{secret}"\n')
    cfg.chmod(0o600)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    run_env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-m", "sync_agent", "--config", str(cfg), "--bucket", system.raw_bucket,
                          "--once"], env=run_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "uploaded 0007_arc.fits -> s3://%s/sync-cfg/2018-03-19/0007_arc.fits" % system.raw_bucket in out.stderr
    assert secret not in out.stderr + out.stdout
    status = subprocess.run([sys.executable, "-m", "sync_agent", "status", "--config", str(cfg), "--json"],
                            env=run_env, capture_output=True, text=True, timeout=60)
    report = json.loads(status.stdout)
    assert report["counts"]["done"] == 1 and report["last_uploads"][0]["name"] == "0007_arc.fits"
    text = subprocess.run([sys.executable, "-m", "sync_agent", "status", "--config", str(cfg)], env=run_env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "1 done" in text and "behind by" in text


def test_idle_agent_uses_almost_no_cpu(system, tmp_path):
    watch = tmp_path / "RAW"
    watch.mkdir()
    proc = system.start_sync_agent(watch, tmp_path / "state", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)                                                  # past imports and the first scan

        def cpu_s():
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        before = cpu_s()
        time.sleep(5.0)
        used = cpu_s() - before
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\nidle agent: {used:.3f} s CPU in 5 s")
    assert used < 0.25
