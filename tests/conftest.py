"""Shared fixtures: the embedded system (real HTTP to moto, the real handlers behind
the queue) started once per session, and helpers to talk to it."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests

from functions.api.chalicelib.index import FINAL_STATUSES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_REAL = ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def system():
    from infra.local.system import EmbeddedSystem, quiet_logging

    quiet_logging()
    # A short visibility timeout so retries and dead-lettering happen within seconds.
    with EmbeddedSystem(workers=2, visibility_timeout=2) as embedded:
        yield embedded


class Api:
    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()

    def get(self, path: str, **params):
        return self.http.get(self.base + path, params=params, timeout=10)

    def json(self, path: str, **params):
        resp = self.get(path, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_for(self, file_id: str, statuses=FINAL_STATUSES, timeout: float = 30.0) -> dict:
        """Poll a file until it reaches one of `statuses`; fail the test with what was seen."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            resp = self.get(f"/api/files/{file_id}")
            if resp.status_code == 200:
                seen = resp.json()
                if seen.get("status") in statuses:
                    return seen
            time.sleep(0.1)
        raise AssertionError(f"file {file_id} did not reach {statuses} in {timeout} s; last seen: {seen}")


@pytest.fixture(scope="session")
def api(system):
    return Api(system.url)


@pytest.fixture(scope="session")
def s3(system):
    return system.stack.client("s3")


@pytest.fixture(scope="session")
def sqs(system):
    return system.stack.client("sqs")


def real_fits(name: str) -> bytes:
    return (FIXTURES / "real" / name).read_bytes()


@pytest.fixture(scope="session")
def sim_night(tmp_path_factory):
    """The simulator's default 25-frame night (10 bias, 10 flats, 2 lamps, 3 science)."""
    from infra.simulator import make_night, write_night

    out = tmp_path_factory.mktemp("sim_night")
    write_night(out, make_night(seed=1))
    return out


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()
