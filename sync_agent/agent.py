"""Upload each FITS file in a folder once it is complete, exactly once.

The folder is scanned every `interval` seconds (a polling watcher works on every
mount, NFS and SMB included). A file is offered once it is a whole FITS file and
has not changed for `settle` seconds; it is uploaded to `{prefix}{night}/{name}`
with its SHA-256 in the object's metadata, and then recorded in the state file so a
restart does not upload it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from sync_agent.fitscheck import fits_state
from sync_agent.night import night_of, read_date_obs

log = logging.getLogger("goodman_live.sync")
FITS_SUFFIXES = (".fits", ".fit")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class SyncAgent:
    watch_dir: Path
    bucket: str
    s3: object
    prefix: str = "raw/"
    state_dir: Optional[Path] = None
    settle: float = 0.5
    stale_after: float = 120.0
    on_upload: Optional[Callable[[Path, str], None]] = None
    done: Dict[str, dict] = field(default_factory=dict)
    _warned: set = field(default_factory=set)

    def __post_init__(self):
        self.watch_dir = Path(self.watch_dir)
        self.state_dir = Path(self.state_dir or Path.home() / ".goodman-live-sync")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._state_file = self.state_dir / "uploaded.json"
        if self._state_file.exists():
            self.done = json.loads(self._state_file.read_text())

    def _save_state(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.done, indent=1, sort_keys=True))
        os.replace(tmp, self._state_file)

    def key_for(self, path: Path) -> str:
        night = night_of(read_date_obs(str(path)), path.stat().st_mtime)
        return f"{self.prefix}{night}/{path.name}"

    def pending(self, now: Optional[float] = None) -> List[Path]:
        """Files ready to upload, oldest first."""
        now = time.time() if now is None else now
        ready = []
        for path in sorted(self.watch_dir.iterdir(), key=lambda p: p.name):
            if not path.is_file() or path.suffix.lower() not in FITS_SUFFIXES:
                continue
            st = path.stat()
            seen = self.done.get(path.name)
            if seen and seen["size"] == st.st_size and seen["mtime_ns"] == st.st_mtime_ns:
                continue
            if now - st.st_mtime < self.settle:
                continue
            state = fits_state(str(path))
            if state == "incomplete":
                if now - st.st_mtime > self.stale_after and path.name not in self._warned:
                    self._warned.add(path.name)
                    log.warning("%s has not been a complete FITS file for %.0f s: not uploaded", path.name,
                                now - st.st_mtime)
                continue
            if state == "invalid":
                log.warning("%s is not a FITS file; uploading it so the index records why it failed", path.name)
            ready.append(path)
        return sorted(ready, key=lambda p: p.stat().st_mtime)

    def upload(self, path: Path) -> str:
        st = path.stat()
        digest = sha256_of(path)
        key = self.key_for(path)
        with open(path, "rb") as fh:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=fh, ContentType="application/fits",
                               Metadata={"sha256": digest})
        self.done[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest, "key": key,
                                "uploaded_at": time.time()}
        self._save_state()
        log.info("uploaded %s -> s3://%s/%s", path.name, self.bucket, key)
        if self.on_upload:
            self.on_upload(path, key)
        return key

    def scan_once(self) -> List[str]:
        return [self.upload(p) for p in self.pending()]

    def run(self, interval: float = 0.25, stop: Optional[threading.Event] = None) -> None:
        stop = stop or threading.Event()
        delay = interval
        while not stop.is_set():
            try:
                self.scan_once()
                delay = interval
            except Exception as exc:  # storage unreachable: back off, keep the files for later
                delay = min(max(delay * 2, 1.0), 60.0)
                log.warning("upload failed (%s); retrying in %.0f s", exc, delay)
            stop.wait(delay)
