"""Dead letters kept for the operator.

When a queue gives up on a message, its dead-letter function marks the file `failed`
with the last error, and the message would then be gone. `record` keeps it in the
index (pk=DEADLETTERS, one item per message) with what it takes to send it again: the
queue it came from (by its role, `ingest` or `reduce`, so a redrive finds the queue of
whichever deployment it runs against), the original body, the reason, when, and after
how many deliveries; each file it names gets a short `dead_letter` note. A letter is
named by its queue and body, so a dead letter handled twice is kept once, and one that
dies again after a redrive is the same letter, its count of redrives kept.
`functions.operations` lists and redrives them.

Light on purpose: the ingest function imports it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional

from golive_data.index import utcnow

INGEST = "ingest"
REDUCE = "reduce"
QUEUES = (INGEST, REDUCE)


def body_text(body: Any) -> str:
    return body if isinstance(body, str) else json.dumps(body, sort_keys=True)


def letter_id(queue: str, body: Any) -> str:
    return hashlib.sha1(f"{queue}\n{body_text(body)}".encode("utf-8")).hexdigest()[:20]


def file_ref(item: Dict[str, Any]) -> Dict[str, Any]:
    """What a letter says about a file it names (the item may not exist yet)."""
    return {k: item.get(k) for k in ("file_id", "night", "file_name") if item.get(k) is not None}


def note(entry: Dict[str, Any]) -> Dict[str, Any]:
    """The `dead_letter` note on a file item: which letter, from where, why, when."""
    return {k: entry[k] for k in ("id", "queue", "reason", "at", "deliveries")}


def make(queue: str, body: Any, reason: str, files: List[Dict[str, Any]], deliveries: int,
         at: Optional[str] = None) -> Dict[str, Any]:
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    return {"id": letter_id(queue, body), "queue": queue, "body": body_text(body), "reason": reason,
            "at": at or utcnow(), "deliveries": int(deliveries), "files": files}


def record(services, queue: str, body: Any, reason: str, files: List[Dict[str, Any]], deliveries: int
           ) -> Dict[str, Any]:
    """Keep a dead-lettered message in the index; the entry kept."""
    entry = make(queue, body, reason, files, deliveries)
    services.index.record_dead_letter(entry)
    return entry
