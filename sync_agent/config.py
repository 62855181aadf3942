"""The agent's settings: one table, read from a TOML file and the command line.

The table is the single place a setting is defined; the CLI flags, the config file's
keys and their checks are made from it, so they cannot drift. The command line wins
over the file, the file over the defaults.

Credentials are not settings the agent needs: boto3's standard chain (environment,
~/.aws, instance role, the systemd unit's EnvironmentFile) finds them. A config file may
still carry `aws_access_key_id` / `aws_secret_access_key`; they are then kept out of
every log line (see RedactSecrets) and the file should be readable by the agent only.
"""
from __future__ import annotations

import argparse
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = None

DEFAULT_CONFIG = Path("/etc/goodman-live-sync/sync.toml")
CONFIG_ENV = "GOODMAN_LIVE_SYNC_CONFIG"
MB = 1 << 20


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str
    flag: bool = True          # also a command-line flag


SETTINGS = (
    Setting("watch", str, None, "data folder the instrument writes into (watched with every folder below it)"),
    Setting("bucket", str, None, "raw bucket"),
    Setting("endpoint_url", str, None, "S3-compatible endpoint (MinIO, SeaweedFS, moto); default AWS"),
    Setting("prefix", str, "raw/", "key prefix (default raw/)"),
    Setting("state_dir", str, None, "where the journal lives (default ~/.goodman-live-sync)"),
    Setting("interval", float, 0.25, "seconds between looks at the folder when no event comes"),
    Setting("settle", float, 0.5, "seconds a file found without a close event must stay unchanged"),
    Setting("rescan", float, 60.0, "seconds between full re-scans of the folder (safety net)"),
    Setting("stale_after", float, 120.0, "seconds after which a file that is not whole FITS is reported"),
    Setting("workers", int, 8, "parallel uploads"),
    Setting("order", str, "newest", "newest: the newest file first (a night being observed: the frame just "
                                    "taken is the one the observer waits for); oldest: in the order they were "
                                    "taken (a past night: the afternoon's calibrations before the frames they "
                                    "serve, which are then reduced once)"),
    Setting("multipart_threshold_mb", float, 16.0, "files this big or bigger go up in parts"),
    Setting("part_size_mb", float, 8.0, "size of each part (S3 needs >= 5 MB)"),
    Setting("max_backoff", float, 30.0, "longest wait between retries while the storage is down"),
    Setting("connect_timeout", float, 5.0, "seconds to connect to the storage"),
    Setting("read_timeout", float, 60.0, "seconds to wait for the storage to answer"),
    Setting("verify", str, "head", "head: prove each upload from HEAD (ETag/checksum); get: also read it back"),
    Setting("region", str, None, "AWS region (default: the AWS chain's)"),
    Setting("profile", str, None, "AWS profile (default: the AWS chain's)"),
    Setting("addressing_style", str, "auto", "auto, path or virtual (MinIO behind a plain hostname: path)"),
    Setting("log_level", str, "INFO", "DEBUG, INFO, WARNING"),
    Setting("aws_access_key_id", str, None, "prefer the AWS chain; never on the command line", flag=False),
    Setting("aws_secret_access_key", str, None, "prefer the AWS chain; never on the command line", flag=False),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    values: Dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:     # never print secrets, even by accident
        shown = {k: "***" if k.startswith("aws_") and v else v for k, v in self.values.items()}
        return f"Config({shown})"

    @property
    def multipart_threshold(self) -> int:
        return int(self.values["multipart_threshold_mb"] * MB)

    @property
    def part_size(self) -> int:
        return int(self.values["part_size_mb"] * MB)

    def secrets(self):
        return [v for k, v in self.values.items() if k in ("aws_secret_access_key", "aws_access_key_id") and v]


#: the upload orders (journal.Journal.claim)
ORDERS = ("newest", "oldest")


class ConfigError(ValueError):
    pass


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Every flag defaults to None, so only what was typed overrides the file."""
    parser.add_argument("--config", default=None, help=f"TOML file with these settings (default ${CONFIG_ENV} "
                                                      f"or {DEFAULT_CONFIG} if it exists)")
    for s in SETTINGS:
        if s.flag:
            parser.add_argument("--" + s.name.replace("_", "-"), dest=s.name, type=s.type, default=None,
                                help=f"{s.help} (default {s.default})" if s.default is not None else s.help)


def config_path(explicit: Optional[str]) -> Optional[Path]:
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def read_file(path: Path) -> Dict[str, Any]:
    if tomllib is None:
        raise ConfigError("reading a config file needs Python 3.11 or later (tomllib)")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    data = data.get("sync", data)          # a [sync] table or top-level keys
    unknown = sorted(set(data) - set(_BY_NAME))
    if unknown:
        raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
    if any(data.get(k) for k in ("aws_secret_access_key",)) and os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH):
        logging.getLogger("goodman_live.sync").warning(
            "config file %s holds a secret key and is readable by others: chmod 600 it", path)
    out = {}
    for name, value in data.items():
        s = _BY_NAME[name]
        try:
            out[name] = s.type(value) if value is not None else None
        except (TypeError, ValueError):
            raise ConfigError(f"config file {path}: {name} must be a {s.type.__name__}") from None
    return out


def load(args: Optional[argparse.Namespace] = None, required=("watch", "bucket")) -> Config:
    values = {s.name: s.default for s in SETTINGS}
    path = config_path(getattr(args, "config", None))
    if path is not None:
        values.update(read_file(path))
    if args is not None:
        values.update({s.name: getattr(args, s.name) for s in SETTINGS
                       if s.flag and getattr(args, s.name, None) is not None})
    missing = [name for name in required if not values.get(name)]
    if missing:
        raise ConfigError("missing " + ", ".join("--" + m.replace("_", "-") for m in missing)
                          + " (on the command line or in the config file)")
    if values["verify"] not in ("head", "get"):
        raise ConfigError("verify must be 'head' or 'get'")
    if values["order"] not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(ORDERS)}")
    if values["workers"] < 1:
        raise ConfigError("workers must be at least 1")
    values["state_dir"] = str(Path(values["state_dir"]).expanduser()) if values["state_dir"] else \
        str(Path.home() / ".goodman-live-sync")
    return Config(values)


def s3_client(cfg: Config):
    """boto3 client for the configured storage; credentials from the config or the AWS chain."""
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region,
                                    aws_access_key_id=cfg.aws_access_key_id,
                                    aws_secret_access_key=cfg.aws_secret_access_key)
    boto_cfg = BotoConfig(connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout,
                          retries={"mode": "standard", "max_attempts": 3},
                          max_pool_connections=cfg.workers + 2,
                          s3={"addressing_style": cfg.addressing_style})
    return session.client("s3", endpoint_url=cfg.endpoint_url, config=boto_cfg)


class RedactSecrets(logging.Filter):
    """Blanks any known secret in a log record, wherever it came from."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                for s in self.secrets:
                    message = message.replace(s, "***")
                record.msg, record.args = message, None
        return True


def setup_logging(cfg: Config) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s sync %(levelname)s %(message)s"))
    secrets = cfg.secrets() + [os.environ.get("AWS_SECRET_ACCESS_KEY", ""), os.environ.get("AWS_SESSION_TOKEN", "")]
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level.upper())
    # botocore at DEBUG prints request headers; the agent never needs that.
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)


def describe(cfg: Config) -> Dict[str, Any]:
    """Settings safe to show (status, startup log)."""
    return {k: v for k, v in cfg.values.items() if k not in ("aws_access_key_id", "aws_secret_access_key")}


__all__ = ["Config", "ConfigError", "SETTINGS", "add_flags", "load", "s3_client", "setup_logging", "describe"]
