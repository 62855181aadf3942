"""Floats the API can put in JSON: NaN and infinities are not JSON, and 17 digits of
a measured value are noise that only makes the response longer.

Rounding keeps significant digits, not decimals: fluxes of 1e-17 erg/s/cm2/A must
survive as well as pixel values of 30000.
"""
from __future__ import annotations

import math
from typing import Iterable, List, Optional

DIGITS = 7


def json_float(value: Optional[float], digits: int = DIGITS) -> Optional[float]:
    """`value` to `digits` significant digits; None for None, NaN and infinities."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def json_floats(values: Iterable[Optional[float]], digits: int = DIGITS) -> List[Optional[float]]:
    return [json_float(v, digits) for v in values]
