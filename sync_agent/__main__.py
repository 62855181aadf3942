"""python -m sync_agent --watch DIR --bucket BUCKET [--endpoint-url URL] [--prefix raw/] [--state-dir DIR]
python -m sync_agent status [--state-dir DIR] [--json]

Every setting can also come from a TOML config file (--config, $GOODMAN_LIVE_SYNC_CONFIG,
or /etc/goodman-live-sync/sync.toml); the command line wins. Credentials come from the
standard AWS chain (environment, ~/.aws, instance role) or the config file.
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import signal
import sys
import threading
from pathlib import Path

from sync_agent import config, status

log = logging.getLogger("goodman_live.sync")


def _lock(state_dir: Path):
    """One agent per journal: a second one would upload the same files in parallel.
    The kernel drops the lock when the process dies, even by kill -9."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fh = open(state_dir / "agent.lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def main_status(argv) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync_agent status",
                                     description="What the sync agent has queued, in flight, done and failed.")
    parser.add_argument("--state-dir", default=None, help="the agent's state dir (default: from the config)")
    parser.add_argument("--config", default=None, help="the agent's config file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--recent", type=int, default=status.SHOWN, help="how many files to list per section")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(argparse.Namespace(config=args.config, state_dir=args.state_dir), required=())
        return status.main(Path(cfg.state_dir), as_json=args.json, recent=args.recent)
    except (config.ConfigError, FileNotFoundError) as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    stop = threading.Event()        # first, so an early SIGTERM is a clean stop too
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        return main_status(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m sync_agent", description="Upload complete FITS files to S3.",
                                     epilog="python -m sync_agent status [--state-dir DIR] [--json]: what it is doing")
    config.add_flags(parser)
    parser.add_argument("--once", action="store_true", help="upload what is complete now, then exit")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args)
    except config.ConfigError as exc:
        parser.error(str(exc))
    config.setup_logging(cfg)
    lock = _lock(Path(cfg.state_dir))
    if lock is None:
        log.error("another sync agent is already using %s; not starting a second one", cfg.state_dir)
        return 2
    from sync_agent.agent import SyncAgent     # boto3: after the signal handlers

    agent = SyncAgent.from_config(cfg, config.s3_client(cfg))
    log.info("watching %s -> s3://%s/%s (state in %s)", cfg.watch, cfg.bucket, cfg.prefix, cfg.state_dir)
    if args.once:                   # nothing to wind down: a signal may end it at once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        agent.scan_once()
        left = agent.journal.counts()
        unfinished = left["queued"] + left["uploading"] + left["failed"]
        if unfinished:
            log.error("%d files are not in storage yet (see `python -m sync_agent status`)", unfinished)
        return 1 if unfinished else 0
    agent.run(cfg.interval, stop)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
