"""Physical simulated nights: a spectrophotometric standard and science targets in absolute flux.

What a flux-calibration test rests on, checked on the simulator alone: the standard is the
catalogued star where the catalogue puts it, at an airmass well apart from the science; what
lands on the detector is what the one instrument model says; a calibration built from the
standard frame alone gives back the science target's input spectrum; and nights without a
standard are not touched.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from infra.simulator import geometry, load_reference_lamp, make_night, render_frame, spectra, standards, truth_dict
from infra.simulator.frames import expected_electrons
from infra.simulator.headers import _parse_sexagesimal, frame_airmass
from infra.simulator.plan import PHYSICAL_TARGETS, STANDARD_PEAK_ADU

#: Pins the default night's rendering: sha256 over make_night(seed=1)'s frames in order,
#: of their pixel bytes and of their header text, computed with the code as it was before
#: physical nights existed. A night without `standard` must render exactly as before.
DEFAULT_NIGHT_DATA_SHA256 = "c0f18b49c14d41455521b16710f05b85c67cee4821920fa8fc24ad38279245b2"
DEFAULT_NIGHT_HEADERS_SHA256 = "ef38fdbb80bd37ef9153e48b3d16eae0972bb15921d7ace490edc9028a7db6ec"
#: LTT 3218 as esofil_info.txt lists it.
LTT3218_RA, LTT3218_DEC = "08:41:32.37", "-32:56:32.9"


@pytest.fixture(scope="module")
def night():
    """The smallest physical night: the standard, a lamp, one science frame, rendered."""
    plan = make_night(seed=1, n_bias=0, n_flat=0, n_comp=1, n_science=1, standard="LTT3218")
    truth = truth_dict(plan)
    frames = {f.filename: f for f in plan.frames}
    out = {"plan": plan, "truth": truth}
    for t in truth["frames"]:
        if t["kind"] == "science":
            data, header = render_frame(plan, frames[t["name"]])
            out["standard" if t["standard"] else "science"] = {
                "plan": frames[t["name"]], "truth": t, "data": data, "header": header}
    return out


def _extract(plan, frame):
    """(wavelength, electrons/s/A) along the trace of `frame`'s noiseless expectation: the rows
    within 4 FWHM of the trace summed, the median of rows 6-16 FWHM away as the sky."""
    e = expected_electrons(plan, frame)
    geom = frame.geometry
    cols = geom.lit_columns()
    centre = frame.trace.row(cols)
    d = np.abs(np.arange(geom.n_rows)[:, None] - centre[None, :])
    fwhm = frame.trace.fwhm
    aperture, sky = d <= 4 * fwhm, (d >= 6 * fwhm) & (d <= 16 * fwhm)
    light = e[:, cols]
    background = np.array([np.median(light[sky[:, i], i]) for i in range(cols.size)])
    total = (light * aperture).sum(axis=0) - background * aperture.sum(axis=0)
    sol = load_reference_lamp(plan.lamp).solution
    x = geom.column_to_x(cols, frame.shift, centre, plan.tilt)
    return sol.wavelength(x), total / frame.exptime / (sol.dispersion(x) * geom.sb)


def _model_rate(plan, frame_truth, wavelength):
    ref = load_reference_lamp(plan.lamp)
    flux = spectra.input_flux(frame_truth["flux_model"], wavelength)
    return spectra.electron_rate(flux, wavelength, frame_truth["airmass"], ref.solution, str(ref.header["FILTER2"]))


def test_a_physical_night_has_the_standard_first_then_lamp_and_science(night):
    frames = night["truth"]["frames"]
    assert [(f["obstype"], f["object"]) for f in frames] == [
        ("OBJECT", "LTT3218"), ("COMP", "HgArNe"), ("OBJECT", PHYSICAL_TARGETS[0].name)]
    assert night["truth"]["flux_calibration"]["standard"] == "LTT3218"
    assert night["standard"]["truth"]["flux_model"] == {"kind": "table", "standard": "LTT3218"}
    assert night["science"]["truth"]["flux_model"]["kind"] == "blackbody"


def test_the_standard_is_at_its_catalogue_position(night):
    h = night["standard"]["header"]
    assert (h["OBJECT"], h["OBSTYPE"]) == ("LTT3218", "OBJECT")
    for key, text in (("RA", LTT3218_RA), ("OBSRA", LTT3218_RA), ("DEC", LTT3218_DEC), ("OBSDEC", LTT3218_DEC)):
        assert _parse_sexagesimal(h[key]) == pytest.approx(_parse_sexagesimal(text), abs=1e-9), key


def test_the_science_targets_are_not_standards():
    catalogue = standards.catalogue()
    for t in PHYSICAL_TARGETS:
        assert t.name not in catalogue
        ra, dec = np.radians(_parse_sexagesimal(t.ra) * 15.0), np.radians(_parse_sexagesimal(t.dec))
        for s in catalogue.values():
            sra, sdec = np.radians(_parse_sexagesimal(s.ra) * 15.0), np.radians(_parse_sexagesimal(s.dec))
            cos_sep = np.sin(dec) * np.sin(sdec) + np.cos(dec) * np.cos(sdec) * np.cos(ra - sra)
            assert np.degrees(np.arccos(cos_sep)) > 10.0, (t.name, s.name)


def test_standard_and_science_airmasses_differ_and_are_recorded(night):
    std, sci = night["standard"], night["science"]
    for part in (std, sci):
        assert part["truth"]["airmass"] == part["header"]["AIRMASS"]
    assert abs(std["header"]["AIRMASS"] - sci["header"]["AIRMASS"]) >= 0.2


@pytest.mark.parametrize("part", ["standard", "science"])
def test_the_detected_electrons_follow_the_instrument_model(night, part):
    """Summed along the trace, divided by exptime and the pixel's width in angstrom: the model's
    e-/s/A within 2 % (pixel response and the slit illumination are the difference)."""
    frame = night[part]["plan"]
    wavelength, rate = _extract(night["plan"], frame)
    model = _model_rate(night["plan"], night[part]["truth"], wavelength)
    for lam in (5200.0, 6000.0, 7000.0, 8000.0, 8800.0):
        i = int(np.argmin(np.abs(wavelength - lam)))
        window = slice(i - 5, i + 6)  # a few columns: the pixel response averages out
        assert np.median(rate[window] / model[window]) == pytest.approx(1.0, abs=0.02), lam


def test_the_model_holds_at_another_binning():
    """The rate per angstrom does not depend on the pixel: at 1x1 each pixel is half as wide."""
    plan = make_night(seed=1, n_bias=0, n_flat=0, n_comp=0, n_science=0, standard="LTT3218", binning=(1, 1))
    frame = plan.frames[0]
    wavelength, rate = _extract(plan, frame)
    recorded = {"flux_model": frame.target.flux_model, "airmass": frame_airmass(plan, frame)}
    assert np.median(rate / _model_rate(plan, recorded, wavelength)) == pytest.approx(1.0, abs=0.01)


def test_the_standard_is_well_exposed_and_far_from_saturation(night):
    std = night["standard"]
    peak = std["data"].max() - std["plan"].bias_level
    assert 0.5 * STANDARD_PEAK_ADU < peak < 1.1 * STANDARD_PEAK_ADU < 0.5 * geometry.SATURATION
    assert np.count_nonzero(std["data"] >= geometry.SATURATION) == 0
    assert std["header"]["EXPTIME"] == std["plan"].exptime > 1.0


def test_a_calibration_from_the_standard_gives_back_the_science_input_flux(night):
    """Sensitivity = the standard's e-/s/A over its tabulated flux extinguished at its airmass;
    the science target's e-/s/A through it, corrected to above the atmosphere at its own
    airmass, is its input spectrum (median within 1 %, 95 % of the columns within 3 %)."""
    plan = night["plan"]
    std, sci = night["standard"], night["science"]
    lam_s, rate_s = _extract(plan, std["plan"])
    lam_c, rate_c = _extract(plan, sci["plan"])

    def above_atmosphere(lam, airmass):
        return 10.0 ** (0.4 * standards.extinction(lam) * airmass)

    sensitivity = rate_s * above_atmosphere(lam_s, std["truth"]["airmass"]) / spectra.input_flux(
        std["truth"]["flux_model"], lam_s)
    flux = rate_c / np.interp(lam_c, lam_s, sensitivity) * above_atmosphere(lam_c, sci["truth"]["airmass"])
    ratio = flux / spectra.input_flux(sci["truth"]["flux_model"], lam_c)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(ratio - 1.0) < 0.03) > 0.95


def test_input_flux_evaluates_the_recorded_models():
    wavelength, flux = standards.table("LTT3218")
    assert spectra.input_flux({"kind": "table", "standard": "LTT3218"}, wavelength) == pytest.approx(flux, rel=1e-12)
    assert flux[wavelength == 5500.0] == pytest.approx(0.66511e-13, rel=1e-9)  # the table's 0.66511E+03 x 1e-16
    assert np.isnan(spectra.input_flux({"kind": "table", "standard": "LTT3218"}, 12000.0))
    model = PHYSICAL_TARGETS[1].flux_model
    assert spectra.input_flux(model, 5500.0) == pytest.approx(model["flux_5500"], rel=1e-9)
    continuum = {**model, "halpha_depth": 0.0}
    ratio = spectra.input_flux(model, spectra.H_ALPHA) / spectra.input_flux(continuum, spectra.H_ALPHA)
    assert ratio == pytest.approx(1.0 - model["halpha_depth"])
    with pytest.raises(ValueError):
        spectra.input_flux({"kind": "powerlaw"}, 5500.0)


def test_an_unknown_standard_is_refused():
    with pytest.raises(ValueError, match="not a standard"):
        make_night(n_bias=0, n_flat=0, standard="Vega")


def test_nights_without_a_standard_are_not_physical():
    plan = make_night(n_bias=0, n_flat=0)
    assert not plan.physical
    truth = truth_dict(plan)
    assert "flux_calibration" not in truth
    assert all("flux_model" not in f and "airmass" not in f for f in truth["frames"])


def test_the_default_night_renders_as_before():
    plan = make_night(seed=1)
    data, headers = hashlib.sha256(), hashlib.sha256()
    for frame in plan.frames:
        pixels, header = render_frame(plan, frame)
        data.update(pixels.tobytes())
        headers.update(header.tostring().encode())
    assert data.hexdigest() == DEFAULT_NIGHT_DATA_SHA256
    assert headers.hexdigest() == DEFAULT_NIGHT_HEADERS_SHA256
