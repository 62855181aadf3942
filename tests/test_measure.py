"""The API's measurements in pure Python (golive_data/fitsread, linefit, imexam,
lsq), checked against numpy, astropy and scipy as the truth: FITS pixels and headers
as astropy reads them, line fits as scipy's curve_fit finds them and with errors that
match the scatter of simulated noise, imexam on simulated stars and traces."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.optimize import curve_fit
from scipy.special import voigt_profile

from golive_data.fitsread import FitsError, find_hdu, linear_axis, read_hdus
from golive_data.imexam import ImexamError, examine
from golive_data.linefit import LineFitError, fit_line, fit_spectrum, redshift
from golive_data.lsq import SingularMatrix, invert
from tests.conftest import FIXTURES, ROOT, SHARED_REAL

FOUR_LN2 = 4 * math.log(2)


def _fits_bytes(*hdus) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(buf)
    return buf.getvalue()


def _astropy_hdus(raw: bytes):
    return fits.open(io.BytesIO(raw), do_not_scale_image_data=False)


def _same_pixels(ours, theirs) -> None:
    """Every pixel of our HDU equals astropy's: values, each row, each column, pixels."""
    data = np.asarray(theirs.data, dtype=float)
    assert ours.shape == data.shape
    np.testing.assert_array_equal(np.array(ours.values()).reshape(data.shape), data)
    if data.ndim == 2:
        ny, nx = data.shape
        for y in range(ny):
            np.testing.assert_array_equal(ours.row(y), data[y])
        for x in range(nx):
            np.testing.assert_array_equal(ours.column(x), data[:, x])
        for x, y in [(0, 0), (nx - 1, ny - 1), (nx // 2, ny // 3)]:
            assert ours.pixel(x, y) == data[y, x]


# ---- fitsread ---------------------------------------------------------------------

INTEGER_RANGES = {np.uint8: (0, 255), np.int8: (-128, 127), np.int16: (-32768, 32767), np.uint16: (0, 65535),
                  np.int32: (-2 ** 31, 2 ** 31 - 1), np.uint32: (0, 2 ** 32 - 1), np.int64: (-2 ** 52, 2 ** 52)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int16, np.int32, np.uint32,
                                   np.uint8, np.int8, np.int64])
def test_pixels_match_astropy_for_every_bitpix(dtype):
    rng = np.random.default_rng(1)
    if np.issubdtype(dtype, np.floating):
        data = rng.normal(1000, 300, (37, 53)).astype(dtype)
        data[3, 4] = np.nan
    else:
        lo, hi = INTEGER_RANGES[dtype]
        data = rng.integers(lo, hi, (37, 53), endpoint=True).astype(dtype)
        data[0, 0], data[1, 1] = lo, hi
    raw = _fits_bytes(fits.PrimaryHDU(data),
                      fits.ImageHDU(rng.normal(size=(37, 53)).astype(np.float32), name="VAR"),
                      fits.ImageHDU(rng.normal(size=53), name="SKY"),
                      fits.ImageHDU(rng.integers(0, 2, (37, 53)).astype(np.uint8), name="MASK"))
    ours = read_hdus(raw)
    theirs = _astropy_hdus(raw)
    assert [h.name for h in ours] == ["PRIMARY", "VAR", "SKY", "MASK"]
    assert find_hdu(ours, "var") is ours[1]
    for mine, astropy_hdu in zip(ours, theirs):
        assert mine.bitpix == astropy_hdu.header["BITPIX"]
        _same_pixels(mine, astropy_hdu)
    unscaled = fits.open(io.BytesIO(raw), do_not_scale_image_data=True)[0].header
    assert ours[0].header.get("BZERO") == unscaled.get("BZERO")


def test_blank_integers_are_nan_and_scaling_applies():
    raw_ints = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    hdu = fits.PrimaryHDU(raw_ints)
    hdu.header["BLANK"] = -5
    hdu.header["BSCALE"] = 2.5
    hdu.header["BZERO"] = 10.0
    buf = io.BytesIO()
    hdu.writeto(buf)
    raw = buf.getvalue()
    ours = read_hdus(raw)[0]
    expected = raw_ints * 2.5 + 10.0
    expected[raw_ints == -5] = np.nan
    np.testing.assert_array_equal(np.array(ours.values()).reshape(3, 4), expected)
    np.testing.assert_array_equal(ours.row(0), expected[0])
    np.testing.assert_array_equal(ours.column(1), expected[:, 1])
    assert math.isnan(ours.pixel(1, 0)) and ours.pixel(2, 0) == expected[0, 2]


def test_header_values_match_astropy():
    header = fits.Header()
    header["OBJECT"] = "O'Brien's star"
    header["EMPTY"] = ""
    header["SPACES"] = "  lead"
    header["FLAG"] = True
    header["NOFLAG"] = False
    header["EXPTIME"] = (30.5, "seconds")
    header["TINY"] = -1.5e-20
    header["COUNT"] = 42
    header["LONGSTR"] = "a long value, with 'quotes' " * 8
    header["UNDEF"] = None
    header["HIERARCH ESO DET CHIP NAME"] = "e2v"
    header.append(fits.Card.fromstring("DEXP    =             1.25D+03 / a D exponent"))
    header.append(fits.Card.fromstring("DNEG    =            -2.5D-02"))
    header["COMMENT"] = "first comment"
    header["HISTORY"] = "reduced"
    header["HISTORY"] = "again"
    raw = _fits_bytes(fits.PrimaryHDU(np.zeros((2, 3), np.float32), header=header))
    assert b"1.25D+03" in raw and b"CONTINUE" in raw
    ours = read_hdus(raw)[0].header
    theirs = _astropy_hdus(raw)[0].header
    for key in theirs:
        if key in ("COMMENT", "HISTORY", ""):
            assert ours[key] == [str(v) for v in theirs[key]], key
        elif theirs[key] is None or isinstance(theirs[key], fits.card.Undefined):
            assert ours[key] is None, key
        else:
            assert ours[key] == theirs[key] and type(ours[key]) is type(theirs[key]), key
    assert ours["dexp"] == 1250.0 and ours["DNEG"] == -0.025
    assert ours.get("object") == "O'Brien's star" and ours.get("missing", "x") == "x"
    assert ours.comment("EXPTIME") == "seconds"
    assert "exptime" in ours and "MISSING" not in ours


def test_linear_axis_matches_astropy_wcs():
    for cards in ({"CRVAL1": 3500.0, "CDELT1": 0.65, "CRPIX1": 12.5},
                  {"CRVAL1": 6000.0, "CD1_1": -1.2, "CRPIX1": 1.0},
                  {"CRVAL1": 4000.0, "CDELT1": 2.0}):
        hdu = fits.ImageHDU(np.zeros(100, np.float32), name="SPEC")
        hdu.header.update(cards)
        hdu.header["CTYPE1"] = "WAVE"
        raw = _fits_bytes(fits.PrimaryHDU(), hdu)
        ours = read_hdus(raw)[1]
        assert ours.shape == (100,)
        truth = WCS(_astropy_hdus(raw)[1].header).pixel_to_world_values(np.arange(100))
        np.testing.assert_allclose(linear_axis(ours.header, 100), truth, rtol=0, atol=1e-9)
    assert linear_axis({}, 3) == [0.0, 1.0, 2.0]


def _two_block_file() -> bytes:
    return _fits_bytes(fits.PrimaryHDU(np.arange(3000, dtype=np.float32).reshape(30, 100)),
                       fits.ImageHDU(np.ones((4, 4)), name="VAR"))


@pytest.mark.parametrize("cut, match", [
    (lambda raw: b"", "not a FITS file"),
    (lambda raw: b"GIF89a" + bytes(5000), "not a FITS file"),
    (lambda raw: raw[:2000], "no END card"),
    (lambda raw: raw[:2880 + 5000], "truncated: HDU 0"),
    (lambda raw: raw[:2880 * 6 + 100], "HDU 1 has no END card"),
    (lambda raw: raw[:-2880], "truncated: HDU 1"),
])
def test_truncated_or_foreign_bytes_raise_fits_error(cut, match):
    with pytest.raises(FitsError, match=match):
        read_hdus(cut(_two_block_file()))
    assert issubclass(FitsError, ValueError)


def test_rows_need_an_image_and_indices_in_range():
    hdus = read_hdus(_fits_bytes(fits.PrimaryHDU(), fits.ImageHDU(np.ones(5), name="SPEC"),
                                 fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])], name="TAB")))
    with pytest.raises(FitsError, match="2-D"):
        hdus[1].row(0)
    with pytest.raises(FitsError, match="not an image"):
        hdus[2].values()
    assert hdus[0].shape == () and hdus[0].values() == []
    image = read_hdus(_two_block_file())[0]
    with pytest.raises(IndexError):
        image.row(30)
    with pytest.raises(IndexError):
        image.pixel(100, 0)
    assert image.row_slice(2, 95, 200) == [295.0, 296.0, 297.0, 298.0, 299.0]


def _real_files():
    files = sorted(FIXTURES.glob("real/*.fits"))
    for name in ("quickreduce_testdata/0129_feige110.fits", "jsreding_930_20180203/0274_Fe_ZZCeti_930_blue_long.fits"):
        if (SHARED_REAL / name).exists():
            files.append(SHARED_REAL / name)
    return files


@pytest.mark.parametrize("path", _real_files(), ids=lambda p: p.name)
def test_real_files_match_astropy_pixel_by_pixel(path):
    raw = path.read_bytes()
    ours = read_hdus(raw)
    theirs = _astropy_hdus(raw)
    assert len(ours) == len(theirs)
    for mine, astropy_hdu in zip(ours, theirs):
        assert mine.name == (astropy_hdu.name if mine.index else "PRIMARY")
        for key, value in astropy_hdu.header.items():
            if key not in ("COMMENT", "HISTORY", "") and not isinstance(value, fits.card.Undefined):
                assert mine.header[key] == value, (path.name, key)
        if astropy_hdu.data is not None:
            _same_pixels(mine, astropy_hdu)


# ---- linefit ----------------------------------------------------------------------

CENTRE, SIGMA, DEPTH = 6563.3, 2.5, 400.0
WINDOW = (6515.0, 6615.0)


def _continuum(x):
    return 1000.0 + 0.8 * (x - 6563.0)


def _absorption(seed, amplitude=-DEPTH, x=None):
    """A Gaussian line on a sloped continuum, counts with Poisson-like noise and its variance."""
    x = np.arange(6450.0, 6700.0, 0.5) if x is None else x
    truth = _continuum(x) + amplitude * np.exp(-0.5 * ((x - CENTRE) / SIGMA) ** 2)
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(truth))
    return x, truth + noise, truth.copy()


def test_absorption_line_centre_width_and_equivalent_width():
    x, y, var = _absorption(seed=7)
    xs, ys, vs = list(x), list(y), list(var)
    t = time.perf_counter()
    fit = fit_line(xs, ys, vs, WINDOW)
    took = time.perf_counter() - t
    print(f"linefit of {fit.n_points} points: {took * 1000:.1f} ms")
    assert (xs, ys, vs) == (list(x), list(y), list(var))       # its input is left as it was
    assert fit.kind == "absorption" and fit.converged and fit.n_points == 201
    assert abs(fit.centre - CENTRE) < 0.2
    assert abs(fit.fwhm / (SIGMA * math.sqrt(8 * math.log(2))) - 1) < 0.10
    assert fit.flux < 0 < fit.equivalent_width
    fine = np.linspace(6450, 6700, 200001)
    true_ew = np.trapezoid(DEPTH * np.exp(-0.5 * ((fine - CENTRE) / SIGMA) ** 2) / _continuum(fine), fine)
    assert abs(fit.equivalent_width - true_ew) < 3 * fit.equivalent_width_error
    assert 0 < fit.equivalent_width_error < 0.1 * true_ew
    assert abs(fit.continuum - _continuum(CENTRE)) < 3 * fit.continuum_error
    assert abs(fit.slope - 0.8) < 3 * fit.slope_error
    assert 0.7 < fit.chi2_reduced < 1.4 and not fit.variance_estimated
    assert len(fit.curve["x"]) == len(fit.curve["y"]) == 200
    assert fit.curve["x"][0] == pytest.approx(WINDOW[0]) and fit.curve["x"][-1] == pytest.approx(WINDOW[1])
    json.dumps(fit.to_dict(), allow_nan=False)


@pytest.mark.parametrize("slope", [-6e-3, 0.0, 4e-3])
def test_an_absorption_line_takes_a_fraction_of_a_sloped_continuum_and_its_centre_stays_put(slope):
    """A star's continuum times (1 - depth * profile), as the simulator renders it: fitted
    additively, the centre would move by about slope * sigma^2 (0.2 A here); fitted as a
    fraction of the continuum, it is where the line is, noiseless to a few mA."""
    x = np.arange(6400.0, 6720.0, 2.0)
    continuum = 1000.0 * (1.0 + slope * (x - CENTRE))
    y = continuum * (1.0 - 0.45 * np.exp(-0.5 * ((x - CENTRE) / 14.0) ** 2))
    fit = fit_line(list(x), list(y), None, (CENTRE - 70.0, CENTRE + 70.0))
    assert fit.continuum_model == "multiplied" and fit.kind == "absorption"
    assert abs(fit.centre - CENTRE) < 0.005, fit.centre
    assert abs(fit.fwhm - 14.0 * math.sqrt(8 * math.log(2))) < 0.01
    assert abs(fit.equivalent_width - 0.45 * 14.0 * math.sqrt(2 * math.pi)) < 0.01
    assert abs(fit.amplitude + 0.45 * 1000.0) < 0.5


def test_errors_match_the_scatter_of_noise_realisations():
    pulls_centre, pulls_fwhm = [], []
    true_fwhm = SIGMA * math.sqrt(8 * math.log(2))
    for seed in range(200):
        x, y, var = _absorption(seed)
        fit = fit_line(list(x), list(y), list(var), WINDOW)
        pulls_centre.append((fit.centre - CENTRE) / fit.centre_error)
        pulls_fwhm.append((fit.fwhm - true_fwhm) / fit.fwhm_error)
    print(f"pulls: centre {np.mean(pulls_centre):+.2f} ± {np.std(pulls_centre):.2f}, "
          f"fwhm {np.mean(pulls_fwhm):+.2f} ± {np.std(pulls_fwhm):.2f}")
    assert 0.8 < np.std(pulls_centre) < 1.25 and abs(np.mean(pulls_centre)) < 0.25
    assert 0.8 < np.std(pulls_fwhm) < 1.25 and abs(np.mean(pulls_fwhm)) < 0.3


def _curve_fit_gaussian(x, y, sigma, x_ref, p0):
    def model(u, c0, c1, amp, mu, fwhm):
        return c0 + c1 * u + amp * np.exp(-FOUR_LN2 * (u - mu) ** 2 / fwhm ** 2)

    return curve_fit(model, x - x_ref, y, p0=p0, sigma=sigma, absolute_sigma=sigma is not None,
                     xtol=1e-12, ftol=1e-12)


@pytest.mark.parametrize("weighted", [True, False])
def test_flux_and_errors_agree_with_scipy_curve_fit(weighted):
    x, y, var = _absorption(seed=11, amplitude=250.0)
    fit = fit_line(list(x), list(y), list(var) if weighted else None, WINDOW)
    inside = (x >= WINDOW[0]) & (x <= WINDOW[1])
    xw, yw = x[inside], y[inside]
    x_ref = 0.5 * (xw[0] + xw[-1])
    p, cov = _curve_fit_gaussian(xw, yw, np.sqrt(var[inside]) if weighted else None, x_ref,
                                 [1000, 0.8, 250, CENTRE - x_ref, 6.0])
    area = math.sqrt(math.pi / FOUR_LN2)
    flux = p[2] * p[4] * area
    grad = np.array([0, 0, p[4] * area, 0, p[2] * area])
    assert fit.kind == "emission" and fit.flux > 0 > fit.equivalent_width
    assert fit.flux == pytest.approx(flux, rel=1e-3)
    assert fit.centre == pytest.approx(p[3] + x_ref, abs=1e-4)
    assert fit.flux_error == pytest.approx(math.sqrt(grad @ cov @ grad), rel=1e-2)
    assert fit.centre_error == pytest.approx(math.sqrt(cov[3, 3]), rel=1e-2)
    assert fit.fwhm_error == pytest.approx(math.sqrt(cov[4, 4]), rel=1e-2)
    assert fit.variance_estimated is (not weighted)
    assert (fit.chi2_reduced is None) is (not weighted)


def test_a_pseudo_voigt_measures_a_voigt_line():
    x = np.arange(6450.0, 6700.0, 0.5)
    sigma, gamma, flux = 1.6, 1.4, -3000.0
    profile = voigt_profile(x - CENTRE, sigma, gamma)
    truth = _continuum(x) + flux * profile
    variance = truth / 16.0       # counts of a 16 times longer exposure, scaled back
    y = truth + np.random.default_rng(3).normal(0, np.sqrt(variance))
    fine = np.linspace(-30, 30, 600001)
    shape = voigt_profile(fine, sigma, gamma)
    above = fine[shape >= shape.max() / 2]
    true_fwhm = above[-1] - above[0]
    fit = fit_line(list(x), list(y), list(variance), WINDOW, model="voigt")
    assert fit.model == "voigt" and 0 <= fit.eta <= 1 and fit.eta_error is not None
    assert abs(fit.fwhm / true_fwhm - 1) < 0.10
    assert abs(fit.centre - CENTRE) < 0.2
    assert abs(fit.flux - flux) < 3 * fit.flux_error and fit.flux == pytest.approx(flux, rel=0.05)
    gaussian = fit_line(list(x), list(y), list(variance), WINDOW)
    assert fit.chi2_reduced < gaussian.chi2_reduced


def test_non_finite_values_are_skipped():
    x, y, var = _absorption(seed=5)
    y[[240, 241, 290]] = np.nan
    x[310] = np.inf
    fit = fit_line(list(x), list(y), list(var), WINDOW)
    assert fit.n_points == 201 - 4 and abs(fit.centre - CENTRE) < 0.2


def test_a_bad_variance_falls_back_to_one_estimated_from_the_residuals():
    x, y, var = _absorption(seed=5)
    var[320] = 0.0
    fit = fit_line(list(x), list(y), list(var), WINDOW)
    assert fit.variance_estimated and fit.estimated_variance == pytest.approx(np.mean(var[x > 6600]), rel=0.3)


@pytest.mark.parametrize("window, change, match", [
    ((6560.0, 6561.5), None, "finite points"),
    ((7000.0, 7100.0), None, "outside the spectrum"),
    (WINDOW, "flat", "no line"),
    (WINDOW, "nan", "finite points"),
])
def test_what_cannot_be_measured_says_why(window, change, match):
    x, y, var = _absorption(seed=1)
    if change == "flat":
        y = _continuum(x) + np.random.default_rng(2).normal(0, np.sqrt(_continuum(x)))
    if change == "nan":
        y[:] = np.nan
    with pytest.raises(LineFitError, match=match):
        fit_line(list(x), list(y), list(var), window)
    assert issubclass(LineFitError, ValueError)
    with pytest.raises(LineFitError, match="unknown line model"):
        fit_line(list(x), list(y), None, WINDOW, model="lorentz")


def test_fit_spectrum_answers_as_the_api_does():
    """The API's spectrum JSON has None for NaN: skipped in flux, and a missing variance
    makes the fit estimate one."""
    x, y, var = _absorption(seed=6)
    flux = [None if i in (250, 251) else float(v) for i, v in enumerate(y)]
    variance = [None if i == 260 else float(v) for i, v in enumerate(var)]
    out = fit_spectrum(list(x), flux, variance, WINDOW, "gaussian", 6562.8)
    json.dumps(out, allow_nan=False)
    assert out["n_points"] == 199 and out["variance_estimated"] and out["chi2_reduced"] is None
    assert out["redshift"] == pytest.approx(out["centre"] / 6562.8 - 1, abs=2e-7)    # centre kept to 7 digits
    assert out["velocity"] == pytest.approx(out["redshift"] * 299792.458, rel=1e-6)
    assert out["velocity_error"] == pytest.approx(out["centre_error"] / 6562.8 * 299792.458, rel=1e-6)
    plain = fit_spectrum(list(x), list(y), list(var), WINDOW)
    assert plain["redshift"] is None and plain["chi2_reduced"] > 0 and not plain["variance_estimated"]


def test_redshift():
    z, z_err, v = redshift(6600.0, 0.3, 6562.8)
    assert z == pytest.approx(6600.0 / 6562.8 - 1) and z_err == pytest.approx(0.3 / 6562.8)
    assert v == pytest.approx(z * 299792.458)
    with pytest.raises(LineFitError):
        redshift(6600.0, 0.3, 0.0)


def test_invert_against_numpy():
    a = np.random.default_rng(0).normal(size=(6, 6))
    a = a @ a.T + 0.1 * np.eye(6)
    np.testing.assert_allclose(invert(a.tolist()), np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    with pytest.raises(SingularMatrix):
        invert([[1.0, 2.0], [2.0, 4.0]])


# ---- imexam -----------------------------------------------------------------------

NY, NX = 400, 600


def _image(data: np.ndarray):
    return read_hdus(_fits_bytes(fits.PrimaryHDU(data.astype(np.float32))))[0]


def _star_field(fwhm=3.5, x0=200.3, y0=150.6, amplitude=3000.0, seed=4):
    yy, xx = np.mgrid[0:NY, 0:NX]
    data = np.random.default_rng(seed).normal(100.0, 5.0, (NY, NX))
    sigma = fwhm / math.sqrt(8 * math.log(2))
    data += amplitude * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma ** 2))
    return data.astype(np.float32)


def test_a_star_gives_its_fwhm():
    data = _star_field()
    result = examine(_image(data), 203, 148)
    src = result["source"]
    assert src["kind"] == "point"
    assert abs(src["fwhm"] / 3.5 - 1) < 0.10 and 0 < src["fwhm_error"] < 0.1
    assert abs(src["x"] - 200.3) < 0.2 and abs(src["y"] - 150.6) < 0.2
    assert src["peak"] == pytest.approx(3000, rel=0.05) and src["background"] == pytest.approx(100, abs=2)
    assert len(src["profile"]["r"]) == len(src["profile"]["value"]) > 100
    assert src["profile"]["r"] == sorted(src["profile"]["r"]) and max(src["profile"]["r"]) <= 30
    assert len(src["model"]["r"]) == len(src["model"]["value"])
    json.dumps(result, allow_nan=False)


def test_a_trace_gives_its_fwhm_in_rows():
    yy = np.arange(NY)[:, None]
    sigma = 4.2 / math.sqrt(8 * math.log(2))
    data = np.random.default_rng(8).normal(200.0, 6.0, (NY, NX)) + 600.0 * np.exp(-(yy - 250.4) ** 2 / (2 * sigma ** 2))
    src = examine(_image(data), 300, 255)["source"]
    assert src["kind"] == "trace"
    assert abs(src["fwhm"] / 4.2 - 1) < 0.10
    assert abs(src["y"] - 250.4) < 0.2
    assert all(abs(r) <= 31 for r in src["profile"]["r"])


def test_box_statistics_and_cuts_match_numpy():
    data = _star_field()
    data[148, 205] = np.nan
    result = examine(_image(data), 203, 150, box=15, cut_half=40)
    box = result["box"]
    assert (box["x0"], box["y0"], box["x1"], box["y1"]) == (196, 143, 210, 157)
    cut = data[143:158, 196:211].astype(float)
    assert box["n"] == np.isfinite(cut).sum() == 224
    for key, fn in (("mean", np.nanmean), ("median", np.nanmedian), ("std", np.nanstd),
                    ("min", np.nanmin), ("max", np.nanmax)):
        assert box[key] == pytest.approx(fn(cut), rel=1e-6), key
    assert result["row_cut"] == {"y": 150, "x0": 163, "values": pytest.approx(data[150, 163:244].tolist(), rel=1e-6)}
    column = result["column_cut"]
    assert column["x"] == 203 and column["y0"] == 110
    assert [v is None for v in column["values"]] == np.isnan(data[110:191, 203]).tolist()
    assert column["values"][2] == pytest.approx(float(data[112, 203]), rel=1e-6)
    assert result["value"] == pytest.approx(float(data[150, 203]), rel=1e-6)
    assert result["shape"] == [NY, NX]
    json.dumps(result, allow_nan=False)


def test_frame_edges_and_saturation():
    data = _star_field()
    image = _image(data)
    corner = examine(image, 0, NY - 1, saturation=90.0)
    assert corner["box"] == {**corner["box"], "x0": 0, "x1": 10, "y0": NY - 11, "y1": NY - 1, "n": 121}
    assert corner["row_cut"]["x0"] == 0 and len(corner["row_cut"]["values"]) == 51
    assert corner["column_cut"]["y0"] == NY - 51 and len(corner["column_cut"]["values"]) == 51
    assert corner["saturated"] is (float(data[NY - 1, 0]) >= 90.0)
    far = examine(image, NX - 1, 0)
    assert far["box"]["x1"] == NX - 1 and far["box"]["y0"] == 0
    assert examine(image, 200, 150, saturation=1e6)["saturated"] is False
    assert examine(image, 200, 150, saturation=1000.0)["saturated"] is True
    with pytest.raises(ImexamError, match="outside the frame"):
        examine(image, NX, 10)


def test_noise_alone_has_no_source():
    data = np.random.default_rng(9).normal(100.0, 5.0, (NY, NX)).astype(np.float32)
    for x, y in [(300, 200), (0, 0), (NX - 1, NY - 1)]:
        assert examine(_image(data), x, y)["source"] is None


class _CountingImage:
    """The duck-typed image imexam accepts, counting what it decodes."""

    def __init__(self, data):
        self.data, self.shape, self.rows, self.columns = data, data.shape, 0, 0

    def row(self, y):
        self.rows += 1
        return self.data[y].tolist()

    def column(self, x):
        self.columns += 1
        return self.data[:, x].tolist()

    def pixel(self, x, y):
        return float(self.data[y, x])


def test_examine_reads_only_the_rows_it_needs():
    image = _CountingImage(_star_field().astype(float))
    src = examine(image, 203, 148)["source"]
    assert abs(src["fwhm"] / 3.5 - 1) < 0.10
    assert image.rows <= 2 * 31 + 21 and image.columns == 1


def test_examine_on_a_full_goodman_frame_is_quick():
    """Not a timed assertion: the print shows what a click costs."""
    yy, xx = np.mgrid[0:1000, 0:2071]
    data = np.random.default_rng(2).normal(500, 10, (1000, 2071))
    data += 5000 * np.exp(-((xx - 1500.2) ** 2 + (yy - 400.7) ** 2) / (2 * 1.5 ** 2))
    data += 900 * np.exp(-((yy - 700.0) ** 2) / (2 * 1.8 ** 2))
    raw = _fits_bytes(fits.PrimaryHDU(data.astype(np.float32)))
    t = time.perf_counter()
    image = read_hdus(raw)[0]
    star = examine(image, 1500, 400)
    trace = examine(image, 800, 701)
    took = time.perf_counter() - t
    print(f"read + 2 clicks on 2071x1000 float32: {took * 1000:.1f} ms")
    assert star["source"]["kind"] == "point" and trace["source"]["kind"] == "trace"


def test_a_real_spectrum_is_a_trace():
    path = SHARED_REAL / "quickreduce_testdata/0129_feige110.fits"
    if not path.exists():
        pytest.skip("the shared real data is not here")
    src = examine(read_hdus(path.read_bytes())[0], 1035, 455)["source"]
    assert src["kind"] == "trace" and abs(src["y"] - 453.3) < 1 and 4 < src["fwhm"] < 8


# ---- the API stays light ----------------------------------------------------------

def test_the_measurements_do_not_import_numpy():
    probe = (
        "import sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}]\n"
        "import golive_data.fitsread, golive_data.linefit, golive_data.imexam, golive_data.lsq\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy', 'astropy'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=str(ROOT), capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
