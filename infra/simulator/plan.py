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

Setups (all optional; the defaults are the night above, every frame 'Spectroscopic 2x2',
the reference lamp's 0.45" slit): each frame carries its own readout (`geometry.Geometry`:
binning and row window), slit width and constant lamp offset. Science frames use
`binning`/`roi`/`slit`, lamps `lamp_binning`/`lamp_roi`/`lamp_slit`, flats
`flat_binning`/`flat_roi`/`flat_slit` (each defaulting to the science value), and there is
one set of `n_bias` biases per readout the night uses (or per `bias_binning`). Wider slits
widen the lines (sigma proportional to the slit width, 0.45" = the reference lamp's width)
and let proportionally more slit-filling light through; the observer scales the exposure
times of flats (by pixel area and slit) and lamps (by pixel area) to keep today's levels,
science exposure times do not change. `lamp_offset` adds a constant shift (unbinned px)
to every exposed frame (lamps, science and flats), as real nights sit 15-40 px away from
goodman-pipeline's reference lamps; the flexure above comes on top.

Physical nights (``standard=``, e.g. "LTT3218"; for testing flux calibration): the night
starts with one more OBJECT frame, the spectrophotometric standard at its catalogue
position (`standards`), rendered from its tabulated flux, and its science targets are
`PHYSICAL_TARGETS` (white dwarfs with absolute fluxes, no standards). Both go through the
same instrument model (`spectra.electron_rate`) at their frames' AIRMASS. The standard is
taken first, at 00:30 UTC, when it is near the meridian; the science targets sit lower
(airmass ~1.3-1.4 on the default date), so a calibration must correct the difference.
The observer exposes the standard to STANDARD_PEAK_ADU at its brightest pixel, judged at
airmass 1 and the sharpest seeing the plan draws, so the rendered peak is at most that
(plus the few per cent of pixel response and sky), far from saturation. Without
`standard` the night is exactly as before.

Random streams (numpy PCG64 via SeedSequence): ``[seed, 0]`` night-level choices,
``[seed, 1, seq]`` per-frame choices, ``[seed, 2, seq]`` cosmic rays, ``[seed, 3, seq]``
pixel noise, ``[seed, 4]`` the fixed pattern (bias structure, pixel response).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
from scipy.special import ndtr

from . import cosmics, geometry, spectra, standards
from .geometry import Geometry
from .reference import load_reference_lamp

BIAS_START = dt.time(19, 0, 0)
FLAT_START = dt.time(19, 30, 0)
AFTERNOON_COMP_START = dt.time(19, 50, 0)
NIGHT_START = dt.time(0, 30, 0)  # of the day after the night date
FLAT_EXPTIME = 20.0
READ_OVERHEAD = 23.0  # s between the end of one exposure and the start of the next
SLEW_TIME = 300.0  # s to acquire a new target
SHIFT_LIMIT = 3.0  # |flexure shift| in unbinned px
LAMP_OFFSET_LIMIT = 40.0  # |lamp_offset| in unbinned px
#: The slit of the reference lamps (their SLIT card), which sets the line width.
REFERENCE_SLIT = 0.45  # arcsec
#: Physical nights: the standard's brightest pixel (ADU above bias) the observer exposes to,
#: the sharpest trace the plan draws (FWHM, 2x2 rows), and where the standard sits on the slit.
STANDARD_PEAK_ADU = 25000.0
SHARPEST_FWHM = 2.0
STANDARD_ROW = 500.0


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
    flux_5500: Optional[float] = None  # erg/s/cm^2/A of the continuum at 5500 A: rendered physically, `rate` unused
    standard: Optional[str] = None  # a spectrophotometric standard rendered from its table (colour fields unused)

    @property
    def flux_model(self) -> Optional[dict]:
        """The absolute spectrum this target is rendered from (`spectra.input_flux`), None for `rate` targets."""
        if self.standard is not None:
            return {"kind": "table", "standard": self.standard}
        if self.flux_5500 is not None:
            return {"kind": "blackbody", "temperature": self.temperature, "flux_5500": self.flux_5500,
                    "halpha_depth": self.halpha_depth, "halpha_sigma": self.halpha_sigma}
        return None


#: Two southern white dwarfs (spectrophotometric standards, broad Balmer lines).
TARGETS = (
    Target("EG21", "03:10:30.980", "-68:36:03.400", 16000.0, 25.0, 0.45, 14.0, 300.0, 470.0),
    Target("LTT3218", "08:41:32.430", "-32:56:32.900", 9000.0, 15.0, 0.55, 12.0, 360.0, 530.0),
)

#: Physical nights' science targets: the colours and H-alpha lines of the two above, absolute
#: fluxes, and made-up names and positions more than 10 degrees from every catalogued
#: standard, so that only the standard frame is recognised as one.
PHYSICAL_TARGETS = (
    Target("WD0948-70", "09:48:17.600", "-70:04:52.000", 16000.0, 0.0, 0.45, 14.0, 600.0, 470.0, flux_5500=2e-15),
    Target("WD0502-62", "05:02:33.100", "-61:52:16.000", 9000.0, 0.0, 0.55, 12.0, 900.0, 530.0, flux_5500=1e-15),
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
    shift: Optional[float]  # total spectral shift (flexure + lamp_offset), unbinned px (None for bias)
    target: Optional[Target] = None  # science frames, and the target a lamp brackets
    trace: Optional[Trace] = None  # science frames only, in this frame's raw pixels
    cosmic_rays: cosmics.CosmicRays = field(default_factory=cosmics.CosmicRays)
    geometry: Geometry = geometry.DEFAULT  # this frame's readout: binning and row window
    slit: Optional[float] = None  # slit width, arcsec; None: the reference lamp's (0.45") and its SLIT card
    lamp_offset: float = 0.0  # the constant part of `shift`, unbinned px
    nominal_exptime: Optional[float] = None  # flats and lamps: the 2x2, 0.45" exposure time it was scaled from

    @property
    def slit_factor(self) -> float:
        """Slit width relative to the reference lamp's: line width and slit-filling light scale with it."""
        return 1.0 if self.slit is None else self.slit / REFERENCE_SLIT

    @property
    def exposure_factor(self) -> float:
        """exptime / nominal_exptime (1 unless the observer scaled a flat or lamp exposure)."""
        if self.nominal_exptime is None or self.nominal_exptime == self.exptime:
            return 1.0
        return self.exptime / self.nominal_exptime

    @property
    def is_default_setup(self) -> bool:
        return self.geometry == geometry.DEFAULT and self.slit is None and self.lamp_offset == 0.0

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

    @property
    def legacy(self) -> bool:
        """True when every frame has the default setup: truth.json is then written exactly as
        before per-frame setups existed (no `readout` blocks)."""
        return all(f.is_default_setup for f in self.frames)

    @property
    def physical(self) -> bool:
        """True when the night's targets have absolute fluxes (a night with a standard)."""
        return any(f.target is not None and f.target.flux_model is not None for f in self.frames)

    @property
    def science_geometry(self) -> Geometry:
        """The readout of the science frames (else of the first exposed frame, else the first)."""
        for kind in ("science", "comp", "flat", "bias"):
            for f in self.frames:
                if f.kind == kind:
                    return f.geometry
        return geometry.DEFAULT

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


def trace_on(trace: Trace, geom: Geometry) -> Trace:
    """`trace` (in raw pixels of the default 2x2 full frame) in raw pixels of readout `geom`.

    Exact: the same star at the same unbinned detector position. Rows map through
    ``u = 2*r2 + 0.5``, columns through the unbinned reference coordinate x.
    """
    if geom == geometry.DEFAULT:
        return trace
    sb, pb = geom.binning
    d = geometry.DEFAULT
    xc_x = d.column_to_x(trace.xc)
    xc = float(geom.x_to_column(xc_x))
    return Trace(
        y0=round(float(geom.u_to_row(2.0 * trace.y0 + 0.5)), 6),
        a=round(trace.a * sb / pb, 10),
        b=round(trace.b * sb * sb / (2.0 * pb), 13),
        xc=round(xc, 6),
        fwhm=round(trace.fwhm * 2.0 / pb, 6),
        profile=trace.profile,
    )


def _slit(value, name: str) -> Optional[float]:
    if value is None:
        return None
    v = float(value)
    if not 0.05 <= v <= 10.0:
        raise ValueError(f"{name} must be a slit width in arcsec (0.05..10), got {value!r}")
    return round(v, 3)


def _scaled_exptime(nominal: float, factor: float) -> float:
    """The exposure time an observer picks to keep a level: nominal*factor to 0.1 s (>= 0.1 s)."""
    if factor == 1.0:
        return float(nominal)
    return max(0.1, round(nominal * factor, 1))


def _standard_exptime(name: str, lamp: str, geom: Geometry) -> float:
    """The standard's exposure: its brightest pixel at STANDARD_PEAK_ADU above bias.

    Judged brighter than it will be rendered: at airmass 1, with the sharpest trace the
    plan draws centred on a row (flexure moves the spectrum a few pixels, which leaves its
    brightest column as bright). Whole seconds (tenths below 10 s), rounded down.
    """
    ref = load_reference_lamp(lamp)
    sol, filt = ref.solution, str(ref.header.get("FILTER2", ""))
    x = geom.column_to_x(geom.lit_columns())
    lam = sol.wavelength(x)
    per_column = spectra.electron_rate(standards.flux(name, lam), lam, 1.0, sol, filt) * sol.dispersion(x) * geom.sb
    sigma = SHARPEST_FWHM * 2.0 / geom.pb / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    peak = float(np.nanmax(per_column)) * (2.0 * ndtr(0.5 / sigma) - 1.0)
    t = STANDARD_PEAK_ADU * geometry.GAIN / peak
    return float(np.floor(t)) if t >= 10.0 else max(0.1, float(np.floor(t * 10.0)) / 10.0)


def _standard_target(name: str, lamp: str, geom: Geometry) -> Target:
    """The catalogued standard `name` as a target (ValueError if it is not catalogued)."""
    entry = standards.standard(name)
    return Target(entry.name, entry.ra, entry.dec, 0.0, 0.0, 0.0, 1.0, _standard_exptime(name, lamp, geom),
                  STANDARD_ROW, standard=entry.name)


def make_night(seed: int = 1, night: str = "2024-03-14", lamp: str = "400M2_GG455_HgArNe",
               n_bias: int = 10, n_flat: int = 10, n_comp: int = 2, n_science: int = 3,
               tilt: float = 0.0, binning=(2, 2), lamp_binning=None, flat_binning=None,
               bias_binning=None, roi: geometry.RoiSpec = None, lamp_roi: geometry.RoiSpec = None,
               flat_roi: geometry.RoiSpec = None, slit: Optional[float] = None,
               lamp_slit: Optional[float] = None, flat_slit: Optional[float] = None,
               lamp_offset: float = 0.0, science_exptime: Optional[float] = None,
               standard: Optional[str] = None) -> NightPlan:
    """Plan a night. Same arguments, same plan, on any machine (no wall clock, no global RNG).

    * ``binning`` (serial, parallel), each 1..3 (CCDSUM 'sb pb'; 2 or '2 2' also accepted),
      ``roi`` ('Spectroscopic 2x2'/'full', 'Spectroscopic ZZ Ceti', (first_row, n_rows) in
      unbinned rows, or a `geometry.Roi`) and ``slit`` (arcsec; None = the reference lamp's
      0.45" and its SLIT card): the science frames' setup.
    * ``lamp_binning``, ``lamp_roi``, ``lamp_slit``; ``flat_binning``, ``flat_roi``,
      ``flat_slit``: the lamps' and flats' setups, None = the science value.
    * ``bias_binning``: None = one set of `n_bias` biases for every readout (binning, ROI)
      the night's frames use; else a binning (or a list of them, or `Geometry` values):
      one set per entry, at each window the night reads out at that binning (the science
      window if none). A list of two ints is one binning.
    * ``lamp_offset``: constant shift (unbinned px, |offset| <= 40) of every exposed frame
      relative to the reference lamp, on top of the flexure.
    * ``science_exptime``: the science frames' exposure (s); None = each target's own
      (the standard's is always its own).
    * ``standard``: a standard of esofil_info.txt (e.g. "LTT3218"): a physical night, with
      the standard first and `PHYSICAL_TARGETS` as science (module docstring).
    """
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    for name, n in (("n_bias", n_bias), ("n_flat", n_flat), ("n_comp", n_comp), ("n_science", n_science)):
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    if n_bias + n_flat + n_comp + n_science > 9999:
        raise ValueError("at most 9999 frames in a night (4-digit sequence numbers)")
    day = dt.date.fromisoformat(night)
    if abs(float(lamp_offset)) > LAMP_OFFSET_LIMIT:
        raise ValueError(f"lamp_offset must be within +-{LAMP_OFFSET_LIMIT:g} unbinned px, got {lamp_offset!r}")
    lamp_offset = round(float(lamp_offset), 4)
    sci_geom = Geometry(geometry.binning_from(binning), geometry.roi_from(roi))
    lamp_geom = Geometry(geometry.binning_from(binning if lamp_binning is None else lamp_binning),
                         geometry.roi_from(roi if lamp_roi is None else lamp_roi))
    flat_geom = Geometry(geometry.binning_from(binning if flat_binning is None else flat_binning),
                         geometry.roi_from(roi if flat_roi is None else flat_roi))
    sci_slit = _slit(slit, "slit")
    slits = {"science": sci_slit, "comp": sci_slit if lamp_slit is None else _slit(lamp_slit, "lamp_slit"),
             "flat": sci_slit if flat_slit is None else _slit(flat_slit, "flat_slit"), "bias": None}
    used = [g for g, n in ((sci_geom, n_science), (flat_geom, n_flat), (lamp_geom, n_comp)) if n] or [sci_geom]
    if bias_binning is None:
        wanted = used
    else:
        entries = [bias_binning] if isinstance(bias_binning, (str, int, Geometry)) or (
            len(bias_binning) == 2 and all(isinstance(v, int) for v in bias_binning)) else list(bias_binning)
        wanted = []
        for e in entries:
            if isinstance(e, Geometry):
                wanted.append(e)
                continue
            b = geometry.binning_from(e)
            # at every window the night reads out at that binning (else the science window)
            wanted += [g for g in used if g.binning == b] or [Geometry(b, sci_geom.roi)]
    bias_geoms = []
    for g in wanted:
        if g not in bias_geoms:
            bias_geoms.append(g)
    geoms = {"science": sci_geom, "comp": lamp_geom, "flat": flat_geom}
    if n_bias * len(bias_geoms) + n_flat + n_comp + n_science > 9999:
        raise ValueError("at most 9999 frames in a night (4-digit sequence numbers)")
    ref = load_reference_lamp(lamp)  # validates the lamp
    setup = ref.setup
    comp_exptime = float(ref.header.get("EXPTIME", 0) or 0) or 2.0

    night_rng = np.random.default_rng([seed, 0])
    shift0 = night_rng.uniform(-1.5, 1.5)
    drift = night_rng.uniform(-0.25, 0.25)  # px per hour
    t_ref = dt.datetime.combine(day, BIAS_START)

    # the observing sequence, as (kind, target) in order
    seq = [("bias", None)] * (n_bias * len(bias_geoms)) + [("flat", None)] * n_flat
    std_target = None if standard is None else _standard_target(standard, lamp, sci_geom)
    targets = TARGETS if std_target is None else PHYSICAL_TARGETS
    sci_targets = [targets[0] if i < n_science - n_science // 3 else targets[1] for i in range(n_science)]
    slots = _slots(n_comp, n_science)
    night_part = [] if std_target is None else [("science", std_target)]
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
        block = kind if kind in ("bias", "flat") else ("night" if n_science or std_target else "afternoon")
        if block != last_block:
            clock = nominal[block] if clock is None else max(clock + dt.timedelta(seconds=60), nominal[block])
            last_block = block
        if kind == "science" and last_target is not None and target is not last_target:
            clock += dt.timedelta(seconds=SLEW_TIME)
        start = clock
        geom = bias_geoms[index // n_bias] if kind == "bias" else geoms[kind]
        frame_slit = slits[kind]
        k = 1.0 if frame_slit is None else frame_slit / REFERENCE_SLIT
        nominal_exptime = None
        if kind == "bias":
            exptime = 0.0
            obstype, obj, label = "BIAS", "ZERO", "zero"
        elif kind == "flat":
            nominal_exptime = FLAT_EXPTIME
            exptime = _scaled_exptime(FLAT_EXPTIME, 1.0 / (geom.pixel_scale * k))
            obstype, obj, label = "FLAT", "quartz", f"quartz_{setup}"
        elif kind == "comp":
            nominal_exptime = comp_exptime
            exptime = _scaled_exptime(comp_exptime, 1.0 / geom.pixel_scale)
            obstype, obj, label = "COMP", ref.lamps, f"{ref.lamps}_{setup}"
        else:
            exptime = float(science_exptime) if science_exptime and target.standard is None else target.exptime
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
            if lamp_offset:
                shift = round(shift + lamp_offset, 4)
        trace = None
        if kind == "science":
            trace = trace_on(Trace(
                y0=round(float(target.row + rng.normal(0.0, 1.0)), 4),
                a=round(float(rng.uniform(1.0e-3, 2.0e-3)), 7),
                b=round(float(rng.uniform(2.0e-6, 4.0e-6)), 10),
                xc=geometry.FIRST_LIT_COL + (geometry.N_LIT_COLS - 1) / 2.0,
                fwhm=round(float(rng.uniform(2.0, 3.0)), 3),
            ), geom)
        hits = cosmics.generate(np.random.default_rng([seed, 2, number]), exptime, geom)
        frames.append(FramePlan(
            seq=number, kind=kind, obstype=obstype, object=obj,
            filename=f"{number:04d}_{label}.fits", exptime=float(exptime), date_obs=_fmt(start),
            bias_offset=bias_offset, shift=shift,
            target=target if kind in ("comp", "science") else None,
            trace=trace, cosmic_rays=hits, geometry=geom, slit=frame_slit,
            lamp_offset=lamp_offset if kind != "bias" else 0.0, nominal_exptime=nominal_exptime,
        ))
    return NightPlan(seed=int(seed), night=day.isoformat(), lamp=ref.name, tilt=float(tilt), frames=tuple(frames))
