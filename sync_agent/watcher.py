"""Which files in the instrument's folder are whole, and when.

The instrument's writer closing a file is the moment it can go: on Linux the kernel
says so (inotify IN_CLOSE_WRITE, or IN_MOVED_TO for writers that rename a finished
temporary file into place), read here through libc with ctypes so nothing needs
installing. Network mounts (NFS, SMB) give no events for files written by another
machine, so the folder is also looked at when its mtime changes and re-scanned every
`rescan` seconds; a file found that way must stay unchanged for `settle` seconds.
Either way it is queued only once it is a complete FITS file (fitscheck); one that
never becomes complete is reported after `stale_after` seconds and not uploaded.

The watcher only records what it sees in the journal; uploading is someone else's job.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import stat
import struct
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

from sync_agent.fitscheck import fits_state
from sync_agent.journal import Journal

log = logging.getLogger("goodman_live.sync")
FITS_SUFFIXES = (".fits", ".fit")

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, 0o2000000
WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct("iIII")


def is_candidate(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(FITS_SUFFIXES)


class Inotify:
    """A blocking-with-timeout reader of one directory's events."""

    def __init__(self, path: Path):
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(str(path)), WATCH_MASK) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")

    def read(self, timeout: float) -> List[Tuple[int, str]]:
        """(mask, name) of the events that arrive within `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset + _EVENT.size <= len(data):
            _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + length]
            events.append((mask, os.fsdecode(raw.rstrip(b"\0"))))
            offset += _EVENT.size + length
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_inotify(path: Path) -> Optional[Inotify]:
    try:
        return Inotify(path)
    except (OSError, AttributeError) as exc:  # not Linux, no such folder yet, out of watches
        log.info("no inotify on %s (%s): polling every scan", path, exc)
        return None


class FolderWatcher:
    def __init__(self, watch_dir: Path, journal: Journal, settle: float = 0.5, stale_after: float = 120.0,
                 rescan: float = 60.0, on_queued: Callable[[], None] = lambda: None, use_inotify: bool = True):
        self.watch_dir = Path(watch_dir)
        self.journal = journal
        self.settle = settle
        self.stale_after = stale_after
        self.rescan_every = rescan
        self.on_queued = on_queued
        self.use_inotify = use_inotify
        self.inotify: Optional[Inotify] = None
        self._dir_mtime: Optional[int] = None
        self._next_rescan = 0.0
        self._missing_warned = False

    # ---- one file
    def observe(self, name: str, closed: bool = False, now: Optional[float] = None) -> bool:
        """Record what `name` is now; True if it was queued for upload."""
        if not is_candidate(name):
            return False
        now = time.time() if now is None else now
        path = self.watch_dir / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.journal.forget(name)           # removed before it was ever complete
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        row = self.journal.get(name)
        same = row is not None and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns
        if same and (row["state"] not in ("pending", "incomplete") or (row["checked"] and not closed)):
            self._report_stale(row, st, now)
            return False
        if not closed and now - st.st_mtime < self.settle:
            if not same:
                self.journal.see(name, st.st_size, st.st_mtime_ns, "pending")
            return False
        state = fits_state(str(path))
        if state == "incomplete":
            stale = now - st.st_mtime > self.stale_after
            if stale and (row is None or row["state"] != "incomplete"):
                self._warn_stale(name, now - st.st_mtime)
            self.journal.see(name, st.st_size, st.st_mtime_ns, "incomplete" if stale else "pending", checked=True)
            return False
        if state == "invalid":
            log.warning("%s is not a FITS file; uploading it so the index records why it failed", name)
        self.journal.see(name, st.st_size, st.st_mtime_ns, "queued", checked=True)
        self.on_queued()
        return True

    def _report_stale(self, row, st, now: float) -> None:
        if row["state"] == "pending" and row["checked"] and now - st.st_mtime > self.stale_after:
            self._warn_stale(row["name"], now - st.st_mtime)
            self.journal.set_state(row["name"], "incomplete", "not a complete FITS file")

    def _warn_stale(self, name: str, age: float) -> None:
        log.warning("%s has not been a complete FITS file for %.0f s: not uploaded", name, age)

    # ---- the folder
    def names(self) -> Iterator[str]:
        with os.scandir(self.watch_dir) as it:
            for entry in it:
                if is_candidate(entry.name):
                    yield entry.name

    def scan(self, now: Optional[float] = None) -> int:
        """Look at every file in the folder; how many were queued."""
        now = time.time() if now is None else now
        try:
            self._dir_mtime = os.stat(self.watch_dir).st_mtime_ns
            queued = sum(self.observe(name, now=now) for name in self.names())
            self._missing_warned = False
        except FileNotFoundError:
            if not self._missing_warned:
                log.warning("watched folder %s does not exist (yet); waiting for it", self.watch_dir)
                self._missing_warned = True
            queued = 0
        self._next_rescan = time.monotonic() + self.rescan_every
        return queued

    def recheck_pending(self, now: Optional[float] = None) -> None:
        for row in self.journal.unfinished():
            self.observe(row["name"], now=now)

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` for events, then bring the journal up to date."""
        if self.use_inotify and self.inotify is None and self.watch_dir.is_dir():
            self.inotify = open_inotify(self.watch_dir)
            if self.inotify is not None:
                self.scan()             # whatever arrived before the watch was in place
        rescan = False
        if self.inotify is not None:
            for mask, name in self.inotify.read(timeout):
                if mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    rescan = True
                    if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                        self.inotify.close()
                        self.inotify = None
                        break
                elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                    self.observe(name, closed=True)
                elif mask & IN_CREATE:
                    self.observe(name)
        elif timeout > 0:
            time.sleep(timeout)
        try:
            dir_mtime = os.stat(self.watch_dir).st_mtime_ns
        except FileNotFoundError:
            dir_mtime = None
        if rescan or dir_mtime != self._dir_mtime or time.monotonic() >= self._next_rescan:
            self.scan()
        self.recheck_pending()

    def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None


