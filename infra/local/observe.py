"""A simulated night "observed" into a folder, as the demo and the benchmarks use it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

from infra.simulator import make_night, write_night


def night_counts(frames: Optional[int]) -> Dict[str, int]:
    """Frame counts for a night of `frames` files: calibrations first, then lamps and
    science in the usual one-lamp-per-few-exposures rhythm (None: the default night)."""
    if frames is None:
        return {}
    if frames < 4:
        raise ValueError("a night needs at least 4 frames (bias, flat, lamp, science)")
    n_bias = n_flat = min(10, frames // 4)
    rest = frames - n_bias - n_flat
    n_comp = max(1, rest // 4)
    return {"n_bias": n_bias, "n_flat": n_flat, "n_comp": n_comp, "n_science": rest - n_comp}


def observe(out_dir: Path, seed: int = 1, night: str = "2024-03-14", frames: Optional[int] = None,
            cadence: float = 3.0, write_seconds: Optional[float] = None,
            on_close: Optional[Callable[[Path, float], None]] = None, standard: Optional[str] = None):
    """Write the night's frames into `out_dir` one every `cadence` seconds, each file
    growing for `write_seconds` (default: a fifth of the cadence, at most 1 s) as the
    camera reads out. `standard`: a physical night (make_night) with that standard."""
    plan = make_night(seed=seed, night=night, standard=standard, **night_counts(frames))
    if write_seconds is None:
        write_seconds = min(1.0, cadence / 5)
    return write_night(Path(out_dir), plan, cadence=cadence, write_seconds=write_seconds, on_close=on_close)
