"""Seconds from a file's close on the mountain disk to what the API shows of it (listed,
quicklook preview, final reduced status, quicklook and clean wavelength-calibrated
spectrum), over a simulated night streamed into a watched folder.

Two paths are measured in one run, on one embedded stack:
  agent     the instrument writes the file; the sync agent (its own process, its CLI,
            default settings) sees it complete, uploads it; S3 -> SQS -> ingest -> index
  baseline  the same bytes put to S3 by boto3 the instant the file closes (no watcher,
            no settle time): what the storage-event path costs on its own
The difference is the price of the sync agent's folder polling and settle time.

    .venv/bin/python benchmarks/latency.py [--frames 36] [--cadence 3]
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


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golive_data.item import FINAL_STATUSES  # noqa: E402
from infra.local.system import EmbeddedSystem, quiet_logging  # noqa: E402
from infra.local.observe import observe  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def watch_api(base: str, night: str, seen: dict, stop: threading.Event, expected: int, http) -> None:
    """Follow the change feed as the page does, noting when each file first shows up
    (indexed), when a science frame's quicklook shows up, and when it turns final."""
    cursor = ""
    while not stop.is_set():
        data = http.get(f"{base}/api/files", params={"night": night, "since": cursor}, timeout=10).json()
        now = time.time()
        cursor = data["cursor"] or cursor
        for f in data["files"]:
            name = f["file_name"]
            seen["first"].setdefault(name, now)
            if any(p["kind"] in ("quicklook", "preview_reduced") for p in f.get("products", [])):
                seen["preview"].setdefault(name, now)
            kinds = {p["kind"] for p in f.get("products", [])}
            if kinds & {"quicklook_spectrum", "calibrated"}:
                seen["spectrum_first"].setdefault(name, now)
            if "calibrated" in kinds:
                seen["spectrum"].setdefault(name, now)
            if f["status"] in FINAL_STATUSES:
                seen["final"].setdefault(name, now)
                seen["obstype"][name] = f["obstype"]
        time.sleep(0.02)


def run_path(system: EmbeddedSystem, name: str, night: str, frames: int, cadence: float, seed: int) -> dict:
    closed = {}
    seen = {"first": {}, "preview": {}, "final": {}, "spectrum_first": {}, "spectrum": {}, "obstype": {}}
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix=f"latency-{name}-") as tmp:
        watch = Path(tmp) / "RAW"
        watch.mkdir()
        watcher = threading.Thread(target=watch_api, args=(system.url, night, seen, stop, frames,
                                                                system.operator().session(system.url)))
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

        def done():
            science = [n for n, t in seen["obstype"].items() if t == "OBJECT"]
            return len(seen["final"]) >= frames and all(n in seen["spectrum"] for n in science)

        while not done() and time.time() < deadline:
            time.sleep(0.1)
        wall = time.time() - t0
        stop.set()
        watcher.join()
        if agent:
            agent.terminate()
            agent.wait(timeout=10)
    def stats(times, names=None):
        lat = [times[n] - closed[n] for n in (names or closed) if n in times and n in closed]
        if not lat:
            return {"n": 0}
        return {"n": len(lat), "p50_s": percentile(lat, 0.5), "p95_s": percentile(lat, 0.95), "max_s": max(lat),
                "mean_s": statistics.mean(lat)}

    science = [n for n, t in seen["obstype"].items() if t == "OBJECT"]
    return {"path": name, "frames": frames, "visible": len(seen["final"]), "wall_s": wall,
            "indexed": stats(seen["first"]), "final": stats(seen["final"]),
            "science_preview": stats(seen["preview"], science), "science_final": stats(seen["final"], science),
            "science_spectrum_first": stats(seen["spectrum_first"], science),
            "science_spectrum": stats(seen["spectrum"], science)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--cadence", type=float, default=3.0, help="seconds between file closes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    quiet_logging()
    with EmbeddedSystem(workers=2) as system:
        results = [run_path(system, "baseline", "2024-05-01", args.frames, args.cadence, args.seed),
                   run_path(system, "agent", "2024-05-02", args.frames, args.cadence, args.seed)]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"seconds from a file's close to what the API shows, {args.frames} frames, one every "
          f"{args.cadence:g} s (2071x948 uint16, 3.9 MB each), 2 workers")
    print(f"{'path':10s} {'what':28s} {'n':>3s} {'p50 s':>7s} {'p95 s':>7s} {'max s':>7s}")
    for r in results:
        for what, label in (("indexed", "listed (indexed)"), ("final", "final status, all frames"),
                            ("science_preview", "science quicklook preview"), ("science_final", "science cfzst_ reduced"),
                            ("science_spectrum_first", "science quicklook spectrum"),
                            ("science_spectrum", "science calibrated spectrum")):
            st = r[what]
            if st["n"]:
                print(f"{r['path']:10s} {label:28s} {st['n']:3d} {st['p50_s']:7.3f} {st['p95_s']:7.3f} {st['max_s']:7.3f}")
    base, agent = results
    print(f"sync agent adds {agent['indexed']['p50_s'] - base['indexed']['p50_s']:+.3f} s at p50, "
          f"{agent['indexed']['p95_s'] - base['indexed']['p95_s']:+.3f} s at p95 (close to listed)")
    print(f"peak memory of this process (stack, workers, API, simulator): {peak_mb:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "peak_rss_mb": peak_mb}, indent=2))
    return 0 if all(r["visible"] == r["frames"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
