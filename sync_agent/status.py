"""`python -m sync_agent status`: what the agent has done, read from its journal.

Reads the journal read-only, so it is safe while the agent runs and works when it does
not. "Behind by" is the age of the oldest file not yet in storage: how long the
observers would wait for it if nothing else arrived.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict

from sync_agent.journal import Journal, journal_exists

HEARTBEAT_STALE = 30.0
SHOWN = 5


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:     # someone else's process: alive
        return True


def _files(rows, *fields):
    return [{f: row[f] for f in fields} for row in rows]


def gather(state_dir: Path, recent: int = SHOWN) -> Dict[str, Any]:
    if not journal_exists(state_dir):
        raise FileNotFoundError(f"no journal in {state_dir}: has the agent ever run with this --state-dir?")
    j = Journal(state_dir, readonly=True)
    now = time.time()
    meta = j.meta()
    counts = j.counts()
    backlog = j.backlog()
    heartbeat = float(meta["heartbeat"]) if meta.get("heartbeat") else None
    running = bool(meta.get("pid")) and _alive(meta.get("pid")) and heartbeat is not None \
        and now - heartbeat < HEARTBEAT_STALE
    report = {
        "state_dir": str(state_dir),
        "running": running,
        "pid": int(meta["pid"]) if running else None,
        "watch": meta.get("watch"), "bucket": meta.get("bucket"), "prefix": meta.get("prefix"),
        "counts": {"queued": counts["queued"], "in_flight": counts["uploading"], "done": counts["done"],
                   "conflict": counts["conflict"], "failed": counts["failed"], "writing": counts["pending"],
                   "incomplete": counts["incomplete"]},
        "backlog_bytes": backlog["bytes"],
        "behind_s": round(now - backlog["oldest"] / 1e9, 1) if backlog["oldest"] else 0.0,
        "outage_since": float(meta["outage_since"]) if meta.get("outage_since") not in (None, "None") else None,
        "last_error": meta.get("last_error"),
        "last_error_at": float(meta["last_error_at"]) if meta.get("last_error_at") else None,
        "last_uploads": [
            dict(r, close_to_verified_s=round(r["done_at"] - r["mtime_ns"] / 1e9, 3))
            for r in _files(j.rows("state IN ('done', 'conflict')", order="done_at DESC", limit=recent),
                            "name", "stored_key", "done_at", "mtime_ns", "verified_by")],
        "retrying": _files(j.rows("state IN ('queued', 'uploading') AND attempts > 0", order="mtime_ns DESC",
                                  limit=recent), "name", "attempts", "last_error"),
        "failed": _files(j.rows("state='failed'", order="mtime_ns DESC", limit=recent), "name", "last_error"),
        "incomplete": _files(j.rows("state='incomplete'", order="mtime_ns DESC", limit=recent), "name", "size"),
        "conflicts": _files(j.conflicts(recent), "name", "key", "stored_key", "existing_sha256", "sha256"),
    }
    j.close()
    return report


def _ago(t) -> str:
    return "never" if not t else f"{time.time() - t:.0f} s ago"


def render(r: Dict[str, Any]) -> str:
    c = r["counts"]
    lines = [
        f"agent:      {'running, pid %d' % r['pid'] if r['running'] else 'not running'}"
        + (f"  watching {r['watch']} -> s3://{r['bucket']}/{r['prefix']}" if r["watch"] else ""),
        f"files:      {c['queued']} queued, {c['in_flight']} in flight, {c['done']} done, "
        f"{c['conflict']} conflict, {c['failed']} failed, {c['incomplete']} incomplete, {c['writing']} being written",
        f"behind by:  {r['behind_s']:.0f} s ({r['backlog_bytes'] / 1e6:.1f} MB to upload)",
    ]
    if r["outage_since"]:
        lines.append(f"storage:    failing since {_ago(r['outage_since'])}")
    if r["last_error"]:
        lines.append(f"last error: {r['last_error']} ({_ago(r['last_error_at'])})")
    sections = (("last uploads", r["last_uploads"],
                 lambda f: f"{f['name']} -> {f['stored_key']}  {f['close_to_verified_s']:.2f} s after close, "
                           f"verified by {f['verified_by']}"),
                ("retrying", r["retrying"], lambda f: f"{f['name']}  attempt {f['attempts']}: {f['last_error']}"),
                ("failed", r["failed"], lambda f: f"{f['name']}: {f['last_error']}"),
                ("incomplete (not uploaded)", r["incomplete"], lambda f: f"{f['name']} ({f['size']} bytes)"),
                ("conflicts (both kept)", r["conflicts"],
                 lambda f: f"{f['name']}: {f['key']} holds other bytes; this file is {f['stored_key']}"))
    for title, items, fmt in sections:
        if items:
            lines.append(f"{title}:")
            lines.extend("  " + fmt(f) for f in items)
    return "\n".join(lines)


def main(state_dir: Path, as_json: bool = False, recent: int = SHOWN) -> int:
    report = gather(Path(state_dir), recent)
    print(json.dumps(report, indent=2) if as_json else render(report))
    return 0
