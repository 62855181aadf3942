"""The operator's side of accounts: `python -m infra.admin` against the local stack,
with the same code as against AWS, and `python -m infra.local serve --users FILE
--watch DIR` as scripts use it (one JSON line saying where everything is)."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from infra import admin
from tests.conftest import ROOT, real_fits


def _admin(system, capsys, *argv):
    code = admin.main(list(argv), environ={**os.environ, **system.stack.environment()})
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_proposals_aliases_and_schedule_from_the_command_line(system, capsys):
    tag = uuid.uuid4().hex[:6]
    user, proposal = f"obs-{tag}", f"SO2031A-{tag.upper()}"
    assert _admin(system, capsys, "users", "add", user, "--password", "observer-pass-1", "--proposal",
                  proposal.lower())[0] == 0
    code, out, _ = _admin(system, capsys, "users", "list")
    listed = [json.loads(line) for line in out.splitlines()]
    mine = next(u for u in listed if u["username"] == user)
    assert mine["proposals"] == [proposal] and mine["role"] == "observer" and mine["in_directory"]
    # the account works: signed in, the API knows its proposal
    api = system.signed_in(user, "observer-pass-1").session(system.url)
    assert api.get(system.url + "/api/me").json()["proposals"] == [proposal]

    assert _admin(system, capsys, "members", "add", proposal, user, "--role", "pi")[0] == 0
    assert api.get(system.url + "/api/me").json()["pi_of"] == [proposal]   # at once: no new token needed
    code, out, _ = _admin(system, capsys, "members", "list", proposal)
    assert json.loads(out) == {"username": user, "role": "pi"}

    assert _admin(system, capsys, "aliases", "set", f"Hermes {tag}", proposal)[0] == 0
    code, out, _ = _admin(system, capsys, "resolve", f"hermes-{tag}")
    assert json.loads(out)["proposal"] == proposal and json.loads(out)["by"] == "alias"
    code, out, _ = _admin(system, capsys, "resolve", "S02016B-104")
    assert json.loads(out)["proposal"] == "SO2016B-104"

    assert _admin(system, capsys, "schedule", "add", "2031-05-01", "23:30", "04:00", proposal)[0] == 0
    code, out, _ = _admin(system, capsys, "schedule", "list", "--night", "2031-05-01")
    entry = json.loads(out.splitlines()[-1])
    assert (entry["start"], entry["end"], entry["proposal"]) == ("2031-05-01T23:30:00", "2031-05-02T04:00:00",
                                                                 proposal)
    assert _admin(system, capsys, "schedule", "remove", "2031-05-01", "23:30", proposal)[0] == 0
    assert _admin(system, capsys, "schedule", "list", "--night", "2031-05-01")[1] == ""

    # mistakes are explained, not raised
    code, _, err = _admin(system, capsys, "members", "add", proposal, "nobody-" + tag)
    assert code == 2 and "users add" in err
    code, _, err = _admin(system, capsys, "users", "add", "short-" + tag, "--password", "short")
    assert code == 2 and "error:" in err
    code, _, err = _admin(system, capsys, "schedule", "add", "2031-05-01", "25:00", "04:00", proposal)
    assert code == 2 and "not a UT time" in err

    assert _admin(system, capsys, "users", "remove", user)[0] == 0
    with pytest.raises(Exception):
        system.signed_in(user, "observer-pass-1").token


def test_admin_without_a_deployment_says_how_to_name_one(capsys):
    assert admin.main(["users", "list"], environ={}) == 2
    assert "--stack" in capsys.readouterr().err


def test_serve_with_users_and_a_watched_folder_prints_where_everything_is(tmp_path):
    users = tmp_path / "users.json"
    users.write_text(json.dumps([
        {"username": "pi-ana", "password": "ana-password-1", "pi_of": ["SIMULATED"]},
        {"username": "staff-sam", "password": "sam-password-1", "staff": True}]))
    watch = tmp_path / "mountain"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "infra.local", "serve", "--users", str(users), "--watch",
                             str(watch), "--port", "0", "--workers", "1", "--state-file",
                             str(tmp_path / "stack.json")], cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = proc.stdout.readline()
            if not out and proc.poll() is not None:
                break
            if out.startswith("{"):
                line = json.loads(out)
                break
        assert line, "serve printed no JSON line"
        assert {"url", "s3_endpoint", "raw_bucket", "raw_prefix", "user_pool_id", "client_id"} <= set(line)
        assert line["users"] == ["pi-ana", "staff-sam"]
        config = requests.get(line["url"] + "/api/auth/config", timeout=10).json()
        assert config["client_id"] == line["client_id"]
        from infra.accounts import SignedIn

        ana = SignedIn(config["cognito_endpoint"], config["region"], config["client_id"], "pi-ana",
                       "ana-password-1").session(line["url"])
        assert ana.get(line["url"] + "/api/me", timeout=10).json()["pi_of"] == ["SIMULATED"]
        # a frame dropped in the watched folder is uploaded and listed
        night = watch / "2031-06-01"
        night.mkdir(parents=True)
        (night / "0001_arc.fits").write_bytes(real_fits("goodman_red_comp.fits"))
        deadline, files = time.monotonic() + 60, []
        while time.monotonic() < deadline and not files:
            files = ana.get(line["url"] + "/api/files", params={"night": "2031-06-01"}, timeout=10).json()["files"]
            time.sleep(0.5)
        assert [f["file_name"] for f in files] == ["0001_arc.fits"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
