"""Shared fixtures: the embedded system (real HTTP to moto, the real handlers behind
the queue) started once per session, and helpers to talk to it."""
from __future__ import annotations

import datetime
import shutil
import time
from pathlib import Path

import pytest
import requests

from golive_data.index import file_id_for
from golive_data.item import FINAL_STATUSES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_REAL = ROOT.parent / "shared" / "data" / "real"


#: the stack definition's parts that bear a global name in moto's (per-process) backends
NAMED = ("raw_bucket", "products_bucket", "index_table", "ingest_queue", "reduce_queue", "background_queue")


def local_stack_apart(visibility_timeout: int = 2):
    """A started local stack (no functions, no API) whose resources are named apart:
    moto's backends are one per process, and the session's embedded system holds the
    definition's own names."""
    import uuid

    from infra import definition as stackdef
    from infra.local.stack import LocalStack

    d, tag = stackdef.load(), uuid.uuid4().hex[:6]
    for part in NAMED:
        d[part]["name"] += f"-{tag}"
        if "dead_letter_queue" in d[part]:
            d[part]["dead_letter_queue"] += f"-{tag}"
    return LocalStack(definition=d, visibility_timeout=visibility_timeout).start()


@pytest.fixture(scope="session")
def system():
    from infra.local.system import EmbeddedSystem, quiet_logging

    quiet_logging()
    # A short visibility timeout so retries and dead-lettering happen within seconds.
    with EmbeddedSystem(workers=2, visibility_timeout=2) as embedded:
        yield embedded


class Api:
    """The API as a signed-in user sees it (by default the system's own staff account,
    which sees everything)."""

    def __init__(self, base: str, http=None):
        self.base = base
        self.http = http or requests.Session()

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
    return Api(system.url, system.operator().session(system.url))


@pytest.fixture(scope="session")
def s3(system):
    return system.stack.client("s3")


@pytest.fixture(scope="session")
def sqs(system):
    return system.stack.client("sqs")


def real_fits(name: str) -> bytes:
    return (FIXTURES / "real" / name).read_bytes()


def comps_and_flats(system, s3, api, night: str, count: int) -> list:
    """`count` frames, a comp then a flat in turn (`0001_frame.fits`, ...), put on
    `night`; each as the API serves it once final."""
    ids = []
    for i in range(count):
        body = real_fits("goodman_red_comp.fits" if i % 2 == 0 else "goodman_blue_flat.fits")
        key = f"{system.raw_prefix}{night}/{i + 1:04d}_frame.fits"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=body)
        ids.append(file_id_for(system.raw_bucket, key))
    return [api.wait_for(fid) for fid in ids]


@pytest.fixture(scope="session")
def sim_night(tmp_path_factory):
    """The simulator's default 25-frame night (10 bias, 10 flats, 2 lamps, 3 science)."""
    from infra.simulator import make_night, write_night

    out = tmp_path_factory.mktemp("sim_night")
    write_night(out, make_night(seed=1))
    return out


# Recent, so its frames are still proprietary (released after PROPRIETARY_DAYS), and no
# other test's night is within the calibration window of it.
SMALL_NIGHT = (datetime.date.today() - datetime.timedelta(days=40)).isoformat()


@pytest.fixture(scope="session")
def small_night(system, s3, api, tmp_path_factory):
    """Three biases, three flats, a lamp and one science frame (a white dwarf with H-alpha
    in absorption), reduced and calibrated: what the measuring routes and the page's
    interactive card are tried on."""
    from infra.simulator import make_night, write_night

    # 20 minutes on the star: S/N enough to put H-alpha's centre within 0.1 A (1 sigma)
    plan = make_night(seed=11, night=SMALL_NIGHT, n_bias=3, n_flat=3, n_comp=1, n_science=1, science_exptime=1200.0)
    out = tmp_path_factory.mktemp("measure_night")
    paths = write_night(out, plan)
    ids = {}
    for path in paths:
        if path.suffix != ".fits":
            continue
        key = f"{system.raw_prefix}{SMALL_NIGHT}/{path.name}"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=path.read_bytes())
        ids[path.name] = file_id_for(system.raw_bucket, key)
    science = next(f for f in plan.frames if f.kind == "science")
    file_id = ids[science.filename]
    item = api.wait_for(file_id, timeout=90)
    for _ in range(60):
        if item.get("spectra_status") == "calibrated":
            break
        system.wait_idle(timeout=30)
        item = api.json(f"/api/files/{file_id}")
    assert item.get("spectra_status") == "calibrated", item.get("spectra_reason")
    return {"plan": plan, "science": science, "file_id": file_id, "ids": ids, "item": item, "night": SMALL_NIGHT}


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


# ---- users, and signing in through the page -------------------------------------------
def new_user(system, prefix: str = "user", **fields):
    """A user with a fresh name and password on `system` (fields: infra.accounts.UserSpec's
    proposals, pi_of, staff)."""
    import secrets

    from infra.accounts import UserSpec

    spec = UserSpec(f"{prefix}-{secrets.token_hex(4)}", secrets.token_urlsafe(18) + "a1", **fields)
    system.add_users([spec])
    return spec


@pytest.fixture(scope="session")
def staff_user(system):
    """A staff account for the browser tests: it sees every file."""
    return new_user(system, "staff", staff=True)


def sign_in_page(page, system, username: str, password: str):
    """Open the page and sign in through its form, as a person does; returns once the
    header says who is signed in."""
    page.goto(system.url + "/")
    page.fill("#signin-username", username)
    page.fill("#signin-password", password)
    page.click("#signin-submit")
    return wait_signed_in(page, username)


def wait_signed_in(page, username: str):
    """Wait until the page's header says `username` is signed in."""
    page.wait_for_function("u => document.querySelector('#whoami').textContent.startsWith(u + ' · ')", arg=username)
    return page
