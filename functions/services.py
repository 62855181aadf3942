"""What the functions need from the outside world, created once per warm worker, the
SQS batch loop both queue handlers share, and the task messages between them.

Light on purpose: the ingest function imports it, and must not pay for the reduction
stack (numpy, scipy, astroscrappy) it never uses."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from functions.api.chalicelib.index import FileIndex
from functions.api.chalicelib.settings import Settings
log = logging.getLogger("goodman_live.functions")
TASK_KEY = "goodman_live_task"


@dataclass
class Services:
    settings: Settings
    s3: Any
    sqs: Any
    index: FileIndex

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        return cls(settings, settings.client("s3"), settings.client("sqs"),
                   FileIndex(settings.client("dynamodb"), settings.index_table))


def gave_up(deliveries: int, last_error) -> str:
    """The error a file ends with when its queue dead-letters the work on it."""
    return f"gave up after {deliveries} deliveries; last error: {last_error or 'no error was recorded'}"


def send_task(services: Services, task: Dict[str, Any], delay: int = 0) -> None:
    """Work for the reduction function, on its queue (SQS allows up to 900 s of delay)."""
    services.sqs.send_message(QueueUrl=services.settings.work_queue_url, MessageBody=json.dumps({TASK_KEY: task}),
                              DelaySeconds=max(0, min(int(delay), 900)))


_services: Optional[Services] = None


def warm_services() -> Services:
    global _services
    if _services is None:
        _services = Services.from_settings(Settings.from_env())
    return _services


def reset_services() -> None:
    """Forget the warm clients (the local stack calls this when it points elsewhere)."""
    global _services
    _services = None


def sqs_batch(event: Dict[str, Any], handle: Callable[[Any, Services, int], None]) -> Dict[str, Any]:
    """Hand each SQS record to `handle(body, services, attempt)`; report the ones that
    raised as partial batch failures so that only they are retried."""
    services = warm_services()
    failures = []
    for record in event.get("Records", []):
        attempt = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
        try:
            handle(record.get("body", ""), services, attempt)
        except Exception:
            log.exception("message %s failed on attempt %d", record.get("messageId"), attempt)
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
