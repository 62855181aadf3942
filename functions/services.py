"""What the functions need from the outside world, created once per warm worker, and
the SQS batch loop both queue handlers share."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from functions.api.chalicelib.index import FileIndex
from functions.api.chalicelib.settings import Settings
from functions.core.reduce import ReductionSettings

log = logging.getLogger("goodman_live.functions")


@dataclass(frozen=True)
class ReductionConfig:
    settings: ReductionSettings
    window_days: int = 7


@dataclass
class Services:
    settings: Settings
    s3: Any
    sqs: Any
    index: FileIndex
    reduction: ReductionConfig

    @classmethod
    def from_settings(cls, settings: Settings) -> "Services":
        config = ReductionConfig(ReductionSettings.from_dict(json.loads(settings.reduction_overrides)),
                                 window_days=settings.calibration_window_days)
        return cls(settings, settings.client("s3"), settings.client("sqs"),
                   FileIndex(settings.client("dynamodb"), settings.index_table), config)


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
