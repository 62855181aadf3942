"""The night as plain data: which frames, in which order, when, and every random choice.

Why a plan separate from the pixels: everything the truth file records (times, shifts,
traces, cosmic-ray pixels) is decided here, from the seed alone, before any pixel is
synthesised. truth.json can then be written before the first frame appears, and
rendering a frame is a pure function of (plan, frame). Every float is rounded when it
is drawn, so the value in truth.json is exactly the value the renderer used.

Default night (seed 1, 2024-03-14, 400M2_GG455_HgArNe): 10 bias from 19:00 UTC, 10
quartz flats from 19:30 UTC, then after 00:30 UTC of the next day a comparison lamp,
two exposures of EG21, one of LTT3218 and a closing comparison lamp (25 frames).
Comparison lamps are spread around the science frames and carry the coordinates of
the target they bracket, which is how goodman-pipeline pairs them.

Flexure: every exposed frame gets a spectral shift (unbinned px) of
``s0 + drift * hours since 19:00 UTC + jitter``, s0 uniform in +-1.5, drift in +-0.25 px/h,
jitter in +-0.25, clipped to +-3: lamps and science taken together differ by a little,
afternoon and night by more, as on the telescope.

Random streams (numpy PCG64 via SeedSequence): ``[seed, 0]`` night-level choices,
``[seed, 1, seq]`` per-frame choices, ``[seed, 2, seq]`` cosmic rays, ``[seed, 3, seq]``
pixel noise, ``[seed, 4]`` the fixed pattern (bias structure, pixel response).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from . import cosmics, geometry
from .reference import load_reference_lamp

BIAS_START = dt.time(19, 0, 0)
FLAT_START = dt.time(19, 30, 0)
AFTERNOON_COMP_START = dt.time(19, 50, 0)
NIGHT_START = dt.time(0, 30, 0)  # of the day after the night date
FLAT_EXPTIME = 20.0
READ_OVERHEAD = 23.0  # s between the end of one exposure and the start of the next
SLEW_TIME = 300.0  # s to acquire a new target
SHIFT_LIMIT = 3.0  # |shift| in unbinned px


@dataclass(frozen=True)
class Target:
    """A point source on the slit."""

    name: str
    ra: str  # 'hh:mm:ss.sss' J2000
    dec: str  # '-dd:mm:ss.sss'
    temperature: float  # K: black-body colour of the continuum
    rate: float  # e-/s per column (whole profile) at 6000 A before throughput
    halpha_depth: float
    halpha_sigma: float  # angstrom
    exptime: float  # s
    row: float  # nominal trace row (0-based) at the centre column


#: Two southern white dwarfs (spectrophotometric standards, broad Balmer lines).
TARGETS = (
    Target("EG21", "03:10:30.980", "-68:36:03.400", 16000.0, 25.0, 0.45, 14.0, 300.0, 470.0),
    Target("LTT3218", "08:41:32.430", "-32:56:32.900", 9000.0, 15.0, 0.55, 12.0, 360.0, 530.0),
)


@dataclass(frozen=True)
class Trace:
    """Centre row of the target's spatial profile: ``row(c) = y0 + a*(c - xc) + b*(c - xc)**2``.

    ``c`` and ``row`` are 0-based raw pixel coordinates (pixel centres); the profile is a
    Gaussian of full width at half maximum `fwhm` rows, integrated over each row.
    """

    y0: float
    a: float
    b: float
    xc: float
    fwhm: float
    profile: str = "gaussian"

    def row(self, col):
        d = np.asarray(col, dtype=float) - self.xc
        return self.y0 + self.a * d + self.b * d * d


@dataclass(frozen=True)
class FramePlan:
    seq: int
    kind: str  # 'bias' | 'flat' | 'comp' | 'science'
    obstype: str  # BIAS | FLAT | COMP | OBJECT
    object: str
    filename: str
    exptime: float
    date_obs: str  # 'YYYY-MM-DDThh:mm:ss.sss' UTC, shutter open
    bias_offset: float  # ADU added to the nominal bias level for this read
    shift: Optional[float]  # flexure shift, unbinned px (None for bias)
    target: Optional[Target] = None  # science frames, and the target a lamp brackets
    trace: Optional[Trace] = None  # science frames only
    cosmic_rays: cosmics.CosmicRays = field(default_factory=cosmics.CosmicRays)

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.strptime(self.date_obs, "%Y-%m-%dT%H:%M:%S.%f")

    @property
    def bias_level(self) -> float:
        return round(geometry.BIAS_LEVEL + self.bias_offset, 3)


@dataclass(frozen=True)
class NightPlan:
    seed: int
    night: str  # 'YYYY-MM-DD', the local evening the night starts on
    lamp: str  # reference lamp name, e.g. '400M2_GG455_HgArNe'
    tilt: float  # unbinned px of dispersion shift per 100 rows
    frames: Tuple[FramePlan, ...]

    def frame(self, name: str) -> FramePlan:
        for f in self.frames:
            if f.filename == name:
                return f
        raise KeyError(name)


def _slots(n_comp: int, n_science: int):
    """Index (0..n_science) before which each comparison lamp is taken: spread around the science."""
    if n_comp == 0:
        return []
    if n_comp == 1:
        return [0]
    return [int(round(k * n_science / (n_comp - 1))) for k in range(n_comp)]


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def make_night(seed: int = 1, night: str = "2024-03-14", lamp: str = "400M2_GG455_HgArNe",
               n_bias: int = 10, n_flat: int = 10, n_comp: int = 2, n_science: int = 3,
               tilt: float = 0.0) -> NightPlan:
    """Plan a night. Same arguments, same plan, on any machine (no wall clock, no global RNG)."""
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, n in (("n_bias", n_bias), ("n_flat", n_flat), ("n_comp", n_comp), ("n_science", n_science)):
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    if n_bias + n_flat + n_comp + n_science > 9999:
        raise ValueError("at most 9999 frames in a night (4-digit sequence numbers)")
    day = dt.date.fromisoformat(night)
    ref = load_reference_lamp(lamp)  # validates the lamp
    setup = ref.setup
    comp_exptime = float(ref.header.get("EXPTIME", 0) or 0) or 2.0

    night_rng = np.random.default_rng([seed, 0])
    shift0 = night_rng.uniform(-1.5, 1.5)
    drift = night_rng.uniform(-0.25, 0.25)  # px per hour
    t_ref = dt.datetime.combine(day, BIAS_START)

    # the observing sequence, as (kind, target) in order
    seq = [("bias", None)] * n_bias + [("flat", None)] * n_flat
    sci_targets = [TARGETS[0] if i < n_science - n_science // 3 else TARGETS[1] for i in range(n_science)]
    slots = _slots(n_comp, n_science)
    night_part = []
    for i in range(n_science + 1):
        for _ in range(slots.count(i)):
            near = sci_targets[min(i, n_science - 1)] if n_science else None
            night_part.append(("comp", near))
        if i < n_science:
            night_part.append(("science", sci_targets[i]))
    seq += night_part

    frames = []
    # one clock: each block starts at its nominal time, or a minute after the previous block
    nominal = {
        "bias": dt.datetime.combine(day, BIAS_START),
        "flat": dt.datetime.combine(day, FLAT_START),
        "afternoon": dt.datetime.combine(day, AFTERNOON_COMP_START),
        "night": dt.datetime.combine(day + dt.timedelta(days=1), NIGHT_START),
    }
    clock = None
    last_block = None
    last_target = None
    for index, (kind, target) in enumerate(seq):
        number = index + 1
        rng = np.random.default_rng([seed, 1, number])
        block = kind if kind in ("bias", "flat") else ("night" if n_science else "afternoon")
        if block != last_block:
            clock = nominal[block] if clock is None else max(clock + dt.timedelta(seconds=60), nominal[block])
            last_block = block
        if kind == "science" and last_target is not None and target is not last_target:
            clock += dt.timedelta(seconds=SLEW_TIME)
        start = clock
        if kind == "bias":
            exptime = 0.0
            obstype, obj, label = "BIAS", "ZERO", "zero"
        elif kind == "flat":
            exptime = FLAT_EXPTIME
            obstype, obj, label = "FLAT", "quartz", f"quartz_{setup}"
        elif kind == "comp":
            exptime = comp_exptime
            obstype, obj, label = "COMP", ref.lamps, f"{ref.lamps}_{setup}"
        else:
            exptime = target.exptime
            obstype, obj, label = "OBJECT", target.name, f"{target.name.replace(' ', '')}_{setup}"
            last_target = target
        clock = start + dt.timedelta(seconds=exptime + READ_OVERHEAD + rng.uniform(0, 2))
        start = start.replace(microsecond=(start.microsecond // 1000) * 1000)
        bias_offset = round(float(rng.normal(0.0, 0.8)), 3)
        shift = None
        if kind != "bias":
            hours = (start - t_ref).total_seconds() / 3600.0
            s = shift0 + drift * hours + rng.uniform(-0.25, 0.25)
            shift = round(float(np.clip(s, -SHIFT_LIMIT, SHIFT_LIMIT)), 4)
        trace = None
        if kind == "science":
            trace = Trace(
                y0=round(float(target.row + rng.normal(0.0, 1.0)), 4),
                a=round(float(rng.uniform(1.0e-3, 2.0e-3)), 7),
                b=round(float(rng.uniform(2.0e-6, 4.0e-6)), 10),
                xc=geometry.FIRST_LIT_COL + (geometry.N_LIT_COLS - 1) / 2.0,
                fwhm=round(float(rng.uniform(2.0, 3.0)), 3),
            )
        hits = cosmics.generate(np.random.default_rng([seed, 2, number]), exptime)
        frames.append(FramePlan(
            seq=number, kind=kind, obstype=obstype, object=obj,
            filename=f"{number:04d}_{label}.fits", exptime=float(exptime), date_obs=_fmt(start),
            bias_offset=bias_offset, shift=shift,
            target=target if kind in ("comp", "science") else None,
            trace=trace, cosmic_rays=hits,
        ))
    return NightPlan(seed=int(seed), night=day.isoformat(), lamp=ref.name, tilt=float(tilt), frames=tuple(frames))
