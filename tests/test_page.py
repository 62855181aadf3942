"""The page in a real browser (Debian's chromium driven by Playwright): it lists the
night's files, shows new ones without a reload, and says where users look whether a
science frame's spectra are calibrated."""
import uuid

from golive_data.index import FileIndex, file_id_for
from tests.conftest import real_fits


def test_page_lists_files_and_updates_live(browser, system, s3, api, tmp_path):
    night = "2099-12-%02d" % (uuid.uuid4().int % 28 + 1)  # newest night, so the page opens on it

    def put(name, body):
        key = f"{system.raw_prefix}{night}/{name}"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=body)
        return api.wait_for(file_id_for(system.raw_bucket, key))

    put("0001_arc.fits", real_fits("goodman_red_comp.fits"))
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    page.goto(system.url + "/")
    page.wait_for_selector("#files tbody tr")
    assert page.locator("#night-select").input_value() == night
    first = page.locator("#files tbody tr").first
    assert first.locator("td.name").inner_text() == "0001_arc.fits"
    assert first.locator("td.obstype").inner_text() == "COMP"
    assert first.locator(".status").inner_text() == "unsupported"  # a 10x10 stub of a real frame

    page.evaluate("window.__marker = 'no reload'")
    put("0002_flat.fits", real_fits("goodman_blue_flat.fits"))
    put("0003_broken.fits", b"this is not a FITS file")
    page.wait_for_selector("#files tbody tr:nth-child(3)", timeout=10000)
    page.wait_for_function("document.querySelector('#files tbody tr:nth-child(2) .status').textContent === 'indexed'")
    assert page.evaluate("window.__marker") == "no reload"
    rows = page.locator("#files tbody tr")
    assert rows.locator("td.name").all_inner_texts() == ["0001_arc.fits", "0002_flat.fits", "0003_broken.fits"]
    broken = rows.nth(2)
    assert broken.locator(".status").inner_text() == "failed"
    assert "not a FITS file" in broken.locator(".error").inner_text()
    assert "3 files" in page.locator("#counts").inner_text()

    page.select_option("#type-filter", "FLAT")
    assert rows.locator("td.name").all_inner_texts() == ["0002_flat.fits"]
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    page.close()


CALIBRATED_NOTES = [
    "lamp 0274_Fe.fits: binning 1x2 vs 2x2, slit 0.45LS vs 1LS (solution mapped to this frame's binning)",
    "flat norm_master_flat_BLUE_400_M1: slit 3.2LS vs 1LS",
]
NOT_CALIBRATED_REASON = ("target 1: grating-equation solution refused: the brightest lamp lines are not explained "
                         "(RMS 0.41 px > 0.15 px); target 2: the same")


def _science(night, name, **fields):
    return {"file_id": file_id_for("page-test", f"{night}/{name}"), "night": night, "file_name": name,
            "obstype": "OBJECT", "object": "Feige110", "exptime": 30.0, "status": "reduced",
            "configuration": "BLUE_400_M1_NO_FILTER_1LS_2x2_SPECTROSCOPIC-2X2", "products": [], **fields}


def test_spectra_status_is_said_in_the_list_and_at_the_top_of_the_card(browser, system, tmp_path):
    # Items as the reduction writes them, put straight into the local stack's index.
    index = FileIndex(system.stack.client("dynamodb"), system.stack.definition["index_table"]["name"])
    night = "2098-01-%02d" % (uuid.uuid4().int % 28 + 1)
    index.record_file(_science(night, "0101_good.fits", spectra_status="calibrated", spectra_reason=None,
                               spectra_fix=None, calibration_notes=CALIBRATED_NOTES,
                               spectra=[{"number": 1, "row": 470.2, "fwhm": 4.1, "extraction": "fractional"}]))
    index.record_file(_science(night, "0102_bad.fits", spectra_status="not_calibrated",
                               spectra_reason=NOT_CALIBRATED_REASON, spectra_fix="check GRT_ANG/CAM_ANG",
                               calibration_notes=[], spectra=[
                                   {"number": 1, "row": 300.0, "fwhm": 3.9, "extraction": "fractional",
                                    "wavelength": None, "wavelength_error": "grating-equation solution refused"}]))
    index.record_file(_science(night, "0103_quick.fits", status="reducing"))   # no spectra step yet
    index.record_file({**_science(night, "0100_bias.fits"), "obstype": "BIAS", "status": "indexed",
                       "spectra_status": "calibrated"})                         # never a badge on a bias

    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(system.url + "/")
    page.wait_for_selector("#night-select option[value='%s']" % night, state="attached")
    page.select_option("#night-select", night)
    page.wait_for_selector("#files tbody tr[data-file-id] >> text=0103_quick.fits")
    rows = page.locator("#files tbody tr")
    assert rows.locator("td.name").all_inner_texts() == ["0100_bias.fits", "0101_good.fits", "0102_bad.fits",
                                                         "0103_quick.fits"]
    badges = {rows.nth(i).locator("td.name").inner_text(): rows.nth(i).locator(".spectra-badge")
              for i in range(4)}
    assert badges["0100_bias.fits"].count() == 0 and badges["0103_quick.fits"].count() == 0
    good, bad = badges["0101_good.fits"], badges["0102_bad.fits"]
    assert good.inner_text() == "spectrum: calibrated"
    assert bad.inner_text() == "spectrum: not calibrated"
    title = bad.get_attribute("title")
    assert NOT_CALIBRATED_REASON in title and "fix: check GRT_ANG/CAM_ANG" in title
    assert CALIBRATED_NOTES[0] in good.get_attribute("title")
    # Short enough for the table: one line, the status cell no wider than the badge needs.
    box = bad.bounding_box()
    assert box["height"] < 24 and box["width"] < 220, box

    rows.nth(2).locator("td.name").click()
    summary = page.locator("#detail .spectra-summary")
    summary.wait_for()
    text = summary.inner_text()
    assert "spectra: not calibrated" in text and NOT_CALIBRATED_REASON in text and "check GRT_ANG/CAM_ANG" in text
    # At the top of the card: right under the title, before previews and targets.
    order = page.evaluate("Array.from(document.querySelector('#detail').children).map(e => e.className || e.tagName)")
    assert order.index("spectra-summary spectra-not_calibrated") < order.index("previews"), order

    rows.nth(1).locator("td.name").click()
    page.wait_for_function("document.querySelector('#detail .spectra-summary').textContent.includes('0274_Fe')")
    notes = page.locator("#detail .calibration-notes li").all_inner_texts()
    assert notes == CALIBRATED_NOTES
    assert "spectra: calibrated" in page.locator("#detail .spectra-summary").inner_text()
    page.screenshot(path=str(tmp_path / "spectra.png"), full_page=True)
    page.close()
