"""The goodman-pipeline reference data the simulator is built on: reference lamps, NIST lists.

Why from goodman-pipeline: its reference lamps are real Goodman spectra with a
wavelength solution and real instrument headers, so a night built on them looks like
the instrument to any reduction (and the pipeline will find the matching lamp).

The files are located and read by `functions.core.lampdata` (without importing
goodman-pipeline), the same code the wavelength calibration uses; this module adds the
simulator's own checks and its solution type.

A reference lamp file ``goodman_comp_<setup>_<lamps>.fits`` holds a 1-D float64
spectrum (unbinned, trimmed, 4060 px for the 400 l/mm modes) whose header carries
``GSP_FUNC='Chebyshev1D'``, ``GSP_ORDR`` and ``GSP_C000..``: the wavelength in
angstrom (air) at 0-based pixel ``x`` is ``Chebyshev1D(degree=GSP_ORDR, c0=.., ..)(x)``
with astropy's default domain and window, i.e. ``numpy.polynomial.chebyshev.chebval(x,
coefficients)``. ``GSP_P###``/``GSP_A###`` pair line pixels with laboratory wavelengths.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from numpy.polynomial import chebyshev

from functions.core import lampdata

from . import geometry

REF_PREFIX = lampdata.REF_PREFIX
goodman_data_dir = lampdata.goodman_data_dir
ref_comp_dir = lampdata.ref_comp_dir
read_nist_lines = lampdata.read_nist_lines


def list_reference_lamps() -> List[str]:
    """Names (``<setup>_<lamps>``, e.g. ``400M2_GG455_HgArNe``) of all shipped reference lamps."""
    return list(lampdata.list_reference_names())


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
class ReferenceLamp(lampdata.ReferenceData):
    """The file's contents (name, path, header, flux, coefficients, line_pixels = GSP_P###
    where the pipeline found the lines, line_wavelengths = GSP_A### their laboratory
    wavelengths) plus the solution as the simulator uses it."""

    solution: WavelengthSolution

    @property
    def lamps(self) -> str:
        """The lamp combination as the file names spell it, e.g. 'HgArNe' (also the OBJECT)."""
        return self.name.rsplit("_", 1)[-1]

    @property
    def setup(self) -> str:
        """Grating mode and filter as the file names spell it, e.g. '400M2_GG455'."""
        return self.name.rsplit("_", 1)[0]


@functools.lru_cache(maxsize=16)
def load_reference_lamp(name: str = "400M2_GG455_HgArNe") -> ReferenceLamp:
    """Read one reference lamp; refuse the ones the Red 2x2 geometry cannot host.

    Only 4060 px wide Red-camera lamps fit the 2030 illuminated binned columns of a
    'Spectroscopic 2x2' frame; anything else raises ValueError rather than being
    silently cropped or stretched.
    """
    data = lampdata.read_reference(name)
    header, flux, path, stem = data.header.copy(), data.flux, data.path, data.name
    if flux.ndim != 1 or flux.size != geometry.UNBINNED_WIDTH:
        raise ValueError(
            f"reference lamp {stem} is {flux.shape} px; the Red 2x2 simulator only supports 1-D lamps "
            f"{geometry.UNBINNED_WIDTH} px wide (2 x {geometry.N_LIT_COLS} illuminated binned columns)")
    if str(header.get("INSTCONF", "")).strip() != "Red":
        raise ValueError(f"reference lamp {stem} was taken with INSTCONF={header.get('INSTCONF')!r}; "
                         "the simulator writes Red-camera frames only")
    degree, coefficients = data.degree, data.coefficients
    pixels, wavelengths = data.line_pixels, data.line_wavelengths
    solution = WavelengthSolution(degree, coefficients)
    grid = np.arange(-50.0, 4111.0)
    if not np.all(np.diff(solution.wavelength(grid)) > 0):
        raise ValueError(f"reference lamp {stem}: its wavelength solution is not monotonic over the detector")
    return ReferenceLamp(
        name=stem, path=path, header=header, flux=flux, coefficients=coefficients,
        line_pixels=np.array(pixels), line_wavelengths=np.array(wavelengths), solution=solution,
    )
