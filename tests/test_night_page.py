"""The night page an observer works from (issue 12), in a real browser (Debian's chromium
through Playwright) against the embedded stack, on the simulator's night reduced for real:
the card beside the list leaves every column readable and the clicked row in view; on a
phone it is a full-width panel; search, type, night and file live in the address; UT,
airmass and pointing are listed; a toast in the viewport says when the list is stale and
when it is current again; light mode is remembered and loads no BokehJS; product URLs are
read again before they expire; the rows work from the keyboard."""
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from golive_data.index import file_id_for
from tests.conftest import wait_signed_in

UT_CLOCK = r"\d{2}:\d{2}:\d{2} UT"


@pytest.fixture(scope="module")
def sim(system, s3, api, sim_night):
    """The simulator's night (10 bias, 10 flats, 2 lamps, 3 science frames) on a night of
    its own, reduced: calibrations first, then the lamps, then the science frames, each
    stage left to finish, and then until a consistency sweep finds nothing more to do (so
    no file changes under a test); each file as the API serves it."""
    night = "2094-%02d-%02d" % (uuid.uuid4().int % 12 + 1, uuid.uuid4().int % 28 + 1)
    paths = sorted(sim_night.glob("*.fits"))
    stages = [[p for p in paths if "zero" in p.name or "quartz" in p.name],
              [p for p in paths if "HgArNe" in p.name]]
    stages.append([p for p in paths if p not in stages[0] + stages[1]])
    ids = {}
    for stage in stages:
        for path in stage:
            key = f"{system.raw_prefix}{night}/{path.name}"
            s3.put_object(Bucket=system.raw_bucket, Key=key, Body=path.read_bytes())
            ids[path.name] = file_id_for(system.raw_bucket, key)
        for path in stage:
            api.wait_for(ids[path.name], timeout=300)
        system.wait_idle(timeout=300)

    def state():
        return {f["file_id"]: f["updated_at"] for f in api.json("/api/files", night=night, limit=500)["files"]}

    deadline, seen = time.monotonic() + 180, state()
    while True:
        time.sleep(system.sweep_seconds + 2)
        system.wait_idle(timeout=300)
        now = state()
        if now == seen:
            break
        assert time.monotonic() < deadline, "the night kept changing"
        seen = now
    frames = {name: api.wait_for(fid) for name, fid in ids.items()}
    listed = api.json("/api/files", night=night, limit=500)["files"]   # the masters too
    return {"night": night, "frames": frames, "listed": listed}


def _science(sim):
    return sorted((f for f in sim["frames"].values() if f["obstype"] == "OBJECT"), key=lambda f: f["file_name"])


def _open(context, system, user, view: str, viewport=None):
    """A page opened on a link with a view in its address (`night=...&q=...`), signed in
    through the form; returns once the night's rows are listed."""
    page = context.new_page()
    if viewport:
        page.set_viewport_size(viewport)
    page.goto(f"{system.url}/#{view}")
    page.fill("#signin-username", user.username)
    page.fill("#signin-password", user.password)
    page.click("#signin-submit")
    wait_signed_in(page, user.username)
    _listed(page, re.search(r"night=([^&]+)", view).group(1))
    return page


def _listed(page, night):
    try:
        page.wait_for_function("n => document.querySelector('#night-select').value === n && "
                               "document.querySelectorAll('#files tbody tr').length > 0", arg=night)
    except Exception as exc:   # what the page showed instead
        shown = page.evaluate("""() => ({address: location.hash, night: document.querySelector('#night-select').value,
            rows: document.querySelectorAll('#files tbody tr').length,
            live: document.querySelector('#live').textContent, toast: document.querySelector('#toast').textContent})""")
        raise AssertionError(f"night {night} not listed: {shown}") from exc


def _card(page):
    """The card, once it shows its file's versions (it is built again when they arrive)."""
    page.wait_for_function("() => { const v = document.querySelector('#detail .versions'); "
                           "return v && !v.textContent.includes('loading'); }")
    return page.locator("#detail")


def _in_viewport(page, box):
    size = page.viewport_size
    return box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5 \
        and box["y"] + box["height"] <= size["height"] + 0.5


def _lines(page, selector):
    """How many lines of text the element's content box holds."""
    return page.evaluate("""s => { const el = document.querySelector(s); const cs = getComputedStyle(el);
        const inner = el.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
        return inner / parseFloat(cs.lineHeight); }""",
                         selector)


def _images_loaded(page):
    page.wait_for_function("Array.from(document.querySelectorAll('#detail img'))"
                           ".every(i => i.complete && i.naturalWidth > 0)")


def _until(page, done, seconds):
    """Let the page run until `done()` (a condition on what the test recorded) or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        page.wait_for_timeout(200)


def _contrast(page, selector):
    """WCAG contrast ratio of an element's text on its background (the first opaque one up the tree)."""
    return page.evaluate("""s => {
        const rgb = c => c.match(/[\\d.]+/g).map(Number);
        const lin = x => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
        const lum = c => { const v = rgb(c).slice(0, 3).map(lin);
                           return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
        let el = document.querySelector(s); const fg = getComputedStyle(el).color; let bg = 'rgb(0, 0, 0)';
        for (; el; el = el.parentElement) { const b = getComputedStyle(el).backgroundColor; const a = rgb(b);
            if (a.length < 4 || a[3] > 0.9) { bg = b; break; } }
        const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
        return (hi + 0.05) / (lo + 0.05); }""", selector)


def _hash(page):
    return dict(re.findall(r"([^#&=]+)=([^&]*)", page.evaluate("decodeURIComponent(location.hash)")))


# ---- the layout --------------------------------------------------------------------------
def test_an_open_card_leaves_the_status_in_view_and_rows_on_one_line(browser, system, staff_user, sim, tmp_path):
    page = _open(browser, system, staff_user, f"night={sim['night']}", {"width": 1400, "height": 700})
    page.wait_for_function("n => document.querySelectorAll('#files tbody tr').length === n", arg=len(sim["listed"]))
    # The last row the viewport shows entirely, near its bottom edge.
    last = page.evaluate("""() => { const rows = Array.from(document.querySelectorAll('#files tbody tr'));
        return rows.filter(r => r.getBoundingClientRect().bottom <= innerHeight).pop().dataset.fileId; }""")
    heights = page.evaluate("Array.from(document.querySelectorAll('#files tbody tr')).map(r => r.offsetHeight)")
    assert max(heights) <= min(heights) + 1, heights                # one line a file, the products too
    row = page.locator(f"#files tbody tr[data-file-id='{last}']")
    row.locator("td.name").click()
    _card(page)
    page.wait_for_timeout(300)                      # images arrive; nothing may move the row
    page.screenshot(path=str(tmp_path / "card-1400x700.png"))

    status = page.locator("#files thead th.c-status").bounding_box()
    assert _in_viewport(page, status), status
    assert _lines(page, f"#files tbody tr[data-file-id='{last}'] td.config") < 1.5
    config = row.locator("td.config")
    assert config.get_attribute("title") == sim["frames"][row.locator("td.name").inner_text()]["configuration"]
    assert _in_viewport(page, row.bounding_box()), row.bounding_box()
    assert row.get_attribute("aria-current") == "true"
    # Every row on one line: no row taller than the first.
    heights = page.evaluate("Array.from(document.querySelectorAll('#files tbody tr')).map(r => r.offsetHeight)")
    assert max(heights) <= min(heights) + 1, heights
    # The card beside the list, in the viewport, scrolling on its own; no horizontal scroll.
    card, table = page.locator("#detail").bounding_box(), page.locator("#files").bounding_box()
    assert card["x"] >= table["x"] + table["width"] and _in_viewport(page, card), (card, table)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert page.evaluate("getComputedStyle(document.querySelector('#detail')).overflowY") == "auto"
    page.close()


@pytest.mark.parametrize("width,height", [(390, 844), (768, 1024)])
def test_on_a_phone_or_tablet_the_card_is_a_full_width_panel_that_closes(browser, system, staff_user, sim, tmp_path,
                                                                         width, height):
    page = _open(browser, system, staff_user, f"night={sim['night']}", {"width": width, "height": height})
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    assert not page.locator("#files thead th.c-radec").is_visible()        # hidden on narrow screens
    assert page.locator("#files thead th.c-ut").is_visible()
    page.screenshot(path=str(tmp_path / f"list-{width}.png"))
    science = _science(sim)[0]
    row = page.locator(f"#files tbody tr[data-file-id='{science['file_id']}']")
    row.locator("td.name").click()
    card = _card(page)
    box = card.bounding_box()
    assert box["x"] <= 0.5 and box["width"] >= width - 1, box
    close = card.locator("button.close")
    assert _in_viewport(page, close.bounding_box())
    page.screenshot(path=str(tmp_path / f"card-{width}.png"))
    close.click()
    assert not card.is_visible()
    row.locator("td.name").click()
    _card(page)
    page.keyboard.press("Escape")
    assert not card.is_visible()
    assert page.evaluate("document.activeElement.dataset.fileId") == science["file_id"]   # back to its row
    page.close()


# ---- the columns, the search and the address ----------------------------------------------
def test_the_list_shows_ut_airmass_and_pointing_from_the_headers(browser, system, staff_user, sim):
    page = _open(browser, system, staff_user, f"night={sim['night']}", {"width": 1400, "height": 900})
    row = page.locator("#files tbody tr", has_text="0022_EG21_400M2_GG455.fits")
    # DATE-OBS 2024-03-15T00:30:26.531, AIRMASS 1.626, RA 03:10:30.980, DEC -68:36:03.400
    assert row.locator("td.c-ut").inner_text() == "00:30:26"
    assert row.locator("td.c-ut").get_attribute("title") == "exposure start 2024-03-15T00:30:26.531 UT"
    assert row.locator("td.c-airmass").inner_text() == "1.63"
    assert row.locator("td.c-radec").inner_text() == "03:10:30 -68:36:03"
    headers = page.locator("#files thead th").all_inner_texts()
    assert headers[:8] == ["File", "Type", "Object", "UT", "Exp", "Airmass", "RA / Dec", "Configuration"]
    page.close()


def test_the_search_filters_by_object_and_the_address_keeps_the_view(browser, system, staff_user, sim, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = _open(context, system, staff_user, f"night={sim['night']}")
    page.fill("#search", "eg21")
    names = page.locator("#files tbody td.name").all_inner_texts()
    assert names == ["0022_EG21_400M2_GG455.fits", "0023_EG21_400M2_GG455.fits"]
    page.fill("#search", "LTT")
    assert page.locator("#files tbody td.name").all_inner_texts() == ["0024_LTT3218_400M2_GG455.fits"]
    page.fill("#search", "simulated")                   # the proposal
    of_proposal = [f for f in sim["listed"] if "SIMULATED" in (f.get("proposal"), f.get("proposal_header"))]
    assert len(of_proposal) >= 25 and page.locator("#files tbody tr").count() == len(of_proposal)
    page.fill("#search", "hgarne")
    page.select_option("#type-filter", "COMP")
    lamp = sim["frames"]["0025_HgArNe_400M2_GG455.fits"]
    page.locator(f"#files tbody tr[data-file-id='{lamp['file_id']}'] td.name").click()
    page.locator("#detail h2").wait_for()
    assert page.locator("#counts span").all_inner_texts()[:2] == ["%d files" % len(sim["listed"]), "2 shown"]
    assert _hash(page) == {"night": sim["night"], "type": "COMP", "q": "hgarne", "file": lamp["file_id"]}

    page.reload()
    wait_signed_in(page, staff_user.username)
    page.locator("#detail h2").wait_for()
    assert page.locator("#search").input_value() == "hgarne"
    assert page.locator("#type-filter").input_value() == "COMP"
    assert page.locator("#files tbody td.name").all_inner_texts() == ["0021_HgArNe_400M2_GG455.fits",
                                                                      "0025_HgArNe_400M2_GG455.fits"]
    assert page.locator("#detail h2").inner_text().startswith("0025_HgArNe_400M2_GG455.fits")
    page.screenshot(path=str(tmp_path / "search-restored.png"))

    # The link, shared: another browser opens the same view after signing in.
    link = page.url
    other = browser.new_context(viewport={"width": 1400, "height": 900})
    shared = _open(other, system, staff_user, link.split("#", 1)[1])
    shared.locator("#detail h2").wait_for()
    assert shared.locator("#files tbody tr").count() == 2 and shared.locator("#search").input_value() == "hgarne"
    other.close()
    context.close()


def test_the_night_downloads_as_a_url_list_and_every_product_in_the_card_is_a_download(browser, system, api,
                                                                                        staff_user, sim):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    science = _science(sim)[0]
    page = _open(context, system, staff_user, f"night={sim['night']}&file={science['file_id']}")
    page.click("#downloads summary")
    with page.expect_download() as text:
        page.click("#download-text")
    assert text.value.suggested_filename == f"goodman-{sim['night']}-urls.txt"
    urls = open(text.value.path()).read().splitlines()
    listed = api.json(f"/api/nights/{sim['night']}/downloads")["files"]
    assert sorted(u.split("?")[0] for u in urls) == sorted(f["url"].split("?")[0] for f in listed)
    assert re.search("the URLs expire at " + UT_CLOCK, page.locator("#downloads-note").inner_text())
    with page.expect_download() as as_json:
        page.click("#download-json")
    assert as_json.value.suggested_filename == f"goodman-{sim['night']}-urls.json"
    assert json.load(open(as_json.value.path()))["night"] == sim["night"]

    card = _card(page)
    links = card.locator(".downloads-list a.product")
    assert links.count() == len(science["products"])
    assert all(links.nth(i).get_attribute("download") for i in range(links.count()))
    context.close()


# ---- a toast where the eye is ------------------------------------------------------------
def test_a_toast_says_when_the_list_stopped_updating_and_when_it_is_back(browser, system, staff_user, sim, tmp_path):
    page = _open(browser, system, staff_user, f"night={sim['night']}", {"width": 1400, "height": 600})
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    toast = page.locator("#toast")
    assert not toast.is_visible()
    page.route("**/api/files*", lambda route: route.abort())
    page.wait_for_function("document.querySelector('#toast').textContent.includes('not updated since')")
    said = toast.inner_text()
    assert re.fullmatch(r"not updated since " + UT_CLOCK + r" \(the API is not answering: .+\)", said), said
    assert toast.get_attribute("role") == "status" and toast.get_attribute("aria-live") == "polite"
    assert page.evaluate("window.scrollY") > 0 and _in_viewport(page, toast.bounding_box())
    assert _contrast(page, "#toast") >= 4.5
    page.screenshot(path=str(tmp_path / "stale.png"))

    page.unroute("**/api/files*")
    page.wait_for_function("document.querySelector('#toast').textContent.startsWith('back at')", timeout=5000)
    assert re.match(r"back at " + UT_CLOCK, toast.inner_text())
    assert _contrast(page, "#toast") >= 4.5
    page.screenshot(path=str(tmp_path / "back.png"))
    toast.wait_for(state="hidden", timeout=10000)          # fades after a few seconds
    page.close()


# ---- light mode ----------------------------------------------------------------------------
def test_light_mode_is_remembered_and_loads_no_bokeh(browser, system, staff_user, sim, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    asked = []
    context.on("request", lambda r: asked.append(r.url))
    page = _open(context, system, staff_user, f"night={sim['night']}")
    page.check("#light-mode")
    assert page.evaluate("localStorage.getItem('golive.lightMode')") == "1"
    asked.clear()
    page.reload()
    wait_signed_in(page, staff_user.username)
    _listed(page, sim["night"])
    assert page.locator("#light-mode").is_checked()

    # The night summary, drawn here: a point per science frame, which opens its card.
    science = _science(sim)
    snr = page.locator("#summary figure.spark[data-metric=snr] circle.spark-point")
    assert snr.count() == len(science)
    assert _contrast(page, "#summary figure.spark figcaption") >= 4.5
    snr.nth(1).click()
    page.locator("#detail h2").wait_for()
    assert page.locator("#detail h2").inner_text().startswith(science[1]["file_name"])
    previews = page.locator("#detail .previews img")
    assert previews.count() == 2                                   # raw and reduced, as PNGs
    _images_loaded(page)
    assert page.locator("#detail .interactive").count() == 0
    page.screenshot(path=str(tmp_path / "light-mode.png"), full_page=True)
    assert not [u for u in asked if "bokeh" in u.lower() or u.endswith("plots.js")], asked

    page.uncheck("#light-mode")                                    # off: forgotten, nothing kept
    assert page.evaluate("localStorage.length") == 0
    context.close()


def test_without_plots_js_the_card_keeps_the_pngs_and_says_why(browser, system, staff_user, sim, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.route("**/plots.js", lambda route: route.fulfill(status=404, body="not here"))
    science = _science(sim)[0]
    page = _open(context, system, staff_user, f"night={sim['night']}&file={science['file_id']}")
    note = page.locator("#detail .interactive .plot-note.fallback").first
    note.wait_for()
    assert "plots.js did not load" in note.inner_text() and "showing the PNG" in note.inner_text()
    png = page.locator("#detail .interactive figure img").first
    assert png.is_visible()
    _images_loaded(page)
    assert "plots.js did not load" in page.locator("#summary .plot-note").inner_text()
    assert _contrast(page, "#detail .plot-note.fallback") >= 4.5 and _contrast(page, "#summary .plot-note") >= 4.5
    assert page.locator("#summary circle.spark-point").count() > 0       # the plain strip instead
    page.screenshot(path=str(tmp_path / "fallback.png"), full_page=True)
    context.close()


def test_the_card_mounts_the_interactive_views_and_destroys_them_on_close(browser, system, api, staff_user, sim,
                                                                         tmp_path):
    if not (system.static_dir / "plots.js").exists():
        pytest.skip("plots.js is not in this build: the fallback test covers the page without it")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    asked = []
    context.on("request", lambda r: asked.append(r.url))
    science = _science(sim)[0]
    page = _open(context, system, staff_user, f"night={sim['night']}&file={science['file_id']}")
    page.locator("#detail .interactive[data-view=imexam].mounted").wait_for(timeout=30000)
    page.locator("#detail .interactive[data-view=spectrum].mounted").first.wait_for(timeout=30000)
    page.locator("#summary .summary-plot canvas").first.wait_for(timeout=30000)
    assert page.locator("#detail .plot-note.fallback").count() == 0
    assert page.locator("#detail .interactive[data-view=spectrum] figure").first.is_hidden()   # the PNG, kept
    # H-alpha fitted through plots.js's window form, with the model and rest wavelength chosen
    # beside it: the API's fit is listed under the plot (with its redshift), and deleted.
    spectrum = page.locator("#detail .interactive[data-view=spectrum]").first
    spectrum.locator(".fit-controls input[type=number]").fill("6562.8")
    spectrum.locator("button.gp-fit-toggle").click()
    spectrum.locator("input.gp-fit-lo").fill("6500")
    spectrum.locator("input.gp-fit-hi").fill("6620")
    with page.expect_response(lambda r: r.url.endswith("/linefit") and r.request.method == "POST") as fitted:
        spectrum.locator("form.gp-fit-form button[type=submit]").click()
    assert fitted.value.status == 201, fitted.value.text()
    assert fitted.value.request.post_data_json == {"target": 1, "window": [6500, 6620], "model": "gaussian",
                                                   "rest_wavelength": 6562.8}
    row = spectrum.locator(".fits-table tbody tr")
    row.wait_for()
    fit = fitted.value.json()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "absorption gaussian" and abs(float(cells[1].split()[0]) - fit["centre"]) < 0.01, cells
    assert cells[5].startswith("%.5f ± " % fit["redshift"]) and cells[6] == staff_user.username, cells
    page.screenshot(path=str(tmp_path / "interactive.png"), full_page=True)
    row.locator("button", has_text="delete").click()
    spectrum.locator(".fits-table").wait_for(state="detached")
    page.keyboard.press("Escape")
    assert page.locator("#detail").is_hidden() and page.locator("#detail > *").count() == 0
    hosts = {re.match(r"https?://([^/:]+)", u).group(1) for u in asked if u.startswith("http")}
    assert hosts <= {"127.0.0.1", "localhost"}, hosts                 # nothing from another host
    context.close()


# ---- signed URLs read again before they expire ---------------------------------------------
def test_product_urls_are_read_again_before_they_expire_and_on_a_broken_image(browser, system, staff_user, sim):
    night = sim["night"]
    listings = []

    def listing(url):
        return "/api/files?" in url and f"night={night}" in url and "since=" not in url

    def answer(route):
        response = route.fetch()
        data = response.json()
        if not listings:   # the first listing's URLs expire in 2 min 5 s: read again 2 min before, in 5 s
            soon = datetime.now(timezone.utc) + timedelta(seconds=125)
            data["urls_expire_at"] = soon.strftime("%Y-%m-%dT%H:%M:%SZ")
        listings.append((time.monotonic(), data))
        route.fulfill(response=response, body=json.dumps(data))

    context = browser.new_context(viewport={"width": 1400, "height": 700})
    context.route(listing, answer)
    science = _science(sim)[0]
    page = _open(context, system, staff_user, f"night={night}&file={science['file_id']}")
    card = _card(page)
    page.evaluate("document.querySelector('#detail h2').dataset.marker = 'same card'")
    raw = card.locator(".previews img").first
    before = raw.get_attribute("src")
    assert len(listings) == 1

    _until(page, lambda: len(listings) >= 2, 10)
    assert len(listings) == 2, "the night was not read again before its URLs expired"
    assert 3 <= listings[1][0] - listings[0][0] <= 8
    fresh = next(f for f in listings[1][1]["files"] if f["file_id"] == science["file_id"])
    url = next(p["url"] for p in fresh["products"] if p["kind"] == "preview_raw")
    page.wait_for_function("u => document.querySelector('#detail .previews img').getAttribute('src') === u", arg=url)
    assert url != before
    # Quietly: the same card (not rebuilt), the same selection and address.
    assert page.evaluate("document.querySelector('#detail h2').dataset.marker") == "same card"
    assert _hash(page)["file"] == science["file_id"]

    # A product image that does not load: the night is read again, once for that file.
    other = _science(sim)[2]
    pngs = {p["url"].split("?")[0] for p in other["products"] if p["file_name"].endswith(".png")}
    context.route(lambda u: u.split("?")[0] in pngs, lambda route: route.abort())
    page.locator(f"#files tbody tr[data-file-id='{other['file_id']}'] td.name").click()
    _until(page, lambda: len(listings) >= 3, 5)
    assert len(listings) == 3, "a broken image did not ask for new URLs"
    page.wait_for_timeout(2500)                    # the new URLs fail too: not asked again
    assert len(listings) == 3
    context.close()


# ---- the keyboard ------------------------------------------------------------------------
def test_rows_open_and_close_the_card_from_the_keyboard(browser, system, staff_user, sim, tmp_path):
    page = _open(browser, system, staff_user, f"night={sim['night']}", {"width": 1400, "height": 900})
    rows = page.locator("#files tbody tr")
    first, second = rows.nth(0).get_attribute("data-file-id"), rows.nth(1).get_attribute("data-file-id")
    rows.nth(0).focus()
    page.keyboard.press("Enter")
    page.locator("#detail h2").wait_for()
    assert page.evaluate("document.activeElement.id") == "detail"
    assert _hash(page)["file"] == first
    page.keyboard.press("Escape")
    assert not page.locator("#detail").is_visible()
    assert page.evaluate("document.activeElement.dataset.fileId") == first

    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.fileId") == second
    page.keyboard.press(" ")
    page.locator("#detail h2").wait_for()
    assert page.locator(f"#files tbody tr[data-file-id='{second}']").get_attribute("aria-current") == "true"
    page.screenshot(path=str(tmp_path / "keyboard.png"))
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.dataset.fileId") == second
    assert "file" not in _hash(page)
    page.close()
