"""What the page's measuring routes are asked (a spectrum, a line fit, imexam on the
2-D frame), checked before any product is read; each mistake gets its own message."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from golive_data.index import BadRequest

MODELS = ("gaussian", "voigt")
BOX_RANGE = (3, 101)


def _whole(value: Any, name: str, low: int, high: Optional[int] = None) -> int:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number, not {value!r}") from None
    if number < low or (high is not None and number > high):
        raise BadRequest(f"{name} must be {'between ' + str(low) + ' and ' + str(high) if high is not None else 'at least ' + str(low)}, "
                         f"not {number}")
    return number


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be finite")
    return number


def target_of(params: Mapping[str, Any]) -> int:
    return _whole(params.get("target", 1), "target", 1, 99)


def fluxed_of(params: Mapping[str, Any]) -> bool:
    """?units=flux (the flux-calibrated spectrum when there is one) or counts (the default)."""
    units = params.get("units") or "counts"
    if units not in ("counts", "flux"):
        raise BadRequest(f"units must be counts or flux, not {units!r}")
    return units == "flux"


def version_of(params: Mapping[str, Any]) -> Optional[int]:
    value = params.get("version")
    return None if value in (None, "") else _whole(value, "version", 0)


@dataclass(frozen=True)
class LineFitRequest:
    target: int
    window: Tuple[float, float]
    model: str
    rest_wavelength: Optional[float]
    version: Optional[int]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> "LineFitRequest":
        unknown = sorted(set(body) - {"target", "window", "model", "rest_wavelength", "version"})
        if unknown:
            raise BadRequest(f"unknown field(s) {unknown}: the request is {{\"target\": 1, \"window\": [lo, hi], "
                             "\"model\": \"gaussian\", \"rest_wavelength\": null}")
        window = body.get("window")
        if not isinstance(window, (list, tuple)) or len(window) != 2:
            raise BadRequest("window must be [lo, hi]: the range to fit, in the spectrum's x unit (Angstrom once "
                             "calibrated, else pixels)")
        lo, hi = sorted((_finite(window[0], "window[0]"), _finite(window[1], "window[1]")))
        if hi <= lo:
            raise BadRequest("window must have hi > lo")
        model = body.get("model", "gaussian")
        if model not in MODELS:
            raise BadRequest(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        rest = body.get("rest_wavelength")
        rest = None if rest is None else _finite(rest, "rest_wavelength")
        if rest is not None and rest <= 0:
            raise BadRequest("rest_wavelength must be positive")
        return cls(target_of(body), (lo, hi), model, rest, version_of(body))


@dataclass(frozen=True)
class ExamineRequest:
    x: int
    y: int
    box: int
    version: Optional[int]

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> "ExamineRequest":
        if "x" not in params or "y" not in params:
            raise BadRequest("x and y (0-based column and row of the reduced frame) are required")
        box = _whole(params.get("box", 21), "box", *BOX_RANGE)
        return cls(_whole(params["x"], "x", 0), _whole(params["y"], "y", 0), box, version_of(params))
