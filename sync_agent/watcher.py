"""Which files in the instrument's tree are whole, and when.

The agent is given a data root and watches it and every folder below it, new ones
included: observers make a folder per night (ROOT/20180203/..., ROOT/2018-02-04/RAW/...)
and the frames land there, not in the root.

The writer closing a file is the moment it can go: on Linux the kernel says so
(inotify IN_CLOSE_WRITE, or IN_MOVED_TO for writers that rename a finished temporary
file into place), read here through libc with ctypes so nothing needs installing. One
inotify fd carries a watch per folder. A new folder gets its watch first and is listed
right after, so a file written the instant after `mkdir` (before the watch existed) is
found by the listing and one written after it by its event; a folder moved in with files
inside is listed the same way. A lost event queue (IN_Q_OVERFLOW) means a full re-scan.

Network mounts (NFS, SMB) give no events for files written by another machine, and the
kernel's watch limit can run out: a folder without a watch is looked at whenever its
mtime changes (a `stat` per folder per `interval`), and the whole tree is walked again
every `rescan` seconds. A file found that way must stay unchanged for `settle` seconds.
Either way it is queued only once it is a complete FITS file (fitscheck); one that
never becomes complete is reported after `stale_after` seconds and not uploaded.

Files are named by their path below the root, with `/` (journal rows, log lines), so
"0267.fits" in the root keeps the name it always had. Hidden folders are skipped, and
symbolic links to folders are not followed: a "latest -> 20180203" link would otherwise
send the night twice under two names, or loop.

The watcher only records what it sees in the journal; uploading is someone else's job.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import stat
import struct
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Set, Tuple

from sync_agent.fitscheck import fits_state
from sync_agent.journal import Journal

log = logging.getLogger("goodman_live.sync")
FITS_SUFFIXES = (".fits", ".fit")

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x40, 0x80, 0x100
IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x4000, 0x8000, 0x40000000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x01000000, 0x02000000, 0x04000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, 0o2000000
WATCH_MASK = (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_DELETE_SELF
              | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")
ROOT = ""       # the watch root, as a relative folder


def is_candidate(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(FITS_SUFFIXES)


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def below(folder: str, other: str) -> bool:
    """Is `other` the folder itself or inside it?"""
    return folder == ROOT or other == folder or other.startswith(folder + "/")


class Inotify:
    """One inotify fd, any number of watches; a blocking-with-timeout reader."""

    def __init__(self):
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")

    def add(self, path: Path) -> int:
        """The watch descriptor (the same one again for a folder already watched)."""
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(str(path)), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {path}: {os.strerror(err)}")
        return wd

    def remove(self, wd: int) -> None:
        self._libc.inotify_rm_watch(self.fd, wd)     # EINVAL if the kernel dropped it already: fine

    def read(self, timeout: float) -> List[Tuple[int, int, str]]:
        """(wd, mask, name) of the events that arrive within `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 256 * 1024)
        except BlockingIOError:
            return []
        events, offset = [], 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + length]
            events.append((wd, mask, os.fsdecode(raw.rstrip(b"\0"))))
            offset += _EVENT.size + length
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_inotify() -> Optional[Inotify]:
    try:
        return Inotify()
    except (OSError, AttributeError) as exc:  # not Linux, or out of inotify instances
        log.info("no inotify (%s): looking at every folder's mtime each poll", exc)
        return None


class TreeWatcher:
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
        self._inotify_tried = False
        self.folders: Dict[str, Optional[int]] = {}     # every known folder -> its mtime_ns at its last listing
        self.wd_of: Dict[str, int] = {}                 # folders with a watch
        self.folder_of: Dict[int, str] = {}
        self._limit_logged = False
        self._unreadable: Set[str] = set()
        self._next_rescan = 0.0
        self._missing_warned = False

    # ---- one file
    def observe(self, name: str, closed: bool = False, now: Optional[float] = None) -> bool:
        """Record what `name` (relative to the root) is now; True if it was queued."""
        if not is_candidate(name):
            return False
        now = time.time() if now is None else now
        path = self.watch_dir / name
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
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

    # ---- folders
    def _watch(self, folder: str) -> None:
        """A watch on `folder` if the kernel gives one; else it is polled by its mtime."""
        if self.inotify is None or folder in self.wd_of:
            return
        try:
            wd = self.inotify.add(self.watch_dir / folder)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return                      # gone already; its parent's listing will say so
            if not self._limit_logged:
                hint = " (raise fs.inotify.max_user_watches)" if exc.errno == errno.ENOSPC else ""
                log.warning("cannot watch %s (%s)%s: polling it and any other folder without a watch",
                            self.watch_dir / folder, exc.strerror, hint)
                self._limit_logged = True
            return
        old = self.folder_of.get(wd)
        if old is not None and old != folder:   # the same folder, moved: one name only
            self.wd_of.pop(old, None)
        self.wd_of[folder] = wd
        self.folder_of[wd] = folder

    def _forget_folder(self, folder: str) -> None:
        """`folder` and everything below it are no longer in the tree."""
        for known in [f for f in self.folders if below(folder, f)]:
            self.folders.pop(known, None)
            wd = self.wd_of.pop(known, None)
            if wd is not None:
                self.folder_of.pop(wd, None)
                if self.inotify is not None:
                    self.inotify.remove(wd)

    def _list(self, folder: str, now: float, walk: bool) -> int:
        """Observe the files of `folder`, take in folders new to it (watch, then list
        them and all below), and with `walk` list every known one below as well.
        Iterative, so a deep tree cannot exhaust the stack. How many were queued."""
        queued = 0
        todo = [folder]
        while todo:
            current = todo.pop()
            if current not in self.folders:
                self._watch(current)            # before the listing: nothing falls between the two
            path = self.watch_dir / current
            try:
                self.folders[current] = os.stat(path).st_mtime_ns
                with os.scandir(path) as it:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            except (FileNotFoundError, NotADirectoryError):
                if current == ROOT:
                    raise
                self._forget_folder(current)
                continue
            except PermissionError as exc:
                if current not in self._unreadable:
                    log.warning("cannot read folder %s (%s): skipped", path, exc.strerror)
                    self._unreadable.add(current)
                continue
            self._unreadable.discard(current)
            for name, is_dir in entries:
                if name.startswith("."):
                    continue
                child = join(current, name)
                if is_dir:
                    if walk or child not in self.folders:
                        todo.append(child)
                elif is_candidate(name):
                    queued += self.observe(child, now=now)
        return queued

    def scan(self, now: Optional[float] = None) -> int:
        """Walk the whole tree and look at every file; how many were queued."""
        now = time.time() if now is None else now
        self._open_inotify()
        before = set(self.folders)
        try:
            queued = self._list(ROOT, now, walk=True)
            self._missing_warned = False
        except (FileNotFoundError, NotADirectoryError):
            if not self._missing_warned:
                log.warning("watched folder %s does not exist (yet); waiting for it", self.watch_dir)
                self._missing_warned = True
            self._forget_folder(ROOT)
            queued = 0
        # A folder that was known but not met in the walk is gone (a walk meets every one).
        for gone in before - set(self.folders):
            self._forget_folder(gone)
        self._next_rescan = time.monotonic() + self.rescan_every
        return queued

    def names(self) -> Iterator[str]:
        """Every candidate file in the tree, relative to the root (for tools and tests)."""
        for top, dirs, files in os.walk(self.watch_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = Path(top).relative_to(self.watch_dir).as_posix()
            for name in sorted(files):
                if is_candidate(name):
                    yield join("" if rel == "." else rel, name)

    def _open_inotify(self) -> None:
        if self.use_inotify and not self._inotify_tried:
            self._inotify_tried = True
            self.inotify = open_inotify()

    def recheck_pending(self, now: Optional[float] = None) -> None:
        for row in self.journal.unfinished():
            self.observe(row["name"], now=now)

    # ---- events
    def _handle(self, wd: int, mask: int, name: str) -> bool:
        """Act on one event; True if it asks for a full re-scan."""
        if mask & IN_Q_OVERFLOW:
            log.info("inotify queue overflowed: walking the whole tree")
            return True
        folder = self.folder_of.get(wd)
        if folder is None:
            return False                        # a watch already dropped
        if mask & IN_IGNORED or mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            if mask & IN_IGNORED:               # the kernel removed the watch: forget its number
                self.folder_of.pop(wd, None)
                if self.wd_of.get(folder) == wd:
                    self.wd_of.pop(folder)
            if folder == ROOT:                  # the root itself went: start again from its path
                self._forget_folder(ROOT)
                return True
            return False
        path = join(folder, name)
        if mask & IN_ISDIR:
            if name.startswith("."):
                return False
            if mask & (IN_CREATE | IN_MOVED_TO):
                self._forget_folder(path)       # a folder moved over another one replaces it
                self._list(path, time.time(), walk=True)
            elif mask & (IN_DELETE | IN_MOVED_FROM):
                self._forget_folder(path)
        elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
            self.observe(path, closed=True)
        elif mask & IN_CREATE:
            self.observe(path)
        return False

    def _poll_unwatched(self) -> bool:
        """List each folder without a watch whose mtime changed; True if the root is
        missing or changed kind and the tree must be walked."""
        for folder in [f for f in self.folders if f not in self.wd_of]:
            if folder not in self.folders:      # forgotten by an earlier listing in this loop
                continue
            try:
                mtime = os.stat(self.watch_dir / folder).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                if folder == ROOT:
                    return True
                self._forget_folder(folder)
                continue
            except OSError:
                continue
            if mtime != self.folders[folder]:
                self._list(folder, time.time(), walk=False)
        return False

    def poll(self, timeout: float) -> None:
        """Wait up to `timeout` for events, then bring the journal up to date."""
        rescan = ROOT not in self.folders and self.watch_dir.is_dir()   # it has appeared
        if self.inotify is not None and self.wd_of:
            for wd, mask, name in self.inotify.read(timeout):
                rescan = self._handle(wd, mask, name) or rescan
        elif timeout > 0:
            time.sleep(timeout)
        rescan = self._poll_unwatched() or rescan
        if rescan or time.monotonic() >= self._next_rescan:
            self.scan()
        self.recheck_pending()

    def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
        self.folders.clear()
        self.wd_of.clear()
        self.folder_of.clear()
        self._inotify_tried = False
