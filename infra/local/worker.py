"""One function's workers in a process of their own, against a running local stack:
`python -m infra.local.worker reduce` with the stack's environment (what
`LocalStack.environment()` gives). A process can be killed mid-batch as Lambda's
sandboxes are, which a thread cannot; the fault tests do just that."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from infra import definition as stackdef
from infra.local.runner import QueuePoller


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.worker")
    parser.add_argument("function", choices=("ingest", "reduce"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--background-workers", type=int, default=None,
                        help="workers that may take background work at once (default: all but one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(name)s %(levelname)s %(message)s")
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from functions import ingest, reduction
    from functions.services import warm_services

    d, services = stackdef.load(), warm_services()
    background = None
    if args.function == "ingest":
        url = services.sqs.get_queue_url(QueueName=d["ingest_queue"]["name"])["QueueUrl"]
        handler, fn = ingest.handler, d["ingest_function"]
    else:
        url, handler, fn = os.environ["WORK_QUEUE_URL"], reduction.handler, d["reduce_function"]
        background = os.environ.get("BACKGROUND_QUEUE_URL") or None   # its slow work, when it has nothing else
    poller = QueuePoller(services.sqs, url, handler, f"{args.function}-process", workers=args.workers,
                         batch_size=fn["batch_size"], timeout_seconds=fn["timeout_seconds"],
                         region=services.settings.region, background_url=background,
                         background_workers=args.background_workers).start()
    print(f"worker {os.getpid()} polling {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    poller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
