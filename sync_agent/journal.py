"""The agent's memory: every file it has seen and how far it got, in SQLite.

Each step is one short transaction, so a `kill -9` or a power cut at any moment leaves
the journal at the last step that finished. Nothing here has to be perfectly durable
to be correct: a file the journal forgot is found again by the re-scan of the folder,
and a file whose "done" was lost is found already in storage (same checksum) and not
sent again. That is why WAL with synchronous=NORMAL is enough.

The queue is a query, not a list in memory: the next file is the newest queued one
whose retry time has come, so the current night goes before any backfill and the
agent's memory does not depend on how many files wait.

States: pending (seen, still being written) -> queued -> uploading -> done | conflict;
pending -> incomplete (has not become a whole FITS file for a long time; reported);
queued/uploading -> failed (the file is gone or unreadable: a person must look).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from sync_agent.checksums import Digests

STATES = ("pending", "incomplete", "queued", "uploading", "done", "conflict", "failed")
UPLOADED = ("done", "conflict")

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    checked INTEGER NOT NULL DEFAULT 0,      -- FITS completeness checked for this size/mtime
    first_seen REAL NOT NULL,
    queued_at REAL,
    done_at REAL,
    key TEXT,                                -- where it belongs: {prefix}{night}/{name}
    stored_key TEXT,                         -- where it is: key, or the conflict key
    sha256 TEXT, md5 TEXT, part_size INTEGER, parts_sha256 TEXT, parts_etag TEXT,
    verified_by TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    upload_id TEXT
);
CREATE INDEX IF NOT EXISTS files_by_state ON files (state, mtime_ns DESC);
CREATE TABLE IF NOT EXISTS conflicts (
    at REAL NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL, existing_sha256 TEXT,
    stored_key TEXT NOT NULL, sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
"""

JOURNAL_NAME = "journal.sqlite3"


class Journal:
    """One connection per thread on one file; every method is one transaction."""

    def __init__(self, state_dir: Path, readonly: bool = False):
        self.path = Path(state_dir) / JOURNAL_NAME
        self.readonly = readonly
        self._local = threading.local()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db.executescript(SCHEMA)

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=30)
            else:
                conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _tx(self, immediate: bool = False):
        return _Transaction(self.db, immediate)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- what the watcher records
    def get(self, name: str) -> Optional[sqlite3.Row]:
        return self.db.execute("SELECT * FROM files WHERE name=?", (name,)).fetchone()

    def see(self, name: str, size: int, mtime_ns: int, state: str, checked: bool = False) -> None:
        """Record a new file, or a new version of a known one: everything learnt about
        the old bytes (checksums, key, attempts) is forgotten."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                """INSERT INTO files (name, state, size, mtime_ns, checked, first_seen, queued_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(name) DO UPDATE SET state=excluded.state, size=excluded.size,
                     mtime_ns=excluded.mtime_ns, checked=excluded.checked, queued_at=excluded.queued_at,
                     done_at=NULL, key=NULL, stored_key=NULL, sha256=NULL, md5=NULL, part_size=NULL,
                     parts_sha256=NULL, parts_etag=NULL, verified_by=NULL, attempts=0, next_try=0,
                     last_error=NULL, upload_id=NULL""",
                (name, state, size, mtime_ns, int(checked), now, now if state == "queued" else None))

    def set_state(self, name: str, state: str, error: Optional[str] = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE files SET state=?, last_error=COALESCE(?, last_error) WHERE name=?",
                       (state, error, name))

    def unfinished(self, limit: int = 500) -> List[sqlite3.Row]:
        """Files still being written, newest first: the few the watcher keeps looking at."""
        return self.db.execute("SELECT name, size, mtime_ns, checked, state FROM files WHERE state='pending' "
                               "ORDER BY mtime_ns DESC LIMIT ?", (limit,)).fetchall()

    def forget(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM files WHERE name=? AND state IN ('pending', 'incomplete')", (name,))

    # ---- what the uploaders take and give back
    def recover(self) -> int:
        """After a crash: whatever was in flight goes back to the queue."""
        with self._tx() as db:
            return db.execute("UPDATE files SET state='queued' WHERE state='uploading'").rowcount

    def claim(self, now: Optional[float] = None, oldest: bool = False) -> Optional[sqlite3.Row]:
        """The newest (or the oldest) queued file that is due, marked as in flight."""
        now = time.time() if now is None else now
        order = "mtime_ns ASC, name ASC" if oldest else "mtime_ns DESC"
        with self._tx(immediate=True) as db:
            row = db.execute("SELECT * FROM files WHERE state='queued' AND next_try<=? "
                             f"ORDER BY {order} LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE files SET state='uploading', attempts=attempts+1 WHERE name=?", (row["name"],))
        return row

    def next_due(self) -> Optional[float]:
        row = self.db.execute("SELECT MIN(next_try) FROM files WHERE state='queued'").fetchone()
        return row[0]

    def _same_version(self, sql: str, params: tuple, row: sqlite3.Row) -> bool:
        """Apply an update only if the file is still the version that was claimed."""
        with self._tx() as db:
            cur = db.execute(sql + " WHERE name=? AND size=? AND mtime_ns=? AND state='uploading'",
                             params + (row["name"], row["size"], row["mtime_ns"]))
            return cur.rowcount == 1

    def set_digests(self, row: sqlite3.Row, key: str, d: Digests) -> bool:
        return self._same_version("UPDATE files SET key=?, sha256=?, md5=?, part_size=?, parts_sha256=?, parts_etag=?",
                                  (key, d.sha256, d.md5, d.part_size, d.parts_sha256, d.parts_etag), row)

    def set_upload_id(self, row: sqlite3.Row, upload_id: Optional[str]) -> bool:
        return self._same_version("UPDATE files SET upload_id=?", (upload_id,), row)

    def finish(self, row: sqlite3.Row, key: str, stored_key: str, verified_by: str) -> bool:
        state = "done" if stored_key == key else "conflict"
        return self._same_version("UPDATE files SET state=?, stored_key=?, verified_by=?, done_at=?, last_error=NULL, "
                                  "upload_id=NULL", (state, stored_key, verified_by, time.time()), row)

    def retry_later(self, row: sqlite3.Row, error: str, delay: float) -> bool:
        return self._same_version("UPDATE files SET state='queued', last_error=?, next_try=?",
                                  (error[:500], time.time() + delay), row)

    def give_up(self, row: sqlite3.Row, error: str) -> bool:
        return self._same_version("UPDATE files SET state='failed', last_error=?", (error[:500],), row)

    def reconsider(self, name: str) -> None:
        """The file changed under an upload: let the watcher look at it again."""
        with self._tx() as db:
            db.execute("UPDATE files SET state='pending', checked=0 WHERE name=? AND state IN ('uploading', 'queued')",
                       (name,))

    def all_due_now(self) -> None:
        """The storage is back: nothing should wait out a backoff it earned during the outage."""
        with self._tx() as db:
            db.execute("UPDATE files SET next_try=0 WHERE state='queued' AND next_try>0")

    def record_conflict(self, name: str, key: str, existing: Optional[str], stored_key: str, sha256: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO conflicts VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), name, key, existing, stored_key, sha256))

    # ---- what status reads
    def counts(self) -> Dict[str, int]:
        out = {s: 0 for s in STATES}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM files GROUP BY state"):
            out[state] = n
        return out

    def backlog(self) -> sqlite3.Row:
        return self.db.execute("SELECT COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes, MIN(mtime_ns) AS oldest "
                               "FROM files WHERE state IN ('queued', 'uploading')").fetchone()

    def rows(self, where: str = "1", params: tuple = (), order: str = "name", limit: int = -1) -> Iterator[sqlite3.Row]:
        """Stream rows without holding them all in memory."""
        yield from self.db.execute(f"SELECT * FROM files WHERE {where} ORDER BY {order} LIMIT ?", params + (limit,))

    def conflicts(self, limit: int = 20) -> List[sqlite3.Row]:
        return self.db.execute("SELECT * FROM conflicts ORDER BY at DESC LIMIT ?", (limit,)).fetchall()

    def put_meta(self, **values) -> None:
        with self._tx() as db:
            db.executemany("INSERT INTO meta VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                           [(k, None if v is None else str(v)) for k, v in values.items()])

    def meta(self) -> Dict[str, str]:
        return {k: v for k, v in self.db.execute("SELECT k, v FROM meta")}


class _Transaction:
    """BEGIN (IMMEDIATE when a read decides a write) ... COMMIT, or ROLLBACK on error."""

    def __init__(self, db: sqlite3.Connection, immediate: bool = False):
        self.db = db
        self.immediate = immediate

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE" if self.immediate else "BEGIN")
        return self.db

    def __exit__(self, exc_type, *exc):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def export_uploaded(journal: Journal, path: Path) -> None:
    """uploaded.json, v1's state file, for tools that still read it (the replay):
    written from the journal a row at a time, then renamed into place."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write("{")
        sep = "\n"
        for row in journal.rows("state IN ('done', 'conflict')"):
            info = {"size": row["size"], "mtime_ns": row["mtime_ns"], "sha256": row["sha256"],
                    "key": row["stored_key"], "uploaded_at": row["done_at"]}
            fh.write(f"{sep}{json.dumps(row['name'])}: {json.dumps(info, sort_keys=True)}")
            sep = ",\n"
        fh.write("\n}\n")
    os.replace(tmp, path)


def journal_exists(state_dir: Path) -> bool:
    return os.path.exists(Path(state_dir) / JOURNAL_NAME)
