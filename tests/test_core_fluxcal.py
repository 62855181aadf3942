"""Flux calibration core: standards found by name and pointing, a sensitivity recovered
from a synthetic standard observation, applied to a synthetic science spectrum, and the
FITS products (specutils reads the flux-calibrated one with its unit)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits
from scipy.interpolate import PchipInterpolator

from functions.core import fluxcal
from functions.core.fluxcal import FluxCalFailure, Sensitivity

GAIN, RDNOISE = 1.48, 3.89  # e-/ADU, e-: Goodman's red camera, 344 kHz ATTN3
DISPERSION = 2.0


def _by_name(name):
    return next(s for s in fluxcal.standards() if s.name == name)


LTT3218 = _by_name("LTT3218")


# ------------------------------------------------------------------------ find_standard
@pytest.mark.parametrize("name, expected", [
    ("LTT3218", "LTT3218"), ("LTT 3218", "LTT3218"), ("ltt3218", "LTT3218"), ("LTT-3218", "LTT3218"),
    ("LTT3218_std", "LTT3218"), ("LTT 3218 slit 1.0", "LTT3218"), ("Feige 110", "Feige110"),
    ("F110", "Feige110"), ("feige_110", "Feige110"), ("EG 21", "EG21"), ("EG274", "EG274"),
    ("CD-32 9927", "CD-32d9927"), ("CD-32d9927", "CD-32d9927"), ("cd -32 9927", "CD-32d9927"),
    ("Hiltner 600", "HILT600"), ("HR 718", "HR718"), ("G24-9", "G24-9"),
])
def test_names_and_aliases(name, expected):
    standard, how = fluxcal.find_standard(name)
    assert standard.name == expected and how == "name"


@pytest.mark.parametrize("name", ["NGC 1234", "flat", "", "  ", "LTT", "LTT32189", "LTT3218std", "L3218",
                                  "Comp_HgArNe", "EG", "F1100"])
def test_non_standards_are_none(name):
    assert fluxcal.find_standard(name) is None


def test_position_matches_whatever_the_name():
    ra, dec = "08:41:32.37", "-32:56:32.9"
    assert fluxcal.find_standard("LTT 3218", ra, dec) == (LTT3218, "name and position")
    assert fluxcal.find_standard("NGC 1234", ra, dec) == (LTT3218, "position")
    assert fluxcal.find_standard("", LTT3218.ra_deg, LTT3218.dec_deg + 5 / 3600) == (LTT3218, "position")
    # a northern-sky sign and a declination without sign read right
    feige56 = _by_name("Feige56")
    assert fluxcal.find_standard("x", "12:06:47.25", "11:40:12.7")[0] == feige56
    assert fluxcal.find_standard("x", "12:06:47.25", "-11:40:12.7") is None


def test_name_with_a_far_pointing_is_not_the_standard():
    # 40 arcsec off (pointing error, proper motion): still the standard, by name
    assert fluxcal.find_standard("LTT3218", LTT3218.ra_deg, LTT3218.dec_deg + 40 / 3600) == (LTT3218, "name")
    # 3 arcmin off: another field
    assert fluxcal.find_standard("LTT3218", LTT3218.ra_deg, LTT3218.dec_deg + 180 / 3600) is None
    assert fluxcal.find_standard("LTT3218", "08:41:45.0", "-32:56:32.9") is None
    # an unreadable pointing is no pointing: the name decides
    assert fluxcal.find_standard("LTT3218", "", None) == (LTT3218, "name")


def test_tables_and_extinction():
    for s in fluxcal.standards():
        lam, flux, width = fluxcal.standard_flux(s)
        optical = (lam >= 3300) & (lam <= 9000)
        assert optical.sum() > 100 and np.all(np.diff(lam) > 0) and np.all(width > 0), s
        assert np.all(flux >= 0) and np.all(flux[optical] > 0), s
    lam, flux, width = fluxcal.standard_flux(LTT3218)
    assert lam[0] == 3300 and width[0] == 50 and flux[0] == pytest.approx(1.1497e-13)
    assert not lam.flags.writeable
    k = fluxcal.extinction([3000.0, 3200.0, 5000.0, 5131.5, 20000.0])
    assert k == pytest.approx([1.05, 1.05, 0.19, 0.18, 0.037])
    for lo, hi in fluxcal.TELLURIC_BANDS:
        assert 6000 < lo < hi < 10000


# ------------------------------------------------------------------- synthetic spectra
def _response(lam):
    """A made-up instrument: (e-/s/Å) per (erg/s/cm^2/Å), broad and tilted."""
    return 5e15 * np.exp(-0.5 * ((lam - 5200.0) / 1500.0) ** 2) * (1 + 0.1 * np.sin(lam / 400.0))


def _table_flux_smooth(standard, lam):
    """The table as a smooth curve whose mean over every table bin is the tabulated value
    (the derivative of a monotone interpolant of the cumulative flux), as a star's real
    spectrum averaged by Hamuy et al. would be."""
    centres, flux, width = fluxcal.standard_flux(standard)
    edges = np.concatenate([centres - width / 2, [centres[-1] + width[-1] / 2]])
    cumulative = np.concatenate([[0.0], np.cumsum(flux * width)])
    return PchipInterpolator(edges, cumulative).derivative()(lam)


def _observe(lam, flux, airmass, exptime, seed):
    """ADU per pixel and their variance for `flux` (erg/s/cm^2/Å) seen through `_response`."""
    electrons = flux * _response(lam) * 10 ** (-0.4 * fluxcal.extinction(lam) * airmass) * exptime * DISPERSION
    variance_e = electrons + 10 * RDNOISE ** 2  # ten rows in the aperture
    rng = np.random.default_rng(seed)
    counts = (electrons + rng.normal(0.0, np.sqrt(variance_e))) / GAIN
    return counts, variance_e / GAIN ** 2


def _header(airmass, exptime, name="LTT3218"):
    h = fits.Header()
    h["OBJECT"], h["EXPTIME"], h["AIRMASS"], h["GAIN"] = name, exptime, airmass, GAIN
    h["RA"], h["DEC"] = "08:41:32.37", "-32:56:32.9"
    return h


GRID = np.arange(3600.0, 7000.0 + DISPERSION / 2, DISPERSION)


@pytest.fixture(scope="module")
def standard_obs():
    counts, variance = _observe(GRID, _table_flux_smooth(LTT3218, GRID), 1.3, 30.0, seed=1)
    return counts, variance, _header(1.3, 30.0)


@pytest.fixture(scope="module")
def sens(standard_obs):
    counts, variance, header = standard_obs
    return fluxcal.build_sensitivity(GRID, counts, variance, header, LTT3218)


def _unmasked(lam, bands):
    out = np.ones(lam.shape, dtype=bool)
    for lo, hi in bands:
        out &= ~((lam > lo - 25) & (lam < hi + 25))
    return out


def test_sensitivity_recovers_the_response(sens):
    assert sens.standard == "LTT3218" and sens.airmass == 1.3 and sens.exptime == 30.0
    assert sens.masked == ((6270.0, 6290.0), (6850.0, 6960.0))
    assert sens.points >= 55 and sens.rms < 0.01
    assert sens.wavelength[0] >= GRID[0] and sens.wavelength[-1] <= GRID[-1]
    assert sens.wavelength[0] < 3700 and sens.wavelength[-1] > 6800
    ratio = sens.at(GRID) / _response(GRID)
    good = _unmasked(GRID, sens.masked) & np.isfinite(ratio)
    assert np.median(np.abs(ratio[good] - 1)) < 0.02
    assert np.max(np.abs(ratio[good] - 1)) < 0.05
    assert np.isnan(sens.at([3000.0, 8000.0])).all()


def test_build_leaves_its_input_unchanged(standard_obs):
    counts, variance, header = standard_obs
    c, v, h = counts.copy(), variance.copy(), header.copy()
    fluxcal.build_sensitivity(GRID, counts, variance, header, LTT3218)
    assert np.array_equal(c, counts) and np.array_equal(v, variance) and h == header


def test_a_decreasing_grid_gives_the_same_sensitivity(standard_obs, sens):
    counts, variance, header = standard_obs
    flipped = fluxcal.build_sensitivity(GRID[::-1], counts[::-1], variance[::-1], header, LTT3218)
    assert np.allclose(flipped.sensitivity, sens.sensitivity)


def _blackbody(lam, temperature=6000.0):
    x = 1.4387769e8 / (lam * temperature)  # hc/(λkT), λ in Å
    b = lam ** -5 / np.expm1(x)
    return 1e-15 * b / np.interp(5500.0, lam, b)


def test_science_flux_is_recovered(sens):
    truth = _blackbody(GRID)
    counts, variance = _observe(GRID, truth, 1.8, 600.0, seed=2)
    header = _header(1.8, 600.0, "NGC 1234")
    flux, var = fluxcal.apply_sensitivity(GRID, counts, variance, header, sens)
    ratio = flux / truth
    good = _unmasked(GRID, sens.masked) & np.isfinite(ratio)
    assert good.sum() > 1400
    assert np.median(np.abs(ratio[good] - 1)) < 0.03
    # the variance: by hand at one pixel
    i = int(np.searchsorted(GRID, 5000.0))
    factor = GAIN / 600.0 / DISPERSION * 10 ** (0.4 * fluxcal.extinction(GRID[i]) * 1.8) / sens.at(GRID[i])
    assert flux[i] == pytest.approx(counts[i] * factor, rel=1e-12)
    assert var[i] == pytest.approx(variance[i] * factor ** 2, rel=1e-12)
    # undefined outside the sensitivity's range
    outside = (GRID < sens.wavelength[0]) | (GRID > sens.wavelength[-1])
    assert np.isnan(flux[outside]).all() and np.isfinite(flux[~outside]).all()


# ------------------------------------------------------------------------- failures
@pytest.mark.parametrize("change, reason", [
    ({"EXPTIME": 0.0}, "EXPTIME"), ({"EXPTIME": "n/a"}, "EXPTIME"), ({"AIRMASS": None}, "AIRMASS"),
    ({"GAIN": -1.0}, "GAIN"),
])
def test_unusable_header_is_refused(standard_obs, change, reason):
    counts, variance, header = standard_obs
    header = header.copy()
    for key, value in change.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    with pytest.raises(FluxCalFailure, match=reason):
        fluxcal.build_sensitivity(GRID, counts, variance, header, LTT3218)


def test_unusable_spectra_are_refused(standard_obs):
    counts, variance, header = standard_obs
    with pytest.raises(FluxCalFailure, match="no finite"):
        fluxcal.build_sensitivity(GRID, np.full(GRID.shape, np.nan), variance, header, LTT3218)
    with pytest.raises(FluxCalFailure, match="negative or zero"):
        fluxcal.build_sensitivity(GRID, -counts, variance, header, LTT3218)
    narrow = (GRID > 5000) & (GRID < 5200)
    with pytest.raises(FluxCalFailure, match=r"only \d+ of LTT3218's table bins .* 3 lie within"):
        fluxcal.build_sensitivity(GRID[narrow], counts[narrow], variance[narrow], header, LTT3218)
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 30.0, GRID.size) + 0.5
    with pytest.raises(FluxCalFailure, match="without signal"):
        fluxcal.build_sensitivity(GRID, noise, np.full(GRID.shape, 900.0), header, LTT3218)
    mask = np.zeros(GRID.size, dtype=np.uint8)
    mask[::3] = 1
    with pytest.raises(FluxCalFailure, match="saturated"):
        fluxcal.build_sensitivity(GRID, counts, variance, header, LTT3218, mask=mask)
    with pytest.raises(FluxCalFailure, match="AIRMASS"):
        fluxcal.apply_sensitivity(GRID, counts, variance, fits.Header({"EXPTIME": 1.0, "GAIN": 1.0}),
                                  fluxcal.build_sensitivity(GRID, counts, variance, header, LTT3218))


def test_a_few_masked_pixels_only_cost_their_bins(standard_obs, sens):
    counts, variance, header = standard_obs
    mask = np.zeros(GRID.size, dtype=np.uint8)
    mask[500:503] = 1  # around 4600 Å: one bin
    counts = counts.copy()
    counts[500:503] = 0.0
    masked = fluxcal.build_sensitivity(GRID, counts, variance, header, LTT3218, mask=mask)
    assert masked.points == sens.points - 1
    assert np.nanmax(np.abs(masked.sensitivity / sens.sensitivity - 1)) < 0.01


# ------------------------------------------------------------------------- products
def test_sensitivity_fits_round_trips(sens):
    body = fluxcal.sensitivity_fits(sens, provenance=["standard: 0042_ltt3218.fits", "grating 400M2"])
    back = fluxcal.read_sensitivity_fits(body)
    assert isinstance(back, Sensitivity)
    assert np.array_equal(back.wavelength, sens.wavelength) and np.array_equal(back.sensitivity, sens.sensitivity)
    assert (back.standard, back.airmass, back.exptime, back.points, back.masked) == \
        (sens.standard, sens.airmass, sens.exptime, sens.points, sens.masked)
    assert back.rms == pytest.approx(sens.rms, abs=1e-6)
    with fits.open(io.BytesIO(body)) as hdul:
        assert "0042_ltt3218.fits" in str(hdul[0].header["HISTORY"])


def _wecfzst(counts, variance, header, with_mask=True):
    """A `wecfzst_`-like product: the layout spectra.calibrated_fits writes."""
    h = header.copy()
    h["BUNIT"], h["CTYPE1"], h["CUNIT1"] = "adu", "WAVE", "Angstrom"
    h["CRPIX1"], h["CRVAL1"], h["CDELT1"] = 1.0, float(GRID[0]), DISPERSION
    hdus = [fits.PrimaryHDU(data=counts.astype(np.float32), header=h),
            fits.ImageHDU(data=variance.astype(np.float32), name="VAR"),
            fits.ImageHDU(data=np.zeros(counts.size, dtype=np.float32), name="SKY")]
    if with_mask:
        hdus.append(fits.ImageHDU(data=np.zeros(counts.size, dtype=np.uint8), name="MASK"))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def test_flux_calibrated_product_opens_in_specutils(sens):
    import astropy.units as u

    truth = _blackbody(GRID)
    counts, variance = _observe(GRID, truth, 1.8, 600.0, seed=4)
    body, lam, flux = fluxcal.flux_calibrated_fits(_wecfzst(counts, variance, _header(1.8, 600.0, "NGC 1234")),
                                                   sens, "fltt3218.dat, airmass 1.30")
    assert np.allclose(lam, GRID)
    good = np.isfinite(flux) & _unmasked(GRID, sens.masked)
    assert np.median(np.abs(flux[good] / truth[good] - 1)) < 0.03
    with fits.open(io.BytesIO(body)) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "VAR", "MASK"]
        h = hdul[0].header
        assert h["BUNIT"] == "erg / (s cm2 Angstrom)" and h["GSP_FSTD"] == "LTT3218"
        assert h["GSP_FSAM"] == 1.3 and h["GSP_FAIR"] == 1.8 and h["OBJECT"] == "NGC 1234"
        assert u.Unit(hdul["VAR"].header["BUNIT"]) == (u.erg / u.s / u.cm ** 2 / u.AA) ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from specutils import Spectrum

        spec = Spectrum.read(io.BytesIO(body), format="wcs1d-fits")
    assert spec.flux.unit == u.erg / (u.s * u.cm ** 2 * u.AA)
    assert np.allclose(spec.spectral_axis.to_value(u.AA), GRID)
    assert spec.uncertainty is not None
    np.testing.assert_allclose(spec.flux.value, flux, rtol=1e-12)
