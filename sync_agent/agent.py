"""Upload each FITS file in a folder tree once it is complete, exactly once, verified.

Three parts that only talk through the journal (SQLite in `state_dir`):
  the watcher   records files as they appear and queues each once it is whole FITS;
  the uploaders hash a queued file once, put it under `{prefix}{night}/{path}` and
                prove it arrived (uploader.py); newest files first, so tonight's target
                never waits behind last night's backfill;
  the backoff   keeps them from hammering storage that is down, and lets them all go
                the moment it is back.
A restart, or a kill at any moment, loses nothing: on start whatever was in flight is
queued again (it is found in storage and verified, not sent twice) and the folder is
re-scanned for what arrived meanwhile.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

from botocore.exceptions import BotoCoreError, ClientError

from sync_agent.backoff import Backoff, jittered
from sync_agent.checksums import Digests
from sync_agent.journal import Journal, export_uploaded
from sync_agent.night import object_key, read_date_obs
from sync_agent.uploader import FileChanged, NotVerified, Uploader, open_version
from sync_agent.watcher import FITS_SUFFIXES, TreeWatcher

log = logging.getLogger("goodman_live.sync")
__all__ = ["SyncAgent", "FITS_SUFFIXES"]

PROGRESS_EVERY = 10.0
EXPORT_EVERY = 30.0
STORAGE_ERRORS = (ClientError, BotoCoreError, NotVerified)


def _digests_of(row) -> Optional[Digests]:
    if not row["sha256"]:
        return None
    return Digests(row["size"], row["sha256"], row["md5"], row["part_size"] or 0, row["parts_sha256"],
                   row["parts_etag"])


class SyncAgent:
    def __init__(self, watch_dir, bucket: str, s3, prefix: str = "raw/", state_dir=None, settle: float = 0.5, *,
                 stale_after: float = 120.0, rescan: float = 60.0, workers: int = 8,
                 multipart_threshold: int = 16 << 20, part_size: int = 8 << 20, max_backoff: float = 30.0,
                 verify: str = "head", use_inotify: bool = True, order: str = "newest",
                 on_upload: Optional[Callable[[Path, str], None]] = None):
        self.watch_dir = Path(watch_dir)
        self.bucket = bucket
        self.prefix = prefix
        self.state_dir = Path(state_dir or Path.home() / ".goodman-live-sync")
        self.workers = workers
        self.max_backoff = max_backoff
        self.on_upload = on_upload
        self.journal = Journal(self.state_dir)
        self.order = order
        self._work = threading.Condition()
        self.watcher = TreeWatcher(self.watch_dir, self.journal, settle=settle, stale_after=stale_after,
                                     rescan=rescan, on_queued=self._wake, use_inotify=use_inotify)
        self.uploader = Uploader(s3, bucket, multipart_threshold=multipart_threshold, part_size=part_size,
                                 verify=verify)
        self.backoff = Backoff(base=0.5, cap=max_backoff)
        self.sent_files = 0
        self.sent_bytes = 0
        self.failures = 0

    @classmethod
    def from_config(cls, cfg, s3) -> "SyncAgent":
        return cls(cfg.watch, cfg.bucket, s3, prefix=cfg.prefix, state_dir=cfg.state_dir, settle=cfg.settle,
                   stale_after=cfg.stale_after, rescan=cfg.rescan, workers=cfg.workers,
                   multipart_threshold=cfg.multipart_threshold, part_size=cfg.part_size,
                   max_backoff=cfg.max_backoff, verify=cfg.verify, order=cfg.order)

    @property
    def settle(self) -> float:
        return self.watcher.settle

    def key_for(self, path: Path) -> str:
        """`{prefix}{night}/{path below the night}`: the night from the nearest dated
        folder (the watch root's own name included), else from DATE-OBS or the mtime."""
        relpath = path.relative_to(self.watch_dir).as_posix()
        return object_key(self.prefix, relpath, self.watch_dir.resolve().name, read_date_obs(str(path)),
                          path.stat().st_mtime)

    def _wake(self) -> None:
        with self._work:
            self._work.notify_all()

    # ---- one file
    def process(self, row) -> Optional[str]:
        """Upload one claimed file; the key it is stored under, or None if not (yet)."""
        name = row["name"]
        path = self.watch_dir / name
        try:
            self.uploader.abort_recorded(row["upload_id"])
            with open_version(path, row["size"], row["mtime_ns"]) as fh:
                digests = _digests_of(row)
                key = row["key"]
                if digests is None:
                    digests = self.uploader.digest(fh, row["size"])
                    key = self.key_for(path)
                    if not self.journal.set_digests(row, key, digests):
                        raise FileChanged(f"{name} changed while it was being hashed")
                outcome = self.uploader.upload(fh, digests, key,
                                               on_upload_id=lambda value: self.journal.set_upload_id(row, value))
        except FileNotFoundError:
            self.backoff.release()
            log.error("%s disappeared before it was uploaded", name)
            self.journal.give_up(row, "file disappeared before upload")
            return None
        except (FileChanged, EOFError) as exc:
            self.backoff.release()
            log.info("%s: %s; looking at it again", name, exc)
            self.journal.reconsider(name)
            self._wake()
            return None
        except STORAGE_ERRORS as exc:
            self._storage_failed(row, exc)
            return None
        except OSError as exc:          # the local disk: retry this file later, the storage is fine
            self.backoff.release()
            self.failures += 1
            log.warning("cannot read %s (%s); retrying later", name, exc)
            self.journal.retry_later(row, f"local: {exc}", jittered(row["attempts"] + 1, 1.0, self.max_backoff))
            return None
        except Exception as exc:        # a bug or a surprise: keep the file queued, say so loudly
            log.exception("unexpected error uploading %s", name)
            self._storage_failed(row, exc)
            return None
        if self.backoff.succeeded():
            self.journal.all_due_now()
            self.journal.put_meta(outage_since=None)
        if not self.journal.finish(row, key, outcome.stored_key, outcome.verified_by):
            log.info("%s changed during its upload; the new version follows", name)
        if outcome.existing_sha256 is not None:
            self.journal.record_conflict(name, key, outcome.existing_sha256, outcome.stored_key, digests.sha256)
        if outcome.sent:
            self.sent_files += 1
            self.sent_bytes += row["size"]
            log.info("uploaded %s -> s3://%s/%s (verified: %s)", name, self.bucket, outcome.stored_key,
                     outcome.verified_by)
        else:
            log.info("%s is already in s3://%s/%s (verified: %s); not sent again", name, self.bucket,
                     outcome.stored_key, outcome.verified_by)
        if self.on_upload:
            self.on_upload(path, outcome.stored_key)
        return outcome.stored_key

    def _storage_failed(self, row, exc: Exception) -> None:
        self.failures += 1
        delay = self.backoff.failed()
        message = f"{type(exc).__name__}: {exc}"
        self.journal.retry_later(row, message, jittered(row["attempts"], 1.0, self.max_backoff))
        self.journal.put_meta(last_error=message[:500], last_error_at=time.time(),
                              outage_since=self.backoff.since)
        n = self.backoff.failures
        if n == 1 or n % 10 == 0:
            since = time.time() - (self.backoff.since or time.time())
            log.warning("upload of %s failed (%s); storage failing for %.0f s, next try in %.1f s",
                        row["name"], message[:300], since, delay)

    # ---- many files
    def _drain(self, stop: Optional[threading.Event] = None, keys: Optional[list] = None, once: bool = False):
        """A worker: take the newest due file (`order` oldest: the oldest), upload it, repeat."""
        stop = stop or threading.Event()
        while not stop.is_set():
            if not once and not self.backoff.wait_turn(stop):
                return
            if not once and self.backoff.in_outage:
                self._probe()
                continue
            row = self.journal.claim(oldest=self.order == "oldest")
            if row is None:
                self.backoff.release()
                if once:
                    return
                self._wait_for_work(stop)
                continue
            key = self.process(row)
            if key is not None and keys is not None:
                keys.append(key)

    def _probe(self) -> None:
        """In an outage one cheap request, not a file, tests the storage: when it answers,
        every worker starts again with the newest files, not with whichever file
        happened to be probing."""
        if self.uploader.reachable(f"{self.prefix}.goodman-live-sync-probe"):
            if self.backoff.succeeded():
                self.journal.all_due_now()
                self.journal.put_meta(outage_since=None)
                log.info("storage reachable again; draining the backlog")
            return
        delay = self.backoff.failed()
        if self.backoff.failures % 10 == 0:
            since = time.time() - (self.backoff.since or time.time())
            log.warning("storage still unreachable after %.0f s; next try in %.1f s; %d files waiting", since,
                        delay, self.journal.backlog()["files"])

    def _wait_for_work(self, stop: threading.Event) -> None:
        due = self.journal.next_due()
        timeout = 5.0 if due is None else min(5.0, max(0.05, due - time.time()))
        with self._work:
            if not stop.is_set():
                self._work.wait(timeout)

    def scan_once(self) -> List[str]:
        """Queue what is complete now and try each queued file once; the keys stored."""
        self.journal.recover()
        self.journal.all_due_now()
        self.watcher.scan()
        self.watcher.recheck_pending()
        keys: List[str] = []
        threads = [threading.Thread(target=self._drain, kwargs=dict(keys=keys, once=True), daemon=True)
                   for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        export_uploaded(self.journal, self.state_dir / "uploaded.json")
        return keys

    def run(self, interval: float = 0.25, stop: Optional[threading.Event] = None) -> None:
        stop = stop or threading.Event()
        recovered = self.journal.recover()
        if recovered:
            log.info("%d uploads were in flight when the agent last stopped: checking them again", recovered)
        self.journal.put_meta(pid=os.getpid(), started_at=time.time(), heartbeat=time.time(),
                              watch=str(self.watch_dir), bucket=self.bucket, prefix=self.prefix)
        self.watcher.scan()
        workers = [threading.Thread(target=self._drain, args=(stop,), name=f"upload-{i}", daemon=True)
                   for i in range(self.workers)]
        for t in workers:
            t.start()
        progress = _Progress(self)
        next_export = time.monotonic() + EXPORT_EVERY
        try:
            while not stop.is_set():
                self.watcher.poll(interval)
                progress.tick()
                if time.monotonic() >= next_export:
                    export_uploaded(self.journal, self.state_dir / "uploaded.json")
                    next_export = time.monotonic() + EXPORT_EVERY
        finally:
            stop.set()
            self._wake()
            self.backoff.release()
            for t in workers:
                t.join(timeout=60)
            self.watcher.close()
            export_uploaded(self.journal, self.state_dir / "uploaded.json")
            self.journal.put_meta(pid=None, heartbeat=time.time())


class _Progress:
    """A line every PROGRESS_EVERY seconds while there is a backlog, and a heartbeat."""

    def __init__(self, agent: SyncAgent):
        self.agent = agent
        self.next = time.monotonic() + PROGRESS_EVERY
        self.start = time.monotonic()
        self.last_files = 0
        self.reported_backlog = False

    def tick(self) -> None:
        if time.monotonic() < self.next:
            return
        self.next = time.monotonic() + PROGRESS_EVERY
        agent = self.agent
        agent.journal.put_meta(heartbeat=time.time(), outage_since=agent.backoff.since)
        backlog = agent.journal.backlog()
        sent = agent.sent_files - self.last_files
        self.last_files = agent.sent_files
        if backlog["files"]:
            rate = sent / PROGRESS_EVERY
            behind = time.time() - backlog["oldest"] / 1e9 if backlog["oldest"] else 0
            eta = f", ~{backlog['files'] / rate:.0f} s to go" if rate > 0 else ""
            log.info("backlog: %d files (%.1f MB) to upload, behind by %.0f s; %.1f files/s%s; %d uploaded since start",
                     backlog["files"], backlog["bytes"] / 1e6, behind, rate, eta, agent.sent_files)
            self.reported_backlog = True
        elif self.reported_backlog:
            log.info("backlog cleared: %d files (%.1f MB) uploaded since start", agent.sent_files,
                     agent.sent_bytes / 1e6)
            self.reported_backlog = False
