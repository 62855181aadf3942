"""goodman-pipeline's lamp data, read from disk: reference lamps (``data/ref_comp``) and NIST lists.

Why located and not imported: importing `goodman_pipeline` costs seconds, writes log
files into the working directory and calls the network to check its version. Only its
data directory is needed, which `importlib.util.find_spec` gives without executing the
package. The wavelength core and the simulator both read the files through here, so
they cannot disagree about what a reference lamp says.

A reference lamp ``goodman_comp_<setup>_<lamps>.fits`` is a 1-D float spectrum
(unbinned, trimmed; 4060 px for most modes, 3096 px for 600Red) whose header holds the
instrument configuration (GRATING, GRT_ANG, CAM_ANG, GRT_TARG, CAM_TARG, WAVMODE,
FILTER2, LAMP_*) and goodman's solution: ``GSP_ORDR`` and ``GSP_C000..`` give
``lambda(x) = chebval(x, c)`` (astropy Chebyshev1D, default domain) in angstrom (air) at
0-based pixel ``x``; ``GSP_P###``/``GSP_A###`` pair the line pixels it fitted with
laboratory wavelengths.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np
from astropy.io import fits

REF_PREFIX = "goodman_comp_"


@functools.lru_cache(maxsize=1)
def goodman_data_dir() -> Path:
    """`<site-packages>/goodman_pipeline/data`, found without importing the package."""
    spec = importlib.util.find_spec("goodman_pipeline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("goodman-pipeline is not installed: its reference lamps and NIST lists are needed")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def ref_comp_dir() -> Path:
    return goodman_data_dir() / "ref_comp"


def list_reference_names() -> Tuple[str, ...]:
    """Names (``<setup>_<lamps>``, e.g. ``400M2_GG455_HgArNe``) of all shipped reference lamps."""
    return tuple(sorted(p.name[len(REF_PREFIX):-len(".fits")]
                        for p in ref_comp_dir().glob(REF_PREFIX + "*.fits")))


def reference_path(name: str) -> Path:
    """The file of reference lamp `name` (with or without prefix and '.fits'); ValueError if unknown."""
    stem = Path(name).name
    if stem.endswith(".fits"):
        stem = stem[: -len(".fits")]
    if stem.startswith(REF_PREFIX):
        stem = stem[len(REF_PREFIX):]
    path = ref_comp_dir() / f"{REF_PREFIX}{stem}.fits"
    if not path.is_file():
        raise ValueError(f"unknown reference lamp {name!r}; available: {', '.join(list_reference_names())}")
    return path


@dataclass(frozen=True)
class ReferenceData:
    """One reference lamp as the file says it, unchecked (callers decide what they can use)."""

    name: str  # '400M2_GG455_HgArNe'
    path: Path
    header: fits.Header
    flux: np.ndarray  # 1-D float64, read-only
    coefficients: Tuple[float, ...]  # chebval(x, coefficients), x = 0-based unbinned pixel
    line_pixels: np.ndarray  # GSP_P###
    line_wavelengths: np.ndarray  # GSP_A###

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def degree(self) -> int:
        return len(self.coefficients) - 1


def _line_pairs(header: fits.Header) -> Tuple[np.ndarray, np.ndarray]:
    """GSP_P###/GSP_A### pairs in file order (the shipped lamps number them from 001)."""
    pixels, wavelengths = [], []
    for i in range(0, 1000):
        p, a = f"GSP_P{i:03d}", f"GSP_A{i:03d}"
        if p in header and a in header:
            pixels.append(float(header[p]))
            wavelengths.append(float(header[a]))
        elif i > 1:
            break
    return np.array(pixels), np.array(wavelengths)


@functools.lru_cache(maxsize=128)
def read_reference(name: str) -> ReferenceData:
    """Read reference lamp `name` once (cached: the files never change while running)."""
    path = reference_path(name)
    with fits.open(path, memmap=False) as hdul:
        header = hdul[0].header.copy()
        flux = np.asarray(hdul[0].data, dtype=np.float64).copy()
    if str(header.get("GSP_FUNC", "")).strip() != "Chebyshev1D":
        raise ValueError(f"reference lamp {path.name} has GSP_FUNC={header.get('GSP_FUNC')!r}, not Chebyshev1D")
    degree = int(header["GSP_ORDR"])
    coefficients = tuple(float(header[f"GSP_C{i:03d}"]) for i in range(degree + 1))
    pixels, wavelengths = _line_pairs(header)
    flux.setflags(write=False)
    stem = path.name[len(REF_PREFIX):-len(".fits")]
    return ReferenceData(stem, path, header, flux, coefficients, pixels, wavelengths)


@functools.lru_cache(maxsize=1)
def reference_headers() -> Tuple[Tuple[str, fits.Header], ...]:
    """(name, header) of every reference lamp: what matching needs, without the pixels."""
    return tuple((name, fits.getheader(reference_path(name))) for name in list_reference_names())


@functools.lru_cache(maxsize=8)
def read_nist_lines(element: str) -> Tuple[np.ndarray, np.ndarray]:
    """(wavelength [angstrom, air], relative intensity) of goodman-pipeline's NIST strong lines.

    The files are comma separated: ``intensity [flags], wavelength, species, reference``.
    Raises ValueError when there is no list for `element`.
    """
    path = goodman_data_dir() / "nist_list" / f"nist_air_strong_lines_{element}.txt"
    if not path.is_file():
        raise ValueError(f"no NIST line list for {element!r} in {path.parent}")
    wavelengths, intensities = [], []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2:
            continue
        digits = "".join(ch for ch in parts[0].split()[0] if ch.isdigit()) if parts[0] else ""
        try:
            wavelengths.append(float(parts[1]))
        except ValueError:
            continue
        intensities.append(float(digits) if digits else 0.0)
    return np.array(wavelengths), np.array(intensities)


def nist_elements() -> Tuple[str, ...]:
    """Elements that have a NIST list (Ar, Cu, Fe, He, Hg, Ne in goodman-pipeline 1.x)."""
    prefix = "nist_air_strong_lines_"
    return tuple(sorted(p.stem[len(prefix):] for p in (goodman_data_dir() / "nist_list").glob(prefix + "*.txt")))
