"""functions/core/spectra.py: from a reduced frame to 1-D products, on simulated frames.

Frames are reduced with overscan + trim only, so reduced column j is raw column j + 25
and the simulator's truth applies directly (see tests/test_core_extract.py)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from functions.core.masters import camera_binning
from functions.core.reduce import Calibrations, ReductionSettings, reduce_frame
from functions.core.plot import spectrum_png
from functions.core.spectra import calibrated_fits, extract_targets, extracted_fits, lamp_spectrum, trace_from_summary
from infra.simulator import geometry, make_night, render_frame
from infra.simulator.truth import frame_truth

SETTINGS = ReductionSettings(ignore_bias=True, ignore_flats=True, cosmic_ray_rejection="none")


def _reduce(plan, frame_plan):
    raw, header = render_frame(plan, frame_plan)
    cam, binning = camera_binning(header)
    frame, _ = reduce_frame(raw, header, frame_plan.obstype, cam, binning, Calibrations(), SETTINGS)
    return frame


@pytest.fixture(scope="module")
def night():
    plan = make_night(seed=1)
    sci = next(f for f in plan.frames if f.kind == "science")
    comp = next(f for f in plan.frames if f.kind == "comp")
    return {"plan": plan, "sci_plan": sci, "sci": _reduce(plan, sci), "comp_plan": comp, "comp": _reduce(plan, comp)}


@pytest.fixture(scope="module")
def extracted(night):
    frame = night["sci"]
    spectra, notes = extract_targets(frame.data, frame.mask, frame.header, SETTINGS)
    return spectra, notes


def test_every_target_is_extracted_over_every_column(night, extracted):
    spectra, notes = extracted
    assert notes == [] and len(spectra) == 1
    ts = spectra[0]
    ncols = night["sci"].data.shape[1]
    assert ts.number == 1 and ts.spectrum.flux.shape == (ncols,) and ts.spectrum.variance.shape == (ncols,)
    assert np.all(np.isfinite(ts.spectrum.flux)) and np.all(ts.spectrum.variance > 0)
    true_row = night["sci_plan"].trace.row(ncols / 2 + geometry.FIRST_LIT_COL) - 1.0
    assert abs(ts.target.center - true_row) < 0.2
    summary = ts.summary()
    assert summary["extraction"] == "fractional" and summary["median_snr"] > 20
    rebuilt = trace_from_summary(summary)
    cols = np.arange(ncols)
    assert np.allclose(rebuilt.center(cols), ts.trace.center(cols))


def test_no_target_is_said_not_hidden(night):
    rng = np.random.default_rng(3)
    noise = rng.normal(100.0, 5.0, size=(200, 600))
    spectra, notes = extract_targets(noise, None, fits.Header({"GAIN": 1.48, "RDNOISE": 3.89}), SETTINGS)
    assert spectra == [] and "no target" in notes[0]


def test_the_lamp_is_summed_over_the_science_aperture_without_sky(night, extracted):
    ts = extracted[0][0]
    lamp = night["comp"].data
    before = lamp.copy()
    flux = lamp_spectrum(lamp, ts.trace, ts.spectrum.aperture)
    assert np.array_equal(lamp, before)
    # a lamp that is 1 ADU everywhere sums to the aperture's full width in every column
    ones = lamp_spectrum(np.ones_like(lamp), ts.trace, ts.spectrum.aperture)
    assert np.allclose(ones, 2 * ts.spectrum.aperture)
    # the brightest lamp line stands out far above the continuum
    assert flux.max() > 20 * np.median(flux)


def test_extracted_product_keeps_the_trace_and_the_variance(night, extracted):
    ts = extracted[0][0]
    with fits.open(io.BytesIO(extracted_fits(ts, night["sci"].header))) as hdul:
        assert hdul[0].data.shape == ts.spectrum.flux.shape and hdul["VAR"].data.shape == ts.spectrum.flux.shape
        h = hdul[0].header
        assert h["NAXIS"] == 1 and h["BUNIT"] == "adu" and h["GSP_EXTR"] == "fractional"
        assert h["GSP_TRC0"] == pytest.approx(ts.trace.coefficients[0])
        assert h["OBJECT"] == night["sci"].header["OBJECT"] and "NAXIS2" not in h


def test_calibrated_product_opens_in_specutils_with_the_right_wavelengths(night, extracted):
    from functions.core.wavelength import solve

    ts = extracted[0][0]
    lamp_flux = lamp_spectrum(night["comp"].data, ts.trace, ts.spectrum.aperture)
    solution = solve(lamp_flux, night["comp"].header, SETTINGS)
    body, wl, fl = calibrated_fits(ts.spectrum.flux, ts.spectrum.variance, night["sci"].header, solution,
                                   "0021_comp.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from specutils import Spectrum1D

        path = io.BytesIO(body)
        spec = Spectrum1D.read(path, format="wcs1d-fits")
    axis = spec.spectral_axis.to_value("Angstrom")
    assert np.allclose(axis, wl, atol=1e-3)
    assert str(spec.flux.unit) == "adu" and spec.uncertainty is not None
    # the linear grid spans the solution's range, and the resampling keeps the flux
    j = np.arange(ts.spectrum.flux.size)
    assert axis[0] == pytest.approx(solution.wavelength(j[0]), abs=abs(axis[1] - axis[0]))
    assert axis[-1] == pytest.approx(solution.wavelength(j[-1]), abs=abs(axis[1] - axis[0]))
    assert np.nansum(fl) == pytest.approx(np.nansum(ts.spectrum.flux), rel=0.01)
    # the wavelengths agree with the simulator's truth for this frame at the target's row
    truth = frame_truth(night["plan"], night["sci_plan"])["wavelength_solution"]
    raw_cols = j + geometry.FIRST_LIT_COL
    true_wl = np.polynomial.chebyshev.chebval(
        geometry.column_to_x(raw_cols, truth["shift"]), truth["coefficients"])
    lamp_shift = night["comp_plan"].shift
    lamp_wl = np.polynomial.chebyshev.chebval(geometry.column_to_x(raw_cols, lamp_shift), truth["coefficients"])
    # calibrated with the lamp: exact to the lamp's own position (the science frame has
    # moved by the flexure between the two exposures, which only sky lines could tell)
    disp = np.abs(np.gradient(lamp_wl))
    assert np.sqrt(np.mean(((solution.wavelength(j) - lamp_wl) / disp) ** 2)) < 0.05
    assert np.abs(solution.wavelength(j) - true_wl).max() < 3.0
    header = fits.getheader(io.BytesIO(body))
    assert header["GSP_FUNC"] == "Chebyshev1D" and header["GSP_LAMP"] == "0021_comp.fits"
    assert header["CTYPE1"] == "WAVE" and header["CUNIT1"] == "Angstrom"


def test_spectrum_plot_is_a_png_with_round_ticks():
    from PIL import Image

    from functions.core.plot import nice_ticks

    png = spectrum_png(np.linspace(4000, 7000, 4000), np.sin(np.linspace(0, 9, 4000)), "test", lines=(5000.0,))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size == (1000, 360)
    assert nice_ticks(4965.9, 8970.0) == [5000.0, 6000.0, 7000.0, 8000.0]
    assert nice_ticks(4965.9, 8970.0, 12) == [5000.0 + 500 * k for k in range(8)]
    assert nice_ticks(-0.3, 1.1, 5) == [0.0, 0.5, 1.0] and str(nice_ticks(-0.3, 1.1, 5)[0]) == "0.0"
    assert nice_ticks(1.0, 1.0) == []
    with pytest.raises(ValueError):
        spectrum_png(np.arange(3), np.arange(4), "mismatch")


def _truth_wavelengths(plan, frame_plan, ncols):
    truth = frame_truth(plan, frame_plan)["wavelength_solution"]
    raw_cols = np.arange(ncols) + geometry.FIRST_LIT_COL
    return np.polynomial.chebyshev.chebval(geometry.column_to_x(raw_cols, truth["shift"]), truth["coefficients"])


def test_sky_lines_correct_the_flexure_between_lamp_and_science(night):
    """Every science frame of the night against the lamp nearest in time: the lamp's
    solution alone is off by the flexure; moved by the sky lines it is not."""
    from dataclasses import replace

    from functions.core.flexure import measure_flexure, shifted_coefficients
    from functions.core.wavelength import solve

    plan = night["plan"]
    lamps = {f.filename: (f, _reduce(plan, f)) for f in plan.frames if f.kind == "comp"}
    rows = []
    for sci_plan in (f for f in plan.frames if f.kind == "science"):
        sci = _reduce(plan, sci_plan)
        (ts,), _ = extract_targets(sci.data, sci.mask, sci.header, SETTINGS)
        lamp_plan, lamp = min(lamps.values(), key=lambda fl: abs((fl[0].start - sci_plan.start).total_seconds()))
        solution = solve(lamp_spectrum(lamp.data, ts.trace, ts.spectrum.aperture), lamp.header, SETTINGS)
        flex = measure_flexure(ts.spectrum.sky, solution, 2)
        assert flex is not None and len(flex.lines) >= 5, flex
        moved = replace(solution, coefficients=shifted_coefficients(solution.coefficients, flex.shift))
        j = np.arange(sci.data.shape[1])
        true = _truth_wavelengths(plan, sci_plan, j.size)
        disp = np.abs(np.gradient(true))
        before = np.sqrt(np.mean(((solution.wavelength(j) - true) / disp) ** 2))
        after = np.sqrt(np.mean(((moved.wavelength(j) - true) / disp) ** 2))
        # a larger simulator shift puts a wavelength at a smaller column (x = 2c + shift + ...)
        true_flex = -(sci_plan.shift - lamp_plan.shift) / 2.0  # unbinned -> binned px
        rows.append((sci_plan.filename, true_flex, flex.shift, before, after))
        assert flex.shift == pytest.approx(true_flex, abs=0.02)
        assert after < 0.03
    for name, true_flex, measured, before, after in rows:
        print(f"{name}: flexure true {true_flex:+.4f} px, measured {measured:+.4f} px; "
              f"rms vs truth {before:.4f} px -> {after:.4f} px")


def test_moving_a_solution_moves_every_wavelength():
    from functions.core.flexure import shifted_coefficients

    c = (6900.0, 2000.0 / 2, -3.0, 0.4)
    j = np.linspace(0, 2029, 50)
    moved = shifted_coefficients(c, 0.37)
    assert np.allclose(np.polynomial.chebyshev.chebval(j, moved), np.polynomial.chebyshev.chebval(j - 0.37, c))


def test_a_column_with_no_good_pixel_is_bridged_and_masked_not_zero(night, extracted):
    """A cosmic ray across the whole aperture leaves a column without flux: the
    calibrated spectrum must not show it as an absorption line."""
    from functions.core.wavelength import solve

    ts = extracted[0][0]
    lamp_flux = lamp_spectrum(night["comp"].data, ts.trace, ts.spectrum.aperture)
    solution = solve(lamp_flux, night["comp"].header, SETTINGS)
    flux, var = ts.spectrum.flux.copy(), ts.spectrum.variance.copy()
    flux[900] = var[900] = np.nan
    body, wl, fl = calibrated_fits(flux, var, night["sci"].header, solution, "lamp.fits")
    with fits.open(io.BytesIO(body)) as hdul:
        mask = hdul["MASK"].data.astype(bool)
    at = (solution.wavelength(900) - wl[0]) / (wl[1] - wl[0])  # where column 900 lands on the linear grid
    assert 1 <= mask.sum() <= 3 and abs(np.flatnonzero(mask).mean() - at) < 1
    k = int(round(at))
    near = fl[k - 5:k + 6][~mask[k - 5:k + 6]]
    assert fl[mask].min() > 0.8 * near.min() and np.all(np.isfinite(fl))
    clean, _, _ = calibrated_fits(ts.spectrum.flux, ts.spectrum.variance, night["sci"].header, solution, "lamp.fits")
    with fits.open(io.BytesIO(clean)) as hdul:
        assert "MASK" not in hdul
