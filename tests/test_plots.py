"""The page's plots (static_site/assets/plots.js) in a real browser: BokehJS copied
from the pinned bokeh package into the built site and loaded only when asked for; the
spectrum viewer, the 2-D frame examiner and the night summary drawn from JSON computed
here with numpy (the module under test, not the API: `onFit` and `examine` answer from
the same arrays); and no request ever leaves the local server."""
from __future__ import annotations

import functools
import io
import re
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import curve_fit

from static_site.build import BOKEH_BUNDLES, BuildError, build

BOKEH = "3.9.2"                 # requirements.txt
C_KM_S = 299792.458
H_ALPHA = 6562.80
Z_TRUE = 0.01
FIT_COLOUR = (255, 204, 0)      # plots.js COLOURS.fit
FLUX_COLOUR = (230, 237, 243)   # COLOURS.flux
SKY_COLOUR = (86, 182, 247)     # COLOURS.sky


# ---- the data: a continuum with one absorption line, its sky and lamp -----------------
def _gauss(x, centre, sigma):
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def _listed(a):
    return [None if not np.isfinite(v) else float(v) for v in a]


def make_spectrum(seed: int = 12, scale: float = 1.0, version=None) -> dict:
    """The spectrum JSON of the contract: 4000-7000 A at 2 A per pixel, H-alpha in
    absorption at z = 0.01, a few bridged pixels and two pixels without data."""
    rng = np.random.default_rng(seed)
    x = np.linspace(4000.0, 7000.0, 1501)
    model = scale * (1000.0 + 0.05 * (x - 4000.0) - 400.0 * _gauss(x, H_ALPHA * (1 + Z_TRUE), 4.0))
    variance = model / 1.5 + 25.0
    flux = model + rng.normal(0.0, np.sqrt(variance))
    flux[-2:] = np.nan
    sky = 150.0 + 2500.0 * _gauss(x, 5577.34, 3.0) + 800.0 * _gauss(x, 6300.30, 3.0)
    lamp_lines = [5460.74, 5769.60, 5790.66, 6965.43]
    lamp = 40.0 + sum(4000.0 * _gauss(x, w, 2.0) for w in lamp_lines)
    return {
        "file_id": "f-0101", "file_name": "0101_ngc1234.fits", "object": "NGC 1234", "target": 1, "version": version,
        "calibrated": True, "x_unit": "Angstrom", "flux_unit": "adu",
        "x": x.tolist(), "flux": _listed(flux), "variance": variance.tolist(), "sky": sky.tolist(),
        "mask": [int(5000.0 < v < 5010.0) for v in x],
        "lamp": {"file_name": "0090_HgArNe.fits", "x": x.tolist(), "flux": lamp.tolist(),
                 "lines": [{"x": w, "label": f"{'Hg I' if w < 5800 else 'Ar I'} {w:.2f}"} for w in lamp_lines]},
        "wavelength": {"rms_angstrom": 0.08, "lines": 4},
    }


def fit_line(spectrum: dict, window, rest_wavelength=H_ALPHA) -> dict:
    """The line-fit JSON of the contract: a Gaussian on a straight continuum, fitted
    by least squares over `window`."""
    x = np.asarray(spectrum["x"])
    y = np.asarray([np.nan if v is None else v for v in spectrum["flux"]])
    err = np.sqrt(np.asarray(spectrum["variance"]))
    lo, hi = sorted(window)
    sel = (x >= lo) & (x <= hi) & np.isfinite(y)
    xs, ys, es = x[sel], y[sel], err[sel]

    def model(v, c0, slope, amp, centre, sigma):
        return c0 + slope * (v - xs.mean()) + amp * _gauss(v, centre, sigma)

    p0 = [np.median(ys), 0.0, ys.min() - np.median(ys), xs[np.argmin(ys)], 3.0]
    popt, pcov = curve_fit(model, xs, ys, p0=p0, sigma=es, absolute_sigma=True)
    perr = np.sqrt(np.diag(pcov))
    c0, slope, amp, centre, sigma = popt
    continuum = c0 + slope * (centre - xs.mean())
    fwhm = 2.354820045 * abs(sigma)
    area = amp * abs(sigma) * np.sqrt(2 * np.pi)
    curve_x = np.linspace(lo, hi, 120)
    chi2 = float(np.sum(((ys - model(xs, *popt)) / es) ** 2) / (sel.sum() - 5))
    return {
        "fit_id": f"fit-{lo:.0f}", "file_id": spectrum["file_id"], "target": 1, "version": None,
        "window": [lo, hi], "model": "gaussian", "kind": "absorption" if amp < 0 else "emission",
        "centre": float(centre), "centre_error": float(perr[3]),
        "fwhm": float(fwhm), "fwhm_error": float(2.354820045 * perr[4]),
        "amplitude": float(amp), "amplitude_error": float(perr[2]),
        "flux": float(area), "flux_error": float(abs(area) * np.hypot(perr[2] / amp, perr[4] / sigma)),
        "equivalent_width": float(-area / continuum), "equivalent_width_error": None,
        "continuum": float(continuum), "continuum_error": float(perr[0]), "slope": float(slope),
        "chi2_reduced": chi2, "n_points": int(sel.sum()),
        "rest_wavelength": rest_wavelength, "redshift": float(centre / rest_wavelength - 1),
        "redshift_error": float(perr[3] / rest_wavelength),
        "velocity_km_s": float((centre / rest_wavelength - 1) * C_KM_S),
        "curve": {"x": curve_x.tolist(), "y": model(curve_x, *popt).tolist()},
        "by": "tester", "at": "2024-03-15T03:00:00Z",
    }


# ---- the 2-D frame, its preview PNG and imexam -----------------------------------------------
NY, NX, FACTOR = 200, 300, 2
STAR = (151, 37)            # (x, y): a star whose brightest pixel is this frame pixel
SATURATION = 4000.0


def make_frame(seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:NY, 0:NX]
    frame = 100.0 + rng.normal(0.0, 3.0, (NY, NX))
    frame += 5000.0 * np.exp(-0.5 * (((xx - STAR[0]) / 1.2) ** 2 + ((yy - STAR[1]) / 1.2) ** 2))
    return frame


def preview_png(frame: np.ndarray) -> bytes:
    """As the reduction writes it: block-averaged by FACTOR, scaled to 0-255 between
    the limits, frame row 0 at the bottom of the image."""
    blocks = frame.reshape(NY // FACTOR, FACTOR, NX // FACTOR, FACTOR).mean(axis=(1, 3))
    lo, hi = 90.0, 400.0
    grey = np.clip((blocks - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.flipud(grey), mode="L").save(out, format="PNG")
    return out.getvalue()


def examine(frame: np.ndarray, x: int, y: int, box: int = 21) -> dict:
    """The imexam JSON of the contract, from the frame itself."""
    half = box // 2
    x0, x1, y0, y1 = max(0, x - half), min(NX - 1, x + half), max(0, y - half), min(NY - 1, y + half)
    cut = frame[y0:y1 + 1, x0:x1 + 1]
    background = float(np.median(cut))
    noise = 1.4826 * float(np.median(np.abs(cut - background)))
    answer = {
        "x": x, "y": y, "value": float(frame[y, x]), "shape": [NY, NX],
        "row_cut": {"y": y, "x0": max(0, x - 50), "values": frame[y, max(0, x - 50):x + 51].tolist()},
        "column_cut": {"x": x, "y0": max(0, y - 50), "values": frame[max(0, y - 50):y + 51, x].tolist()},
        "box": {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "n": int(cut.size), "mean": float(cut.mean()),
                "median": background, "std": float(cut.std()), "min": float(cut.min()), "max": float(cut.max())},
        "source": None,
        "saturated": bool(frame[y, x] >= SATURATION),
    }
    if cut.max() - background < 20 * noise:
        return answer                      # nothing but sky here
    py, px = np.unravel_index(np.argmax(cut), cut.shape)
    sx, sy = x0 + px, y0 + py
    yy, xx = np.mgrid[0:NY, 0:NX]
    r = np.hypot(xx - sx, yy - sy)
    near = r <= 6
    (peak, sigma), _ = curve_fit(lambda v, a, s: a * _gauss(v, 0.0, s), r[near], frame[near] - background,
                                 p0=[frame[sy, sx] - background, 1.5])
    model_r = np.linspace(0, 6, 50)
    answer["source"] = {
        "kind": "point", "x": float(sx), "y": float(sy), "peak": float(peak), "background": background,
        "fwhm": float(2.354820045 * abs(sigma)), "fwhm_error": 0.05,
        "profile": {"r": r[near].tolist(), "value": (frame[near] - background).tolist()},
        "model": {"r": model_r.tolist(), "value": (peak * _gauss(model_r, 0.0, sigma)).tolist()}}
    return answer


def night_rows() -> list:
    """Twelve science frames 36 minutes apart from 23:00 UT; one without a S/N."""
    rows = []
    for k in range(12):
        minutes = 23 * 60 + 36 * k
        day, minutes = (14, minutes) if minutes < 24 * 60 else (15, minutes - 24 * 60)
        rows.append({"file_name": f"{k + 100:04d}_sci.fits",
                     "time": f"2024-03-{day}T{minutes // 60:02d}:{minutes % 60:02d}:00Z",
                     "snr": None if k == 4 else 20.0 + 3.0 * k, "fwhm_arcsec": 0.8 + 0.05 * k, "rms": 0.05 + 0.01 * k})
    return rows


# ---- the site, served locally, and a page that records every request -------------------------
HARNESS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>plots harness</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="plots.css">
<style>body { background:#0f1419; color:#e6e6e6; margin:0; padding:8px; font:14px/1.4 system-ui, sans-serif; }
#imexam { width:600px; } section { margin-bottom:16px; }</style>
</head><body>
<section id="spectrum"></section>
<section id="imexam"></section>
<section id="summary"></section>
<script src="plots.js"></script>
</body></html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = build(tmp_path_factory.mktemp("site"))
    (out / "harness.html").write_text(HARNESS)
    frame = make_frame()
    (out / "preview_reduced.png").write_bytes(preview_png(frame))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(out)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"dir": out, "url": f"http://127.0.0.1:{server.server_port}", "frame": frame}
    server.shutdown()
    server.server_close()


def open_harness(context_or_browser, site, **page_args):
    """The harness page, recording every request it makes and every script error."""
    page = context_or_browser.new_page(**page_args)
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(site["url"] + "/harness.html")
    page.wait_for_function("window.GoodmanPlots !== undefined")
    return page


def assert_all_local(page, site):
    outside = [u for u in page.requests if not (u.startswith(site["url"] + "/") or u.startswith("data:"))]
    assert not outside, outside
    assert page.errors == []


def bokeh_requests(page):
    return [u.rsplit("/", 1)[1] for u in page.requests if "/bokeh/" in u]


def settle(page):
    """Wait for BokehJS to repaint (it paints on an animation frame)."""
    page.evaluate("new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))")


def pixels_near(png: bytes, colour, tolerance: int = 40) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(rgb - np.asarray(colour)).max(axis=2) <= tolerance).sum())


# ---- the build ------------------------------------------------------------------------------------
def test_build_copies_bokehjs_from_the_installed_package(site):
    import bokeh
    from bokeh.util.paths import bokehjs_path

    version = bokeh.__version__
    assert version == BOKEH
    folder = site["dir"] / "bokeh"
    assert (folder / "VERSION").read_text().strip() == version
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(["VERSION"] + [f"{b}-{version}.min.js" for b in BOKEH_BUNDLES])
    for bundle in BOKEH_BUNDLES:
        copied = (folder / f"{bundle}-{version}.min.js").read_bytes()
        assert copied == (bokehjs_path() / "js" / f"{bundle}.min.js").read_bytes()
    plots = (site["dir"] / "plots.js").read_text()
    assert f'const BOKEH_VERSION = "{version}";' in plots and "@BOKEH_VERSION@" not in plots


def test_build_without_bokeh_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bokeh", None)   # as if it were not installed
    with pytest.raises(BuildError, match=r"bokeh package, which is not installed.*requirements\.txt"):
        build(tmp_path / "site")
    assert not (tmp_path / "site" / "index.html").exists()


URL = re.compile(r"(?:https?:)?//([a-z0-9][a-z0-9.-]*\.[a-z]{2,})", re.I)
ENCODED_URL = re.compile(r"https?%3A%2F%2F([a-z0-9.-]+)", re.I)
#: XML namespace names: never fetched.
NAMESPACES = {"www.w3.org"}
#: Every host the BokehJS bundles name, and why none is asked for by our plots.
BOKEH_HOSTS = {
    "bokeh.org": "licence comment",
    "docs.bokeh.org": "link of the help tool (not in our toolbars)",
    "github.com": "Tabler icons licence comment",
    "tabler.io": "Tabler icons licence comment",
    "jquery.org": "licence comment of bundled code",
    "www.foretagsplatsen.se": "licence comment of bundled code",
    "cdn.jsdelivr.net": "MathJax for TeX labels (ours have no $$, \\[ or \\( delimiters) and the Tabler icon "
                        "font (TablerIcon, unused)",
    "maps.googleapis.com": "GMapPlot (unused)",
    "developers.google.com": "GMapPlot's error message",
}


def test_the_built_site_names_no_other_host(site):
    for path in sorted(p for p in site["dir"].rglob("*") if p.is_file() and p.suffix in (".html", ".js", ".css")):
        text = path.read_text(errors="replace")
        hosts = {h.lower() for h in URL.findall(text) + ENCODED_URL.findall(text)} - NAMESPACES
        if path.parent.name == "bokeh":
            assert hosts <= set(BOKEH_HOSTS), (path.name, hosts - set(BOKEH_HOSTS))
        elif path.name != "harness.html":
            assert not hosts, (path.name, hosts)
    # What would make BokehJS reach those hosts is not used by the plots.
    plots = (site["dir"] / "plots.js").read_text()
    for feature in ("GMap", "TablerIcon", "HelpTool", "MathText", "TeX", "$$", "WebGL", "webgl"):
        assert feature not in plots, feature


# ---- the browser ------------------------------------------------------------------------------
def test_spectrum_viewer(browser, site, tmp_path):
    spectrum = make_spectrum()
    overlay = make_spectrum(seed=13, scale=0.8, version=2)
    page = open_harness(browser, site, viewport={"width": 1100, "height": 1000})
    fits_asked = []

    def py_fit(window):
        fits_asked.append(window)
        return fit_line(spectrum, window)

    page.expose_function("pyFit", py_fit)
    assert bokeh_requests(page) == []            # plots.js alone loads no BokehJS
    x_range = page.evaluate("""async ([data, overlay]) => {
        window.h = await GoodmanPlots.spectrum(document.getElementById("spectrum"), data,
                                               {overlays: [overlay], onFit: (w) => window.pyFit(w)});
        return window.h.xRange();
    }""", [spectrum, overlay])
    assert bokeh_requests(page) == [f"bokeh-{BOKEH}.min.js", f"bokeh-api-{BOKEH}.min.js"]
    page.evaluate("GoodmanPlots.ready()")
    assert len(bokeh_requests(page)) == 2       # once
    assert x_range == [4000.0, 7000.0]
    figure_el = page.locator("#spectrum .gp-figure")
    settle(page)
    shot = figure_el.screenshot(path=str(tmp_path / "spectrum.png"))
    assert pixels_near(shot, FLUX_COLOUR, 25) > 800     # the spectrum is drawn
    assert pixels_near(shot, SKY_COLOUR, 30) < 20       # the sky is not, until asked for
    names = page.evaluate("h.renderers()")
    assert {"flux", "sigma", "bridged", "overlay-0"} <= set(names) and "sky" not in names, names
    assert page.evaluate("[h.figure.legend.items.length, h.figure.legend.click_policy]") == [2, "hide"]

    # Hover: wavelength, flux and error of the nearest pixel.
    centre = H_ALPHA * (1 + Z_TRUE)
    point = page.evaluate(f"h.clientPoint({centre})")
    page.mouse.move(point["x"], point["y"])
    tooltip = page.locator(".bk-tooltip-content").filter(has_text="flux")
    tooltip.wait_for()
    text = tooltip.inner_text()
    shown = float(re.search(r"λ:\s*([\d.]+)", text).group(1))
    assert abs(shown - centre) <= 2.0 and "σ" in text, text

    # Wheel zoom (x only) about the cursor; the handle reports the new range.
    page.mouse.wheel(0, -600)
    page.wait_for_function("h.xRange()[1] - h.xRange()[0] < 2900")
    lo, hi = page.evaluate("h.xRange()")
    assert lo < centre < hi and hi - lo < 2900
    page.evaluate("h.setXRange(4000, 7000)")

    # The sky on demand: a renderer (and its axis) appears.
    page.get_by_label("sky spectrum").check()
    assert "sky" in page.evaluate("h.renderers()")
    settle(page)
    assert pixels_near(figure_el.screenshot(path=str(tmp_path / "spectrum-sky.png")), SKY_COLOUR, 30) > 100

    # Line markers: spans at rest*(1+z); the z box moves them, km/s too; telluric bands stay.
    page.get_by_label("Balmer").check()
    page.get_by_label("Telluric (observed)").check()
    assert {"marker:balmer", "marker:telluric"} <= set(page.evaluate("h.renderers()"))
    assert page.evaluate("h.markerPositions('balmer')")[0] == pytest.approx(H_ALPHA)
    z_box = page.locator("#spectrum input.gp-z")
    z_box.fill("0.01")
    assert page.evaluate("h.markerPositions('balmer')")[0] == pytest.approx(H_ALPHA * 1.01)
    z_box.fill("3000 km/s")
    assert page.evaluate("h.redshift()") == pytest.approx(3000 / C_KM_S)
    assert page.evaluate("h.markerPositions('balmer')")[0] == pytest.approx(H_ALPHA * (1 + 3000 / C_KM_S))
    assert page.evaluate("h.markerPositions('telluric')") == [6867, 7165, 7594, 8130]
    z_box.fill("fast")
    assert z_box.get_attribute("aria-invalid") == "true"
    assert page.evaluate("h.redshift()") == pytest.approx(3000 / C_KM_S)
    page.get_by_label("Balmer").uncheck()
    assert "marker:balmer" not in page.evaluate("h.renderers()")
    page.get_by_label("Balmer").check()

    # The lamp and its identified lines in a second figure sharing the x range.
    page.get_by_label("lamp 0090_HgArNe.fits").check()
    assert {"lamp", "lamp-lines"} <= set(page.evaluate("h.renderers()"))
    assert page.evaluate("h.lampFigure.x_range === h.figure.x_range")

    # Fit a line: in fit mode a drag across the line asks onFit for that range, then the
    # fit's curve, a marker at its centre and its numbers are drawn.
    page.get_by_role("button", name="Fit a line").click()
    assert page.get_by_role("button", name="Fit a line").get_attribute("aria-pressed") == "true"
    settle(page)
    start, end = page.evaluate("[h.clientPoint(6600), h.clientPoint(6660)]")
    per_px = 3000.0 / (page.evaluate("h.clientPoint(7000).x") - page.evaluate("h.clientPoint(4000).x"))
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    # BokehJS takes a pointer held still for 300 ms as a press, not a drag: the first move
    # goes past its 5 px threshold at once, as a hand does.
    page.mouse.move(start["x"] + 8, start["y"])
    page.mouse.move(end["x"], end["y"], steps=5)
    page.mouse.up()
    page.wait_for_function("h.fits().length === 1")
    assert len(fits_asked) == 1
    assert fits_asked[0][0] == pytest.approx(6600, abs=1.5 * per_px)
    assert fits_asked[0][1] == pytest.approx(6660, abs=1.5 * per_px)
    drawn = page.evaluate("h.fits()[0]")
    expected = fit_line(spectrum, fits_asked[0])
    assert drawn["x"] == pytest.approx(expected["curve"]["x"]) and drawn["y"] == pytest.approx(expected["curve"]["y"])
    assert {"fit", "fit-centre"} <= set(page.evaluate("h.renderers()"))
    result = page.locator("#spectrum .gp-fit-result").inner_text()
    assert f"{expected['centre']:.2f}" in result and "FWHM" in result and "EW" in result, result
    assert abs(expected["centre"] - centre) < 1.0
    settle(page)
    shot = figure_el.screenshot(path=str(tmp_path / "spectrum-fit.png"))
    assert pixels_near(shot, FIT_COLOUR, 30) > 60
    # The fit knows its rest wavelength: z from it moves the markers.
    assert page.evaluate("h.redshiftFrom(h.fits()[0].fit)") == pytest.approx(expected["redshift"])
    assert page.evaluate("h.markerPositions('balmer')")[0] == pytest.approx(expected["centre"], abs=1e-6)
    assert z_box.input_value() == f"{expected['redshift']:.6g}"
    # The from/to form (keyboard, touch) asks for the same kind of fit.
    page.locator("#spectrum .gp-fit-lo").fill("6610")
    page.locator("#spectrum .gp-fit-hi").fill("6650")
    page.locator("#spectrum .gp-fit-form button").click()
    page.wait_for_function("h.fits().length === 2")
    assert fits_asked[1] == [6610, 6650]
    # Another drag tool chosen in Bokeh's toolbar ends fit mode; the button ends it too.
    page.evaluate("h.figure.toolbar.tools.find((t) => t.type === 'PanTool').active = true")
    assert page.get_by_role("button", name="Fit a line").get_attribute("aria-pressed") == "false"
    assert page.locator("#spectrum .gp-fit-form").is_hidden()
    page.get_by_role("button", name="Fit a line").click()
    page.get_by_role("button", name="Fit a line").click()
    assert page.get_by_role("button", name="Fit a line").get_attribute("aria-pressed") == "false"
    assert page.evaluate("h.figure.toolbar.tools.find((t) => t.type === 'PanTool').active")
    page.screenshot(path=str(tmp_path / "spectrum-page.png"), full_page=True)

    # A phone's width: the controls wrap, the figure follows the width.
    page.set_viewport_size({"width": 375, "height": 900})
    page.wait_for_timeout(300)
    box = figure_el.bounding_box()
    assert box["width"] <= 375 - 16 + 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(tmp_path / "spectrum-375.png"), full_page=True)

    page.evaluate("h.destroy()")
    assert page.locator("#spectrum").inner_html() == ""
    assert_all_local(page, site)
    page.close()


def test_redshift_box_reads_z_and_velocities(browser, site):
    page = open_harness(browser, site)
    cases = {"": 0, "0.0123": 0.0123, "-0.001": -0.001, "1500 km/s": 1500 / C_KM_S, "1500km/s": 1500 / C_KM_S,
             "-30 kms": -30 / C_KM_S, "2e-3": 0.002, "fast": None, "1.5 km": None, "-1": None}
    got = page.evaluate("(cases) => cases.map((c) => GoodmanPlots.parseRedshift(c))", list(cases))
    for (text, want), value in zip(cases.items(), got):
        assert (value is None) if want is None else value == pytest.approx(want), (text, value)
    # The preview's layout and the click conversion are inverses over the whole frame.
    mismatches = page.evaluate("""([ny, nx, f]) => {
        const H = ny / f, bad = [];
        for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++) {
            const {u, v} = GoodmanPlots.canvasFromFrame(x, y, H, f);
            const p = GoodmanPlots.frameFromCanvas(u, v, H, f, [ny, nx]);
            if (p.x !== x || p.y !== y) bad.push([x, y, p.x, p.y]);
        }
        return bad.slice(0, 5);
    }""", [NY, NX, FACTOR])
    assert mismatches == []
    assert bokeh_requests(page) == []
    page.close()


def test_ready_says_when_bokehjs_cannot_be_loaded_and_tries_again(browser, site):
    page = open_harness(browser, site)
    page.route("**/bokeh/**", lambda route: route.abort())      # a link that drops
    error = page.evaluate("GoodmanPlots.ready().then(() => null, (e) => e.message)")
    assert error == f"could not load {site['url']}/bokeh/bokeh-{BOKEH}.min.js"
    page.unroute("**/bokeh/**")
    assert page.evaluate("GoodmanPlots.ready().then((B) => B.version)") == BOKEH
    assert bokeh_requests(page) == [f"bokeh-{BOKEH}.min.js", f"bokeh-{BOKEH}.min.js", f"bokeh-api-{BOKEH}.min.js"]
    assert_all_local(page, site)
    page.close()


def _frame_pixel_colour(page, u, v):
    return page.evaluate(f"Array.from(document.querySelector('#imexam canvas.gp-im-canvas').getContext('2d')"
                         f".getImageData({u}, {v}, 1, 1).data)")


def test_imexam_maps_a_click_to_the_frame_pixel_and_shows_what_is_there(browser, site, tmp_path):
    frame = site["frame"]
    saturated = [[int(x), int(y)] for y, x in np.argwhere(frame >= SATURATION)]
    assert [list(STAR)] == saturated
    preview = {"kind": "preview_reduced", "url": "preview_reduced.png", "shape": [NY, NX], "factor": FACTOR,
               "zscale": [90.0, 400.0], "saturation_level": SATURATION, "saturated": saturated,
               "saturated_count": len(saturated)}
    context = browser.new_context(viewport={"width": 800, "height": 1100}, has_touch=True)
    page = open_harness(context, site)
    asked = []

    def py_examine(x, y):
        asked.append((x, y))
        return examine(frame, x, y)

    page.expose_function("pyExamine", py_examine)
    page.evaluate("GoodmanPlots.ready()")
    page.evaluate("""async (preview) => {
        window.im = await GoodmanPlots.imexam(document.getElementById("imexam"), preview,
                                              {examine: (x, y) => window.pyExamine(x, y), arcsecPerPixel: 0.3});
    }""", preview)
    H = NY // FACTOR
    star_png = (STAR[0] // FACTOR, H - 1 - STAR[1] // FACTOR)
    assert _frame_pixel_colour(page, *star_png)[:3] == [255, 32, 32]      # saturated: red

    # A click on the star's brightest pixel asks examine about exactly that frame pixel.
    point = page.evaluate(f"im.clientPoint({STAR[0]}, {STAR[1]})")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector("#imexam .gp-im-box td")
    assert asked == [STAR]
    expected = examine(frame, *STAR)
    assert page.locator("#imexam .gp-im-value").inner_text() == \
        f"pixel (151, 37) = {expected['value']:.1f} ADU — saturated"
    cells = page.locator("#imexam .gp-im-box td").all_inner_texts()
    assert cells == [f"{expected['box'][k]:.1f}" for k in ("mean", "median", "std", "min", "max")]
    source_text = page.locator("#imexam .gp-im-source").inner_text()
    assert f"FWHM {expected['source']['fwhm']:.2f}" in source_text
    assert f"({expected['source']['fwhm'] * 0.3:.2f}″)" in source_text
    # A row cut, a column cut and the radial profile with its model, as Bokeh plots.
    page.wait_for_function("document.querySelectorAll('#imexam .gp-im-plot > .bk-Figure').length === 3")
    plots = page.locator("#imexam .gp-im-plots")
    shot = plots.screenshot(path=str(tmp_path / "imexam-plots.png"))
    assert pixels_near(shot, FIT_COLOUR, 30) > 30          # the profile's model line
    assert page.locator("#imexam .gp-im-plot").count() == 3

    # A tap with a finger: another pixel, the same conversion.
    target = (40, 150)
    point = page.evaluate(f"im.clientPoint({target[0]}, {target[1]})")
    page.touchscreen.tap(point["x"], point["y"])
    page.wait_for_function("t => document.querySelector('#imexam .gp-im-value').textContent.startsWith(t)",
                           arg=f"pixel ({target[0]}, {target[1]})")
    assert asked[-1] == target
    assert page.locator("#imexam .gp-im-source").inner_text() == "no source found here"
    assert page.locator("#imexam .gp-im-plot").count() == 2          # the cuts; no profile
    # The keyboard: arrows move the cursor by a preview pixel, Enter examines.
    page.locator("#imexam canvas.gp-im-canvas").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#imexam .gp-im-value').textContent.startsWith('pixel (42, 152)')")
    assert asked[-1] == (42, 152)

    # Colour maps are applied in the page.
    grey = _frame_pixel_colour(page, 5, 5)
    page.select_option("#imexam select.gp-cmap", "heat")
    heat = _frame_pixel_colour(page, 5, 5)
    page.select_option("#imexam select.gp-cmap", "viridis")
    viridis = _frame_pixel_colour(page, 5, 5)
    assert grey[0] == grey[1] == grey[2] and heat[0] > heat[2] and viridis[2] > viridis[0], (grey, heat, viridis)
    page.locator("#imexam").screenshot(path=str(tmp_path / "imexam.png"))
    assert_all_local(page, site)
    context.close()


def test_imexam_without_bokeh_gives_text_results(browser, site, tmp_path):
    frame = site["frame"]
    preview = {"url": "preview_reduced.png", "shape": [NY, NX], "factor": FACTOR, "saturated": [], "saturated_count": 0}
    context = browser.new_context(viewport={"width": 375, "height": 800}, has_touch=True)
    page = open_harness(context, site)
    page.expose_function("pyExamine", lambda x, y: examine(frame, x, y))
    page.evaluate("""async (preview) => {
        document.getElementById("imexam").style.width = "359px";
        window.im = await GoodmanPlots.imexam(document.getElementById("imexam"), preview,
                                              {examine: (x, y) => window.pyExamine(x, y)});
    }""", preview)
    point = page.evaluate(f"im.clientPoint({STAR[0]}, {STAR[1]})")
    page.touchscreen.tap(point["x"], point["y"])
    page.wait_for_selector("#imexam .gp-im-box td")
    assert page.locator("#imexam .gp-im-value").inner_text().startswith("pixel (151, 37)")
    assert page.locator("#imexam .gp-im-plots").count() == 0
    assert bokeh_requests(page) == []          # light mode: BokehJS never downloaded
    page.screenshot(path=str(tmp_path / "imexam-light-375.png"), full_page=True)
    assert_all_local(page, site)
    context.close()


def test_night_summary(browser, site, tmp_path):
    rows = night_rows()
    page = open_harness(browser, site, viewport={"width": 900, "height": 700})
    page.evaluate("""async (rows) => {
        window.selected = [];
        window.s = await GoodmanPlots.summary(document.getElementById("summary"), rows,
                                              {onSelect: (name) => window.selected.push(name)});
    }""", rows)
    assert page.evaluate("s.figures.length") == 3
    assert page.evaluate("s.figures.every((f) => f.x_range === s.figures[0].x_range)")    # linked x
    shot = page.locator("#summary").screenshot(path=str(tmp_path / "summary.png"))
    for colour in [(125, 207, 255), (158, 206, 106), (255, 158, 100)]:   # COLOURS.summary: one per plot
        assert pixels_near(shot, colour, 30) > 100, colour
    # Hover gives the file name; a tap selects the frame.
    name = rows[7]["file_name"]
    point = page.evaluate(f"s.clientPoint('{name}', 1)")
    page.mouse.move(point["x"], point["y"])
    page.locator(".bk-tooltip-content").filter(has_text=name).wait_for()
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function("window.selected.length > 0")
    assert page.evaluate("window.selected") == [name]
    page.evaluate("s.select('0100_sci.fits')")       # from the page: highlighted, not reported back
    assert page.evaluate("window.selected") == [name]
    assert_all_local(page, site)
    page.close()
