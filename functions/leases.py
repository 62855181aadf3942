"""Claims that expire unless renewed: one worker at a time builds a master or reduces
a file, and a worker that is killed (Lambda's timeout, an out-of-memory kill) holds
the work up only until its lease ends, not for as long as the longest build."""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("goodman_live.leases")


class Renewing:
    """Calls `renew()` every `every` seconds in the background while the block runs."""

    def __init__(self, renew: Callable[[], None], every: float, what: str):
        self._renew, self._every, self._what = renew, every, what
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease {what}", daemon=True)

    def __enter__(self) -> "Renewing":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self._renew()
            except Exception:   # the index unreachable: the lease may lapse, and another worker take over
                log.warning("could not renew the lease on %s", self._what, exc_info=True)
