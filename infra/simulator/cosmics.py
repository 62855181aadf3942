"""Cosmic-ray hits for one exposure, decided in the plan so the truth can list every pixel.

Why in the plan and not drawn while rendering: truth.json is written before the first
frame exists, and a test must be able to compare the frame against the exact charge
each pixel received. A hit is a fixed charge (not Poisson-noised again) added to the
pixel before read noise, so ``frame(with hits) - frame(without hits)`` is the deposit
divided by the gain, to +-1 ADU of rounding, wherever it does not saturate.

Rate and shapes are those of a thick CCD at a mountain site: ~0.5 events/s over the
illuminated area (~150 in a 300 s exposure, one or two in a bias read), 60% compact hits
of 1-3 pixels, 40% short streaks of 3-12 pixels, log-normal total charge with a median
of 3000 e- (>= 800 e-). Hits land only inside the trim section: the overscan is not
exposed silicon, so it stays pure bias and read noise. Those numbers are for the 2x2
full frame; another readout gets the rate scaled by its exposed area (a row window sees
fewer hits) and streak lengths scaled by 2/serial binning (the same tracks in its pixels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from . import geometry

EVENTS_PER_SECOND = 0.5
#: The CCD is still collecting hits while it is being cleared and read.
DEAD_TIME = 2.0
MIN_PIXEL_ELECTRONS = 60


@dataclass(frozen=True)
class CosmicRays:
    """Pixels hit in one frame: 0-based (row, col) and the integer electrons deposited."""

    rows: Tuple[int, ...] = ()
    cols: Tuple[int, ...] = ()
    electrons: Tuple[int, ...] = ()
    n_events: int = 0

    def __len__(self) -> int:
        return len(self.rows)


def generate(rng: np.random.Generator, exptime: float, geom: geometry.Geometry = geometry.DEFAULT) -> CosmicRays:
    """Draw the hits of one exposure of `exptime` seconds on readout `geom` (deterministic for a given `rng`)."""
    r_lo, r_hi = 1, geom.n_rows - 1  # trim rows, 1-based 2..948 at 2x2
    c_lo, c_hi = geom.first_lit_col, geom.last_lit_col
    d = geometry.DEFAULT
    area = (geom.n_rows * geom.pb * geom.n_lit_cols * geom.sb) / (d.n_rows * d.pb * d.n_lit_cols * d.sb)
    track = 2.0 / geom.sb
    n = int(rng.poisson(EVENTS_PER_SECOND * (exptime + DEAD_TIME) * area))
    deposits = {}
    for _ in range(n):
        r0 = rng.uniform(r_lo, r_hi + 1)
        c0 = rng.uniform(c_lo, c_hi + 1)
        total = float(np.clip(rng.lognormal(np.log(3000.0), 0.6), 800.0, 40000.0))
        if rng.random() < 0.6:
            # compact hit: the struck pixel and up to two neighbours
            npx = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
            r, c = int(r0), int(c0)
            pix = [(r, c)]
            for dr, dc in rng.permutation([(0, 1), (0, -1), (1, 0), (-1, 0)])[: npx - 1]:
                pix.append((r + int(dr), c + int(dc)))
            weights = np.array([3.0] + [1.0] * (npx - 1)) * rng.uniform(0.7, 1.3, npx)
        else:
            # streak: a straight track, charge shared by path length in each pixel
            length = rng.uniform(3.0, 12.0) * track
            angle = rng.uniform(0.0, np.pi)
            t = np.linspace(0.0, 1.0, int(length * 8) + 1)
            rr = np.floor(r0 + t * length * np.sin(angle)).astype(int)
            cc = np.floor(c0 + t * length * np.cos(angle)).astype(int)
            keys, counts = np.unique(rr * 10000 + cc, return_counts=True)
            pix = [(int(k // 10000), int(k % 10000)) for k in keys]
            weights = counts.astype(float)
        weights = weights / weights.sum()
        for (r, c), w in zip(pix, weights):
            if r_lo <= r <= r_hi and c_lo <= c <= c_hi:
                deposits[(r, c)] = deposits.get((r, c), 0.0) + total * w
    kept = sorted((rc, int(round(e))) for rc, e in deposits.items() if e >= MIN_PIXEL_ELECTRONS)
    return CosmicRays(
        rows=tuple(r for (r, _), _ in kept),
        cols=tuple(c for (_, c), _ in kept),
        electrons=tuple(e for _, e in kept),
        n_events=n,
    )


def image(hits: CosmicRays, shape=geometry.SHAPE) -> np.ndarray:
    """The deposited electrons as a full-frame float array (of the frame's `shape`)."""
    out = np.zeros(shape)
    if len(hits):
        out[np.array(hits.rows), np.array(hits.cols)] = np.array(hits.electrons, dtype=float)
    return out
