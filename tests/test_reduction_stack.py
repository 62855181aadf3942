"""Calibrations and 2-D reduction as the files arrive, on the local stack: masters
built once per version by racing workers, frames reduced with them, frames that came
before their calibrations reduced again when those arrive."""
import io
from datetime import datetime
from pathlib import Path
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from astropy.io import fits

from functions import reduction
from golive_data.index import file_id_for
from golive_data.item import FINAL_STATUSES
from infra.local.runner import QueuePoller


def _upload(system, s3, night, paths):
    ids = {}

    def put(path):
        key = f"{system.raw_prefix}{night}/{path.name}"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=path.read_bytes())
        ids[path.name] = file_id_for(system.raw_bucket, key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, paths))
    return ids


def _settle(system, api, night, timeout=120):
    """Wait until the queue is empty and every file of the night is final, twice in a row."""
    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        files = api.json("/api/files", night=night, limit=500)["files"]
        if system.idle() and files and all(f["status"] in FINAL_STATUSES for f in files):
            quiet += 1
            if quiet >= 3:
                return {f["file_name"]: f for f in files}
        else:
            quiet = 0
        time.sleep(0.5)
    raise AssertionError(f"night {night} did not settle: {[(f['file_name'], f['status']) for f in files]}")


@pytest.fixture(scope="module")
def extra_workers(system):
    """Two more reduction workers (four in all) for the racing tests."""
    sqs = system.stack.client("sqs")
    poller = QueuePoller(sqs, system.stack.reduce_queue_url, system.poller("reduce").handler, "reduce-extra",
                         workers=2).start()
    yield
    poller.stop()


@pytest.fixture(scope="module")
def build_counter():
    calls, lock = [], threading.Lock()
    real = reduction._build_master

    def counting(kind, group, night, members, *args, **kwargs):
        with lock:
            calls.append((kind, group, night, tuple(sorted(m["file_id"] for m in members))))
        return real(kind, group, night, members, *args, **kwargs)

    reduction._build_master = counting
    yield calls
    reduction._build_master = real


@pytest.fixture(scope="module")
def reduced_night(system, s3, api, sim_night, extra_workers, build_counter):
    night = "2024-03-14"
    _upload(system, s3, night, sorted(sim_night.glob("*.fits")))
    return _settle(system, api, night)


def test_masters_are_built_once_per_version_by_racing_workers(reduced_night, build_counter):
    masters = {n: f for n, f in reduced_night.items() if f["obstype"].startswith("MASTER_")}
    built = [c for c in build_counter if c[2] == "2024-03-14"]
    assert len(built) == len(set(built)), f"a master version was built twice: {built}"
    kinds = sorted(f["obstype"] for f in masters.values())
    assert kinds == ["MASTER_BIAS", "MASTER_FLAT"], sorted(masters)
    bias = next(f for f in masters.values() if f["obstype"] == "MASTER_BIAS")
    assert bias["file_name"] == "master_bias_RED_SP_2x2_R03.89_G01.48_2024-03-14_n10.fits"
    assert len(bias["members"]) == 10


def test_every_science_and_lamp_frame_is_reduced_with_both_masters(reduced_night, api):
    frames = [f for f in reduced_night.values() if f["obstype"] in ("COMP", "OBJECT")]
    assert len(frames) == 5
    for f in frames:
        assert f["status"] == "reduced", f
        assert f["calibrations"]["master_bias"]["file_name"].startswith("master_bias_RED_SP_2x2")
        assert f["calibrations"]["master_flat"]["file_name"].startswith("norm_master_flat_RED_400_M2")
        assert f["waiting_for"] == []
        kinds = {p["kind"] for p in f["products"]}
        assert {"header", "preview_raw", "reduced", "preview_reduced"} <= kinds
        # goodman-pipeline names lamps cfzst_ too, though it cleans no cosmic rays on them
        assert f["reduced_file_name"] == "cfzst_" + f["file_name"]


def test_reduced_fits_carries_provenance(reduced_night, api):
    sci = next(f for f in reduced_night.values() if f["obstype"] == "OBJECT")
    url = next(p["url"] for p in sci["products"] if p["kind"] == "reduced")
    header = fits.getheader(io.BytesIO(api.http.get(url, timeout=30).content))
    for key in ("GSP_OVER", "GSP_TRIM", "GSP_SLIT", "GSP_BIAS", "GSP_FLAT", "GSP_COSM", "GSP_VERS", "GLV_VERS"):
        assert key in header, key
    assert header["GSP_BIAS"] == sci["calibrations"]["master_bias"]["file_name"]
    assert header["GSP_OVER"] == "[3:24,1:948]" and header["GSP_TRIM"] == "[26:2055,2:948]"
    png = next(p["url"] for p in sci["products"] if p["kind"] == "preview_reduced")
    assert api.http.get(png, timeout=30).content[:8] == b"\x89PNG\r\n\x1a\n"


def test_frames_that_came_first_are_reduced_again_when_calibrations_arrive(system, s3, api, sim_night):
    night = "2024-04-02"
    paths = sorted(sim_night.glob("*.fits"))
    science = [p for p in paths if "EG21" in p.name or "HgArNe" in p.name]
    calibs = [p for p in paths if p not in science and "LTT" not in p.name]
    ids = _upload(system, s3, night, science)
    early = _settle(system, api, night)
    for name in ids:
        assert early[name]["status"] == "reduced"
        assert early[name]["waiting_for"] == ["master_bias", "master_flat"]
        assert early[name]["reduced_file_name"].startswith("cto_")
        skipped = early[name]["reduction"]["steps_skipped"]
        assert {"slit", "bias", "flat"} <= set(skipped) and "no master flat" in skipped["flat"]
    _upload(system, s3, night, calibs)
    late = _settle(system, api, night)
    for name in ids:
        assert late[name]["waiting_for"] == [], late[name]
        assert late[name]["calibrations"]["master_flat"]["night"] == night
        assert late[name]["reduced_file_name"].startswith("cfzst_")


def test_a_night_without_calibrations_uses_the_nearest_earlier_night(system, s3, api, sim_night, reduced_night):
    night = "2024-03-16"  # two days after the fully calibrated night, inside the 7-day window
    science = sorted(p for p in sim_night.glob("*.fits") if "LTT3218" in p.name)
    ids = _upload(system, s3, night, science)
    files = _settle(system, api, night)
    for name in ids:
        used = files[name]["calibrations"]
        assert used["master_bias"]["night"] == used["master_flat"]["night"] == "2024-03-14"
        assert files[name]["reduced_file_name"].startswith("cfzst_")


def test_the_page_shows_previews_and_provenance_of_a_reduced_frame(browser, system, staff_user, reduced_night):
    from tests.conftest import sign_in_page

    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    sign_in_page(page, system, staff_user.username, staff_user.password)
    page.wait_for_selector("#night-select option[value='2024-03-14']", state="attached")
    page.select_option("#night-select", "2024-03-14")
    page.locator("td.name", has_text="0022_EG21_400M2_GG455.fits").click()
    card = page.locator("#detail")
    card.wait_for()
    # the two previews and the spectrum (EG 21 is a spectrophotometric standard, so its
    # sensitivity and flux-calibrated plots are in the card too)
    page.wait_for_function("['raw', 'reduced', 'calibrated spectrum'].every(alt => Array.from("
                           "document.querySelectorAll('#detail img')).some(i => i.alt === alt && i.complete "
                           "&& i.naturalWidth > 0))")
    text = card.inner_text()
    sci = reduced_night["0022_EG21_400M2_GG455.fits"]
    assert sci["calibrations"]["master_bias"]["file_name"] in text
    assert "[3:24,1:948]" in text and "[26:2055,2:948]" in text and "cfzst_0022_EG21_400M2_GG455.fits" in text
    # the calibrated spectrum, the lamp that calibrated it and how well
    spectrum = card.locator("section.spectrum[data-target='1']")
    quality = spectrum.locator(".quality").inner_text()
    w = sci["spectra"][0]["wavelength"]
    assert sci["lamp"]["file_name"] in quality and f"{w['rms_angstrom']:.3f} Å" in quality
    assert f"{w['n_lines']} lines" in quality and f"from {w['flexure']['n_lines']} sky lines" in quality
    assert spectrum.locator("img").first.get_attribute("alt") == "calibrated spectrum"
    assert "wecfzst_0022_EG21_400M2_GG455_target_1.fits" in spectrum.inner_text()
    page.screenshot(path=str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "page_spectrum.png"))
    page.close()


# ---- spectra --------------------------------------------------------------------------
def _truth(sim_night):
    import json

    return {f["name"]: f for f in json.loads((sim_night / "truth.json").read_text())["frames"]}


def _nearest_lamp(sci, lamps):
    from functions.core.calibrations import choose_lamp

    return choose_lamp(list(lamps), sci["date_obs"])["file_name"]


def test_science_spectra_are_extracted_and_calibrated_with_the_nearest_lamp(reduced_night, api, sim_night):
    import numpy as np
    from specutils import Spectrum1D

    from infra.simulator import geometry

    truth = _truth(sim_night)
    lamps = [f for f in reduced_night.values() if f["obstype"] == "COMP"]
    science = [f for f in reduced_night.values() if f["obstype"] == "OBJECT"]
    assert len(science) == 3 and len(lamps) == 2
    for lamp in lamps:  # each lamp's own solution, from the middle of the slit, as soon as it is reduced
        assert lamp["wavelength"]["method"] == "reference" and lamp["wavelength"]["rms_pixels"] < 0.05, lamp
        assert {"lamp_calibrated", "lamp_plot"} <= {p["kind"] for p in lamp["products"]}
    for f in science:
        assert f["waiting_for"] == [] and f["spectra_notes"] == []
        (s,) = f["spectra"]
        assert f["lamp"]["file_name"] == _nearest_lamp(f, lamps)
        w = s["wavelength"]
        assert s.get("wavelength_error") is None and w["rms_pixels"] < 0.1 and w["n_lines"] >= 10, s
        assert w["flexure"]["n_lines"] >= 5 and abs(w["flexure"]["shift_pixels"]) < 0.5
        kinds = [p["kind"] for p in f["products"]]
        for kind in ("extracted", "calibrated", "spectrum_plot", "lamp_calibrated", "lamp_plot"):
            assert kinds.count(kind) == 1, (kind, kinds)
        url = next(p["url"] for p in f["products"] if p["kind"] == "calibrated")
        spec = Spectrum1D.read(io.BytesIO(api.http.get(url, timeout=30).content), format="wcs1d-fits")
        # the lamp's solution moved by the flexure the sky lines measured: the science
        # frame's own wavelengths (its truth), to a small fraction of a pixel
        frame_truth = truth[f["file_name"]]["wavelength_solution"]
        axis = spec.spectral_axis.to_value("Angstrom")
        raw_cols = np.arange(geometry.N_LIT_COLS) + geometry.FIRST_LIT_COL
        true = np.polynomial.chebyshev.chebval(geometry.column_to_x(raw_cols, frame_truth["shift"]),
                                               frame_truth["coefficients"])
        assert axis[0] == pytest.approx(true[0], abs=0.1) and axis[-1] == pytest.approx(true[-1], abs=0.1)
        assert spec.flux.unit == "adu" and np.nanmedian(spec.flux.value) > 0


def test_a_lamp_that_arrives_after_its_science_frames_calibrates_them(system, s3, api, sim_night, monkeypatch):
    from functions import spectroscopy

    night = "2024-05-01"
    paths = sorted(sim_night.glob("*.fits"))
    lamps = [p for p in paths if "HgArNe" in p.name]
    _upload(system, s3, night, [p for p in paths if p not in lamps])
    early = _settle(system, api, night)
    science = [f for f in early.values() if f["obstype"] == "OBJECT"]
    for f in science:
        assert f["waiting_for"] == ["comparison_lamp"]
        assert "no comparison lamp" in f["spectra"][0]["wavelength_error"]
        assert not any(p["kind"] == "calibrated" for p in f["products"])
    extractions = []
    real = spectroscopy.extract
    monkeypatch.setattr(spectroscopy, "extract", lambda *a, **k: extractions.append(a[0]["file_name"]) or real(*a, **k))
    _upload(system, s3, night, lamps)
    late = _settle(system, api, night)
    lamp_items = [f for f in late.values() if f["obstype"] == "COMP"]
    for f in science:
        after = late[f["file_name"]]
        assert after["waiting_for"] == [] and after["spectra"][0]["wavelength"]["rms_pixels"] < 0.1
        assert after["lamp"]["file_name"] == _nearest_lamp(after, lamp_items)
    # the science frames were calibrated from their extracted spectra, not reduced again
    assert extractions == []


def test_a_frame_that_finds_its_lamp_still_being_reduced_looks_again(system, s3, api, sim_night, monkeypatch):
    """The lamp's own task calibrates the frames it finds, but may look before a frame
    that was waiting for it is listed: the frame looks again itself (every 3 s). Here the
    lamp's own look is switched off, and the consistency sweep (which would repair the
    frame within 10 s), so only the frame's can calibrate it."""
    from functions import consistency, spectroscopy

    night = "2024-05-09"
    paths = sorted(sim_night.glob("*.fits"))
    lamp = [p for p in paths if "HgArNe" in p.name][0]
    science = [p for p in paths if fits.getheader(p).get("OBSTYPE") == "OBJECT"][:1]
    entered, release = threading.Event(), threading.Event()
    real_solve = spectroscopy.solve_lamp

    def held(item, *args, **kwargs):
        if item["night"] == night:
            entered.set()
            release.wait(30)
        return real_solve(item, *args, **kwargs)

    real_reduced = spectroscopy.lamp_reduced
    monkeypatch.setattr(spectroscopy, "solve_lamp", held)
    monkeypatch.setattr(consistency, "sweep", lambda *a, **k: None)
    monkeypatch.setattr(spectroscopy, "lamp_reduced",
                        lambda lamp_item, *a, **k: None if lamp_item["night"] == night else real_reduced(lamp_item, *a, **k))
    try:
        _upload(system, s3, night, [lamp])
        assert entered.wait(30), "the lamp's reduction did not start"
        [sci_id] = _upload(system, s3, night, science).values()
        api.wait_for(sci_id, statuses=("reducing", "reduced"), timeout=20)   # indexed
        deadline = time.monotonic() + 30
        while "still being reduced" not in str((seen := api.json(f"/api/files/{sci_id}")).get("spectra")):
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert seen["spectra_status"] == "waiting_for_lamp"
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while (seen := api.json(f"/api/files/{sci_id}")).get("spectra_status") != "calibrated":
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    assert seen["lamp"]["file_name"] == lamp.name and "comparison_lamp" not in seen["waiting_for"]


def test_the_calibrated_spectrum_comes_before_the_cleaned_2d_frame(system, s3, api, sim_night, reduced_night):
    """A science frame on a night whose lamp is reduced: its calibrated spectrum is listed
    while its whole 2-D frame still waits for its cosmic-ray cleaning (`cleaning: queued`,
    a quicklook preview); then the cleaned `cfzst_` frame replaces the quicklook, in the
    index and in storage, and its timeline shows each step in order."""
    night = "2024-03-14"
    source = sim_night / "0023_EG21_400M2_GG455.fits"
    name = "0099_EG21_again.fits"
    key = f"{system.raw_prefix}{night}/{name}"
    s3.put_object(Bucket=system.raw_bucket, Key=key, Body=source.read_bytes())
    file_id = file_id_for(system.raw_bucket, key)
    deadline, early = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        f = api.json(f"/api/files/{file_id}") if api.get(f"/api/files/{file_id}").status_code == 200 else {}
        kinds = {p["kind"] for p in f.get("products", [])}
        if "calibrated" in kinds and early is None:
            early = f
        if f.get("status") == "reduced" and system.idle():
            break
        time.sleep(0.05)
    assert early is not None, f
    early_kinds = {p["kind"] for p in early["products"]}
    assert early["status"] == "reducing" and early["cleaning"] == "queued", early
    assert "quicklook" in early_kinds and "reduced" not in early_kinds, early_kinds
    assert early["spectra_status"] == "calibrated"
    windows = early["reduction"]["cosmic_windows"]
    assert windows["pixels"] > 0 and windows["rows"] and "LACosmic" in windows["method"], windows
    assert early["reduction"]["steps_skipped"]["cosmic"].startswith("deferred")
    kinds = {p["kind"] for p in f["products"]}
    assert f["status"] == "reduced" and not f.get("cleaning"), f
    assert {"reduced", "preview_reduced", "calibrated"} <= kinds and "quicklook" not in kinds, kinds
    assert f["reduction"]["cosmic_pixels"] > 0 and "cosmic" in f["reduction"]["steps_run"]
    # the spectra were not extracted again: the same products
    def calibrated(item):
        return [{k: v for k, v in p.items() if k != "url"} for p in item["products"] if p["kind"] == "calibrated"]

    assert calibrated(f) == calibrated(early)
    steps = ("uploaded_at", "event_at", "indexed_at", "started_at", "reduced_at", "extracted_at", "calibrated_at",
             "cleaned_at")
    times = [datetime.fromisoformat(f["timeline"][k].replace("Z", "+00:00")) for k in steps]
    assert times == sorted(times), f["timeline"]
    products_bucket = system.stack.definition["products_bucket"]["name"]
    listed = s3.list_objects_v2(Bucket=products_bucket, Prefix=f"{night}/0099_EG21_again/")
    names = [o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", [])]
    # the quicklook, superseded, is gone from storage too: every object there is listed
    assert not any("quicklook" in n for n in names), names
    assert sorted(names) == sorted(p["key"].rsplit("/", 1)[1] for p in f["products"])


def test_a_night_without_a_lamp_is_calibrated_with_the_nearest_earlier_nights_lamp(system, s3, api, sim_night,
                                                                                 reduced_night):
    import numpy as np

    from infra.simulator import geometry

    night = "2024-03-18"  # four days after the calibrated night: no lamp, no bias, no flat of its own
    truth = _truth(sim_night)
    science = sorted(p for p in sim_night.glob("*.fits") if "EG21" in p.name)
    ids = _upload(system, s3, night, science)
    files = _settle(system, api, night)
    for name in ids:
        f = files[name]
        assert f["spectra_status"] == "calibrated" and f.get("spectra_reason") is None, f
        assert f["lamp"]["night"] == "2024-03-14"
        assert any("from night 2024-03-14" in n for n in f["calibration_notes"]), f["calibration_notes"]
        w = f["spectra"][0]["wavelength"]
        assert w["lamp_night"] == "2024-03-14" and w["rms_pixels"] < 0.1
        frame_truth = truth[name]["wavelength_solution"]
        true = np.polynomial.chebyshev.chebval(geometry.column_to_x(
            np.array([geometry.FIRST_LIT_COL, geometry.LAST_LIT_COL]), frame_truth["shift"]),
            frame_truth["coefficients"])
        assert w["range"][0] == pytest.approx(true[0], abs=0.1) and w["range"][1] == pytest.approx(true[1], abs=0.1)


def test_real_blue_science_with_no_lamp_at_all_says_so_at_the_top(system, s3, api):
    """The quickreduce frames (Feige 110, GALEX J0316; Blue, 400 M1, 2x2): no lamp, bias or
    flat exists for them anywhere, so they are extracted and wait for a lamp, saying why."""
    from .conftest import SHARED_REAL

    folder = SHARED_REAL / "quickreduce_testdata"
    if not folder.is_dir():
        pytest.skip("../shared/data/real/quickreduce_testdata is not here (a clone without ../shared)")
    night = "2019-11-11"
    ids = _upload(system, s3, night, sorted(folder.glob("*.fits")))
    files = _settle(system, api, night, timeout=180)
    for name in ids:
        f = files[name]
        assert f["status"] == "reduced" and f["spectra"], f
        assert f["spectra_status"] == "waiting_for_lamp", f
        assert "no comparison lamp fits this setup" in f["spectra_reason"]
        assert "comparison lamp" in f["spectra_fix"]
