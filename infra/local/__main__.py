"""python -m infra.local {demo,replay,serve,check,dead-letters,redrive}

demo    the embedded default: local stack, a simulated night streaming into a folder,
        the sync agent uploading it, the page live on localhost.
replay  RAW_DIR --out OUT_DIR: run a past night through the whole system, write
        OUT_DIR/index.json and the products; exit 1 if any file failed.
serve   [--users FILE] [--watch DIR]: the stack, functions, API and page; the users of
        FILE (infra/accounts.py) created; with --watch, the sync agent on DIR. Prints
        one JSON line (url, s3_endpoint, raw_bucket, raw_prefix, ...) for scripts.
check, dead-letters, redrive, admin
        `python -m functions.operations` (or `python -m infra.admin`) against the running
        local stack (`serve` or `demo` in another terminal), found through the state file
        they write.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from infra.local import state
from infra.local.system import ROOT, EmbeddedSystem, quiet_logging

#: commands of functions.operations, run against the running local stack
OPERATIONS = ("check", "dead-letters", "redrive")
#: the demo's account, printed for the visitor to sign in with
DEMO_USER = {"username": "demo", "proposals": ["SIMULATED"]}


def _free_port(preferred: int) -> int:
    """The preferred port if it is free, else any free one (0), said aloud."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            print(f"port {preferred} is busy; using another one", flush=True)
            return 0


def _wait_forever(message: str) -> None:
    print(message, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass


def cmd_replay(args) -> int:
    from infra.local.replay import replay

    return replay(Path(args.raw_dir), Path(args.out), timeout=args.timeout, workers=args.workers)


class _Announced:
    """The running stack's state file, written once it is up and removed when it stops."""

    def __init__(self, system: EmbeddedSystem, path: str):
        self.system, self.path = system, Path(path)

    def __enter__(self):
        state.write(self.path, self.system)
        return self

    def __exit__(self, *exc):
        state.clear(self.path)


def cmd_serve(args) -> int:
    import json

    from golive_data.access import AccessError
    from infra.accounts import load_users

    try:
        users = load_users(Path(args.users)) if args.users else []
    except AccessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with EmbeddedSystem(workers=args.workers, http_port=_free_port(args.port)) as system, \
            _Announced(system, args.state_file):
        system.add_users(users)
        env = system.stack.environment()
        agent = None
        if args.watch:
            Path(args.watch).mkdir(parents=True, exist_ok=True)
            agent = system.start_sync_agent(Path(args.watch).resolve(), Path(args.state_file).parent / "sync-state")
        # one line for scripts: where the page, the API and storage are
        print(json.dumps({"url": system.url, "api": system.url + "/api", "s3_endpoint": env["AWS_ENDPOINT_URL"],
                          "raw_bucket": system.raw_bucket, "raw_prefix": system.raw_prefix,
                          "region": env["AWS_REGION"], "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                          "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                          "user_pool_id": env["USER_POOL_ID"], "client_id": env["USER_POOL_CLIENT_ID"],
                          "users": [u.username for u in users], "watch": args.watch,
                          "state_file": str(args.state_file)}), flush=True)
        try:
            _wait_forever(f"Goodman Live on {system.url} ({len(users)} users"
                          + (f"; the sync agent watches {args.watch}" if args.watch else "") + ")\n"
                          f"  upload with: AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']} "
                          f"AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']} "
                          + " ".join(system.sync_agent_command(Path("DIR"), Path("STATE"))[1:])
                          + "\n  accounts: python -m infra.local admin users add NAME --password ..."
                          + "\n  operations: python -m infra.local check|dead-letters|redrive"
                          + "\n  Ctrl-C to stop")
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(timeout=10)
    return 0


def cmd_operation(args, rest) -> int:
    """functions.operations (infra.admin for `admin`) with the running local stack's environment."""
    from functions import operations
    from infra import admin

    if not {"-h", "--help"} & set(rest):
        try:
            running = state.read(Path(args.state_file))
        except state.NotRunning as exc:
            print(exc, file=sys.stderr)
            return 2
        os.environ.update(running["environment"])   # boto3's credential chain reads it too
    if args.command == "admin":
        return admin.main(rest, os.environ)
    return operations.main([args.command, *rest], os.environ)


def cmd_demo(args) -> int:
    from infra.local.observe import observe

    work = Path(args.workdir).resolve()
    raw_dir = work / "mountain" / args.night
    state_dir = work / "sync-state"
    if work.exists() and not args.keep:
        import shutil
        shutil.rmtree(work)
    raw_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedSystem(workers=args.workers, http_port=_free_port(args.port)) as system, \
            _Announced(system, args.state_file):
        import secrets

        from infra.accounts import UserSpec

        password = args.password or secrets.token_urlsafe(9) + "-demo1"
        system.add_users([UserSpec(DEMO_USER["username"], password, proposals=DEMO_USER["proposals"])])
        agent = system.start_sync_agent(raw_dir.parent, state_dir)   # the data root: a folder per night
        print(f"\n  Goodman Live is running: open {system.url}\n"
              f"  and sign in as {DEMO_USER['username']} / {password}  (an observer of the simulated proposal;\n"
              f"  more accounts: python -m infra.local admin users add NAME --password ... [--staff])\n"
              f"  The simulated night {args.night} is being observed into {raw_dir}\n"
              f"  (one frame every {args.cadence:g} s); the sync agent watches {raw_dir.parent} and every\n"
              f"  folder below it, and uploads each file as it closes.\n"
              f"  Ctrl-C to stop.\n", flush=True)
        observer = threading.Thread(target=observe, daemon=True, kwargs=dict(
            out_dir=raw_dir, seed=args.seed, night=args.night, cadence=args.cadence,
            standard=None if args.standard.lower() == "none" else args.standard))
        observer.start()
        try:
            _wait_forever("")
        finally:
            agent.terminate()
            agent.wait(timeout=10)
    return 0


def main(argv=None) -> int:
    quiet_logging()
    parser = argparse.ArgumentParser(prog="python -m infra.local")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulated night, live page")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--cadence", type=float, default=3.0, help="seconds between frames")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--night", default="2024-03-14")
    demo.add_argument("--standard", default="LTT3218",
                      help="the night's spectrophotometric standard: science targets of known flux, so the "
                           "flux calibration can be judged on the page ('none': the plain simulated night)")
    demo.add_argument("--workdir", default=str(ROOT / ".demo"))
    demo.add_argument("--keep", action="store_true", help="keep files from an earlier demo")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--password", help="the demo user's password (default: a new random one, printed)")
    demo.add_argument("--state-file", default=str(state.STATE_FILE), help="where the running stack is described")
    demo.set_defaults(func=cmd_demo)
    rep = sub.add_parser("replay", help="run a folder of raw files through the system")
    rep.add_argument("raw_dir")
    rep.add_argument("--out", required=True)
    rep.add_argument("--timeout", type=float, default=600.0)
    rep.add_argument("--workers", type=int, default=2)
    rep.set_defaults(func=cmd_replay)
    serve = sub.add_parser("serve", help="the system with no data source")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--users", help="JSON list of users to create: "
                                       '[{"username", "password", "proposals": [], "pi_of": [], "staff": false}]')
    serve.add_argument("--watch", help="run the sync agent on this folder (a data root: a folder per night)")
    serve.add_argument("--state-file", default=str(state.STATE_FILE), help="where the running stack is described")
    serve.set_defaults(func=cmd_serve)
    for name in OPERATIONS + ("admin",):   # their own options are functions.operations' / infra.admin's
        op = sub.add_parser(name, add_help=False, help=f"{'infra.admin' if name == 'admin' else 'functions.operations ' + name} against the running stack")
        op.add_argument("--state-file", default=str(state.STATE_FILE), help="the running stack's state file")
    args, rest = parser.parse_known_args(argv)
    if args.command in OPERATIONS + ("admin",):
        return cmd_operation(args, rest)
    if rest:
        parser.error("unrecognized arguments: " + " ".join(rest))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
