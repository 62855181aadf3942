"""The page in a real browser (Debian's chromium driven by Playwright): it lists the
night's files and shows new ones without a reload."""
import uuid

from functions.api.chalicelib.index import file_id_for
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
