"""The page in a real browser (Debian's chromium driven by Playwright): it signs in
through its own form, lists the night's files the user may see, shows new ones without
a reload, says where users look whether a science frame's spectra are calibrated, and
whose frame it is, and reduces a frame again with other settings."""
import json
import uuid

import pytest

from golive_data.index import FileIndex, file_id_for
from tests.conftest import new_user, real_fits, sign_in_page, wait_signed_in


def test_page_lists_files_and_updates_live(browser, system, s3, api, staff_user, tmp_path):
    night = "2099-12-%02d" % (uuid.uuid4().int % 28 + 1)  # newest night, so the page opens on it

    def put(name, body):
        key = f"{system.raw_prefix}{night}/{name}"
        s3.put_object(Bucket=system.raw_bucket, Key=key, Body=body)
        return api.wait_for(file_id_for(system.raw_bucket, key))

    put("0001_arc.fits", real_fits("goodman_red_comp.fits"))
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    sign_in_page(page, system, staff_user.username, staff_user.password)
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


def _index(system):
    return FileIndex(system.stack.client("dynamodb"), system.stack.definition["index_table"]["name"])


def test_spectra_status_is_said_in_the_list_and_at_the_top_of_the_card(browser, system, staff_user, tmp_path):
    # Items as the reduction writes them, put straight into the local stack's index.
    index = _index(system)
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
    sign_in_page(page, system, staff_user.username, staff_user.password)
    _open_night(page, night)
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


# ---- signing in, and who sees what --------------------------------------------------------
def _open_night(page, night):
    page.wait_for_selector("#night-select option[value='%s']" % night, state="attached")
    page.select_option("#night-select", night)


def _names(page):
    return page.locator("#files tbody tr td.name").all_inner_texts()


def _stored_session(page):
    return json.loads(page.evaluate("sessionStorage.getItem('golive.session')") or "null")


@pytest.fixture(scope="module")
def proposals_night(system):
    """A night with a frame of proposal A, one of proposal B, one whose proposal no one
    knows, and a bias; and an observer of A."""
    tag = uuid.uuid4().hex[:6].upper()
    a, b = f"SOTEST-{tag}-A", f"SOTEST-{tag}-B"
    night = "2097-02-%02d" % (uuid.uuid4().int % 28 + 1)
    index = _index(system)
    index.record_file({**_science(night, "0200_bias.fits"), "obstype": "BIAS", "status": "indexed",
                       "proposal_header": b})
    index.record_file(_science(night, "0201_ours.fits", proposal_header=a.lower().replace("-", " ")))
    index.record_file(_science(night, "0202_theirs.fits", proposal_header=b))
    index.record_file(_science(night, "0203_nobody.fits", proposal_header=""))
    observer = new_user(system, "observer", proposals=[a])
    return {"night": night, "a": a, "b": b, "observer": observer}


def test_a_wrong_password_shows_cognitos_message_and_no_files(browser, system, staff_user):
    page = browser.new_page()
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(system.url + "/")
    assert page.locator("#signin").is_visible() and not page.locator("#app").is_visible()
    page.fill("#signin-username", staff_user.username)
    page.fill("#signin-password", staff_user.password + "x")
    page.click("#signin-submit")
    page.wait_for_function("document.querySelector('#signin-error').textContent !== ''")
    assert page.locator("#signin-error").inner_text() == "Incorrect username or password."
    assert not page.locator("#app").is_visible() and page.locator("#files tbody tr").count() == 0
    assert not page.locator("#whoami").is_visible()
    assert not [u for u in asked if "/api/" in u and "/api/auth/config" not in u], asked
    assert _stored_session(page) is None
    page.close()


def test_an_observer_sees_their_proposals_frames_and_the_calibrations_only(browser, system, proposals_night):
    n, observer = proposals_night, proposals_night["observer"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    sign_in_page(page, system, observer.username, observer.password)
    assert page.locator("#whoami").inner_text() == observer.username + " · observer"
    _open_night(page, n["night"])
    page.wait_for_selector("#files tbody tr >> text=0201_ours.fits")
    assert _names(page) == ["0200_bias.fits", "0201_ours.fits"]
    assert page.locator("#night-select option[value='%s']" % n["night"]).inner_text() == n["night"] + " (2)"

    page.locator("td.name", has_text="0201_ours.fits").click()
    page.wait_for_selector("#detail .proposal")
    assert page.locator("#detail .proposal").inner_text() == f"proposal {n['a']} (from its PROPOSAL header)"
    assert page.locator("#detail .access-note").count() == 0
    page.wait_for_selector("#reduce-form button[type=submit]:not([disabled])")    # a member reduces it again

    page.locator("td.name", has_text="0200_bias.fits").click()
    page.wait_for_function("document.querySelector('#detail .proposal').textContent.startsWith('calibration')")
    assert page.locator("#detail .proposal").inner_text() == "calibration: visible to every signed-in user"
    assert page.locator("#reduce-form").count() == 0                               # calibrations: staff only
    page.close()


def test_staff_see_a_frame_of_no_known_proposal_with_why(browser, system, staff_user, proposals_night):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    sign_in_page(page, system, staff_user.username, staff_user.password)
    assert page.locator("#whoami").inner_text() == staff_user.username + " · staff"
    _open_night(page, proposals_night["night"])
    page.wait_for_selector("#files tbody tr >> text=0203_nobody.fits")
    assert _names(page) == ["0200_bias.fits", "0201_ours.fits", "0202_theirs.fits", "0203_nobody.fits"]
    row = page.locator("#files tbody tr", has_text="0203_nobody.fits")
    assert row.locator(".access-badge").inner_text() == "proposal unknown"
    row.locator("td.name").click()
    note = page.locator("#detail .access-note")
    note.wait_for()
    assert "visible to staff only" in note.inner_text() and "PROPOSAL header is empty" in note.inner_text()
    assert page.locator("#detail .proposal").inner_text() == "proposal unknown"
    # Right under the title, before everything else the card says.
    order = page.evaluate("Array.from(document.querySelector('#detail').children).map(e => e.className || e.tagName)")
    assert order.index("access-note") < order.index("previews"), order
    page.close()


def test_signing_out_returns_to_the_form_and_the_token_stays_out_of_urls_and_local_storage(browser, system,
                                                                                            staff_user):
    context = browser.new_context()
    page = context.new_page()
    sent = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    sign_in_page(page, system, staff_user.username, staff_user.password)
    page.wait_for_function("document.querySelector('#live').textContent.includes('updated')")
    token = _stored_session(page)["access"]
    assert token and page.evaluate("localStorage.length") == 0
    api_calls = [(u, h) for u, h in sent if u.startswith(system.url + "/api/") and "/api/auth/config" not in u]
    assert api_calls and all(h == "Bearer " + token for _, h in api_calls), api_calls
    assert not [u for u, _ in sent if token in u or "Bearer" in u]

    page.click("#signout")
    assert page.locator("#signin").is_visible() and not page.locator("#app").is_visible()
    assert not page.locator("#whoami").is_visible() and page.locator("#files tbody tr").count() == 0
    assert _stored_session(page) is None
    page.reload()
    page.wait_for_selector("#signin")
    assert page.locator("#signin").is_visible() and not page.locator("#app").is_visible()
    assert page.evaluate("localStorage.length") == 0
    context.close()


def test_a_refused_token_is_refreshed_once_then_the_form_comes_back(browser, system, staff_user):
    context = browser.new_context()
    page = context.new_page()
    sign_in_page(page, system, staff_user.username, staff_user.password)
    stored = _stored_session(page)
    page.evaluate("s => sessionStorage.setItem('golive.session', s)",
                  json.dumps({**stored, "access": "not-a-token"}))
    page.reload()       # the page's first call answers 401: it refreshes and carries on
    wait_signed_in(page, staff_user.username)
    renewed = _stored_session(page)
    assert renewed["access"] not in ("not-a-token", "") and renewed["refresh"] == stored["refresh"]

    page.evaluate("s => sessionStorage.setItem('golive.session', s)",
                  json.dumps({**renewed, "access": "not-a-token", "refresh": "not-a-refresh-token"}))
    page.reload()       # refused, and the refresh refused too: back to the form
    page.wait_for_selector("#signin")
    assert "sign in again" in page.locator("#signin-error").inner_text()
    assert not page.locator("#app").is_visible() and _stored_session(page) is None
    context.close()


def test_a_member_reduces_a_frame_again_through_the_form(browser, system, proposals_night):
    n, observer = proposals_night, proposals_night["observer"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sign_in_page(page, system, observer.username, observer.password)
    _open_night(page, n["night"])
    page.locator("td.name", has_text="0201_ours.fits").click()
    form = page.locator("#reduce-form")
    form.locator("button[type=submit]:not([disabled])").wait_for()
    # Built from GET /api/settings: a select for choices, a checkbox for booleans, numbers with their bounds.
    assert form.locator("select[name=flat_normalization] option").all_inner_texts() == [
        "mean", "simple", "spline", "function"]
    assert form.locator("input[name=ignore_bias]").get_attribute("type") == "checkbox"
    order = form.locator("input[name=flat_normalization_order]")
    assert (order.get_attribute("type"), order.get_attribute("min"), order.get_attribute("max")) == ("number", "1", "50")

    # A value out of bounds: the API's message, nothing queued.
    order.fill("99")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelector('#reduce-result').classList.contains('error')")
    assert "flat_normalization_order" in page.locator("#reduce-result").inner_text()

    order.fill("15")
    form.locator("select[name=flat_normalization]").select_option("spline")
    with page.expect_response(lambda r: r.url.endswith("/api/files/reduce/")) as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.status == 202
    assert answer.value.request.post_data_json == {"file_id": file_id_for("page-test", f"{n['night']}/0201_ours.fits"),
                                                   "settings": {"flat_normalization": "spline"}}
    page.wait_for_function("document.querySelector('#reduce-result').classList.contains('ok')")
    result = page.locator("#reduce-result").inner_text()
    assert "queued" in result and 'flat_normalization = "spline"' in result, result
    version = answer.value.json()["version"]
    newest = page.locator("#detail .version-list li.version").first
    newest.wait_for()
    assert newest.get_attribute("data-version") == str(version)
    assert 'flat_normalization = "spline"' in newest.inner_text()
    page.close()
