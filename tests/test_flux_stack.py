"""Flux calibration through the whole system (functions/fluxing.py): a simulated night
whose standard is rendered from its tabulated flux and whose science target has a known
input spectrum, at another airmass; the standard arrives after the science frame, as a
late lamp does. And the real Feige 110 frame: recognised, and why it gives no
sensitivity (its night has no lamp)."""
from __future__ import annotations

import io
import time
from datetime import date, timedelta

import numpy as np
import pytest
from astropy.io import fits

from functions.core.fluxcal import TELLURIC_BANDS
from golive_data.index import file_id_for
from tests.conftest import SHARED_REAL

#: far from every other test's night (a standard serves the nights of its window), when
#: LTT 3218 and the science targets are up in the evening
NIGHT = "2023-03-16"


def _upload(system, s3, night: str, path) -> str:
    key = f"{system.raw_prefix}{night}/{path.name}"
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=path.read_bytes())
    return file_id_for(system.raw_bucket, key)


def _until(system, api, file_id: str, done, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    item = api.wait_for(file_id, timeout=timeout)
    while not done(item):
        assert time.monotonic() < deadline, {k: item.get(k) for k in (
            "status", "spectra_status", "flux_calibration", "sensitivity", "error", "obstype", "object", "ra", "dec")}
        system.wait_idle(timeout=60)
        item = api.json(f"/api/files/{file_id}")
    return item


def _flux_status(item) -> str:
    return (item.get("flux_calibration") or {}).get("status")


@pytest.fixture(scope="module")
def flux_night(system, s3, api, tmp_path_factory):
    """The science frame first (no standard yet: it says so), then the standard."""
    from infra.simulator import make_night, write_night

    plan = make_night(seed=5, night=NIGHT, n_bias=3, n_flat=3, n_comp=1, n_science=1, standard="LTT3218")
    paths = {p.name: p for p in write_night(tmp_path_factory.mktemp("flux_night"), plan) if p.suffix == ".fits"}
    standard = next(f for f in plan.frames if f.object == "LTT3218")
    science = next(f for f in plan.frames if f.kind == "science" and f is not standard)
    ids = {name: _upload(system, s3, NIGHT, path) for name, path in paths.items() if name != standard.filename}
    before = _until(system, api, ids[science.filename],
                    lambda i: i.get("spectra_status") == "calibrated" and _flux_status(i) == "no_standard")
    std_id = _upload(system, s3, NIGHT, paths[standard.filename])
    std = _until(system, api, std_id, lambda i: bool(i.get("sensitivity")))
    item = _until(system, api, ids[science.filename], lambda i: _flux_status(i) == "calibrated", timeout=60)
    return {"plan": plan, "science": science, "science_id": ids[science.filename], "before": before,
            "std_id": std_id, "std": std, "item": item}


def test_a_late_standard_flux_calibrates_the_science_frame_to_its_input_spectrum(flux_night, s3, api):
    from infra.simulator.spectra import input_flux

    science, std, item = flux_night["science"], flux_night["std"], flux_night["item"]
    assert "no spectrophotometric standard" in flux_night["before"]["flux_calibration"]["reason"]
    sens, std_id, ids = std["sensitivity"], flux_night["std_id"], {science.filename: flux_night["science_id"]}
    assert sens["standard"] == "LTT3218" and sens["how"] == "name and position" and "error" not in sens, sens
    assert sens["rms"] < 0.05 and sens["points"] >= 10, sens
    used = item["flux_calibration"]
    assert used["file_id"] == std_id and used["night"] == NIGHT and used["standard"] == "LTT3218"
    assert abs(std["airmass"] - item["airmass"]) >= 0.2, (std["airmass"], item["airmass"])

    # the product, as an astronomer downloads it: erg/s/cm^2/A against the input spectrum
    target = item["spectra"][0]
    product = next(p for p in item["products"] if p["file_name"] == target["flux_file_name"])
    body = s3.get_object(Bucket=product["bucket"], Key=product["key"])["Body"].read()
    with fits.open(io.BytesIO(body)) as hdul:
        h, flux, var = hdul[0].header, hdul[0].data.astype(float), hdul["VAR"].data.astype(float)
    assert "erg" in h["BUNIT"]
    wavelength = h["CRVAL1"] + (np.arange(flux.size) + 1 - h.get("CRPIX1", 1.0)) * h["CDELT1"]
    truth = input_flux(science.target.flux_model, wavelength)
    lo, hi = sens["range"]
    good = np.isfinite(flux) & np.isfinite(var) & (wavelength > lo + 50) & (wavelength < hi - 50)
    for a, b in TELLURIC_BANDS:
        good &= ~((wavelength > a) & (wavelength < b))
    assert good.sum() > 200
    ratio = np.median(flux[good] / truth[good])
    print(f"flux / input: median {ratio:.4f} over {good.sum()} px, {wavelength[good][0]:.0f}-{wavelength[good][-1]:.0f} A;"
          f" airmass standard {std['airmass']}, science {item['airmass']}")
    assert abs(ratio - 1) < 0.05, ratio

    # the page's data: the flux-calibrated spectrum when asked, with its standard
    data = api.json(f"/api/files/{ids[science.filename]}/spectrum", target=1, units="flux")
    assert data["fluxed"] is True and "erg" in data["flux_unit"]
    assert data["flux_calibration"]["standard"] == "LTT3218" and data["flux_calibration"]["night"] == NIGHT
    assert api.json(f"/api/files/{ids[science.filename]}/spectrum", target=1)["fluxed"] is False
    assert api.get(f"/api/files/{ids[science.filename]}/spectrum", target=1, units="jansky").status_code == 400


@pytest.mark.skipif(not (SHARED_REAL / "quickreduce_testdata" / "0129_feige110.fits").exists(),
                    reason="needs ../shared/data/real/quickreduce_testdata (real Feige 110 frame)")
def test_a_night_without_a_standard_uses_the_nearest_earlier_nights_and_says_so(flux_night, system, s3, api,
                                                                              tmp_path):
    """The next night: its lamp and science frame, but its standard never taken."""
    from infra.simulator import make_night, write_night

    night = (date.fromisoformat(NIGHT) + timedelta(days=1)).isoformat()
    plan = make_night(seed=7, night=night, n_bias=0, n_flat=0, n_comp=1, n_science=1, standard="LTT3218")
    science = next(f for f in plan.frames if f.kind == "science" and f.object != "LTT3218")
    wanted = {f.filename for f in plan.frames if f.kind == "comp"} | {science.filename}
    ids = {p.name: _upload(system, s3, night, p) for p in write_night(tmp_path, plan) if p.name in wanted}
    item = _until(system, api, ids[science.filename], lambda i: _flux_status(i) == "calibrated")
    used = item["flux_calibration"]
    assert used["night"] == NIGHT and used["file_id"] == flux_night["std_id"]
    assert any(f"from night {NIGHT}: none of this setup on {night}" in n for n in used["notes"]), used["notes"]


def test_the_page_shows_the_flux_calibrated_spectrum_its_standard_and_the_sensitivity(flux_night, browser, system,
                                                                                       staff_user):
    from tests.test_night_page import _card, _open

    context = browser.new_context()
    try:
        page = _open(context, system, staff_user, f"night={NIGHT}")
        page.locator(f"#files tbody tr[data-file-id='{flux_night['science_id']}'] td.name").click()
        card = _card(page)
        standard = card.locator(".flux-standard")
        standard.first.wait_for()
        assert "flux-calibrated with LTT3218" in standard.first.inner_text()
        assert NIGHT in standard.first.inner_text()
        assert card.locator("figure", has_text="flux-calibrated spectrum").count() >= 1
        # the interactive plot: counts first (line fits are made on them), flux on asking
        host = "#detail .interactive[data-view=spectrum].mounted .plot-host"
        page.wait_for_function("s => (document.querySelector(s) || {}).goodmanPlot", arg=host, timeout=30000)
        assert not page.evaluate("s => document.querySelector(s).goodmanPlot.fluxed", host)
        card.locator(".units input[value=flux]").check()
        page.wait_for_function("s => document.querySelector(s).goodmanPlot.fluxed", arg=host, timeout=15000)
        assert "erg" in page.evaluate("s => document.querySelector(s).goodmanPlot.yLabel()", host)
        assert card.locator(".fit-controls").is_hidden()
        card.locator(".units input[value=counts]").check()
        page.wait_for_function("s => !document.querySelector(s).goodmanPlot.fluxed", arg=host, timeout=15000)
        assert card.locator(".fit-controls").is_visible()
        page.locator(f"#files tbody tr[data-file-id='{flux_night['std_id']}'] td.name").click()
        page.wait_for_function("() => (document.querySelector('#detail .sensitivity') || {}).textContent")
        assert "spectrophotometric standard LTT3218" in page.locator("#detail .sensitivity").inner_text()
    finally:
        context.close()


def test_the_real_feige_110_frame_is_recognised_and_says_why_it_gives_no_sensitivity(system, s3, api):
    """Real SOAR frames of 2018-10-01 and -02 (400 l/mm, 1.0" slit): Feige 110 is known by
    name and pointing (1.7" from the catalogue); no lamp was taken with this setup on
    either night, so neither is wavelength-calibrated, and a sensitivity needs one."""
    folder = SHARED_REAL / "quickreduce_testdata"
    std_id = _upload(system, s3, "2018-09-30", folder / "0129_feige110.fits")
    obj_id = _upload(system, s3, "2018-10-01", folder / "0325_obj1208.fits")
    std = _until(system, api, std_id, lambda i: bool(i.get("sensitivity")))
    assert std["sensitivity"]["standard"] == "Feige110" and std["sensitivity"]["how"] == "name and position"
    assert "no wavelength-calibrated spectrum" in std["sensitivity"]["error"]
    obj = _until(system, api, obj_id, lambda i: bool(i.get("flux_calibration")))
    assert obj.get("sensitivity") is None
    assert _flux_status(obj) == "not_calibrated" and "wavelength" in obj["flux_calibration"]["reason"]
