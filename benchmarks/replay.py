"""A 100-frame night replayed headless: seconds from the first upload to every frame
listed, every science spectrum calibrated, every frame final, and the whole system idle
(2-D frames cleaned, products downloaded by the replay), against the transport floor
measured in the same run.

The night is simulated (seed 1, 2x2 Red, 400M2_GG455 with HgArNe lamps): 15 biases, 15
flats, 4 lamps and 66 science frames, written to a folder first; then `python -m
infra.local replay` does what an observer's laptop would do with a past night: the sync
agent (`--once`) uploads the folder, the embedded stack reduces it, the replay waits for
every frame to be final and downloads the products.

  floor      the same folder uploaded by the agent and listed by the ingest (no
             reduction): what any replay costs before a single pixel is reduced
  listed     every frame indexed
  spectra    every science frame's calibrated spectrum listed
  final      every frame in a final status (science frames: their 2-D frame cleaned)
  replay     `replay()` returned: idle, products downloaded

    .venv/bin/python benchmarks/replay.py [--bias 15 --flat 15 --comp 4 --science 66] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golive_data.item import FINAL_STATUSES  # noqa: E402
from infra.local.replay import replay  # noqa: E402
from infra.local.system import EmbeddedSystem, quiet_logging  # noqa: E402
from infra.simulator import make_night, write_night  # noqa: E402

GOAL_SECONDS = 60.0
FOLLOW_SECONDS = 0.5
CORES = os.cpu_count() or 1


def follow(base: str, night: str, http, stop: threading.Event, seen: dict) -> None:
    """The change feed, as the page reads it: when each file was first listed, when a
    science frame's calibrated spectrum appeared, when each file turned final."""
    cursor = ""
    while not stop.is_set():
        try:
            data = http.get(f"{base}/api/files", params={"night": night, "since": cursor}, timeout=10).json()
        except Exception:  # the API busy for a moment: look again
            time.sleep(0.2)
            continue
        now = time.monotonic()
        cursor = data.get("cursor") or cursor
        for f in data.get("files", []):
            name = f["file_name"]
            seen["listed"].setdefault(name, now)
            seen["obstype"][name] = f.get("obstype")
            if any(p["kind"] == "calibrated" for p in f.get("products", [])):
                seen["spectrum"].setdefault(name, now)
            if f["status"] in FINAL_STATUSES:
                seen["final"].setdefault(name, now)
        # as often as the replay itself looks (0.5 s; the page: 1.5 s): each look is a
        # query of the night's change feed, which is work for the stack being measured
        time.sleep(FOLLOW_SECONDS)


def run(system: EmbeddedSystem, raw: Path, night: str, count: int, ingest_only: bool) -> dict:
    """One replay of `raw` (night `night`); seconds from the start of each mark."""
    seen = {"listed": {}, "spectrum": {}, "final": {}, "obstype": {}}
    with tempfile.TemporaryDirectory(prefix="replay-bench-") as out:
        stop = threading.Event()
        watcher = threading.Thread(target=follow, args=(system.url, night, system.operator().session(system.url),
                                                        stop, seen), daemon=True)
        watcher.start()
        t0 = time.monotonic()
        if ingest_only:
            agent = system.start_sync_agent(raw, Path(out) / "state", "--once", "--settle", "0")
            agent.wait(timeout=600)
            while len(seen["listed"]) < count and time.monotonic() - t0 < 600:
                time.sleep(0.05)
            rc = 0 if len(seen["listed"]) == count else 1
        else:
            rc = replay(raw, Path(out) / "products", timeout=600, system=system, progress=lambda *_: None)
        wall = time.monotonic() - t0
        time.sleep(0.3)
        stop.set()
        watcher.join(timeout=15)
    science = [n for n, t in seen["obstype"].items() if t == "OBJECT"]

    def last(mark, names=None):
        times = [seen[mark][n] - t0 for n in (names if names is not None else seen[mark])]
        return max(times) if times else None

    return {"rc": rc, "wall_s": wall, "listed": len(seen["listed"]), "listed_s": last("listed"),
            "spectra": sum(1 for n in science if n in seen["spectrum"]), "science": len(science),
            "spectra_s": last("spectrum", [n for n in science if n in seen["spectrum"]]),
            "final": len(seen["final"]), "final_s": last("final")}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def replay_then_floor(raws, nights, count: int, workers: int):
    """The replay, then the floor with the reduction stopped, on one stack (moto keeps one
    state per process; the floor's frames are never reduced). The reduction runs in a
    process of its own, as Lambda runs it apart from the ingest and the API."""
    system = EmbeddedSystem(workers=workers, reduction_process=True, background_workers=workers)
    # the consistency sweep on its AWS schedule (every 10 minutes), not the local 10 s: it runs
    # in this process, and a sweep of a 100-frame night costs seconds of CPU each time
    system.sweep_seconds = 600.0
    with system:
        main_before = _cpu_seconds()
        full = run(system, raws[1], nights[1], count, ingest_only=False)
        full["reduction_peak_rss_mb"] = system.reduction_peak_rss_mb()
        full["reduction_cpu_s"] = system.reduction_cpu_seconds()
        full["main_cpu_s"] = _cpu_seconds() - main_before
        full["requests"] = system.stack.request_stats()
        system.reducer.terminate()
        system.reducer.wait(timeout=30)
        floor = run(system, raws[0], nights[0], count, ingest_only=True)
    return floor, full


def print_requests(stats: dict, count: int, top: int = 10) -> None:
    """The requests the replay made of the stack, the costliest first (moto's seconds)."""
    by_service: dict = {}
    for key, v in stats.items():
        total = by_service.setdefault(key.split(" ", 1)[0], [0, 0.0, 0])
        total[0] += v["requests"]
        total[1] += v["seconds"]
        total[2] += v["bytes"]
    print("\nrequests to the stack (moto), per frame: " + ", ".join(
        f"{service} {n / count:.0f} ({t:.0f} s, {b / 1e6:.0f} MB answered)"
        for service, (n, t, b) in sorted(by_service.items())))
    print(f"{'costliest':44s}{'requests':>9s}{'moto s':>8s}{'MB':>7s}")
    for key, v in sorted(stats.items(), key=lambda kv: -kv[1]["seconds"])[:top]:
        print(f"{key:44s}{v['requests']:>9d}{v['seconds']:>8.1f}{v['bytes'] / 1e6:>7.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bias", type=int, default=15)
    parser.add_argument("--flat", type=int, default=15)
    parser.add_argument("--comp", type=int, default=4)
    parser.add_argument("--science", type=int, default=66)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="reduction workers (one process)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    quiet_logging()
    nights = ("2024-03-13", "2024-03-14")
    count = args.bias + args.flat + args.comp + args.science
    with tempfile.TemporaryDirectory(prefix="replay-night-") as tmp:
        raws = [Path(tmp) / night for night in nights]
        t = time.monotonic()
        for raw, night in zip(raws, nights):
            write_night(raw, make_night(seed=args.seed, night=night, n_bias=args.bias, n_flat=args.flat,
                                        n_comp=args.comp, n_science=args.science))
        print(f"{count} frames simulated twice in {time.monotonic() - t:.1f} s (not counted)", flush=True)
        floor, full = replay_then_floor(raws, nights, count, args.workers)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def fmt(v):
        return "n/a" if v is None else f"{v:.1f}"

    print(f"\n{count} frames ({args.science} science), {args.workers} reduction workers in their own process; "
          f"seconds from the start")
    print(f"{'':28s}{'floor':>8s}{'replay':>8s}")
    print(f"{'every frame listed':28s}{fmt(floor['listed_s']):>8s}{fmt(full['listed_s']):>8s}")
    print(f"{'every spectrum calibrated':28s}{'':>8s}{fmt(full['spectra_s']):>8s}   "
          f"({full['spectra']}/{full['science']})")
    print(f"{'every frame final':28s}{'':>8s}{fmt(full['final_s']):>8s}   ({full['final']}/{count})")
    print(f"{'replay done (idle, products)':28s}{fmt(floor['wall_s']):>8s}{fmt(full['wall_s']):>8s}")
    met = full["rc"] == 0 and full["wall_s"] < GOAL_SECONDS
    print(f"goal: the whole replay under {GOAL_SECONDS:.0f} s: {'met' if met else 'NOT met'} "
          f"({full['wall_s']:.1f} s; {full['wall_s'] / count:.2f} s per frame; floor {floor['wall_s']:.1f} s)")
    print(f"peak memory: this process (stack, ingest, API) {peak_mb:.0f} MB, the reduction process "
          f"{full['reduction_peak_rss_mb'] or 0:.0f} MB")
    cpu = (full.get("reduction_cpu_s") or 0) + full["main_cpu_s"]
    print(f"CPU during the replay: the reduction process {full.get('reduction_cpu_s') or 0:.0f} s, this process "
          f"(moto, ingest, API) {full['main_cpu_s']:.0f} s: {cpu:.0f} s in all, at least {cpu / CORES:.0f} s on "
          f"this machine's {CORES} cores; the reduction alone {(full.get('reduction_cpu_s') or 0) / args.science:.2f} s "
          f"per science frame (masters and lamps included)")
    print_requests(full["requests"], count)
    if args.json:
        Path(args.json).write_text(json.dumps({"frames": count, "floor": floor, "replay": full,
                                               "goal_seconds": GOAL_SECONDS, "met": met, "peak_rss_mb": peak_mb},
                                              indent=2))
    return 0 if full["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
