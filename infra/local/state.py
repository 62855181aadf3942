"""Where a running local stack can be found.

The local stack is moto inside the process that runs `serve` or `demo`, and lives as
long as it. That process writes its endpoint and the environment its functions see to
a state file (default `.demo/stack.json`) and removes it when it stops;
`python -m infra.local check|dead-letters|redrive` reads it and runs
`functions.operations` against that stack, with the same code as against AWS.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Dict
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = ROOT / ".demo" / "stack.json"


class NotRunning(RuntimeError):
    """No local stack answers where the state file says."""


def write(path: Path, system) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": os.getpid(), "url": system.url, "environment": system.stack.environment()}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def clear(path: Path) -> None:
    """Remove the state file if this process wrote it (another stack may have since)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(path: Path = STATE_FILE) -> Dict[str, Any]:
    """The running stack's state; NotRunning, saying how to start one, if there is none."""
    start = "start one with `python -m infra.local serve` (or `make demo`)"
    try:
        state = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NotRunning(f"the local stack is not running (no {path}): {start}") from None
    except ValueError:
        raise NotRunning(f"{path} is not a local stack's state file: {start}") from None
    if not _alive(int(state.get("pid", 0))):
        raise NotRunning(f"the local stack is not running (process {state.get('pid')} that wrote {path} "
                         f"has ended): {start}")
    endpoint = urlparse(state["environment"]["AWS_ENDPOINT_URL"])
    try:
        socket.create_connection((endpoint.hostname, endpoint.port), timeout=2).close()
    except OSError:
        raise NotRunning(f"the local stack of process {state['pid']} does not answer at {endpoint.geturl()}: "
                         f"{start}") from None
    return state
