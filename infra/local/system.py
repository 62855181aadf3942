"""The whole system on this machine: storage, queues and index (moto), the functions
behind their queues, and the API with the page; started and stopped as one."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

from infra.local.runner import QueuePoller, queues_empty
from infra.local.server import LocalServer
from infra.local.stack import LocalStack
from infra.local.sweeper import Sweeper

ROOT = Path(__file__).resolve().parents[2]


class EmbeddedSystem:
    #: seconds between consistency sweeps (in AWS, EventBridge's schedule in stack.json's
    #: consistency_function: every 10 minutes)
    sweep_seconds: float = 10.0
    sweeper: Optional[Sweeper] = None

    def __init__(self, workers: int = 2, http_port: int = 0, static_dir: Optional[Path] = None,
                 visibility_timeout: int = 5, reduction_process: bool = False,
                 background_workers: Optional[int] = None):
        self.stack = LocalStack(visibility_timeout=visibility_timeout)
        self.workers = workers
        #: the reduction's workers in a process of their own (infra/local/worker.py), as
        #: Lambda runs the function apart from the API and the ingest: no lock shared with
        #: them, and its memory measured alone (`reduction_peak_rss_mb`); the benchmarks
        #: use it, the tests keep the workers as threads they can reach
        self.reduction_process = reduction_process
        self.reducer: Optional[subprocess.Popen] = None
        #: reduction workers that may take background work at once (runner.QueuePoller)
        self.background_workers = background_workers
        self.http_port = http_port
        self.static_dir = static_dir
        self.pollers: List[QueuePoller] = []
        self.server: Optional[LocalServer] = None
        self._tmp = None
        self._operator = None

    # The handlers are imported only once the environment points at the stack, as
    # Lambda imports them only in a configured environment.
    def start(self) -> "EmbeddedSystem":
        self.stack.start()
        self.stack.export_environment()
        from functions import ingest, reduction, services
        from static_site.build import build

        services.reset_services()
        d, sqs, region = self.stack.definition, self.stack.client("sqs"), self.stack.region
        ingest_fn, reduce_fn = d["ingest_function"], d["reduce_function"]
        # Like two Lambda functions: a light one that lists files as they land, and the
        # heavy reduction on its own queue, so a busy reduction never delays a listing.
        # The reduction also takes its background queue's slow work, when its own queue
        # has none (infra/local/runner.py); both dead-letter queues are the reduction's.
        self.pollers = [
            QueuePoller(sqs, self.stack.queue_url, ingest.handler, "ingest", workers=2,
                        batch_size=ingest_fn["batch_size"], timeout_seconds=ingest_fn["timeout_seconds"],
                        region=region).start(),
            QueuePoller(sqs, self.stack.dlq_url, ingest.dlq_handler, "ingest-dlq", workers=1, region=region).start(),
            *([] if self.reduction_process else [
                QueuePoller(sqs, self.stack.reduce_queue_url, reduction.handler, "reduce", workers=self.workers,
                            batch_size=reduce_fn["batch_size"], timeout_seconds=reduce_fn["timeout_seconds"],
                            region=region, background_url=self.stack.background_queue_url,
                            background_workers=self.background_workers).start()]),
            QueuePoller(sqs, self.stack.reduce_dlq_url, reduction.dlq_handler, "reduce-dlq", workers=1,
                        region=region).start(),
            QueuePoller(sqs, self.stack.background_dlq_url, reduction.dlq_handler, "background-dlq", workers=1,
                        region=region).start(),
        ]
        if self.reduction_process:
            env = {**os.environ, **self.stack.environment()}
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
            command = [sys.executable, "-m", "infra.local.worker", "reduce", "--workers", str(self.workers)]
            if self.background_workers is not None:
                command += ["--background-workers", str(self.background_workers)]
            self.reducer = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        if self.static_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="goodman-live-site-")
            self.static_dir = Path(self._tmp.name)
        build(self.static_dir)
        self.server = LocalServer(self.static_dir, port=self.http_port).start()
        self.sweeper = Sweeper(self.sweep_seconds).start()
        return self

    def stop(self) -> None:
        if self.sweeper:
            self.sweeper.stop()
        for p in self.pollers:
            p.stop()
        if self.reducer:
            self.reducer.terminate()
            try:
                self.reducer.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.reducer.kill()
        if self.server:
            self.server.stop()
        self.stack.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def raw_bucket(self) -> str:
        return self.stack.definition["raw_bucket"]["name"]

    @property
    def raw_prefix(self) -> str:
        return self.stack.definition["raw_bucket"]["prefix"]

    def idle(self) -> bool:
        """No work waiting or under way. A batch being handled is invisible on its queue
        until it is deleted, so the reduction process's queues tell its state too."""
        if self.reducer and not queues_empty(self.stack.client("sqs"), self.stack.reduce_queue_url,
                                                 self.stack.background_queue_url):
            return False
        return all(p.idle() for p in self.pollers)

    def reduction_cpu_seconds(self) -> Optional[float]:
        """CPU seconds (user + system) the reduction process has used so far (Linux), or None."""
        if not self.reducer:
            return None
        try:
            fields = Path(f"/proc/{self.reducer.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reduction_peak_rss_mb(self) -> Optional[float]:
        """Peak resident memory of the reduction process so far (Linux), or None."""
        if not self.reducer:
            return None
        try:
            for line in Path(f"/proc/{self.reducer.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def wait_idle(self, timeout: float = 60.0, looks: int = 3) -> None:
        """Until every poller is idle `looks` times in a row (work hands on work: one idle
        look can fall between a task and the one it queues); AssertionError after `timeout`."""
        deadline, quiet = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            quiet = quiet + 1 if self.idle() else 0
            if quiet >= looks:
                return
            time.sleep(0.3)
        raise AssertionError(f"the system did not go idle in {timeout:g} s")

    # ---- accounts (infra/accounts.py): the API answers signed-in users only
    def accounts(self):
        from golive_data.access import Directory
        from infra.accounts import Accounts

        return Accounts(self.stack.client("cognito-idp"),
                        Directory(self.stack.client("dynamodb"), self.stack.definition["index_table"]["name"]),
                        self.stack.user_pool_id)

    def add_users(self, specs) -> None:
        accounts = self.accounts()
        for spec in specs:
            accounts.create(spec)

    def signed_in(self, username: str, password: str):
        """A user's session on this stack's API (infra.accounts.SignedIn)."""
        from infra.accounts import SignedIn

        return SignedIn(self.stack.endpoint_url, self.stack.region, self.stack.user_pool_client_id, username, password)

    def operator(self):
        """A staff account of this system's own (replay, tests, benchmarks), made on first use."""
        if self._operator is None:
            import secrets

            from infra.accounts import UserSpec

            spec = UserSpec(f"operator-{secrets.token_hex(4)}", secrets.token_urlsafe(24) + "a1", staff=True)
            self.add_users([spec])
            self._operator = self.signed_in(spec.username, spec.password)
        return self._operator

    def poller(self, name: str) -> QueuePoller:
        return next(p for p in self.pollers if p.name == name)

    def sync_agent_command(self, watch_dir: Path, state_dir: Path, *extra: str) -> List[str]:
        return [sys.executable, "-m", "sync_agent", "--watch", str(watch_dir), "--bucket", self.raw_bucket,
                "--endpoint-url", self.stack.endpoint_url, "--prefix", self.raw_prefix,
                "--state-dir", str(state_dir), *extra]

    def start_sync_agent(self, watch_dir: Path, state_dir: Path, *extra: str, **popen) -> subprocess.Popen:
        """The sync agent as operators run it: its own process, its CLI, the AWS credential chain."""
        env = {**os.environ, **self.stack.environment()}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        return subprocess.Popen(self.sync_agent_command(watch_dir, state_dir, *extra), cwd=str(ROOT), env=env, **popen)


def quiet_logging(level=logging.WARNING) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)
