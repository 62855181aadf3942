"""What the functions need from the outside world, created once per warm worker, the
SQS batch loop both queue handlers share, and the task messages between them.

Light on purpose: the ingest function imports it, and must not pay for the reduction
stack (numpy, scipy, astroscrappy) it never uses."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from golive_data.index import FileIndex
from golive_data.settings import Settings
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


def parse_task(body: Any) -> Optional[Dict[str, Any]]:
    """The task of a reduction-queue message, or None if it is not one."""
    try:
        body = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError:
        return None
    task = body.get(TASK_KEY) if isinstance(body, dict) else None
    return task if isinstance(task, dict) else None


def send_task(services: Services, task: Dict[str, Any], delay: int = 0, background: bool = False) -> None:
    """Work for the reduction function, on its queue (SQS allows up to 900 s of delay).

    `background`: slow work no new frame should wait behind (cleaning a whole 2-D frame
    of cosmic rays, a night's zip archive) goes to the function's second queue, which its
    workers take only when the work queue is empty and which can never hold more than a
    few of them (infra/local/runner.py, infra/sam.py). A deployment without one
    (BACKGROUND_QUEUE_URL unset) gets it on the work queue: any task runs from either."""
    settings = services.settings
    url = (settings.background_queue_url or settings.work_queue_url) if background else settings.work_queue_url
    services.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({TASK_KEY: task}),
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
            back_off(services, record, attempt)
    return {"batchItemFailures": failures}


def retry_delay(attempt: int, base: int) -> int:
    """Seconds before a failed message is delivered again: doubling from `base`, so that
    the queue's few deliveries span an outage of minutes rather than one visibility
    timeout (capped at 15 min)."""
    return int(min(base * 2 ** max(0, attempt - 1), 900))


_queue_urls: Dict[str, str] = {}


def back_off(services: Services, record: Dict[str, Any], attempt: int) -> None:
    """Make a failed message invisible for `retry_delay` (SQS partial batch responses
    leave a failed message to the queue's visibility timeout otherwise). Best effort:
    the queue retries it either way."""
    arn = record.get("eventSourceARN") or ""
    handle = record.get("receiptHandle")
    if not arn.startswith("arn:") or not handle:
        return
    try:
        if arn not in _queue_urls:
            parts = arn.split(":")
            _queue_urls[arn] = services.sqs.get_queue_url(QueueName=parts[5],
                                                          QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        services.sqs.change_message_visibility(QueueUrl=_queue_urls[arn], ReceiptHandle=handle,
                                               VisibilityTimeout=retry_delay(attempt,
                                                                             services.settings.retry_backoff_seconds))
    except Exception:
        log.warning("could not delay the retry of message %s", record.get("messageId"), exc_info=True)
