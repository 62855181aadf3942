"""The reduction's background queue: slow work (whole-frame cosmic-ray cleaning, night
archives) is taken only when the work queue has nothing, never by every worker at once,
so a new frame's task never waits behind it (infra/local/runner.py). Tried with real SQS
queues on the local stack alone (no functions, no API) and a handler that records."""
from __future__ import annotations

import json
import threading
import time

import pytest

from functions.services import TASK_KEY, Services, send_task
from golive_data.settings import Settings
from infra.local.runner import QueuePoller
from infra.local.stack import LOCAL_CREDENTIALS
from tests.conftest import local_stack_apart

@pytest.fixture(scope="module")
def stack():
    local = local_stack_apart()
    yield local
    local.stop()


@pytest.fixture
def sqs(stack):
    """The stack's SQS, with nothing left on its reduce and background queues by an
    earlier test (SQS purges a queue once a minute at most)."""
    client = stack.client("sqs")
    for url in (stack.reduce_queue_url, stack.background_queue_url):
        while True:
            messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            client.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return client


class Recorder:
    """A handler that notes each batch (which queue, what, when) and sleeps
    `slow_background` seconds on background batches."""

    def __init__(self, stack, sqs, slow_background: float = 0.0):
        self.arns = {_arn(sqs, stack.reduce_queue_url): "main", _arn(sqs, stack.background_queue_url): "background"}
        self.slow_background = slow_background
        self.handled = []
        self.on_background = self.most_on_background = 0
        self.lock = threading.Lock()

    def __call__(self, event, context):
        [record] = event["Records"]   # batch_size=1
        queue = self.arns[record["eventSourceARN"]]
        with self.lock:
            started = time.monotonic()
            if queue == "background":
                self.on_background += 1
                self.most_on_background = max(self.most_on_background, self.on_background)
        try:
            if queue == "background":
                time.sleep(self.slow_background)
        finally:
            with self.lock:
                if queue == "background":
                    self.on_background -= 1
                self.handled.append({"queue": queue, "body": record["body"], "started": started,
                                     "ended": time.monotonic()})
        return {"batchItemFailures": []}

    def bodies(self):
        with self.lock:
            return [h["body"] for h in self.handled]

    def wait_for(self, count: int, queue: str = None, timeout: float = 20.0):
        """The batches handled, once `count` of them (from `queue`, or either) are."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if sum(queue in (None, h["queue"]) for h in self.handled) >= count:
                    return list(self.handled)
            time.sleep(0.02)
        raise AssertionError(f"{count} batches not handled in {timeout:g} s: {self.bodies()}")


def _arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _poller(stack, sqs, handler, workers: int) -> QueuePoller:
    return QueuePoller(sqs, stack.reduce_queue_url, handler, "reduce-test", workers=workers, batch_size=1,
                       region=stack.region, background_url=stack.background_queue_url)


def _send(sqs, url: str, *bodies: str) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)


def test_the_work_queue_is_emptied_before_any_background_work_with_one_worker(stack, sqs):
    _send(sqs, stack.background_queue_url, "b1", "b2", "b3")
    _send(sqs, stack.reduce_queue_url, "m1", "m2", "m3")
    recorder = Recorder(stack, sqs)
    poller = _poller(stack, sqs, recorder, workers=1).start()
    try:
        handled = recorder.wait_for(6)
    finally:
        poller.stop()
    assert [h["queue"] for h in handled] == ["main"] * 3 + ["background"] * 3, handled
    # (the recorder tells the queues apart by each record's eventSourceARN, by which
    # services.back_off finds the queue again: each names the queue it came from)
    assert sorted(h["body"] for h in handled if h["queue"] == "main") == ["m1", "m2", "m3"]
    assert sorted(h["body"] for h in handled if h["queue"] == "background") == ["b1", "b2", "b3"]
    assert poller.idle()


def test_with_two_workers_one_keeps_to_the_work_queue_while_background_work_runs(stack, sqs):
    recorder = Recorder(stack, sqs, slow_background=3.0)
    _send(sqs, stack.background_queue_url, "b1", "b2")
    poller = _poller(stack, sqs, recorder, workers=2).start()
    try:
        deadline = time.monotonic() + 10
        while not recorder.on_background and time.monotonic() < deadline:
            time.sleep(0.02)
        assert recorder.on_background == 1, "the background work was not taken"
        time.sleep(0.5)     # the other worker would have taken b2 by now, were it allowed to
        assert recorder.most_on_background == 1
        sent = time.monotonic()
        _send(sqs, stack.reduce_queue_url, "m1")
        [main] = [h for h in recorder.wait_for(1, "main", timeout=5) if h["queue"] == "main"]
        assert main["started"] - sent < 1.5, "a new task waited behind background work"
        assert recorder.on_background == 1, "the main task was taken while the background batch still ran"
        handled = recorder.wait_for(3, timeout=15)
    finally:
        poller.stop()
    assert recorder.most_on_background == 1, "two workers were on background work at once"
    background = [h for h in handled if h["queue"] == "background"]
    assert sorted(h["body"] for h in background) == ["b1", "b2"]
    assert background[1]["started"] >= background[0]["ended"]


def test_the_poller_is_not_idle_while_background_work_waits(stack, sqs):
    recorder = Recorder(stack, sqs)
    poller = _poller(stack, sqs, recorder, workers=2)
    assert poller.idle()
    _send(sqs, stack.background_queue_url, "b1")
    assert not poller.idle()
    poller.start()
    try:
        recorder.wait_for(1)
        deadline = time.monotonic() + 10
        while not poller.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert poller.idle()
        # disabled, as an event source mapping can be: background work waits too
        poller.disable()
        _send(sqs, stack.background_queue_url, "b2")
        time.sleep(1.5)
        assert recorder.bodies() == ["b1"] and not poller.idle()
        poller.enable()
        recorder.wait_for(2)
    finally:
        poller.stop()
    assert recorder.bodies() == ["b1", "b2"]


def test_a_slow_background_batch_is_kept_invisible_on_its_own_queue(stack, sqs):
    """The queue's visibility timeout (2 s here) is shorter than the batch; the poller
    extends it on the background queue, so the message is neither shown again nor lost."""
    seen = {}

    def slow(event, context):
        time.sleep(3.0)
        seen.update(sqs.get_queue_attributes(QueueUrl=stack.background_queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"])
        seen["receives"] = event["Records"][0]["attributes"]["ApproximateReceiveCount"]
        return {"batchItemFailures": []}

    _send(sqs, stack.background_queue_url, "b1")
    poller = _poller(stack, sqs, slow, workers=1).start()
    try:
        deadline = time.monotonic() + 15
        while not poller.idle() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        poller.stop()
    assert seen == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "1", "receives": "1"}
    assert poller.idle()


def _received(sqs, url: str):
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"])[TASK_KEY] for m in messages]


def test_send_task_puts_background_work_on_the_background_queue_or_the_work_queue_without_one(
        stack, sqs, monkeypatch):
    env = stack.environment()
    for name, value in LOCAL_CREDENTIALS.items():     # boto3 takes them from the process
        monkeypatch.setenv(name, value)
    assert env["BACKGROUND_QUEUE_URL"] == stack.background_queue_url
    policy = sqs.get_queue_attributes(QueueUrl=stack.background_queue_url,
                                      AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    assert json.loads(policy)["deadLetterTargetArn"] == _arn(sqs, stack.background_dlq_url)

    services = Services.from_settings(Settings.from_env(env))
    send_task(services, {"task": "archive", "archive_id": "a1"}, background=True)
    send_task(services, {"task": "reduce", "file_id": "f1"})
    assert _received(sqs, stack.background_queue_url) == [{"task": "archive", "archive_id": "a1"}]
    assert _received(sqs, stack.reduce_queue_url) == [{"task": "reduce", "file_id": "f1"}]

    older = Services.from_settings(Settings.from_env({k: v for k, v in env.items() if k != "BACKGROUND_QUEUE_URL"}))
    send_task(older, {"task": "archive", "archive_id": "a2"}, background=True)
    assert _received(sqs, stack.reduce_queue_url) == [{"task": "archive", "archive_id": "a2"}]
    assert _received(sqs, stack.background_queue_url) == []
