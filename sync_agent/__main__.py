"""python -m sync_agent --watch DIR --bucket BUCKET [--endpoint-url URL] [--prefix raw/] [--state-dir DIR]

Credentials come from the standard AWS chain (environment, ~/.aws, instance role).
"""
from __future__ import annotations

import argparse
import logging
import sys

import boto3

from sync_agent.agent import SyncAgent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync_agent", description="Upload complete FITS files to S3.")
    parser.add_argument("--watch", required=True, help="folder the instrument writes into")
    parser.add_argument("--bucket", required=True, help="raw bucket")
    parser.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, moto); default AWS")
    parser.add_argument("--prefix", default="raw/", help="key prefix (default raw/)")
    parser.add_argument("--state-dir", default=None, help="where to remember what was uploaded")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between folder scans")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds a complete file must stay unchanged")
    parser.add_argument("--once", action="store_true", help="upload what is complete now, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sync %(levelname)s %(message)s")
    s3 = boto3.client("s3", endpoint_url=args.endpoint_url)
    agent = SyncAgent(args.watch, args.bucket, s3, prefix=args.prefix, state_dir=args.state_dir, settle=args.settle)
    if args.once:
        agent.scan_once()
        return 0
    try:
        agent.run(args.interval)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
