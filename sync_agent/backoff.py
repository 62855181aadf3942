"""Waiting out a storage outage without hammering it, and without lingering after it.

While the storage fails, one request at a time probes it, after a delay that doubles
with each consecutive failure up to `cap`, drawn at random below that ("full jitter",
so agents on many machines do not retry in step). The other workers sleep, so an
outage of hours costs one request every `cap` seconds and no CPU. The first success
ends the outage at once: every worker goes back to full speed.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Optional


def jittered(attempt: int, base: float, cap: float, rng=random) -> float:
    """Delay before retry number `attempt` (1 = first retry)."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return rng.uniform(min(base, ceiling), ceiling)


class Backoff:
    def __init__(self, base: float = 0.5, cap: float = 30.0):
        self.base = base
        self.cap = cap
        self.failures = 0
        self.ready_at = 0.0
        self.since: Optional[float] = None      # when the current outage began
        self._probing = False
        self._cond = threading.Condition()

    @property
    def in_outage(self) -> bool:
        return self.failures > 0

    def wait_turn(self, stop: threading.Event) -> bool:
        """Block until this worker may send a request; False if `stop` was set.

        In an outage only one worker (the probe) is let through at a time."""
        with self._cond:
            while not stop.is_set():
                if self.failures == 0:
                    return True
                wait = self.ready_at - time.monotonic()
                if wait <= 0 and not self._probing:
                    self._probing = True
                    return True
                self._cond.wait(timeout=max(0.05, min(wait, 1.0)) if wait > 0 else 1.0)
            return False

    def succeeded(self) -> bool:
        """Record a success; True if it ended an outage."""
        with self._cond:
            ended = self.failures > 0
            self.failures, self.ready_at, self.since, self._probing = 0, 0.0, None, False
            self._cond.notify_all()
            return ended

    def failed(self) -> float:
        """Record a failure; the delay before the next probe."""
        with self._cond:
            self.failures += 1
            self.since = self.since or time.time()
            delay = jittered(self.failures, self.base, self.cap)
            self.ready_at = time.monotonic() + delay
            self._probing = False
            self._cond.notify_all()
            return delay

    def release(self) -> None:
        """A probe that ended without talking to the storage (e.g. a local file error)."""
        with self._cond:
            self._probing = False
            self._cond.notify_all()
