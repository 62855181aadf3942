"""Seconds from a frame's close on the mountain disk to its wavelength-calibrated spectrum
in the API, stage by stage, in the three situations of issue 13.

    .venv/bin/python benchmarks/latency.py [--scenario idle|series|overload] [--path agent|baseline|both]
                                           [--frames N] [--cadence S] [--minutes M] [--seed N] [--json FILE]
                                           [--threads]

Scenarios, each on one embedded stack (infra/local/system.py: moto, the ingest poller
and the API in this process; the reduction's 2 workers in a process of their own, as
Lambda runs the function apart, or with --threads as threads of this process), each path
on its own night:
  idle      the calibrations (10 biases and 10 flats, what a master needs: min_bias_files,
            min_flat_files; a lamp) are streamed and the system is left to go idle; then
            --frames science frames (default 10), one at a time, each written only once
            the previous one's calibrated spectrum is visible and the system is idle
            again: what one frame costs on an idle system.
            Goal: close -> calibrated spectrum visible, p50 <= 2 s and p95 <= 3 s.
  series    calibrations of both readouts first (10 biases, 10 flats and a lamp of each),
            then a time series of one target (EG21) for --minutes (default 30), split
            evenly between two phases with no pause between them: full 2x2 frames every
            10 s, then 'Spectroscopic ZZ Ceti' frames, the simulator's 200-row window at
            2x2 (400 unbinned rows), every 5 s; 4 s exposures, DATE-OBS one cadence apart.
            Per phase: p50/p95 of close -> visible, its growth (p50 of the last quarter of
            the phase's frames minus p50 of its first quarter) and the longest queue wait.
            Goal: no growth (read as: within 0.5 s).
  overload  the night of infra/local/observe.py (--frames 36: 9 biases and 9 flats, one
            short of what a master needs, so no master is made and the output says so;
            then lamps among the science frames), a file every --cadence 3 s. Besides the
            stages: each science frame's close -> visible, their p50/p95 over all science
            frames and over the last 5, and how long after the last close everything
            (final statuses, calibrated spectra, cleaned 2-D frames, idle queues) caught up.
            Goal: the newest frame within p95 4 s of its close. Every science frame is the
            newest when it closes, so the goal is compared with the p95 over all of them;
            the last 5 show whether a backlog built up.
The goals are printed beside the figures with whether they are met; nothing is asserted.

Paths (--path; idle and series default to agent, overload to both, as before):
  agent     the instrument writes the file into a folder named after the night; the sync
            agent (its own process, its CLI, default settings) sees it complete and
            uploads it; S3 -> SQS -> ingest -> index -> reduction
  baseline  the same bytes put to S3 by boto3 the instant the file closes (no watcher, no
            settle time): what the storage-event path costs on its own

Files are written by infra/simulator's write_night, as the instrument writes them (the file
appears, grows in flushed chunks, closes; `on_close` gives the close time); the simulator
renders each frame in this process just before writing it (0.03-0.3 s of CPU).

Stages, science frames, from the file's `timeline` (UTC times the system records:
uploaded_at = the S3 event's eventTime, event_at, indexed_at, started_at, reduced_at,
extracted_at, calibrated_at, cleaned_at) and the sync agent's journal (queued_at: the moment
it found the file complete; read after the run), all on this machine's clock:
  agent detects  close -> the agent queued the file (agent path only)
  upload         queued (agent) or close (baseline) -> the object stored (eventTime): the
                 wait for an upload worker, hashing and the PUT; the agent's journal does not
                 record when the PUT itself started
  event, index   eventTime -> the ingest got the event -> the item written
  queue wait     indexed -> a reduction worker began the frame
  reduce, extract, calibrate   the 2-D reduction (full-frame cosmic rays deferred), the
                 extraction, the wavelength calibration written to the index
  visible        calibrated_at -> the API watcher first saw the `calibrated` product
and the totals: close -> calibrated visible (the goals' figure), -> stored, -> listed,
-> first spectrum (quicklook or calibrated), -> final status, -> cleaned 2-D frame (the
watcher first saw a cleaned_at).
A missing timeline key means "not recorded": n/a. The timeline used for a frame is the one
the API showed when its calibrated spectrum first appeared (a later re-reduction rewrites
it); cleaned_at is taken from the last one seen.
The watcher follows GET /api/files?night=&since= as the page does, every 0.1 s (the page
asks every 1 s; faster polling would load the one process everything runs in).

The consistency sweep runs on its AWS schedule (stack.json, every 10 minutes), not the
local stack's 10 s: here it runs in this very process, and a sweep of a long series takes
seconds of CPU that would be measured as the reduction slowing down.

Memory: the peak RSS of this process (moto with every object in memory, the ingest, the
API, the simulator) and of each child process (sampled from /proc: the sync agent, the
reduction process with its workers).

--json FILE writes every figure and one record per frame (its times and stages). Exit
code 0 when every frame was listed and reached a final status and every science frame's
calibrated spectrum became visible, 1 otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golive_data.item import FINAL_STATUSES  # noqa: E402
from golive_data.parameters import ReductionSettings  # noqa: E402
from infra.local.observe import night_counts, observe  # noqa: E402
from infra.local.system import EmbeddedSystem, quiet_logging  # noqa: E402
from infra.simulator import NightPlan, make_night, write_night  # noqa: E402
from infra.simulator.geometry import ZZ_CETI  # noqa: E402

WORKERS = 2
POLL_SECONDS = 0.1
#: biases and flats per readout (idle, series): as many as a master needs, no more
CAL_FRAMES = max(ReductionSettings().min_bias_files, ReductionSettings().min_flat_files)
CAL_CADENCE, CAL_WRITE = 1.0, 0.2    # calibrations are streamed quickly, then the system goes idle
IDLE_WRITE = 0.6                     # seconds a science file grows in idle (observe's at a 3 s cadence)
IDLE_FRAME_TIMEOUT = 90.0            # seconds to wait for one frame's spectrum in idle
SETTLE_TIMEOUT = 180.0               # seconds to wait for the system to go idle
#: the series' phases: (name, what, readout window, seconds between closes, exposure seconds)
SERIES_PHASES = (("2x2/10s", "full 2x2 frames every 10 s", None, 10.0, 4.0),
                 ("ROI200/5s", "200-row 'Spectroscopic ZZ Ceti' frames every 5 s", ZZ_CETI, 5.0, 4.0))
LAST_N = 5                           # overload: "the last science frames"
#: series: "no growth", read as the last quarter's p50 within this of the first quarter's
GOALS = {"idle": {"p50_s": 2.0, "p95_s": 3.0}, "overload": {"p95_s": 4.0}, "series": {"growth_tolerance_s": 0.5}}
NIGHTS = {"idle": "2024-05-01", "series": "2024-07-01", "overload": "2024-09-01"}
PATH_OFFSET_DAYS = {"baseline": 0, "agent": 30}   # paths' nights beyond the calibration window of each other

#: (key, label, from, to): consecutive stages of a science frame (time points of a frame record's `times`)
STAGES = (
    ("detect", "agent detects", "close", "detected"),
    ("upload", "upload (-> stored)", "upload_from", "uploaded"),
    ("event", "event", "uploaded", "event"),
    ("index", "index", "event", "indexed"),
    ("queue", "queue wait", "indexed", "started"),
    ("reduce", "reduce (2-D)", "started", "reduced"),
    ("extract", "extract", "reduced", "extracted"),
    ("calibrate", "calibrate", "extracted", "calibrated"),
    ("visible", "visible (API)", "calibrated", "visible"),
)
TOTALS = (
    ("total", "close -> calibrated visible", "close", "visible"),
    ("close_upload", "close -> stored", "close", "uploaded"),
    ("listed", "close -> listed", "close", "listed"),
    ("first_spectrum", "close -> first spectrum", "close", "first_spectrum"),
    ("final", "close -> final status", "close", "final"),
    ("cleaned", "close -> cleaned 2-D frame", "close", "cleaned_visible"),
)
#: time point <- timeline key
TIMELINE = (("uploaded", "uploaded_at"), ("event", "event_at"), ("indexed", "indexed_at"),
            ("started", "started_at"), ("reduced", "reduced_at"), ("extracted", "extracted_at"),
            ("calibrated", "calibrated_at"))


# ---- small pure helpers -----------------------------------------------------------------
def percentile(values, q):
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values) -> Dict[str, Any]:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": percentile(values, 0.5), "p95_s": percentile(values, 0.95),
            "max_s": max(values), "mean_s": sum(values) / len(values)}


def epoch(value) -> Optional[float]:
    """Seconds since the epoch of an ISO-8601 UTC time ('...Z'); None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def stages_of(times: Dict[str, Optional[float]]) -> Dict[str, Optional[float]]:
    """Seconds of each stage and total whose two ends are known."""
    out = {}
    for key, _, start, end in STAGES + TOTALS:
        a, b = times.get(start), times.get(end)
        out[key] = None if a is None or b is None else b - a
    return out


def growth(latencies: List[float]) -> Optional[float]:
    """p50 of the last quarter minus p50 of the first quarter (in close order)."""
    q = len(latencies) // 4
    if q < 1:
        return None
    return percentile(latencies[-q:], 0.5) - percentile(latencies[:q], 0.5)


def verdict(ok: Optional[bool]) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


# ---- what the API shows -------------------------------------------------------------------
class ApiWatcher:
    """Follows a night's change feed as the page does and notes when each file was first
    listed, showed a spectrum, its calibrated spectrum, a final status, a cleaned 2-D
    frame (timeline.cleaned_at); keeps the last item seen and the item as it was when
    its calibrated spectrum first showed."""

    def __init__(self, base: str, night: str, http):
        self.base, self.night, self.http = base, night, http
        self.seen: Dict[str, Dict[str, float]] = {k: {} for k in
                                                  ("listed", "first_spectrum", "visible", "final", "cleaned_visible")}
        self.items: Dict[str, Dict[str, Any]] = {}
        self.at_visible: Dict[str, Dict[str, Any]] = {}
        self.errors = 0
        self.last_error: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"api-watcher-{night}", daemon=True)

    def start(self) -> "ApiWatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        cursor = ""
        while not self._stop.is_set():
            try:
                resp = self.http.get(f"{self.base}/api/files", params={"night": self.night, "since": cursor},
                                     timeout=10)
                resp.raise_for_status()
                data = resp.json()
            except Exception as exc:  # noted and reported; the feed is asked again
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                self._stop.wait(1.0)
                continue
            self.note(data.get("files") or [], time.time())
            cursor = data.get("cursor") or cursor
            self._stop.wait(POLL_SECONDS)

    def note(self, files, now: float) -> None:
        for f in files:
            name = f.get("file_name")
            if not name:
                continue
            self.items[name] = f
            kinds = {p.get("kind") for p in f.get("products") or []}
            self.seen["listed"].setdefault(name, now)
            if kinds & {"quicklook_spectrum", "calibrated"}:
                self.seen["first_spectrum"].setdefault(name, now)
            if "calibrated" in kinds and name not in self.seen["visible"]:
                self.seen["visible"][name] = now
                self.at_visible[name] = f
            if f.get("status") in FINAL_STATUSES:
                self.seen["final"].setdefault(name, now)
            if (f.get("timeline") or {}).get("cleaned_at"):
                self.seen["cleaned_visible"].setdefault(name, now)


# ---- child processes' memory ---------------------------------------------------------------
class ChildMemory:
    """Peak RSS (VmHWM) of every descendant process, sampled from /proc once a second."""

    def __init__(self):
        self.peaks: Dict[int, Tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="child-memory", daemon=True)

    def start(self) -> "ChildMemory":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def sample(self) -> None:
        for pid in _descendants(os.getpid()):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0.0)
            if hwm >= self.peaks.get(pid, ("", 0.0))[1]:
                self.peaks[pid] = (cmd.strip(), hwm)


def _descendants(root: int) -> List[int]:
    parents: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# ---- frames into one night, by one path ----------------------------------------------------
@dataclasses.dataclass
class Closed:
    at: float
    group: str
    kind: str  # the plan's: bias | flat | comp | science


class Stream:
    """One path's frames into one night: the folder the instrument writes (named after
    the night), how the files reach storage, and the API watcher."""

    def __init__(self, system: EmbeddedSystem, path: str, night: str, tmp: Path):
        self.system, self.path, self.night = system, path, night
        self.watch = tmp / night
        self.watch.mkdir()
        self.state = tmp / "state"
        self.closed: Dict[str, Closed] = {}
        self.agent: Optional[subprocess.Popen] = None
        self.s3 = None
        if path == "agent":
            self.agent = system.start_sync_agent(self.watch, self.state, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL)
        else:
            self.s3 = system.stack.client("s3")
        self.watcher = ApiWatcher(system.url, night, system.operator().session(system.url)).start()
        self.journal: Dict[str, Dict[str, Any]] = {}

    def on_close(self, group: str, kinds: Dict[str, str]) -> Callable[[Path, float], None]:
        def closed(path: Path, t: float) -> None:
            self.closed[path.name] = Closed(t, group, kinds.get(path.name, "unknown"))
            if self.s3 is not None:
                key = f"{self.system.raw_prefix}{self.night}/{path.name}"
                self.s3.put_object(Bucket=self.system.raw_bucket, Key=key, Body=path.read_bytes())
        return closed

    def write(self, plan: NightPlan, cadence: float, write_seconds: float, group: str) -> None:
        kinds = {f.filename: f.kind for f in plan.frames}
        write_night(self.watch, plan, cadence=cadence, write_seconds=write_seconds,
                    on_close=self.on_close(group, kinds))

    # ---- waiting
    def done(self, names=None) -> bool:
        """Every file (of `names`) listed and final, every science one's spectrum visible."""
        seen = self.watcher.seen
        for name in (self.closed if names is None else names):
            if name not in seen["final"]:
                return False
            if self.closed[name].kind == "science" and name not in seen["visible"]:
                return False
        return True

    def wait_done(self, timeout: float, names=None) -> bool:
        deadline = time.monotonic() + timeout
        while not self.done(names):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        time.sleep(3 * POLL_SECONDS + 0.3)  # the watcher's last look at what changed
        self.watcher.stop()
        if self.agent is not None:
            self.agent.terminate()
            try:
                self.agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
            self.journal = read_journal(self.state)

    # ---- per-frame records
    def result(self, **extra) -> Dict[str, Any]:
        """What a scenario returns for this path: per-frame records, the masters the
        night's listing showed, how the watcher fared, and `extra`."""
        masters = sorted(n for n, f in self.watcher.items.items() if str(f.get("obstype", "")).startswith("MASTER"))
        return {"path": self.path, "night": self.night, "records": self.records(), "masters": masters,
                "watcher_errors": self.watcher.errors, "watcher_last_error": self.watcher.last_error, **extra}

    def records(self) -> List[Dict[str, Any]]:
        w = self.watcher
        out = []
        for name, c in sorted(self.closed.items(), key=lambda kv: kv[1].at):
            last = w.items.get(name) or {}
            shown = w.at_visible.get(name) or last
            timeline = shown.get("timeline") or {}
            times: Dict[str, Optional[float]] = {"close": c.at}
            times.update({k: epoch(timeline.get(field)) for k, field in TIMELINE})
            times["cleaned"] = epoch((last.get("timeline") or {}).get("cleaned_at"))
            for k in w.seen:
                times[k] = w.seen[k].get(name)
            row = self.journal.get(name) or {}
            times["detected"] = row.get("queued_at")
            times["stored_verified"] = row.get("done_at")
            times["upload_from"] = times["detected"] if self.path == "agent" else c.at
            out.append({"name": name, "path": self.path, "night": self.night, "group": c.group, "kind": c.kind,
                        "obstype": last.get("obstype"), "status": last.get("status"),
                        "spectra_status": last.get("spectra_status"), "error": last.get("error"),
                        "calibrations": last.get("calibrations"), "master_notes": last.get("master_notes"),
                        "waiting_for": last.get("waiting_for"),
                        "steps_skipped": (last.get("reduction") or {}).get("steps_skipped"),
                        "times": times, "stages": stages_of(times),
                        "timeline": last.get("timeline"), "timeline_at_visible": shown.get("timeline")})
        return out


def read_journal(state_dir: Path) -> Dict[str, Dict[str, Any]]:
    """The sync agent's journal (sync_agent/journal.py), file name -> row; {} if unreadable."""
    path = state_dir / "journal.sqlite3"
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        rows = {r["name"]: dict(r) for r in conn.execute("SELECT * FROM files")}
        conn.close()
        return rows
    except sqlite3.Error:
        return {}


def aws_sweep_seconds(definition: Dict[str, Any]) -> float:
    """Seconds between consistency sweeps in AWS (stack.json's consistency_function
    schedule, 'rate(10 minutes)'); 600 if it cannot be read."""
    schedule = (definition.get("consistency_function") or {}).get("schedule", "")
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", schedule)
    if not m:
        return 600.0
    return float(m.group(1)) * (60.0 if m.group(2).startswith("minute") else 3600.0)


def settle(system: EmbeddedSystem, timeout: float = SETTLE_TIMEOUT, looks: int = 3) -> Optional[float]:
    """Wait until every poller is idle `looks` times in a row (as system.wait_idle); the
    time of the first of those looks, or None if it did not happen within `timeout`."""
    deadline, quiet, first = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        now = time.time()
        if system.idle():
            quiet, first = quiet + 1, first or now
            if quiet >= looks:
                return first
        else:
            quiet, first = 0, None
        time.sleep(0.3)
    return None


# ---- plans ----------------------------------------------------------------------------------
def renumbered(frames, start: int, date_obs: Optional[Callable[[int], str]] = None):
    """`frames` with sequence numbers (and file names) from `start` on, so that frames of
    several plans share one night's folder; optionally new DATE-OBS values."""
    out = []
    for i, f in enumerate(frames):
        seq = start + i
        changes = {"seq": seq, "filename": f"{seq:04d}_{f.filename.split('_', 1)[1]}"}
        if date_obs is not None:
            changes["date_obs"] = date_obs(i)
        out.append(dataclasses.replace(f, **changes))
    return out


def plan_of(template: NightPlan, frames) -> NightPlan:
    return dataclasses.replace(template, frames=tuple(frames))


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def series_plans(seed: int, night: str, minutes: float):
    """(calibrations, [(phase name, plan, cadence)]) of the time series."""
    cals = []
    for _, _, roi, _, _ in SERIES_PHASES:
        p = make_night(seed=seed, night=night, n_bias=CAL_FRAMES, n_flat=CAL_FRAMES, n_comp=1, n_science=1, roi=roi)
        cals += [f for f in p.frames if f.kind != "science"]
    calibrations = plan_of(p, renumbered(cals, 1))
    seq = len(cals) + 1
    phases, previous = [], None
    for name, _, roi, cadence, exptime in SERIES_PHASES:
        n = max(1, int(round(minutes / len(SERIES_PHASES) * 60 / cadence)))
        # make_night gives two thirds of the science frames to EG21: enough of them
        p = make_night(seed=seed, night=night, n_bias=0, n_flat=0, n_comp=0, n_science=math.ceil(1.5 * n) + 1,
                       roi=roi, science_exptime=exptime)
        science = [f for f in p.frames if f.kind == "science" and f.object == "EG21"][:n]
        t0 = science[0].start if previous is None else previous + dt.timedelta(seconds=cadence)

        def date_obs(i, t0=t0, cadence=cadence):
            return _fmt(t0 + dt.timedelta(seconds=i * cadence))
        frames = renumbered(science, seq, date_obs)
        phases.append((name, plan_of(p, frames), cadence))
        seq += n
        previous = frames[-1].start
    return calibrations, phases


def stream_calibrations(stream: Stream, system: EmbeddedSystem, plan: NightPlan) -> Dict[str, Any]:
    """Write the calibrations, wait until each is final and the system idle."""
    t0 = time.time()
    stream.write(plan, CAL_CADENCE, CAL_WRITE, "calibrations")
    names = [f.filename for f in plan.frames]
    final = stream.wait_done(SETTLE_TIMEOUT, names)
    idle_at = settle(system)
    return {"frames": len(names), "all_final": final, "idle": idle_at is not None,
            "seconds_to_idle": None if idle_at is None else idle_at - t0}


# ---- scenarios -------------------------------------------------------------------------------
def run_idle(system: EmbeddedSystem, path: str, night: str, args, tmp: Path) -> Dict[str, Any]:
    plan = make_night(seed=args.seed, night=night, n_bias=CAL_FRAMES, n_flat=CAL_FRAMES, n_comp=1,
                      n_science=args.frames)
    stream = Stream(system, path, night, tmp)
    notes = []
    try:
        cal = stream_calibrations(stream, system, plan_of(plan, [f for f in plan.frames if f.kind != "science"]))
        if not cal["idle"]:
            notes.append("the system did not go idle after the calibrations")
        for frame in (f for f in plan.frames if f.kind == "science"):
            stream.write(plan_of(plan, [frame]), 0.0, IDLE_WRITE, path)
            if not stream.wait_done(IDLE_FRAME_TIMEOUT, [frame.filename]):
                notes.append(f"{frame.filename}: no calibrated spectrum within {IDLE_FRAME_TIMEOUT:g} s")
            if settle(system) is None:
                notes.append(f"after {frame.filename}: the system did not go idle within {SETTLE_TIMEOUT:g} s")
    finally:
        stream.close()
    return stream.result(calibrations=cal, notes=notes, groups=[path])


def run_series(system: EmbeddedSystem, path: str, night: str, args, tmp: Path) -> Dict[str, Any]:
    calibrations, phases = series_plans(args.seed, night, args.minutes)
    stream = Stream(system, path, night, tmp)
    notes, groups = [], []
    try:
        cal = stream_calibrations(stream, system, calibrations)
        if not cal["idle"]:
            notes.append("the system did not go idle after the calibrations")
        last_close = None
        for name, plan, cadence in phases:
            group = name if len(args.paths) == 1 else f"{path} {name}"
            groups.append(group)
            write_seconds = min(1.0, cadence / 5)
            if last_close is not None:  # the first frame of a phase closes `cadence` after the last one
                time.sleep(max(0.0, last_close + cadence - write_seconds - time.time()))
            stream.write(plan, cadence, write_seconds, group)
            last_close = max(c.at for c in stream.closed.values())
        caught = catch_up(stream, system, last_close)
    finally:
        stream.close()
    return stream.result(calibrations=cal, notes=notes, groups=groups, catch_up=caught)


def run_overload(system: EmbeddedSystem, path: str, night: str, args, tmp: Path) -> Dict[str, Any]:
    plan = make_night(seed=args.seed, night=night, **night_counts(args.frames))  # the plan observe() writes
    stream = Stream(system, path, night, tmp)
    try:
        observe(stream.watch, seed=args.seed, night=night, frames=args.frames, cadence=args.cadence,
                on_close=stream.on_close(path, {f.filename: f.kind for f in plan.frames}))
        caught = catch_up(stream, system, max(c.at for c in stream.closed.values()))
    finally:
        stream.close()
    return stream.result(notes=[], groups=[path], catch_up=caught)


def catch_up(stream: Stream, system: EmbeddedSystem, last_close: float) -> Dict[str, Any]:
    """After the last close: wait for every file to be final and every spectrum visible,
    then for the system to go idle (cleaning included); when each happened."""
    timeout = 120.0 + 5.0 * len(stream.closed)
    complete = stream.wait_done(timeout)
    idle_at = settle(system)
    return {"complete": complete, "idle_after_last_close_s": None if idle_at is None else idle_at - last_close}


# ---- figures -------------------------------------------------------------------------------
def science(records, group=None):
    return [r for r in records if r["kind"] == "science" and (group is None or r["group"] == group)]


def figures(scenario: str, result: Dict[str, Any]) -> Dict[str, Any]:
    records = result["records"]
    out: Dict[str, Any] = {"groups": {}}
    for group in result["groups"]:
        sci = science(records, group)
        values = {key: [r["stages"][key] for r in sci if r["stages"][key] is not None] for key, *_ in STAGES + TOTALS}
        g = {"science_frames": len(sci), "stages": {key: summary(v) for key, v in values.items()}, "values": values}
        totals = [r["stages"]["total"] for r in sci]
        if scenario == "series":
            g["growth_s"] = growth([t for t in totals if t is not None]) if all(t is not None for t in totals) else None
            g["max_queue_wait_s"] = max((r["stages"]["queue"] for r in sci if r["stages"]["queue"] is not None),
                                        default=None)
        if scenario == "overload":
            g["latency_per_science_frame_s"] = {r["name"]: r["stages"]["total"] for r in sci}
            g["last_science"] = summary(totals[-LAST_N:])
        out["groups"][group] = g
    closes = [r["times"]["close"] for r in records]
    if scenario in ("overload", "series") and closes:
        last = max(closes)
        ends = [r["times"].get(k) for r in records for k in ("final", "visible")]
        cleaned = [r["times"].get("cleaned_visible") for r in science(records)]
        out["caught_up_after_last_close_s"] = {
            "final_and_calibrated": max(t for t in ends if t is not None) - last if any(ends) else None,
            "cleaned_2d": (max(cleaned) - last) if cleaned and all(cleaned) else None,
            "idle": result["catch_up"]["idle_after_last_close_s"],
        }
    out["complete"] = all(r["times"].get("final") is not None and (r["kind"] != "science" or r["times"].get("visible"))
                          for r in records)
    out["statuses"] = {}
    for r in records:
        key = f"{r['obstype'] or r['kind']}: {r['status']}"
        if r["spectra_status"]:
            key += f" / {r['spectra_status']}"
        out["statuses"][key] = out["statuses"].get(key, 0) + 1
    return out


def goals(scenario: str, figs: Dict[str, Any]) -> List[str]:
    lines = []
    for group, g in figs["groups"].items():
        total = g["stages"]["total"]
        if scenario == "idle":
            goal = GOALS["idle"]
            ok = None if not total["n"] else total["p50_s"] <= goal["p50_s"] and total["p95_s"] <= goal["p95_s"]
            got = "n/a" if not total["n"] else f"p50 {total['p50_s']:.2f} s, p95 {total['p95_s']:.2f} s"
            lines.append(f"goal {group}: close -> calibrated visible p50 <= {goal['p50_s']:g} s, "
                         f"p95 <= {goal['p95_s']:g} s; got {got}: {verdict(ok)}")
        elif scenario == "overload":
            goal = GOALS["overload"]
            ok = None if not total["n"] else total["p95_s"] <= goal["p95_s"]
            last = g["last_science"]
            got = "n/a" if not total["n"] else f"p95 {total['p95_s']:.2f} s"
            tail = "" if not last["n"] else f" (last {last['n']}: p50 {last['p50_s']:.2f} s, p95 {last['p95_s']:.2f} s)"
            lines.append(f"goal {group}: newest science frame visible within p95 {goal['p95_s']:g} s of its close; "
                         f"got {got}{tail}: {verdict(ok)}")
        else:
            gr = g["growth_s"]
            tol = GOALS["series"]["growth_tolerance_s"]
            ok = None if gr is None else gr <= tol
            got = "n/a" if gr is None else f"{gr:+.2f} s"
            lines.append(f"goal {group}: no growth (p50 of the last quarter - p50 of the first <= {tol:g} s); "
                         f"got {got}: {verdict(ok)}")
    return lines


def fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def table(groups: Dict[str, Dict[str, Any]]) -> List[str]:
    """Stages and totals, p50 / p95 / n per group (a path, or a path's phase)."""
    lines = [f"{'seconds, science frames':31s}" + "".join(f"{g[:21]:>22s}" for g in groups),
             f"{'':31s}" + "".join(f"{'p50':>8s}{'p95':>8s}{'n':>6s}" for _ in groups)]
    for rows in (STAGES, TOTALS):
        for key, label, *_ in rows:
            cells = ""
            for g in groups.values():
                s = g["stages"][key]
                cells += f"{s['p50_s']:8.2f}{s['p95_s']:8.2f}{s['n']:6d}" if s["n"] else f"{'n/a':>8s}{'n/a':>8s}{0:6d}"
            lines.append(f"  {label:29s}{cells}")
        lines.append("  " + "-" * (29 + 22 * len(groups)))
    return lines[:-1]


def details(scenario: str, result: Dict[str, Any], figs: Dict[str, Any]) -> List[str]:
    """What the table does not show, for one path."""
    lines, path = [], result["path"]
    for g, fg in figs["groups"].items():
        if scenario == "series":
            total = fg["stages"]["total"]
            lines.append(f"{g}: {fg['science_frames']} frames, close -> visible p50 {fmt(total.get('p50_s'))} s, "
                         f"p95 {fmt(total.get('p95_s'))} s, growth {fmt(fg['growth_s'])} s, "
                         f"longest queue wait {fmt(fg['max_queue_wait_s'])} s")
        if scenario == "overload":
            per = " ".join(f"{fmt(v)}" for v in fg["latency_per_science_frame_s"].values())
            lines.append(f"{g}: close -> calibrated visible per science frame, in order: {per}")
            last = fg["last_science"]
            lines.append(f"{g}: last {last['n']} science frames p50 {fmt(last.get('p50_s'))} s, "
                         f"p95 {fmt(last.get('p95_s'))} s")
    if "caught_up_after_last_close_s" in figs:
        c = figs["caught_up_after_last_close_s"]
        lines.append(f"{path}: after the last close, all final and calibrated in {fmt(c['final_and_calibrated'])} s, "
                     f"every cleaned 2-D frame in {fmt(c['cleaned_2d'])} s, queues idle in {fmt(c['idle'])} s")
    lines.append(f"{path}: " + ", ".join(f"{n} {k}" for k, n in sorted(figs["statuses"].items())))
    if result.get("calibrations"):
        c = result["calibrations"]
        lines.append(f"{path}: {c['frames']} calibration frames streamed first, system idle "
                     f"{fmt(c['seconds_to_idle'])} s after the first was written")
    lines += [f"{path}: NOTE {note}" for note in result["notes"]]
    without = [r for r in science(result["records"]) if r.get("waiting_for")]
    if without:
        what = sorted({w for r in without for w in r["waiting_for"]})
        lines.append(f"{path}: NOTE {len(without)} of {len(science(result['records']))} science frames were reduced "
                     f"without {', '.join(what)} (none made: too few frames, or not yet)")
    skipped: Dict[Tuple[str, str], int] = {}
    for r in science(result["records"]):
        for step, reason in (r.get("steps_skipped") or {}).items():
            skipped[step, str(reason)[:110]] = skipped.get((step, str(reason)[:110]), 0) + 1
    lines += [f"{path}: {n} science frames skipped {step}: {reason}" for (step, reason), n in sorted(skipped.items())]
    if result["watcher_errors"]:
        lines.append(f"{path}: the API watcher failed {result['watcher_errors']} times "
                     f"(last: {result['watcher_last_error']})")
    return lines


def agent_cost(figs_by_path: Dict[str, Dict[str, Any]]) -> List[str]:
    """What the sync agent adds to the baseline's close -> stored and close -> visible."""
    if set(figs_by_path) != {"agent", "baseline"}:
        return []
    out = []
    for key, label in (("close_upload", "close -> stored"), ("total", "close -> calibrated visible")):
        a, b = (summary_of(figs_by_path[p], key) for p in ("agent", "baseline"))
        if a["n"] and b["n"]:
            out.append(f"sync agent adds {a['p50_s'] - b['p50_s']:+.2f} s at p50, {a['p95_s'] - b['p95_s']:+.2f} s "
                       f"at p95 ({label})")
    return out


def summary_of(figs: Dict[str, Any], key: str) -> Dict[str, Any]:
    """A stage over all of a path's science frames (its groups pooled)."""
    return summary(v for g in figs["groups"].values() for v in g["values"][key])


def describe(args) -> str:
    if args.scenario == "idle":
        what = f"{args.frames} science frames one at a time on an idle system (calibrations first)"
    elif args.scenario == "series":
        what = f"{args.minutes:g} min time series of EG21: " + ", then ".join(
            f"{args.minutes / len(SERIES_PHASES):g} min of {what} ({exptime:g} s exposures, '{name}')"
            for name, what, _, _, exptime in SERIES_PHASES)
    else:
        what = f"the simulated night, {args.frames} frames, one every {args.cadence:g} s"
    return (f"scenario {args.scenario}: {what}; path {', '.join(args.paths)}; {args.workers} reduction workers "
            f"({'threads' if args.threads else 'in a process of their own'}); 2x2 full frames 3.9 MB, ROI frames "
            f"0.8 MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("idle", "series", "overload"), default="idle")
    parser.add_argument("--path", choices=("agent", "baseline", "both"), default=None,
                        help="default: agent for idle and series, both for overload")
    parser.add_argument("--frames", type=int, default=None,
                        help="idle: science frames (default 10); overload: frames of the night (default 36)")
    parser.add_argument("--cadence", type=float, default=3.0, help="overload: seconds between file closes")
    parser.add_argument("--minutes", type=float, default=30.0, help="series: minutes, split evenly between the phases")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures and per-frame records here")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help="reduction workers (1: what one Lambda execution environment holds, for its memory)")
    parser.add_argument("--threads", action="store_true",
                        help="the reduction workers as threads of this process (default: a process of their own, "
                             "as Lambda runs the function apart from the API and the ingest)")
    args = parser.parse_args(argv)
    if args.frames is None:
        args.frames = 10 if args.scenario == "idle" else 36
    path = args.path or ("both" if args.scenario == "overload" else "agent")
    args.paths = ["baseline", "agent"] if path == "both" else [path]
    run = {"idle": run_idle, "series": run_series, "overload": run_overload}[args.scenario]
    quiet_logging()
    memory = ChildMemory().start()
    results = []
    t0 = time.time()
    system = EmbeddedSystem(workers=args.workers, reduction_process=not args.threads)
    # The local stack sweeps every 10 s, in this process; in AWS it is its own function
    # every 10 minutes. A sweep of a long series takes seconds of CPU, which would be
    # measured as the reduction's latency growing.
    system.sweep_seconds = aws_sweep_seconds(system.stack.definition)
    with system, tempfile.TemporaryDirectory(prefix="latency-") as tmp:
        for p in args.paths:
            night = (dt.date.fromisoformat(NIGHTS[args.scenario]) + dt.timedelta(days=PATH_OFFSET_DAYS[p])).isoformat()
            work = Path(tmp) / p
            work.mkdir()
            results.append(run(system, p, night, args, work))
            memory.sample()
        sweeps = system.sweeper.runs if system.sweeper else None
    memory.stop()
    wall = time.time() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print(describe(args))
    report = {"scenario": args.scenario, "args": {k: v for k, v in vars(args).items()}, "goals": GOALS[args.scenario],
              "wall_s": wall, "results": []}
    complete = True
    goal_lines = []
    figs = [figures(args.scenario, result) for result in results]
    print("\n".join(table({g: v for f in figs for g, v in f["groups"].items()})))
    for result, f in zip(results, figs):
        complete &= f["complete"]
        print("\n".join(details(args.scenario, result, f)))
        goal_lines += goals(args.scenario, f)
        report["results"].append({**{k: v for k, v in result.items() if k != "records"}, "figures": f,
                                  "frames": result["records"]})
    print("\n".join(agent_cost({r["path"]: f for r, f in zip(results, figs)}) + goal_lines))
    print(f"peak memory of this process (moto, ingest{', reduction workers' if args.threads else ''}, API, "
          f"simulator): {peak_mb:.0f} MB")
    others = []
    for pid, (cmd, mb) in sorted(memory.peaks.items()):
        label = ("sync agent" if "sync_agent" in cmd else
                 f"reduction, {args.workers} workers" if "infra.local.worker" in cmd else cmd[:70])
        others.append({"pid": pid, "command": cmd, "peak_rss_mb": mb})
        print(f"peak memory of child {pid} ({label}): {mb:.0f} MB")
    if not any("sync_agent" not in o["command"] for o in others):
        print("no worker process: the reduction workers are threads of this process (counted above)")
    print(f"consistency sweeps during the run: {sweeps} (every {system.sweep_seconds:g} s, the AWS schedule)")
    print(f"wall {wall:.0f} s; every frame visible: {'yes' if complete else 'NO'}")
    report.update(sweeps=sweeps, sweep_seconds=system.sweep_seconds, peak_rss_mb=peak_mb, children=others,
                  largest_child_rss_mb=children_mb, complete=complete)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
