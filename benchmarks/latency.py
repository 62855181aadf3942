"""Seconds from a file's close on the mountain disk to its index item being visible
through the API, over a simulated night streamed into a watched folder.

Two paths are measured in one run, on one embedded stack:
  agent     the instrument writes the file; the sync agent (its own process, its CLI,
            default settings) sees it complete, uploads it; S3 -> SQS -> ingest -> index
  baseline  the same bytes put to S3 by boto3 the instant the file closes (no watcher,
            no settle time): what the storage-event path costs on its own
The difference is the price of the sync agent's folder polling and settle time.

    .venv/bin/python benchmarks/latency.py [--frames 36] [--cadence 0.5]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from functions.api.chalicelib.index import FINAL_STATUSES  # noqa: E402
from infra.local.system import EmbeddedSystem, quiet_logging  # noqa: E402
from infra.local.observe import observe  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def watch_api(base: str, night: str, closed: dict, visible: dict, stop: threading.Event, expected: int) -> None:
    """Follow the change feed as the page does, noting when each file turns final."""
    http, cursor = requests.Session(), ""
    while not stop.is_set() and len(visible) < expected:
        data = http.get(f"{base}/api/files", params={"night": night, "since": cursor}, timeout=10).json()
        now = time.time()
        cursor = data["cursor"] or cursor
        for f in data["files"]:
            if f["status"] in FINAL_STATUSES and f["file_name"] not in visible:
                visible[f["file_name"]] = now
        time.sleep(0.02)


def run_path(system: EmbeddedSystem, name: str, night: str, frames: int, cadence: float, seed: int) -> dict:
    closed, visible = {}, {}
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix=f"latency-{name}-") as tmp:
        watch = Path(tmp) / "RAW"
        watch.mkdir()
        watcher = threading.Thread(target=watch_api, args=(system.url, night, closed, visible, stop, frames))
        watcher.start()
        agent = None
        if name == "agent":
            agent = system.start_sync_agent(watch, Path(tmp) / "state", stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            on_close = lambda path, t: closed.__setitem__(path.name, t)  # noqa: E731
        else:
            s3 = system.stack.client("s3")

            def on_close(path, t):
                closed[path.name] = t
                s3.put_object(Bucket=system.raw_bucket, Key=f"{system.raw_prefix}{night}/{path.name}",
                              Body=path.read_bytes())
        t0 = time.time()
        observe(watch, seed=seed, night=night, frames=frames, cadence=cadence, on_close=on_close)
        deadline = time.time() + 60
        while len(visible) < frames and time.time() < deadline:
            time.sleep(0.1)
        wall = time.time() - t0
        stop.set()
        watcher.join()
        if agent:
            agent.terminate()
            agent.wait(timeout=10)
    lat = [visible[n] - closed[n] for n in closed if n in visible]
    return {"path": name, "frames": frames, "visible": len(lat), "p50_s": percentile(lat, 0.5),
            "p95_s": percentile(lat, 0.95), "max_s": max(lat), "mean_s": statistics.mean(lat),
            "wall_s": wall, "s_per_frame": wall / frames}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--cadence", type=float, default=0.5, help="seconds between file closes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    quiet_logging()
    with EmbeddedSystem(workers=2) as system:
        results = [run_path(system, "baseline", "2024-05-01", args.frames, args.cadence, args.seed),
                   run_path(system, "agent", "2024-05-02", args.frames, args.cadence, args.seed)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"close-to-visible latency, {args.frames} frames, one every {args.cadence:g} s "
          f"(2071x948 uint16, 3.9 MB each), 2 ingest workers")
    print(f"{'path':10s} {'p50 s':>7s} {'p95 s':>7s} {'max s':>7s} {'visible':>8s}")
    for r in results:
        print(f"{r['path']:10s} {r['p50_s']:7.3f} {r['p95_s']:7.3f} {r['max_s']:7.3f} {r['visible']:>4d}/{r['frames']}")
    base, agent = results
    print(f"sync agent adds {agent['p50_s'] - base['p50_s']:+.3f} s at p50, {agent['p95_s'] - base['p95_s']:+.3f} s at p95")
    print(f"peak memory of this process (stack, workers, API, simulator): {peak_mb:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "peak_rss_mb": peak_mb}, indent=2))
    return 0 if all(r["visible"] == r["frames"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
