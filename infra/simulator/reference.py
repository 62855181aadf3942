"""The goodman-pipeline reference data the simulator is built on: reference lamps, NIST lists.

Why from goodman-pipeline: its reference lamps are real Goodman spectra with a
wavelength solution and real instrument headers, so a night built on them looks like
the instrument to any reduction (and the pipeline will find the matching lamp).

Why the package is located and not imported: importing `goodman_pipeline` costs
seconds, writes log files into the working directory and calls the network to check
its version. Only its data directory is needed, which `importlib.util.find_spec`
gives without executing the package.

A reference lamp file ``goodman_comp_<setup>_<lamps>.fits`` holds a 1-D float64
spectrum (unbinned, trimmed, 4060 px for the 400 l/mm modes) whose header carries
``GSP_FUNC='Chebyshev1D'``, ``GSP_ORDR`` and ``GSP_C000..``: the wavelength in
angstrom (air) at 0-based pixel ``x`` is ``Chebyshev1D(degree=GSP_ORDR, c0=.., ..)(x)``
with astropy's default domain and window, i.e. ``numpy.polynomial.chebyshev.chebval(x,
coefficients)``. ``GSP_P###``/``GSP_A###`` pair line pixels with laboratory wavelengths.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from astropy.io import fits
from numpy.polynomial import chebyshev

from . import geometry

REF_PREFIX = "goodman_comp_"


@functools.lru_cache(maxsize=1)
def goodman_data_dir() -> Path:
    """`<site-packages>/goodman_pipeline/data`, found without importing the package."""
    spec = importlib.util.find_spec("goodman_pipeline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("goodman-pipeline is not installed: the simulator needs its reference lamps")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def ref_comp_dir() -> Path:
    return goodman_data_dir() / "ref_comp"


def list_reference_lamps() -> List[str]:
    """Names (``<setup>_<lamps>``, e.g. ``400M2_GG455_HgArNe``) of all shipped reference lamps."""
    return sorted(p.name[len(REF_PREFIX):-len(".fits")] for p in ref_comp_dir().glob(REF_PREFIX + "*.fits"))


@dataclass(frozen=True)
class WavelengthSolution:
    """lambda(x) = sum_i coefficients[i] * T_i(x): astropy Chebyshev1D with no domain mapping."""

    degree: int
    coefficients: Tuple[float, ...]

    def wavelength(self, x):
        return chebyshev.chebval(np.asarray(x, dtype=float), self.coefficients)

    def dispersion(self, x):
        """d(lambda)/dx in angstrom per unbinned pixel."""
        return chebyshev.chebval(np.asarray(x, dtype=float), chebyshev.chebder(self.coefficients))

    def pixel(self, wavelength, lo: float = -50.0, hi: float = 4110.0):
        """Inverse of `wavelength` over x in [lo, hi] (the detector plus margins): x for lambda.

        A dense table gives the start, Newton steps polish it to ~1e-10 px. Wavelengths
        outside the range give NaN (a cubic solution may turn over far off the detector).
        """
        grid = np.arange(lo, hi + 1.0, 1.0)
        lam = self.wavelength(grid)
        if not np.all(np.diff(lam) > 0):
            raise ValueError("wavelength solution is not monotonic increasing over the detector")
        wl = np.asarray(wavelength, dtype=float)
        x = np.interp(wl, lam, grid)
        for _ in range(4):
            x = x - (self.wavelength(x) - wl) / self.dispersion(x)
        return np.where((wl >= lam[0]) & (wl <= lam[-1]), x, np.nan)

    def as_dict(self) -> Dict:
        return {"model": "Chebyshev1D", "degree": self.degree, "coefficients": list(self.coefficients)}


@dataclass(frozen=True)
class ReferenceLamp:
    name: str  # '400M2_GG455_HgArNe'
    path: Path
    header: fits.Header
    flux: np.ndarray  # 1-D float64, read-only
    solution: WavelengthSolution
    line_pixels: np.ndarray  # GSP_P###: where the pipeline found the lines in `flux`
    line_wavelengths: np.ndarray  # GSP_A###: their laboratory wavelengths (air, angstrom)

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def lamps(self) -> str:
        """The lamp combination as the file names spell it, e.g. 'HgArNe' (also the OBJECT)."""
        return self.name.rsplit("_", 1)[-1]

    @property
    def setup(self) -> str:
        """Grating mode and filter as the file names spell it, e.g. '400M2_GG455'."""
        return self.name.rsplit("_", 1)[0]


def _resolve(name: str) -> Path:
    stem = Path(name).name
    if stem.endswith(".fits"):
        stem = stem[: -len(".fits")]
    if stem.startswith(REF_PREFIX):
        stem = stem[len(REF_PREFIX):]
    path = ref_comp_dir() / f"{REF_PREFIX}{stem}.fits"
    if not path.is_file():
        raise ValueError(f"unknown reference lamp {name!r}; available: {', '.join(list_reference_lamps())}")
    return path


@functools.lru_cache(maxsize=16)
def load_reference_lamp(name: str = "400M2_GG455_HgArNe") -> ReferenceLamp:
    """Read one reference lamp; refuse the ones the Red 2x2 geometry cannot host.

    Only 4060 px wide Red-camera lamps fit the 2030 illuminated binned columns of a
    'Spectroscopic 2x2' frame; anything else raises ValueError rather than being
    silently cropped or stretched.
    """
    path = _resolve(name)
    with fits.open(path, memmap=False) as hdul:
        header = hdul[0].header.copy()
        flux = np.asarray(hdul[0].data, dtype=np.float64).copy()
    stem = path.name[len(REF_PREFIX):-len(".fits")]
    if flux.ndim != 1 or flux.size != geometry.UNBINNED_WIDTH:
        raise ValueError(
            f"reference lamp {stem} is {flux.shape} px; the Red 2x2 simulator only supports 1-D lamps "
            f"{geometry.UNBINNED_WIDTH} px wide (2 x {geometry.N_LIT_COLS} illuminated binned columns)")
    if str(header.get("INSTCONF", "")).strip() != "Red":
        raise ValueError(f"reference lamp {stem} was taken with INSTCONF={header.get('INSTCONF')!r}; "
                         "the simulator writes Red-camera frames only")
    if str(header.get("GSP_FUNC", "")).strip() != "Chebyshev1D":
        raise ValueError(f"reference lamp {stem} has GSP_FUNC={header.get('GSP_FUNC')!r}, not Chebyshev1D")
    degree = int(header["GSP_ORDR"])
    coefficients = tuple(float(header[f"GSP_C{i:03d}"]) for i in range(degree + 1))
    pixels, wavelengths = [], []
    i = 1
    while f"GSP_P{i:03d}" in header and f"GSP_A{i:03d}" in header:
        pixels.append(float(header[f"GSP_P{i:03d}"]))
        wavelengths.append(float(header[f"GSP_A{i:03d}"]))
        i += 1
    solution = WavelengthSolution(degree, coefficients)
    grid = np.arange(-50.0, 4111.0)
    if not np.all(np.diff(solution.wavelength(grid)) > 0):
        raise ValueError(f"reference lamp {stem}: its wavelength solution is not monotonic over the detector")
    flux.setflags(write=False)
    return ReferenceLamp(
        name=stem, path=path, header=header, flux=flux,
        solution=solution,
        line_pixels=np.array(pixels), line_wavelengths=np.array(wavelengths),
    )


@functools.lru_cache(maxsize=8)
def read_nist_lines(element: str) -> Tuple[np.ndarray, np.ndarray]:
    """(wavelength [angstrom, air], relative intensity) of goodman-pipeline's NIST strong lines.

    The files are comma separated: ``intensity [flags], wavelength, species, reference``.
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
