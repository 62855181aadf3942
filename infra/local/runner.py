"""Lambda's SQS event source mapping, on this machine.

Long-polls a queue, hands batches to the same handler Lambda calls, with the same
event shape, deletes only the messages the handler did not report as failed
(partial batch responses), and leaves the rest to reappear after the visibility
timeout until the queue's redrive policy moves them to the dead-letter queue.

A poller may also serve a second, low-priority queue for the same handler (the
reduction's background queue: cosmic-ray cleaning of whole 2-D frames, night zip
archives), so that a new frame's spectrum never waits behind slow work. Each worker
takes from the main queue first (a short poll); only if it has nothing, and fewer than
`max(1, workers - 1)` workers are on background batches, from the background queue (a
short poll); and otherwise it long-polls the main queue. So background work is done
when there is nothing else, and with two workers or more one is always left for the
main queue, to take what arrives while a slow background batch runs.

In AWS the same is two SQS event sources on the reduction function (infra/sam.py): the
main queue's scales freely, the background queue's has `ScalingConfig:
{MaximumConcurrency: 2}` (Lambda's minimum), so background work never holds more than
two executions, whatever waits. Lambda does not make one mapping wait for the other;
the cap is what keeps the main queue's work from waiting, as the account has far more
concurrency than two. Here the workers are a fixed few, so the main queue is looked at
first instead. (moto answers a short poll from every message; SQS's may miss some,
which only Lambda's pollers would see.)
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

log = logging.getLogger("goodman_live.runner")
Handler = Callable[[Dict[str, Any], Any], Dict[str, Any]]


class LambdaContext:
    """The few attributes of Lambda's context object handlers may read."""

    def __init__(self, name: str, timeout_seconds: int):
        self.function_name = name
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_record(message: Dict[str, Any], queue_arn: str, region: str) -> Dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


@dataclass(frozen=True)
class _Queue:
    """A queue a poller takes from: its URL, its ARN (each record's eventSourceARN, by
    which a handler finds the queue again), its visibility timeout."""
    url: str
    arn: str
    visibility_timeout: int

    @classmethod
    def of(cls, sqs, url: str) -> "_Queue":
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn", "VisibilityTimeout"])["Attributes"]
        return cls(url, attrs["QueueArn"], int(attrs["VisibilityTimeout"]))


def queues_empty(sqs, *urls: str) -> bool:
    """No message waiting, delayed or in flight on any of these queues."""
    for url in urls:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        if any(v != "0" for k, v in attrs.items() if k.startswith("Approximate")):
            return False
    return True


class QueuePoller:
    """N worker threads polling one queue (and, optionally, a low-priority background
    queue: see the module's docstring) for one handler."""

    def __init__(self, sqs, queue_url: str, handler: Handler, name: str, workers: int = 2,
                 batch_size: int = 5, wait_seconds: int = 1, timeout_seconds: int = 30, region: str = "us-east-1",
                 background_url: Optional[str] = None, background_workers: Optional[int] = None):
        self.sqs, self.queue_url, self.handler, self.name = sqs, queue_url, handler, name
        self.workers, self.batch_size, self.wait_seconds = workers, batch_size, wait_seconds
        self.timeout_seconds, self.region = timeout_seconds, region
        self.main = _Queue.of(sqs, queue_url)
        self.background = _Queue.of(sqs, background_url) if background_url else None
        #: workers that may be on background batches at once: by default one is always left for
        #: the main queue (live frames); a replay of a past night, where nobody waits for the
        #: newest frame, lets them all take background work
        self.background_workers = max(1, workers - 1) if background_workers is None else max(1, background_workers)
        self._stop = threading.Event()
        self._enabled = threading.Event()
        self._enabled.set()
        self._threads: List[threading.Thread] = []
        self._busy = 0
        self._polling = 0
        self._on_background = 0
        self._lock = threading.Lock()

    def start(self) -> "QueuePoller":
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.wait_seconds + 5)

    def disable(self) -> None:
        """Stop taking messages, as a disabled event source mapping does (messages stay
        in the queue); returns once no receive or batch of this poller is under way."""
        self._enabled.clear()
        while True:
            with self._lock:
                if not self._polling:
                    return
            time.sleep(0.05)

    def enable(self) -> None:
        self._enabled.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._enabled.wait(0.2):
                continue
            with self._lock:
                self._polling += 1
            try:
                if self._enabled.is_set():
                    self.poll_once()
            except Exception:  # the queue itself unreachable: back off, never spin
                log.exception("%s: polling failed", self.name)
                self._stop.wait(1.0)
            finally:
                with self._lock:
                    self._polling -= 1

    def poll_once(self) -> int:
        """One receive and the batch it brings, if any: how many messages it handled."""
        if self.background is None:
            return self._take(self.main, self.wait_seconds)
        handled = self._take(self.main, 0)
        if handled:
            return handled
        with self._lock:   # a slot on the background queue, held while receiving and handling
            slot = self._on_background < self.background_workers
            if slot:
                self._on_background += 1
        if slot:
            try:
                handled = self._take(self.background, 0)
            finally:
                with self._lock:
                    self._on_background -= 1
            if handled:
                return handled
        return self._take(self.main, self.wait_seconds)

    def _take(self, queue: _Queue, wait_seconds: int) -> int:
        resp = self.sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=self.batch_size,
                                        WaitTimeSeconds=wait_seconds, AttributeNames=["All"])
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        with self._lock:
            self._busy += 1
        beating = threading.Event()
        heartbeat = threading.Thread(target=self._keep_invisible, args=(queue, messages, beating), daemon=True)
        heartbeat.start()
        try:
            event = {"Records": [lambda_record(m, queue.arn, self.region) for m in messages]}
            try:
                result = self.handler(event, LambdaContext(self.name, self.timeout_seconds)) or {}
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            except Exception:
                log.exception("%s: handler raised; the whole batch will be retried", self.name)
                failed = {m["MessageId"] for m in messages}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(QueueUrl=queue.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
            return len(messages)
        finally:
            beating.set()
            heartbeat.join()
            with self._lock:
                self._busy -= 1

    def _keep_invisible(self, queue: _Queue, messages, stop: threading.Event) -> None:
        """Lambda gives a batch its whole timeout before SQS shows it again (the queue's
        visibility timeout is set above the function's). Locally the visibility timeout
        is kept short so failures are retried within seconds; instead, a batch still
        being handled has its visibility extended, on its own queue, up to the function's
        timeout."""
        deadline = time.monotonic() + self.timeout_seconds
        while not stop.wait(max(0.5, queue.visibility_timeout / 2)) and time.monotonic() < deadline:
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=queue.url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": queue.visibility_timeout}
                    for i, m in enumerate(messages)])
            except Exception:
                log.warning("%s: could not extend the visibility of a batch", self.name, exc_info=True)

    def idle(self) -> bool:
        """No message waiting, delayed, in flight, or being handled, on either queue."""
        with self._lock:
            busy = self._busy
        return busy == 0 and queues_empty(self.sqs, self.main.url, *([self.background.url] if self.background else []))
