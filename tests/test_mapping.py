"""A lamp solved at one binning calibrates a science frame at another (functions/core/mapping.py).

Simulated: a goodman-pipeline reference lamp rendered at serial binning 1, 2 and 3 on
the detector columns each binning's trim section gives (the lines integrated over the
pixel's unbinned extent), solved in its own pixels, the solution mapped to a science
frame of another binning and compared with the truth of the science columns. Real:
the 1x2 Fe arcs of the jsreding 930 afternoon calibrate a 2x2 spectrum of the same
setup (the arc itself binned 2x along the dispersion), checked against the NIST lines.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from numpy.polynomial import chebyshev

from functions.core import lampdata
from functions.core.extract import Trace
from functions.core.mapping import FrameGeometry, column_map, map_solution
from functions.core.spectra import lamp_spectrum, lamp_spectrum_for
from functions.core.wavelength import solve
from infra.simulator import spectra
from infra.simulator.reference import ReferenceLamp
from infra.simulator.reference import WavelengthSolution as TruthSolution


GAIN, RDNOISE = 1.48, 3.89
REF_START = 50  # the reference lamps' x = 0 is unbinned detector column 50 (goodman's trim, 51 1-based)


def _model(name):
    data = lampdata.read_reference(name)
    lamp = ReferenceLamp(**{f: getattr(data, f) for f in ("name", "path", "header", "flux", "coefficients",
                                                          "line_pixels", "line_wavelengths")},
                         solution=TruthSolution(data.degree, data.coefficients))
    return spectra.build_lamp_model(lamp, GAIN, n_phases=2), data


def _header(data, serial: int, parallel: int = 2) -> fits.Header:
    h = fits.Header([c for c in data.header.copy().cards if not c.keyword.startswith("GSP_")])  # own cards
    h["CCDSUM"] = f"{serial} {parallel}"
    h["GSP_TRIM"] = f"[{int(math.ceil(51 / serial))}:{int(4110 / serial)},2:{int(1896 / parallel)}]"
    return h


def render(name: str, serial: int, shift: float, seed: int = 5):
    """(flux, header, truth wavelength per column) of a lamp at serial binning `serial`."""
    model, data = _model(name)
    header = _header(data, serial)
    geo = FrameGeometry.from_header(header)
    n = int(4110 / serial) - int(math.ceil(51 / serial)) + 1
    j = np.arange(n, dtype=float)
    left = geo.column_to_x(j) - (serial - 1) / 2.0 - REF_START + shift  # reference x of the first unbinned pixel
    lo, hi = left - 0.5, left + serial - 0.5
    cont = np.interp(left + (serial - 1) / 2.0, np.arange(model.continuum.size), model.continuum) * serial
    electrons = model.scale * (model.lines.integrate(lo, hi) + cont) * 5.0  # five rows summed
    rng = np.random.default_rng(seed)
    adu = (rng.poisson(np.clip(electrons, 0, None)) + rng.normal(0.0, RDNOISE * np.sqrt(5.0), n)) / GAIN
    truth = chebyshev.chebval(left + (serial - 1) / 2.0, data.coefficients)
    return adu, header, truth


@pytest.mark.parametrize("lamp_b,science_b", [(1, 2), (2, 1), (1, 3), (3, 2), (2, 2)])
@pytest.mark.parametrize("name", ["400M2_GG455_HgArNe", "1200M5_GG455_HgArNe"])
def test_a_lamp_at_one_binning_calibrates_a_science_frame_at_another(name, lamp_b, science_b):
    flux, lamp_header, _ = render(name, lamp_b, shift=1.3)
    _, science_header, truth = render(name, science_b, shift=1.3, seed=9)
    solution = solve(flux, lamp_header)
    mapped = map_solution(solution, FrameGeometry.from_header(lamp_header), FrameGeometry.from_header(science_header),
                          truth.size)
    j = np.arange(truth.size)
    err = (mapped.wavelength(j) - truth) / mapped.dispersion(j)
    print(f"{name} lamp {lamp_b}x -> science {science_b}x: {solution.method}, rms vs truth "
          f"{np.sqrt(np.mean(err ** 2)):.4f} px, max {np.max(np.abs(err)):.4f} px (science px)")
    assert mapped.n_pixels == truth.size
    assert np.sqrt(np.mean(err ** 2)) < 0.05
    assert np.max(np.abs(err[20:-20])) < 0.15
    # the lines move to the science columns; the RMS is quoted in science pixels
    assert mapped.rms_pixels == pytest.approx(solution.rms_pixels * lamp_b / science_b)
    jl, wl_, _ = solution.lines[len(solution.lines) // 2]
    js = [line for line in mapped.lines if line[1] == wl_][0][0]
    assert mapped.wavelength(js) == pytest.approx(solution.wavelength(jl), abs=1e-6)


def test_same_geometry_is_left_alone():
    flux, header, _ = render("400M2_GG455_HgArNe", 2, shift=0.4)
    solution = solve(flux, header)
    geo = FrameGeometry.from_header(header)
    assert map_solution(solution, geo, geo, solution.n_pixels) is solution
    assert column_map(geo, geo) == (1.0, 0.0)


def test_geometry_from_headers():
    h = fits.Header({"CCDSUM": "1 2", "GSP_TRIM": "[51:4110,2:200]", "GSP_SLIT": "[1:4060,10:190]", "ROI": "x"})
    g = FrameGeometry.from_header(h)
    assert (g.serial, g.parallel, g.x0) == (1, 2, 50.0)
    # row 0 of the reduced frame starts (1 + 9) binned rows into a 200-row window,
    # taken to be centred on the 4096 detector rows without a PG5_6 card
    assert g.y0 == pytest.approx(10 * 2 + (4096 - 2 * 200) / 2.0)
    h["PG5_6"] = 1800  # the real ZZ Ceti window's 'Parallel Origin'
    assert FrameGeometry.from_header(h).y0 == 1800 + 20
    assert float(g.x_to_column(g.column_to_x(17.25))) == pytest.approx(17.25)
    assert float(g.y_to_row(g.row_to_y(3.5))) == pytest.approx(3.5)
    two = FrameGeometry.from_header(fits.Header({"CCDSUM": "2 2", "GSP_TRIM": "[26:2055,2:948]"}))
    a, c = column_map(g, two)  # 2x2 column j covers unbinned 50+2j, 51+2j: centre 50.5 + 2j
    assert (a, c) == (2.0, 0.5)


def test_lamp_is_summed_under_the_science_trace_at_another_binning():
    """A tilted-free lamp frame whose rows carry a marker: the row summed is the science
    trace's row carried through unbinned detector rows."""
    rows_l, cols_l = 180, 400  # lamp: 1x1, 180 rows
    rows_s = 90  # science: 2x2 over the same window
    lamp = np.zeros((rows_l, cols_l))
    lamp[100:104, :] = 1.0  # unbinned rows 100..103 of the window
    lamp_h = fits.Header({"CCDSUM": "1 1", "GSP_TRIM": f"[51:{50 + cols_l},2:{rows_l + 1}]"})
    sci_h = fits.Header({"CCDSUM": "2 2", "GSP_TRIM": f"[26:{25 + cols_l // 2},2:{rows_s + 1}]"})
    # both windows centred on the same detector rows: science row 49.5 is lamp row ~100
    trace = Trace(coefficients=(49.5,), rms=0.0, col_min=0, col_max=cols_l // 2 - 1, fwhm=2.0)
    flux, notes = lamp_spectrum_for(lamp, lamp_h, sci_h, trace, 1.0)
    assert flux.shape == (cols_l,)
    assert np.allclose(flux, flux[0]) and flux[0] > 1.5  # the marker rows are inside the aperture
    assert any("binning" in n for n in notes)
    same, none = lamp_spectrum_for(lamp, lamp_h, lamp_h, trace, 1.0)
    assert np.array_equal(same, lamp_spectrum(lamp, trace, 1.0)) and none == []


# ------------------------------------------------------------------------------ real Fe arcs


def _real_blue_arcs():
    """(flux, header) of the 930 'blue' Fe arcs (1x2), from ../shared or the committed fixture."""
    from .test_core_wavelength import _real_lamps

    return [(flux, header) for name, flux, header in _real_lamps() if "blue" in name]


def _as_2x2(flux, header):
    """The same optics read out with serial binning 2: pairs of columns summed, 2x2 trim."""
    h = header.copy()
    h["CCDSUM"] = "2 2"
    h["SLIT"] = '1.0" long slit'
    h["GSP_TRIM"] = "[26:2055,2:100]"
    return flux[0::2] + flux[1::2], h


@pytest.mark.parametrize("which", ["same arc", "another arc"])
def test_real_1x2_fe_arc_calibrates_a_2x2_frame_of_the_same_setup(which):
    """Against the NIST lines the 2x2 spectrum's own solution identifies: the same arc
    binned must agree to the mapping's precision; another arc of the afternoon (taken
    minutes apart) may differ by the flexure between the two, which the sky lines of a
    science frame would measure."""
    arcs = _real_blue_arcs()
    lamp_flux, lamp_header = arcs[0]
    binned, science_header = _as_2x2(*(arcs[0] if which == "same arc" else arcs[-1]))
    lamp = solve(lamp_flux, lamp_header)
    mapped = map_solution(lamp, FrameGeometry.from_header(lamp_header), FrameGeometry.from_header(science_header),
                          binned.size)
    direct = solve(binned, science_header)  # the 2x2 spectrum's own solution: its lines and their NIST wavelengths
    j = np.array([line[0] for line in direct.lines])
    nist = np.array([line[1] for line in direct.lines])
    resid = (mapped.wavelength(j) - nist) / mapped.dispersion(j)
    rms = float(np.sqrt(np.mean(resid ** 2)))
    print(f"{which}: 1x2 arc ({lamp.n_lines} lines, {lamp.rms_angstrom:.3f} A) mapped to 2x2: {j.size} NIST lines "
          f"of the 2x2 spectrum at rms {rms:.3f} px, median {np.median(resid):+.3f} px")
    assert j.size >= 15
    assert rms < 0.1
    assert abs(np.median(resid)) < (0.02 if which == "same arc" else 0.1)
