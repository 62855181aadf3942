"""Spectrophotometric standards and the CTIO extinction curve, read from the pipeline's own data.

Why the pipeline's copy (``functions/core/data/standards/``, resolved from this file's
location, so it works from any working directory): a flux-calibration test is only
meaningful if the simulator renders the standard from the very table the pipeline
calibrates against, and extinguishes the light with the curve the pipeline corrects
with. The files are ESO's distribution of the Hamuy et al. standards (``f<name>.dat``:
wavelength in angstrom (air), flux in 1e-16 erg/s/cm^2/A, flux in mJy, bin width) with
``esofil_info.txt`` (file, name, J2000 RA and Dec), and ``ctioextinct.dat`` (wavelength,
mag per airmass). Each is looked for in the folder itself and in the subfolder it comes
from in the shared distribution (``eso_hamuy/``, ``extinction/``).

Between the table's bin centres the flux is interpolated with a monotone cubic (PCHIP):
smooth (continuous slope), and unlike a natural spline it neither overshoots at the
Balmer lines nor goes negative. Outside the tabulated range the flux is NaN (unknown).
The extinction curve is interpolated linearly and held at its end values beyond them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: The pipeline's standards data, relative to the repository root.
DATA_SUBDIR = "functions/core/data/standards"
DATA_DIR = ROOT / DATA_SUBDIR
CATALOGUE_FILE = "esofil_info.txt"
EXTINCTION_FILE = "ctioextinct.dat"
#: Subfolders of the shared distribution a file may also sit in.
_SUBFOLDERS = ("", "eso_hamuy", "extinction")
#: The tables' flux unit, in erg/s/cm^2/A.
TABLE_FLUX_UNIT = 1e-16


@dataclass(frozen=True)
class Standard:
    """A catalogue entry: the star's name, its table's file name and its J2000 position as written."""

    name: str
    file: str
    ra: str  # 'hh:mm:ss.sss'
    dec: str  # '-dd:mm:ss.sss'


def data_file(name: str) -> Path:
    """The path of data file `name` (in DATA_DIR or one of its distribution subfolders)."""
    for sub in _SUBFOLDERS:
        path = DATA_DIR / sub / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found in {DATA_DIR} (the pipeline's standards data)")


def _milliseconds(text: str) -> str:
    """'08:41:32.37' -> '08:41:32.370': the header's sexagesimal spelling (sign kept, '+' dropped)."""
    sign = "-" if text.startswith("-") else ""
    d, m, s = text.lstrip("+-").split(":")
    return f"{sign}{int(d):02d}:{int(m):02d}:{float(s):06.3f}"


@functools.lru_cache(maxsize=1)
def catalogue() -> Dict[str, Standard]:
    """Every standard of esofil_info.txt by name (commented-out entries are not standards)."""
    out = {}
    for line in data_file(CATALOGUE_FILE).read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) < 4 or not parts[0].endswith(".dat"):
            continue  # comments and the column heading
        file, name, ra, dec = parts[:4]
        out[name] = Standard(name=name, file=file, ra=_milliseconds(ra), dec=_milliseconds(dec))
    return out


def standard(name: str) -> Standard:
    """The catalogue entry of `name`; a ValueError naming the known ones otherwise."""
    known = catalogue()
    if name not in known:
        raise ValueError(f"{name!r} is not a standard of {CATALOGUE_FILE}: one of {', '.join(sorted(known))}")
    return known[name]


@functools.lru_cache(maxsize=8)
def table(name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(wavelength A air, flux erg/s/cm^2/A) of standard `name` at its table's bin centres."""
    values = np.loadtxt(data_file(standard(name).file), usecols=(0, 1), ndmin=2)
    wavelength, flux = values[:, 0], values[:, 1] * TABLE_FLUX_UNIT
    wavelength.setflags(write=False)
    flux.setflags(write=False)
    return wavelength, flux


@functools.lru_cache(maxsize=8)
def _interpolator(name: str):
    from scipy.interpolate import PchipInterpolator  # on first use: keeps the simulator's import light

    wavelength, flux = table(name)
    return PchipInterpolator(wavelength, flux, extrapolate=False)


def flux(name: str, wavelength) -> np.ndarray:
    """F_lambda (erg/s/cm^2/A) of standard `name` at `wavelength` (A, air); NaN off the table."""
    return _interpolator(name)(np.asarray(wavelength, dtype=float))


@functools.lru_cache(maxsize=1)
def _extinction_table() -> Tuple[np.ndarray, np.ndarray]:
    values = np.loadtxt(data_file(EXTINCTION_FILE), usecols=(0, 1), ndmin=2)
    return values[:, 0], values[:, 1]


def extinction(wavelength) -> np.ndarray:
    """k(lambda), mag per airmass, of the CTIO curve (linear between its points, held beyond)."""
    wl, k = _extinction_table()
    return np.interp(np.asarray(wavelength, dtype=float), wl, k)
