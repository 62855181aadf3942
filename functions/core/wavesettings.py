"""The wavelength calibration's knobs: one DEFAULTS table, read through `setting`.

Any object with attributes of these names works as `settings` (a `ReductionSettings`,
a test's stand-in); a missing attribute, or `settings=None`, takes the default here.
The defaults are those of the one declared settings table (`parameters.py`).
"""
from __future__ import annotations

from .parameters import DEFAULT_SETTINGS

#: The knobs the wavelength calibration reads. Their type, default, range and help are
#: declared once, in parameters.ReductionSettings; the comments of the table that
#: stood here live on there as the knobs' help. (`correlation_tolerance`, as goodman's
#: --cross-corr-tolerance, is how far a line may sit from where the registered
#: reference puts it and still be paired: it does not bound the registration, which
#: `reference_search_range` does.)
NAMES = ("correlation_tolerance", "wavelength_use_reference", "wavelength_order", "wavelength_min_lines",
         "wavelength_max_rms_pixels", "wavelength_max_rms_fwhm_fraction", "wavelength_clip_sigma",
         "line_detection_sigma", "reference_angle_tolerance", "reference_search_range",
         "wavelength_grating_fallback")
DEFAULTS = {name: getattr(DEFAULT_SETTINGS, name) for name in NAMES}


def setting(settings, name: str):
    """`settings.name`, or its default when `settings` is None or has no such attribute."""
    return getattr(settings, name, DEFAULTS[name]) if settings is not None else DEFAULTS[name]


_setting = setting
