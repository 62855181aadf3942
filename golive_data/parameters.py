"""Every reduction knob, declared once: name, type, default, valid values and help.

Why one table: a knob set for a deployment (`REDUCTION_SETTINGS`), for a proposal or in
a re-reduction request must mean the same thing and be checked the same way, and an
observer asking "what can I change?" must get the same answer the code uses. PypeIt
declares each parameter once in a ParSet; BANZAI hands every stage one immutable
context. Here the declaration is the dataclass itself: each field carries its help and
its valid values in `metadata`; `validate` lists every problem of a settings object
(one message per bad name or value), `from_dict` refuses them, and `describe()` lists
the knobs for the API and the page.

It lives in the data layer, with the standard library only, so that the API checks a
re-reduction request's settings without the reduction stack (numpy, astropy). The
choices and defaults the core owns are written here as literals;
tests/test_settings_declaration.py holds them equal to the core's constants
(functions/core/extract.py, flats.py, cosmics.py). The workers import it as
`functions.core.parameters`.

The names of the paper's settings are the paper's (`ignore_bias`, `min_bias_files`,
`cosmic_ray_rejection`, `flat_normalization`, `extraction_type`, `target_fit_model`,
`max_targets`, `background_threshold`, `correlation_tolerance`); the others are ours.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Optional, Sequence

__all__ = ["COSMIC_METHODS", "FLAT_METHODS", "EXTRACTION_TYPES", "TARGET_MODELS", "TARGET_MIN_SNR",
           "TARGET_MIN_FWHM_ARCSEC", "SLIT_EDGE_MARGIN_ARCSEC", "TARGET_COLUMN_BLOCKS", "TARGET_MIN_BLOCK_FRACTION",
           "knob", "ReductionSettings", "validate", "describe", "DEFAULT_SETTINGS"]

# ---- the core's choices and defaults, as literals (checked against the core by a test)
COSMIC_METHODS = ("dcr", "lacosmic", "none", "default")    # functions/core/cosmics.py METHODS
FLAT_METHODS = ("mean", "simple", "spline", "function")    # functions/core/flats.py METHODS
EXTRACTION_TYPES = ("fractional", "optimal")               # functions/core/extract.py METHODS
TARGET_MODELS = ("gaussian", "moffat")                     # functions/core/extract.py MODELS
# functions/core/extract.py: the target knobs' defaults
TARGET_MIN_SNR = 3.0
TARGET_MIN_FWHM_ARCSEC = 0.4
SLIT_EDGE_MARGIN_ARCSEC = 2.0
TARGET_COLUMN_BLOCKS = 8
TARGET_MIN_BLOCK_FRACTION = 0.6


def knob(default, help: str, *, kind: type, choices: Optional[Sequence] = None, low=None, high=None,
         nullable: bool = False, group: str = "reduction"):
    """A declared setting: the dataclass field plus what validation and `describe` need."""
    return field(default=default, metadata={"help": help, "kind": kind, "choices": tuple(choices) if choices else None,
                                            "low": low, "high": high, "nullable": nullable, "group": group})


@dataclass(frozen=True)
class ReductionSettings:
    """The settings of one reduction; immutable, validated on construction."""

    # ---- 2-D reduction (goodman-pipeline's redccd names)
    ignore_bias: bool = knob(False, "do not subtract a master bias (the overscan is still subtracted)", kind=bool)
    ignore_flats: bool = knob(False, "do not divide by a master flat nor trim to the slit", kind=bool)
    cosmic_ray_rejection: str = knob("lacosmic", "cosmic-ray cleaning of science frames", kind=str,
                                     choices=COSMIC_METHODS)
    flat_normalization: str = knob("simple", "how the master flat's spectral shape is removed", kind=str,
                                   choices=FLAT_METHODS)
    flat_normalization_order: int = knob(15, "order of the flat normalisation fit", kind=int, low=1, high=50)
    saturation_threshold: float = knob(1, "percent of saturated pixels above which a frame is flagged", kind=float,
                                       low=0, high=100)
    min_bias_files: int = knob(10, "bias frames needed before a master bias is built", kind=int, low=1, high=1000)
    min_flat_files: int = knob(10, "flat frames needed before a master flat is built", kind=int, low=1, high=1000)
    cosmic_niter: Optional[int] = knob(None, "LACosmic iterations (null: the method's default)", kind=int, low=1,
                                       high=10, nullable=True)
    # ---- targets and extraction (the paper's redspec names)
    extraction_type: str = knob("fractional", "fractional (goodman) or optimal (Horne 1986) extraction", kind=str,
                                choices=EXTRACTION_TYPES, group="spectra")
    background_threshold: float = knob(1.0, "multiplier of the 5-sigma detection level for targets", kind=float,
                                       low=0.01, high=1000, group="spectra")
    target_fit_model: str = knob("gaussian", "spatial profile fitted to each target", kind=str, choices=TARGET_MODELS,
                                 group="spectra")
    max_targets: int = knob(3, "at most this many targets per frame, brightest first", kind=int, low=1, high=20,
                            group="spectra")
    target_min_snr: float = knob(TARGET_MIN_SNR, "S/N per column of the aperture sum a target must reach (0: no "
                                                 "test)", kind=float, low=0, high=1000, group="spectra")
    target_min_fwhm_arcsec: float = knob(TARGET_MIN_FWHM_ARCSEC, "narrowest FWHM a point source can have (the best "
                                                                 "seeing at SOAR), at 0.15\"/px times the binning",
                                         kind=float, low=0, high=5, group="spectra")
    slit_edge_margin_arcsec: float = knob(SLIT_EDGE_MARGIN_ARCSEC, "how far inside the lit slit (or the frame) a "
                                                                   "target's centre must lie", kind=float, low=0,
                                          high=60, group="spectra")
    target_column_blocks: int = knob(TARGET_COLUMN_BLOCKS, "independent column blocks in which a target's continuum "
                                                           "is looked for", kind=int, low=1, high=64, group="spectra")
    target_min_block_fraction: float = knob(TARGET_MIN_BLOCK_FRACTION, "fraction of the column blocks a target must "
                                                                       "be seen in", kind=float, low=0, high=1,
                                            group="spectra")
    # ---- wavelength calibration
    correlation_tolerance: float = knob(
        15.0, "unbinned px by which a line may sit from where the registered reference puts it (goodman's "
              "--cross-corr-tolerance: local agreement with the global registration, not a bound on it)",
        kind=float, low=0.5, high=200, group="wavelength")
    wavelength_use_reference: bool = knob(True, "start from a goodman-pipeline reference lamp when one matches",
                                          kind=bool, group="wavelength")
    wavelength_order: Optional[int] = knob(None, "Chebyshev degree of the solution (null: the reference's, or 3)",
                                           kind=int, low=1, high=9, nullable=True, group="wavelength")
    wavelength_min_lines: int = knob(6, "identified lamp lines needed for a solution", kind=int, low=3, high=200,
                                     group="wavelength")
    wavelength_max_rms_pixels: float = knob(
        0.15, "floor of the accepted RMS of the line fit, binned px; the limit applied is the larger of this and "
              "wavelength_max_rms_fwhm_fraction x the lines' median FWHM", kind=float, low=0.01, high=5,
        group="wavelength")
    wavelength_max_rms_fwhm_fraction: float = knob(
        0.12, "the RMS limit as a fraction of the lamp lines' FWHM (a line centre is measured to a fraction of its "
              "width: 1x1 lamps get a wider limit in binned px than 3x3 ones); 0: the floor alone", kind=float,
        low=0, high=1, group="wavelength")
    reference_search_range: float = knob(
        120.0, "half-width (unbinned px) of the search for the reference lamp's registration around where the "
               "trims put it; real lamps sit 20-25 px off goodman's references", kind=float, low=0, high=1000,
        group="wavelength")
    wavelength_grating_fallback: bool = knob(True, "when the reference lamp gives no solution, try the grating "
                                                   "equation and NIST lines before refusing", kind=bool,
                                             group="wavelength")
    wavelength_clip_sigma: float = knob(3.0, "sigma clipping of the line fit", kind=float, low=1, high=20,
                                        group="wavelength")
    line_detection_sigma: float = knob(5.0, "lamp lines are peaks this many noise sigmas high", kind=float, low=1,
                                       high=100, group="wavelength")
    reference_angle_tolerance: float = knob(0.1, "degrees by which a reference lamp's grating and camera angles may "
                                                 "differ", kind=float, low=0.001, high=5, group="wavelength")
    # ---- which calibrations fit a frame
    calibration_angle_tolerance: float = knob(0.05, "degrees by which a lamp's or a flat's grating and camera "
                                                    "angles may differ from the frame's (the same preset mode "
                                                    "always agrees)", kind=float, low=0.0, high=1.0,
                                              group="calibrations")
    lamp_other_nights: bool = knob(True, "with no compatible lamp that night, use one from the nearest earlier "
                                         "night within CALIBRATION_WINDOW_DAYS (corrected with the sky lines)",
                                   kind=bool, group="calibrations")
    flat_other_slits: bool = knob(True, "use a master flat taken through another slit width when none of the same "
                                        "slit exists", kind=bool, group="calibrations")

    def __post_init__(self) -> None:
        problems = [p for p in (_problem(f.name, getattr(self, f.name), f.metadata) for f in fields(self)) if p]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ReductionSettings":
        """From plain JSON values: unknown names and bad values are refused (ValueError
        with every problem `validate` finds, each naming its knob)."""
        problems = validate(d)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**d)

    def merged(self, overrides: Dict[str, Any]) -> "ReductionSettings":
        """These settings with `overrides` on top (a proposal's, then a request's)."""
        return ReductionSettings.from_dict({**self.to_dict(), **(overrides or {})})

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def validate(overrides: Mapping[str, Any]) -> List[str]:
    """Every problem of a settings object (JSON values, as a request or a deployment
    gives them), one message per bad name or value; empty when it is fine."""
    if not isinstance(overrides, Mapping):
        return [f"settings must be a JSON object, got {type(overrides).__name__}"]
    declared = {f.name: f.metadata for f in fields(ReductionSettings)}
    problems = []
    for name, value in overrides.items():
        if name not in declared:
            problems.append(_unknown(str(name), sorted(declared)))
            continue
        problem = _problem(name, value, declared[name])
        if problem:
            problems.append(problem)
    return problems


def _unknown(name: str, known: List[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        return f"unknown setting {name!r}: did you mean {' or '.join(close)}?"
    return f"unknown setting {name!r}: known are {', '.join(known)}"


def _problem(name: str, value: Any, meta: Mapping[str, Any]) -> Optional[str]:
    """What is wrong with one knob's value, or None."""
    kind, choices, low, high = meta["kind"], meta["choices"], meta["low"], meta["high"]
    if value is None:
        return None if meta["nullable"] else f"{name} must not be null"
    if kind is bool:
        return None if isinstance(value, bool) else f"{name} must be true or false, got {value!r}"
    if kind is str:
        listed = f"one of {', '.join(choices)}" if choices else "a string"
        if not isinstance(value, str):
            return f"{name} must be a string ({listed}), got {value!r}"
        return f"{name} must be {listed}; got {value!r}" if choices and value not in choices else None
    numeric = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric) or not math.isfinite(value):
        what = "an integer" if kind is int else "a finite number"
        return f"{name} must be {what} within {low}..{high}, got {value!r}"
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{name} must be within {low}..{high}, got {value!r}"
    return None


def describe() -> List[Dict[str, Any]]:
    """Every knob as data (name, type, default, valid values, help, group): for the API and the page."""
    out = []
    for f in fields(ReductionSettings):
        m = f.metadata
        out.append({"name": f.name, "type": m["kind"].__name__, "default": None if f.default is MISSING else f.default,
                    "choices": list(m["choices"]) if m["choices"] else None, "min": m["low"], "max": m["high"],
                    "nullable": m["nullable"], "group": m["group"], "help": m["help"]})
    return out


DEFAULT_SETTINGS = ReductionSettings()
