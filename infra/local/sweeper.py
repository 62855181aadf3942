"""The scheduled consistency sweep, on this machine: what EventBridge's schedule does
for `functions.consistency.scheduled_handler` in AWS, every `interval` seconds."""
from __future__ import annotations

import logging
import threading
from typing import Optional

log = logging.getLogger("goodman_live.sweeper")


class Sweeper:
    def __init__(self, interval: float):
        self.interval = interval
        self.runs = 0
        self.last = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Sweeper":
        self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self):
        from functions import consistency
        from functions.reduction import config_for
        from functions.services import warm_services

        services = warm_services()
        self.last = consistency.sweep(services, config_for(services))
        self.runs += 1
        return self.last

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:   # storage down: the next run tries again
                log.warning("consistency sweep failed", exc_info=True)
