/* Goodman Live plots: the spectrum viewer, the 2-D frame examiner (imexam) and the
   night summary strip, drawn with BokehJS's Plotting API.

   BokehJS is served from this site (bokeh/bokeh-<version>.min.js and
   bokeh/bokeh-api-<version>.min.js, copied from the pinned bokeh package by
   static_site/build.py, which also writes the version below); nothing is loaded
   from another host. It is loaded only when `ready()` is first called (or a plot that
   needs it is drawn), so a page in light mode never downloads it.

   The module draws the JSON of the API's data routes as it is given (spectrum, line
   fits, imexam, the preview product); it never fetches data itself: what needs the
   API is a function passed in (`options.onFit`, `options.examine`).

   window.GoodmanPlots:
     ready()                                -> Promise<Bokeh>
     spectrum(container, data, options)     -> Promise<SpectrumHandle>
     imexam(container, preview, options)    -> Promise<ImexamHandle>
     summary(container, rows, options)      -> Promise<SummaryHandle>
     parseRedshift(text)                    -> z, or null when the text is not a redshift
     frameFromCanvas(u, v, pngHeight, factor, shape) / canvasFromFrame(x, y, pngHeight, factor)
     LINE_LISTS, BOKEH_VERSION
*/
(function () {
  "use strict";

  const BOKEH_VERSION = "@BOKEH_VERSION@";   // written by static_site/build.py
  // The bundles sit in bokeh/ beside this script, whatever the page's own path is.
  const SCRIPT = document.currentScript;
  const BOKEH_BASE = SCRIPT && SCRIPT.src ? new URL("bokeh/", SCRIPT.src).href : "bokeh/";
  const C_KM_S = 299792.458;

  // The page's dark theme (background #0f1419, text #e6e6e6); plot areas a shade
  // lighter, as Bokeh's dark_minimal theme does.
  const THEME = {
    page: "#0f1419", plot: "#161d26", text: "#e6e6e6", muted: "#9aa4af",
    grid: "#e6e6e6", gridAlpha: 0.12,
  };
  const COLOURS = {
    flux: "#e6edf3", sigma: "#7d8b99", bridged: "#9aa4af", sky: "#56b6f7", lamp: "#f0a35e",
    lampLine: "#ffd33d", fit: "#ffcc00", cursor: "#00e5ff",
    overlays: ["#ff9e64", "#bb9af7", "#9ece6a", "#f7768e", "#7dcfff", "#e0af68"],
    summary: ["#7dcfff", "#9ece6a", "#ff9e64"],
  };

  // ---- line markers ------------------------------------------------------------------
  // Air wavelengths in angstrom. H, He I, He II, Na I, Mg I, Ca II and the forbidden
  // lines: the NIST Atomic Spectra Database (Kramida, Ralchenko, Reader & NIST ASD Team,
  // physics.nist.gov/asd), the values tabulated for nebular work in Osterbrock &
  // Ferland (2006), "Astrophysics of Gaseous Nebulae and Active Galactic Nuclei", 2nd ed.,
  // rounded to 0.01 A (far below Goodman's resolution of ~1-8 A). G band: the CH band
  // head region's nominal 4304.4 A (Fraunhofer's G). Night-sky lines as in
  // functions/core/flexure.py (Osterbrock et al. 1996, PASP 108, 277); the sky Na D is
  // street-light sodium. Telluric bands: the O2 B (6867-6884) and A (7594-7621) bands
  // and the H2O bands (7165-7310, 8130-8350), broad limits chosen for this viewer to
  // cover each band at Goodman's resolutions (not from a published mask).
  // Object lines are drawn at rest*(1+z); telluric bands and night-sky lines are in the
  // observer's frame and never move with z.
  const LINE_LISTS = [
    { id: "balmer", label: "Balmer", colour: "#ff7b72", redshifted: true, lines: [
      [6562.80, "H\u03b1"], [4861.33, "H\u03b2"], [4340.47, "H\u03b3"], [4101.74, "H\u03b4"],
      [3970.07, "H\u03b5"], [3889.05, "H8"], [3835.38, "H9"]] },
    { id: "hei", label: "He I", colour: "#d2a8ff", redshifted: true, lines: [
      [4471.48, "He I"], [5875.62, "He I"], [6678.15, "He I"], [7065.19, "He I"]] },
    { id: "heii", label: "He II", colour: "#f2cc60", redshifted: true, lines: [[4685.71, "He II"]] },
    { id: "galaxy", label: "Galaxy", colour: "#7ee787", redshifted: true, lines: [
      [3726.03, "[O II]"], [3728.82, ""], [3933.66, "Ca K"], [3968.47, "Ca H"], [4304.4, "G"],
      [4861.33, "H\u03b2"], [4958.91, "[O III]"], [5006.84, "[O III]"], [5175.4, "Mg b"],
      [5889.95, "Na D"], [5895.92, ""], [6548.05, "[N II]"], [6562.80, "H\u03b1"],
      [6583.45, "[N II]"], [6716.44, "[S II]"], [6730.82, "[S II]"]] },
    { id: "telluric", label: "Telluric", colour: "#79c0ff", redshifted: false, bands: [
      [6867, 6884, "O\u2082 B"], [7165, 7310, "H\u2082O"], [7594, 7621, "O\u2082 A"], [8130, 8350, "H\u2082O"]] },
    { id: "sky", label: "Night sky", colour: "#ffa657", redshifted: false, lines: [
      [5577.34, "[O I]"], [5889.95, "Na D"], [6300.30, "[O I]"], [6363.78, "[O I]"]] },
  ];

  // ---- loading BokehJS ------------------------------------------------------------------
  let loading = null;

  function bokehLoaded() {
    return window.Bokeh && window.Bokeh.Plotting ? window.Bokeh : null;
  }

  function injectScript(name) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = BOKEH_BASE + name;
      script.async = false;
      script.dataset.goodmanPlots = "bokeh";
      script.onload = () => resolve();
      script.onerror = () => {
        script.remove();
        reject(new Error("could not load " + script.src));
      };
      document.head.appendChild(script);
    });
  }

  /** Load BokehJS (core, then the Plotting API) once; resolves with window.Bokeh. */
  function ready() {
    const loaded = bokehLoaded();
    if (loaded) return Promise.resolve(loaded);
    if (loading) return loading;
    if (BOKEH_VERSION.charAt(0) === "@") {
      return Promise.reject(new Error("plots.js is not the built copy: build the site with static_site/build.py"));
    }
    loading = (window.Bokeh ? Promise.resolve() : injectScript("bokeh-" + BOKEH_VERSION + ".min.js"))
      .then(() => injectScript("bokeh-api-" + BOKEH_VERSION + ".min.js"))
      .then(() => {
        const B = bokehLoaded();
        if (!B) throw new Error("BokehJS loaded without its Plotting API");
        B.set_log_level("warn");
        return B;
      })
      .catch((err) => {
        loading = null;   // a later call tries again (e.g. after the link came back)
        throw err;
      });
    return loading;
  }

  // ---- small helpers ---------------------------------------------------------------------
  let uid = 0;
  function nextId(prefix) {
    uid += 1;
    return "gp-" + prefix + "-" + uid;
  }

  /** An element: h("label", {class: "x", for: id}, "text", child). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child != null) el.append(child);
    }
    return el;
  }

  function checkbox(text, { checked = false, disabled = false, title = null } = {}) {
    const id = nextId("cb");
    const input = h("input", { type: "checkbox", id, checked, disabled });
    return { input, label: h("label", { for: id, class: "gp-check", title }, input, " " + text) };
  }

  /** JSON null (no data) -> NaN: Bokeh breaks lines at NaN. A plain Array: BokehJS 3.9
      draws no line from a Float64Array column. */
  function numbers(values) {
    return Array.from(values || [], (v) => (v == null ? NaN : +v));
  }

  function fmt(value, digits) {
    return value == null || !isFinite(value) ? "\u2013" : (+value).toFixed(digits == null ? 2 : digits);
  }

  function withError(value, error, digits) {
    const shown = fmt(value, digits);
    return error == null || !isFinite(error) ? shown : shown + " \u00b1 " + fmt(error, digits);
  }

  function finiteRange(...arrays) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const arr of arrays) {
      for (const v of arr || []) {
        if (v != null && isFinite(v)) {
          if (v < lo) lo = v;
          if (v > hi) hi = v;
        }
      }
    }
    return lo <= hi ? [lo, hi] : null;
  }

  /** A Bokeh figure in the page's dark colours, stretching to its container's width. */
  function darkFigure(B, attrs) {
    const fig = B.Plotting.figure({
      sizing_mode: "stretch_width", toolbar_location: "above",
      background_fill_color: THEME.plot, border_fill_color: THEME.page,
      outline_line_color: THEME.text, outline_line_alpha: 0.2,
      min_border_left: 40, min_border_right: 10, ...attrs,
    });
    for (const axis of fig.axes) styleAxis(axis);
    for (const grid of fig.grids) grid.setv({ grid_line_color: THEME.grid, grid_line_alpha: THEME.gridAlpha });
    if (fig.title != null && typeof fig.title === "object") {
      fig.title.setv({ text_color: THEME.text, text_font_size: "12px", text_font_style: "normal" });
    }
    fig.toolbar.logo = null;
    return fig;
  }

  function styleAxis(axis) {
    axis.setv({
      axis_line_color: THEME.text, axis_line_alpha: 0.35,
      major_tick_line_color: THEME.text, major_tick_line_alpha: 0.5,
      minor_tick_line_color: THEME.text, minor_tick_line_alpha: 0.3,
      major_label_text_color: THEME.text, major_label_text_font_size: "11px",
      axis_label_text_color: THEME.text, axis_label_text_font_size: "12px",
      axis_label_text_font_style: "normal",
    });
  }

  function styleLegend(legend) {
    legend.setv({
      click_policy: "hide", location: "top_left", label_text_color: THEME.text,
      label_text_font_size: "11px", background_fill_color: THEME.page, background_fill_alpha: 0.75,
      border_line_alpha: 0, spacing: 2, padding: 6, glyph_height: 12, label_height: 12,
    });
  }

  /** Render `model` into `el`; returns the root view. */
  async function show(B, model, el) {
    return B.Plotting.show(model, el);
  }

  function viewOf(rootView, model) {
    return rootView.model === model ? rootView : rootView.owner.find_one(model);
  }

  /** Page coordinates of data point (x, y) in a rendered figure (y omitted: the frame's middle). */
  function clientPoint(figView, x, y) {
    const frame = figView.frame;
    const rect = figView.canvas_view.events_el.getBoundingClientRect();
    const sx = frame.x_scale.compute(x);
    const sy = y == null ? frame.bbox.vcenter : frame.y_scale.compute(y);
    return { x: rect.left + sx, y: rect.top + sy };
  }

  // ---- redshift ----------------------------------------------------------------------------
  /** "0.0123" -> 0.0123; "1500 km/s" (or km s-1, kms) -> v/c with v = cz (the optical
      convention); "" -> 0; anything else -> null. */
  function parseRedshift(text) {
    const t = String(text == null ? "" : text).trim().toLowerCase();
    if (t === "") return 0;
    const m = /^([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(km\s*\/\s*s|km\s*s\^?-1|kms)?$/.exec(t);
    if (!m) return null;
    const value = parseFloat(m[1]);
    const z = m[2] ? value / C_KM_S : value;
    return z > -1 && isFinite(z) ? z : null;
  }

  function labelOf(data) {
    const parts = [data.object, data.file_name, "#" + (data.target == null ? 1 : data.target)];
    if (data.version != null) parts.push("v" + data.version);
    return parts.filter((p) => p != null && p !== "").join(" ");
  }

  // ---- spectrum ------------------------------------------------------------------------------
  /**
   * Draw a spectrum JSON (GET /api/files/{id}/spectrum).
   * options: {
   *   height: px of the main figure (320),
   *   overlays: [spectrum JSON, ...] drawn in other colours, with a legend (click hides),
   *   onFit: ([lo, hi]) => Promise<line-fit JSON>; when given, a "Fit a line" mode: a drag
   *          (x range select) or the from/to form asks for a fit and draws it,
   *   fits: [line-fit JSON, ...] drawn at once (stored fits),
   *   redshift: initial z, markers: ["balmer", ...] initially shown, sky: bool, lamp: bool,
   *   onRedshift: (z) => void, told when z changes,
   * }
   */
  async function spectrum(container, data, options = {}) {
    const B = await ready();
    container.replaceChildren();
    container.classList.add("gp", "gp-spectrum");
    const calibrated = data.calibrated !== false && data.x_unit !== "pixel";
    const xUnit = calibrated ? "\u00c5" : "px";
    const x = numbers(data.x);
    const flux = numbers(data.flux);
    const mask = data.mask || null;
    const err = data.variance ? numbers(data.variance).map((v) => (v >= 0 ? Math.sqrt(v) : NaN)) : null;
    const shownFlux = flux.map((v, i) => (mask && mask[i] ? NaN : v));
    const source = new B.ColumnDataSource({ data: { x, flux: shownFlux, err: err || x.map(() => NaN) } });
    const xr = finiteRange(x) || [0, 1];
    const xRange = new B.Range1d({ start: xr[0], end: xr[1] });
    // erg/s/cm²/Å are 1e-16-ish: counts' one decimal would read as 0.0
    const yFormat = data.fluxed ? "{0.000e}" : "{0.0}";

    // Controls: real buttons, checkboxes and a text box, reachable from the keyboard.
    const controls = h("div", { class: "gp-controls" });
    const fitResult = h("p", { class: "gp-fit-result", "aria-live": "polite" });
    const sky = checkbox("sky spectrum", { disabled: !data.sky, title: data.sky ? null : "no sky in this spectrum" });
    const lamp = data.lamp ? checkbox("lamp " + (data.lamp.file_name || "")) : null;
    controls.append(sky.label);
    if (lamp) controls.append(lamp.label);
    let fitButton = null;
    let fitForm = null;
    let fitLo = null;
    let fitHi = null;
    if (options.onFit) {
      fitButton = h("button", { type: "button", class: "gp-fit-toggle", "aria-pressed": "false",
                                title: "then drag across the line on the plot, or give the window below" },
                    "Fit a line");
      controls.append(fitButton);
    }
    const zId = nextId("z");
    const zInput = h("input", { id: zId, class: "gp-z", type: "text", autocomplete: "off", spellcheck: "false",
                                placeholder: "0.0 or 1500 km/s", size: 12, disabled: !calibrated });
    const zNote = h("span", { class: "gp-z-note" });
    controls.append(h("span", { class: "gp-z-box" }, h("label", { for: zId }, "z"), " ", zInput, " ", zNote));
    const markerBox = h("fieldset", { class: "gp-markers", disabled: !calibrated },
                        h("legend", {}, calibrated ? "Lines" : "Lines (need a wavelength-calibrated spectrum)"));
    const markerInputs = {};
    for (const list of LINE_LISTS) {
      const cb = checkbox(list.label + (list.redshifted ? "" : " (observed)"));
      cb.label.style.setProperty("--gp-marker", list.colour);
      cb.label.classList.add("gp-marker-check");
      markerInputs[list.id] = cb.input;
      markerBox.append(cb.label);
    }
    const plotEl = h("div", { class: "gp-figure" });
    container.append(controls, markerBox, plotEl);
    if (options.onFit) {   // below the plot: showing it does not move the plot under the pointer
      fitLo = h("input", { type: "number", step: "any", class: "gp-fit-lo", "aria-label": "fit window from" });
      fitHi = h("input", { type: "number", step: "any", class: "gp-fit-hi", "aria-label": "fit window to" });
      fitForm = h("form", { class: "gp-fit-form", hidden: true },
                  h("span", {}, "window"), fitLo, h("span", {}, "\u2013"), fitHi, h("span", {}, xUnit),
                  h("button", { type: "submit" }, "Fit"));
      container.append(fitForm);
    }
    container.append(fitResult);

    // The main figure.
    const pan = new B.PanTool();
    const wheel = new B.WheelZoomTool({ dimensions: "width" });
    const boxZoom = new B.BoxZoomTool();
    const hover = new B.HoverTool({
      mode: "vline", point_policy: "snap_to_data",
      tooltips: [[calibrated ? "\u03bb" : "x", "@x{0.00} " + xUnit], ["flux", "@flux" + yFormat], ["\u03c3", "@err" + yFormat]],
    });
    // x-range select for "Fit a line": it selects no renderer, only reports the range.
    const fitSelect = new B.BoxSelectTool({ dimensions: "width", renderers: [], persistent: false });
    const fig = darkFigure(B, {
      x_range: xRange, y_range: new B.DataRange1d({ range_padding: 0.06 }), height: options.height || 320,
      x_axis_label: calibrated ? "wavelength (\u00c5, air)" : "pixel",
      y_axis_label: "flux (" + (data.flux_unit || "adu") + ")",
      tools: [pan, wheel, boxZoom, ...(options.onFit ? [fitSelect] : []), new B.ResetTool(), new B.SaveTool(), hover],
      active_drag: pan, active_scroll: wheel,
    });
    // Overlays in the same units only (a pixel spectrum cannot be drawn on a wavelength
    // axis, nor counts on a flux axis).
    const overlays = (options.overlays || []).filter((o) => o && o.x && o.flux &&
      (o.calibrated !== false && o.x_unit !== "pixel") === calibrated && !o.fluxed === !data.fluxed);
    const legendFor = (d) => (overlays.length ? { legend_label: labelOf(d) } : {});

    const rangeRenderers = [];
    if (err) {   // +-1 sigma band, one polygon per run of finite values (NaN gaps stay gaps)
      const xs = [];
      const ys = [];
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          const back = run.slice().reverse();
          xs.push([...run.map((i) => x[i]), ...back.map((i) => x[i])]);
          ys.push([...run.map((i) => shownFlux[i] - err[i]), ...back.map((i) => shownFlux[i] + err[i])]);
        }
        run = [];
      };
      for (let i = 0; i < x.length; i++) {
        if (isFinite(shownFlux[i]) && isFinite(err[i]) && isFinite(x[i])) run.push(i);
        else flush();
      }
      flush();
      rangeRenderers.push(fig.patches({ xs, ys, fill_color: COLOURS.sigma, fill_alpha: 0.35, line_alpha: 0,
                                        name: "sigma" }));
    }
    if (mask && mask.some((m) => m)) {   // bridged pixels: no good data, drawn dashed
      const bridged = flux.map((v, i) => (mask[i] || mask[i - 1] || mask[i + 1] ? v : NaN));
      fig.line({ x, y: bridged, line_color: COLOURS.bridged, line_dash: "dashed", line_width: 1, name: "bridged" });
    }
    const fluxRenderer = fig.line({ x: { field: "x" }, y: { field: "flux" }, source, line_color: COLOURS.flux,
                                    line_width: 1.3, name: "flux", ...legendFor(data) });
    rangeRenderers.push(fluxRenderer);
    hover.renderers = [fluxRenderer];
    overlays.forEach((o, k) => {
      rangeRenderers.push(fig.line({
        x: numbers(o.x), y: numbers(o.flux), line_color: COLOURS.overlays[k % COLOURS.overlays.length],
        line_width: 1.1, line_alpha: 0.9, name: "overlay-" + k, legend_label: labelOf(o),
      }));
    });
    fig.y_range.renderers = rangeRenderers;
    if (overlays.length) styleLegend(fig.legend);

    // The sky, on its own axis on the right (it is often far brighter than the target).
    // Everything the controls show is built hidden now: BokehJS cannot add an annotation
    // (an axis, a label set) to a figure already on the page.
    let skyRenderer = null;
    let skyAxis = null;
    if (data.sky) {
      const skyValues = numbers(data.sky);
      const sr = finiteRange(skyValues) || [0, 1];
      const pad = (sr[1] - sr[0]) * 0.06 || 1;
      fig.extra_y_ranges = { sky: new B.Range1d({ start: sr[0] - pad, end: sr[1] + pad }) };
      skyRenderer = fig.line({ x, y: skyValues, y_range_name: "sky", line_color: COLOURS.sky, line_width: 1,
                               line_alpha: 0.85, name: "sky", visible: false });
      skyAxis = new B.LinearAxis({ y_range_name: "sky", axis_label: "sky (" + (data.flux_unit || "adu") + ")",
                                   visible: false });
      styleAxis(skyAxis);
      skyAxis.setv({ axis_label_text_color: COLOURS.sky, major_label_text_color: COLOURS.sky });
      fig.add_layout(skyAxis, "right");
    }
    function setSky(on) {
      sky.input.checked = !!on && !!skyRenderer;
      if (!skyRenderer) return;
      skyRenderer.visible = !!on;
      skyAxis.visible = !!on;
    }

    // The lamp and its identified lines, below, sharing the x range.
    let lampFig = null;
    if (data.lamp) {
      const lx = numbers(data.lamp.x);
      const lf = numbers(data.lamp.flux);
      const yr = finiteRange(lf) || [0, 1];
      const top = yr[1] + (yr[1] - yr[0]) * 0.85;   // room for the labels above the ticks
      const lines = data.lamp.lines || [];
      lampFig = darkFigure(B, {
        x_range: xRange, y_range: new B.Range1d({ start: Math.min(0, yr[0]), end: top }), height: 210,
        x_axis_label: calibrated ? "wavelength (\u00c5, air)" : "pixel", y_axis_label: "lamp",
        tools: [new B.PanTool(), new B.WheelZoomTool({ dimensions: "width" }), new B.ResetTool()],
        toolbar_location: null,
      });
      lampFig.line({ x: lx, y: lf, line_color: COLOURS.lamp, line_width: 1, name: "lamp" });
      const tickSource = new B.ColumnDataSource({ data: {
        x: numbers(lines.map((l) => l.x)), label: lines.map((l) => String(l.label == null ? "" : l.label)),
      } });
      const y0 = yr[1] + (yr[1] - yr[0]) * 0.03;
      const y1 = yr[1] + (yr[1] - yr[0]) * 0.11;
      const ticks = lampFig.segment({ x0: { field: "x" }, x1: { field: "x" }, y0: { value: y0 }, y1: { value: y1 },
                                      source: tickSource, line_color: COLOURS.lampLine, line_width: 1.5,
                                      name: "lamp-lines" });
      lampFig.add_layout(new B.LabelSet({
        source: tickSource, x: { field: "x" }, y: { value: y1 }, text: { field: "label" }, angle: Math.PI / 2,
        y_offset: 3, x_offset: 4, text_font_size: "9px", text_color: COLOURS.lampLine, text_baseline: "middle",
      }));
      lampFig.add_tools(new B.HoverTool({ renderers: [ticks], tooltips: [["line", "@label"], ["x", "@x{0.00}"]] }));
      lampFig.visible = false;
    }
    function setLamp(on) {
      if (!lampFig) return;
      lamp.input.checked = !!on;
      lampFig.visible = !!on;
    }

    // Line markers: one vspan (or vstrip) renderer and one label set per list.
    let z = 0;
    const markers = {};
    function markerData(list) {
      const shift = list.redshifted ? 1 + z : 1;
      if (list.bands) {
        return { x0: list.bands.map((b) => b[0]), x1: list.bands.map((b) => b[1]), x: list.bands.map((b) => b[0]),
                 label: list.bands.map((b) => b[2]) };
      }
      return { x: list.lines.map((l) => l[0] * shift), rest: list.lines.map((l) => l[0]),
               label: list.lines.map((l) => l[1]) };
    }
    for (const list of LINE_LISTS) {
      const src = new B.ColumnDataSource({ data: markerData(list) });
      const renderer = list.bands
        ? fig.vstrip({ x0: { field: "x0" }, x1: { field: "x1" }, source: src, fill_color: list.colour, fill_alpha: 0.14,
                       line_alpha: 0, name: "marker:" + list.id, visible: false })
        // vspan takes its x positionally (an object alone is read as the x spec)
        : fig.vspan({ field: "x" }, { source: src, line_color: list.colour, line_alpha: 0.75, line_width: 1,
                                      line_dash: list.redshifted ? "solid" : "dotted", name: "marker:" + list.id,
                                      visible: false });
      const labels = new B.LabelSet({
        source: src, x: { field: "x" }, y: { value: 6 }, y_units: "screen", text: { field: "label" },
        angle: Math.PI / 2, x_offset: -3, text_font_size: "10px", text_color: list.colour, text_baseline: "bottom",
        visible: false,
      });
      fig.add_layout(labels);
      markers[list.id] = { list, src, renderer, labels };
    }
    function setMarkers(id, on) {
      const m = markers[id];
      if (!m) throw new Error("no line list " + id);
      markerInputs[id].checked = !!on;
      m.renderer.visible = !!on;
      m.labels.visible = !!on;
    }
    function setRedshift(value, { fromInput = false } = {}) {
      if (value == null || !isFinite(value) || value <= -1) throw new Error("not a redshift: " + value);
      z = +value;
      for (const m of Object.values(markers)) {
        if (m.list.redshifted) m.src.data = markerData(m.list);
      }
      if (!fromInput) zInput.value = z === 0 ? "" : String(+z.toPrecision(6));
      zInput.removeAttribute("aria-invalid");
      zNote.textContent = z === 0 ? "" : "cz = " + fmt(z * C_KM_S, 0) + " km/s";
      if (options.onRedshift) options.onRedshift(z);
    }

    // Line fits: the model curve, a marker at its centre and a short text (one source
    // each, holding every fit drawn).
    const fits = [];
    const fitCurves = new B.ColumnDataSource({ data: { xs: [], ys: [] } });
    const fitCentres = new B.ColumnDataSource({ data: { x: [], y: [], text: [], y_offset: [] } });
    fig.multi_line({ xs: { field: "xs" }, ys: { field: "ys" }, source: fitCurves, line_color: COLOURS.fit,
                     line_width: 2, name: "fit" });
    fig.scatter({ x: { field: "x" }, y: { field: "y" }, source: fitCentres, marker: "inverted_triangle", size: 11,
                  fill_color: COLOURS.fit, line_color: THEME.page, name: "fit-centre" });
    fig.add_layout(new B.LabelSet({
      source: fitCentres, x: { field: "x" }, y: { field: "y" }, text: { field: "text" }, x_offset: 8,
      y_offset: { field: "y_offset" }, text_font_size: "11px", text_color: COLOURS.fit,
      background_fill_color: THEME.page, background_fill_alpha: 0.75,
    }));
    function redrawFits() {
      fitCurves.data = { xs: fits.map((f) => f.x), ys: fits.map((f) => f.y) };
      fitCentres.data = { x: fits.map((f) => f.fit.centre), y: fits.map((f) => f.centreY),
                          text: fits.map((f) => f.text.short),
                          y_offset: fits.map((f) => (f.fit.kind === "emission" ? 6 : -18)) };
    }
    function drawFit(fit) {
      const cx = numbers(fit.curve && fit.curve.x);
      const cy = numbers(fit.curve && fit.curve.y);
      let centreY = NaN;
      let best = Infinity;
      cx.forEach((v, i) => {
        if (Math.abs(v - fit.centre) < best) {
          best = Math.abs(v - fit.centre);
          centreY = cy[i];
        }
      });
      const text = fitText(fit, xUnit);
      fits.push({ fit, x: cx, y: cy, centreY, text });
      redrawFits();
      fitResult.textContent = text.long;
      fitResult.classList.remove("gp-error");
      return fit;
    }
    function clearFits() {
      fits.splice(0);
      redrawFits();
      fitResult.textContent = "";
    }
    let fitSeq = 0;
    function runFit(window) {
      const [lo, hi] = [Math.min(window[0], window[1]), Math.max(window[0], window[1])];
      if (fitForm) {
        fitLo.value = fmt(lo, 2);
        fitHi.value = fmt(hi, 2);
      }
      const seq = ++fitSeq;
      fitResult.classList.remove("gp-error");
      fitResult.textContent = "fitting " + fmt(lo, 2) + "\u2013" + fmt(hi, 2) + " " + xUnit + "\u2026";
      return Promise.resolve(options.onFit([lo, hi])).then(
        (fit) => (seq === fitSeq ? drawFit(fit) : fit),
        (error) => {
          if (seq === fitSeq) {
            fitResult.classList.add("gp-error");
            fitResult.textContent = "fit failed: " + (error && error.message ? error.message : String(error));
          }
          throw error;
        });
    }
    let fitMode = false;
    function setFitMode(on) {
      fitMode = !!on && !!options.onFit;
      if (fitButton) fitButton.setAttribute("aria-pressed", String(fitMode));
      if (fitForm) fitForm.hidden = !fitMode;
      container.classList.toggle("gp-fitting", fitMode);
      fitSelect.active = fitMode;
      if (!fitMode) pan.active = true;
    }

    // Wire the controls.
    sky.input.addEventListener("change", () => setSky(sky.input.checked));
    if (lamp) lamp.input.addEventListener("change", () => setLamp(lamp.input.checked));
    for (const list of LINE_LISTS) {
      markerInputs[list.id].addEventListener("change", () => setMarkers(list.id, markerInputs[list.id].checked));
    }
    zInput.addEventListener("input", () => {
      const value = parseRedshift(zInput.value);
      if (value == null) {
        zInput.setAttribute("aria-invalid", "true");
        zNote.textContent = "a redshift (0.012) or a velocity (3600 km/s)";
      } else {
        setRedshift(value, { fromInput: true });
      }
    });
    if (fitButton) fitButton.addEventListener("click", () => setFitMode(!fitMode));
    if (fitForm) {
      fitForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const lo = parseFloat(fitLo.value);
        const hi = parseFloat(fitHi.value);
        if (isFinite(lo) && isFinite(hi) && lo !== hi) runFit([lo, hi]).catch(() => {});
      });
    }

    const root = lampFig ? new B.Column({ children: [fig, lampFig], sizing_mode: "stretch_width" }) : fig;
    const rootView = await show(B, root, plotEl);
    const figView = viewOf(rootView, fig);
    // "Fit a line": the x-range select reports the range dragged (when the drag ends). Its
    // toolbar button is the same switch as the "Fit a line" button.
    fitSelect.properties.active.change.connect(() => {
      if (fitSelect.active !== fitMode) setFitMode(fitSelect.active);
    });
    fig.on_event("selectiongeometry", (event) => {
      if (!fitMode || !event.final || event.geometry.type !== "rect") return;
      const { x0, x1 } = event.geometry;
      if (isFinite(x0) && isFinite(x1) && x0 !== x1) runFit([x0, x1]).catch(() => {});   // shown in fitResult
    });

    if (options.redshift) setRedshift(options.redshift);
    for (const id of options.markers || []) setMarkers(id, true);
    if (options.sky) setSky(true);
    if (options.lamp) setLamp(true);
    for (const fit of options.fits || []) drawFit(fit);

    return {
      figure: fig, lampFigure: lampFig, source,
      fluxed: !!data.fluxed,
      yLabel: () => fig.left[0].axis_label,
      xRange: () => [xRange.start, xRange.end],
      setXRange(lo, hi) {
        xRange.setv({ start: lo, end: hi });
      },
      redshift: () => z,
      setRedshift: (value) => setRedshift(value),
      /** Set z from a line fit that has one (a fit given a rest wavelength); returns z or null. */
      redshiftFrom(fit) {
        if (!fit || fit.redshift == null || !isFinite(fit.redshift)) return null;
        setRedshift(fit.redshift);
        return z;
      },
      setMarkers, setSky, setLamp, setFitMode,
      markerPositions: (id) => (markers[id] && markers[id].renderer.visible ? Array.from(markers[id].src.data.x) : []),
      showFit: (fit) => drawFit(fit),
      fit: (window) => runFit(window),
      clearFits,
      /** The fits drawn, oldest first, each {fit, x, y} (x, y: the curve as drawn). */
      fits: () => fits.map((f) => ({ fit: f.fit, x: Array.from(f.x), y: Array.from(f.y) })),
      /** Names of the visible renderers of both figures (flux, sigma, sky, lamp, marker:<id>, fit, ...). */
      renderers() {
        const names = fig.renderers.filter((r) => r.visible && !(r.name.startsWith("fit") && !fits.length))
          .map((r) => r.name);
        if (lampFig && lampFig.visible) names.push(...lampFig.renderers.filter((r) => r.visible).map((r) => r.name));
        return names;
      },
      /** Page coordinates of the data point (x, y) on the main figure (y omitted: mid-height). */
      clientPoint: (px, py) => clientPoint(figView, px, py),
      destroy() {
        root.document.clear();
        container.replaceChildren();
        container.classList.remove("gp", "gp-spectrum", "gp-fitting");
      },
    };
  }

  function fitText(fit, unit) {
    const centre = withError(fit.centre, fit.centre_error, 2);
    const fwhm = withError(fit.fwhm, fit.fwhm_error, 2);
    const ew = withError(fit.equivalent_width, fit.equivalent_width_error, 2);
    const short = "\u03bb " + fmt(fit.centre, 2) + "  FWHM " + fmt(fit.fwhm, 2) +
                  "  EW " + fmt(fit.equivalent_width, 2);
    let long = (fit.kind || "line") + " at " + centre + " " + unit + ", FWHM " + fwhm + " " + unit +
               ", EW " + ew + " " + unit + " (" + (fit.model || "fit") + ", \u03c7\u00b2\u1d63 " +
               fmt(fit.chi2_reduced, 2) + ")";
    if (fit.redshift != null) long += ", z = " + withError(fit.redshift, fit.redshift_error, 5);
    if (fit.velocity_km_s != null) long += " (" + fmt(fit.velocity_km_s, 0) + " km/s)";
    return { short, long };
  }

  // ---- imexam ---------------------------------------------------------------------------------
  /*
   * The preview PNG is the reduced frame block-averaged by `factor` and flipped so that
   * frame row 0 is the PNG's bottom row: PNG pixel (i, j), counted from the top-left,
   * covers frame columns j*f .. j*f+f-1 and rows (H-1-i)*f .. (H-1-i)*f+f-1 (H the PNG's
   * height in pixels). A point (u, v) on the canvas, in PNG pixels from its top-left
   * corner with the fraction within a pixel kept, is at frame coordinates X = u*f and
   * Y = (H - v)*f, where frame pixel (x, y) spans [x, x+1) x [y, y+1); so
   *     x = floor(u * f),  y = floor((H - v) * f),
   * clipped to the frame's shape [ny, nx]. The inverse, for drawing: the centre of frame
   * pixel (x, y) is at u = (x + 0.5)/f, v = H - (y + 0.5)/f.
   */
  function frameFromCanvas(u, v, pngHeight, factor, shape) {
    const f = factor || 1;
    const [ny, nx] = shape;
    const clip = (value, n) => Math.max(0, Math.min(n - 1, value));
    return { x: clip(Math.floor(u * f), nx), y: clip(Math.floor((pngHeight - v) * f), ny) };
  }

  function canvasFromFrame(x, y, pngHeight, factor) {
    const f = factor || 1;
    return { u: (x + 0.5) / f, v: pngHeight - (y + 0.5) / f };
  }

  // 256-entry colour maps, [r, g, b] per grey level.
  function lut(fn) {
    const table = new Uint8ClampedArray(256 * 3);
    for (let i = 0; i < 256; i++) {
      const [r, g, b] = fn(i / 255);
      table[3 * i] = Math.round(255 * r);
      table[3 * i + 1] = Math.round(255 * g);
      table[3 * i + 2] = Math.round(255 * b);
    }
    return table;
  }
  // viridis (van der Walt & Smith, matplotlib's default map, CC0): 9 of its 256 colours
  // at equal steps, interpolated linearly.
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                   [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  const COLOURMAPS = {
    grey: lut((t) => [t, t, t]),
    // "heat" as ds9's and matplotlib's "hot": black, red, yellow, white.
    heat: lut((t) => [Math.min(1, t / 0.365), Math.min(1, Math.max(0, (t - 0.365) / 0.381)),
                      Math.min(1, Math.max(0, (t - 0.746) / 0.254))]),
    viridis: lut((t) => {
      const p = t * (VIRIDIS.length - 1);
      const k = Math.min(VIRIDIS.length - 2, Math.floor(p));
      const w = p - k;
      return [0, 1, 2].map((c) => (VIRIDIS[k][c] * (1 - w) + VIRIDIS[k + 1][c] * w) / 255);
    }),
  };

  function loadImage(url, crossOrigin) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      if (crossOrigin) img.crossOrigin = "anonymous";
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("could not load the preview image"));
      img.src = url;
    });
  }

  /**
   * The reduced 2-D frame from its preview product (kind "preview_reduced": url, shape,
   * factor, saturated, saturated_count, ...). A click or tap (or Enter on the focused
   * image; arrow keys move the cursor) asks `options.examine(x, y)` (Promise of the imexam
   * JSON) about that frame pixel and shows the value, the box statistics, a row and a
   * column cut and the source's radial profile. Without BokehJS loaded (light mode) the
   * results are text only; imexam never loads BokehJS itself.
   * options: {examine, colormap: "grey"|"heat"|"viridis", arcsecPerPixel: binned plate scale}
   */
  async function imexam(container, preview, options = {}) {
    container.replaceChildren();
    container.classList.add("gp", "gp-imexam");
    const factor = preview.factor || 1;
    const shape = preview.shape;
    const selectId = nextId("cmap");
    const select = h("select", { id: selectId, class: "gp-cmap" },
                     Object.keys(COLOURMAPS).map((name) => h("option", { value: name }, name)));
    select.value = COLOURMAPS[options.colormap] ? options.colormap : "grey";
    const satCount = preview.saturated_count != null ? preview.saturated_count : (preview.saturated || []).length;
    const sat = checkbox("saturated (" + satCount + ")", { checked: true, disabled: !satCount });
    sat.label.classList.add("gp-sat-check");
    const note = h("span", { class: "gp-im-note" }, "click or tap a pixel to examine it");
    const canvas = h("canvas", { class: "gp-im-canvas", tabindex: "0", role: "img",
                                 "aria-label": "reduced frame " + shape[1] + " \u00d7 " + shape[0] +
                                   " px; Enter examines the pixel under the cursor, arrow keys move it" });
    const results = h("div", { class: "gp-im-results", "aria-live": "polite" });
    container.append(h("div", { class: "gp-controls" },
                       h("label", { for: selectId }, "colour map "), select, sat.label, note),
                     h("div", { class: "gp-im-stage" }, canvas), results);

    let img;
    let readable = true;
    try {
      img = await loadImage(preview.url, true);
    } catch (e) {
      // No CORS on the image's host: draw it as it is, without colour maps.
      img = await loadImage(preview.url, false);
      readable = false;
    }
    const W = img.naturalWidth;
    const H = img.naturalHeight;
    canvas.width = W;
    canvas.height = H;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    let grey = null;
    if (readable) {
      try {
        grey = ctx.getImageData(0, 0, W, H);
      } catch (e) {
        if (e.name !== "SecurityError") throw e;
      }
    }
    if (!grey) {
      select.disabled = true;
      note.textContent = "colour maps need the image host to allow CORS";
    }
    let cursor = null;   // frame pixel {x, y}

    function paint() {
      if (grey) {
        const table = COLOURMAPS[select.value];
        const out = ctx.createImageData(W, H);
        const src = grey.data;
        const dst = out.data;
        for (let p = 0; p < src.length; p += 4) {
          const k = 3 * src[p];
          dst[p] = table[k];
          dst[p + 1] = table[k + 1];
          dst[p + 2] = table[k + 2];
          dst[p + 3] = 255;
        }
        ctx.putImageData(out, 0, 0);
      } else {
        ctx.drawImage(img, 0, 0);
      }
      if (sat.input.checked) {
        ctx.fillStyle = "#ff2020";
        for (const [sx, sy] of preview.saturated || []) {
          ctx.fillRect(Math.floor(sx / factor), H - 1 - Math.floor(sy / factor), 1, 1);
        }
      }
      if (cursor) {
        const { u, v } = canvasFromFrame(cursor.x, cursor.y, H, factor);
        const r = Math.max(3, W / 80);
        ctx.strokeStyle = COLOURS.cursor;
        ctx.lineWidth = Math.max(1, W / 600);
        ctx.beginPath();
        ctx.moveTo(u - 2 * r, v);
        ctx.lineTo(u - r / 2, v);
        ctx.moveTo(u + r / 2, v);
        ctx.lineTo(u + 2 * r, v);
        ctx.moveTo(u, v - 2 * r);
        ctx.lineTo(u, v - r / 2);
        ctx.moveTo(u, v + r / 2);
        ctx.lineTo(u, v + 2 * r);
        ctx.stroke();
      }
    }
    paint();
    select.addEventListener("change", paint);
    sat.input.addEventListener("change", paint);

    let plotsDocs = [];
    function clearPlots() {
      for (const doc of plotsDocs) doc.clear();
      plotsDocs = [];
    }
    let seq = 0;
    let last = null;
    async function examineAt(x, y) {
      if (!options.examine) throw new Error("imexam needs options.examine(x, y)");
      cursor = { x, y };
      paint();
      const mine = ++seq;
      results.classList.remove("gp-error");
      results.replaceChildren(h("p", { class: "gp-im-value" }, "examining (" + x + ", " + y + ")\u2026"));
      let answer;
      try {
        answer = await options.examine(x, y);
      } catch (error) {
        if (mine === seq) {
          results.classList.add("gp-error");
          const why = error && error.message ? error.message : String(error);
          results.replaceChildren(h("p", { class: "gp-im-value" }, "could not examine (" + x + ", " + y + "): " + why));
        }
        throw error;
      }
      if (mine !== seq) return answer;
      last = answer;
      await showResults(answer);
      return answer;
    }

    async function showResults(r) {
      clearPlots();
      const box = r.box || {};
      const valueText = "pixel (" + r.x + ", " + r.y + ") = " + fmt(r.value, 1) + " ADU" +
                        (r.saturated ? " \u2014 saturated" : "");
      const table = h("table", { class: "gp-im-box" },
        h("caption", {}, "box x " + box.x0 + "\u2013" + box.x1 + ", y " + box.y0 + "\u2013" + box.y1 +
                         " (" + box.n + " px)"),
        h("thead", {}, h("tr", {}, ["mean", "median", "std", "min", "max"].map((k) => h("th", { scope: "col" }, k)))),
        h("tbody", {}, h("tr", {}, ["mean", "median", "std", "min", "max"].map((k) => h("td", {}, fmt(box[k], 1))))));
      const src = r.source;
      let sourceText = "no source found here";
      if (src) {
        sourceText = (src.kind === "trace" ? "trace" : "point source") +
          " at (" + fmt(src.x, 1) + ", " + fmt(src.y, 1) +
          "): FWHM " + withError(src.fwhm, src.fwhm_error, 2) + " px";
        if (options.arcsecPerPixel && src.fwhm != null) {
          sourceText += " (" + fmt(src.fwhm * options.arcsecPerPixel, 2) + "\u2033)";
        }
        sourceText += ", peak " + fmt(src.peak, 0) + ", background " + fmt(src.background, 1);
      }
      const rowEl = h("div", { class: "gp-im-plot gp-im-row" });
      const colEl = h("div", { class: "gp-im-plot gp-im-col" });
      const profEl = h("div", { class: "gp-im-plot gp-im-profile" });
      results.replaceChildren(h("p", { class: "gp-im-value" + (r.saturated ? " gp-saturated" : "") }, valueText),
                              h("div", { class: "gp-table-wrap" }, table),
                              h("p", { class: "gp-im-source" }, sourceText));
      const B = bokehLoaded();
      if (!B) return;   // light mode: text only
      results.append(h("div", { class: "gp-im-plots" }, rowEl, colEl, profEl));
      const small = (title, xLabel) => darkFigure(B, {
        height: 170, title, x_axis_label: xLabel, toolbar_location: null, min_border_left: 36,
        tools: [new B.PanTool(), new B.WheelZoomTool(), new B.ResetTool(),
                new B.HoverTool({ tooltips: [[xLabel, "@x{0.0}"], ["value", "@y{0.0}"]] })],
      });
      const plots = [];
      if (r.row_cut) {
        const f = small("row " + r.row_cut.y, "column");
        const vals = numbers(r.row_cut.values);
        f.line({ x: vals.map((_, i) => r.row_cut.x0 + i), y: vals, line_color: COLOURS.overlays[4], name: "row-cut" });
        f.vspan([r.x], { line_color: COLOURS.cursor, line_dash: "dashed", line_alpha: 0.7 });
        plots.push([f, rowEl]);
      }
      if (r.column_cut) {
        const f = small("column " + r.column_cut.x, "row");
        const vals = numbers(r.column_cut.values);
        f.line({ x: vals.map((_, i) => r.column_cut.y0 + i), y: vals, line_color: COLOURS.overlays[2],
                 name: "column-cut" });
        f.vspan([r.y], { line_color: COLOURS.cursor, line_dash: "dashed", line_alpha: 0.7 });
        plots.push([f, colEl]);
      }
      if (src && src.profile) {
        const f = small((src.kind === "trace" ? "profile across the trace" : "radial profile") +
                        " \u2014 FWHM " + withError(src.fwhm, src.fwhm_error, 2) + " px",
                        src.kind === "trace" ? "distance (px)" : "radius (px)");
        f.scatter({ x: numbers(src.profile.r), y: numbers(src.profile.value), size: 4, fill_color: COLOURS.overlays[0],
                    line_alpha: 0, name: "profile" });
        if (src.model) {
          f.line({ x: numbers(src.model.r), y: numbers(src.model.value), line_color: COLOURS.fit, line_width: 2,
                   name: "profile-model" });
        }
        plots.push([f, profEl]);
      } else {
        profEl.remove();
      }
      for (const [f, el] of plots) {
        await show(B, f, el);
        plotsDocs.push(f.document);
      }
    }

    // Pointer events: a click with a mouse, a tap with a finger or pen (a drag is not a tap).
    let down = null;
    canvas.addEventListener("pointerdown", (event) => {
      down = { x: event.clientX, y: event.clientY, id: event.pointerId };
    });
    canvas.addEventListener("pointerup", (event) => {
      if (!down || down.id !== event.pointerId) return;
      const moved = Math.hypot(event.clientX - down.x, event.clientY - down.y);
      down = null;
      if (moved > 8) return;
      const rect = canvas.getBoundingClientRect();
      const u = (event.clientX - rect.left) * W / rect.width;
      const v = (event.clientY - rect.top) * H / rect.height;
      const p = frameFromCanvas(u, v, H, factor, shape);
      examineAt(p.x, p.y).catch(() => {});   // shown in the results
    });
    canvas.addEventListener("pointercancel", () => { down = null; });
    canvas.addEventListener("keydown", (event) => {
      const step = (event.shiftKey ? 10 : 1) * factor;
      const c = cursor || { x: Math.floor(shape[1] / 2), y: Math.floor(shape[0] / 2) };
      const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[event.key]) {
        event.preventDefault();
        cursor = { x: Math.max(0, Math.min(shape[1] - 1, c.x + moves[event.key][0])),
                   y: Math.max(0, Math.min(shape[0] - 1, c.y + moves[event.key][1])) };
        paint();
      } else if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        examineAt(c.x, c.y).catch(() => {});
      }
    });

    return {
      canvas,
      examineAt,
      setColormap(name) {
        if (!COLOURMAPS[name]) throw new Error("no colour map " + name);
        select.value = name;
        paint();
      },
      lastResult: () => last,
      /** Page coordinates of the centre of frame pixel (x, y) on the canvas as shown. */
      clientPoint(x, y) {
        const rect = canvas.getBoundingClientRect();
        const { u, v } = canvasFromFrame(x, y, H, factor);
        return { x: rect.left + u * rect.width / W, y: rect.top + v * rect.height / H };
      },
      destroy() {
        clearPlots();
        container.replaceChildren();
        container.classList.remove("gp", "gp-imexam");
      },
    };
  }

  // ---- night summary ------------------------------------------------------------------------
  const SUMMARY_METRICS = [
    { key: "snr", label: "S/N", digits: 1 },
    { key: "fwhm_arcsec", label: "seeing FWHM (\u2033)", digits: 2 },
    { key: "rms", label: "\u03bb RMS", digits: 3 },
  ];

  function summaryData(rows) {
    const sorted = (rows || []).filter((r) => r && r.time).slice()
      .sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    const data = { t: sorted.map((r) => Date.parse(r.time)), file_name: sorted.map((r) => r.file_name) };
    for (const m of SUMMARY_METRICS) data[m.key] = numbers(sorted.map((r) => r[m.key]));
    return data;
  }

  /**
   * The night's S/N, seeing and wavelength RMS over time: three small linked-x plots.
   * rows: [{file_name, time (ISO), snr, fwhm_arcsec, rms}]; a null value is a gap.
   * options: {onSelect(file_name): told when a point is tapped, rmsUnit ("\u00c5")}
   */
  async function summary(container, rows, options = {}) {
    const B = await ready();
    container.replaceChildren();
    container.classList.add("gp", "gp-summary");
    const plotEl = h("div", { class: "gp-figure" });
    container.append(plotEl);
    const source = new B.ColumnDataSource({ data: summaryData(rows) });
    // one frame alone: an hour around it (the default span, 2, would be 2 ms on a time axis)
    const xRange = new B.DataRange1d({ range_padding: 0.03, default_span: 3600e3 });
    const figures = SUMMARY_METRICS.map((m, k) => {
      const label = m.key === "rms" ? m.label + " (" + (options.rmsUnit || "\u00c5") + ")" : m.label;
      const fig = darkFigure(B, {
        x_range: xRange, x_axis_type: "datetime", height: k === SUMMARY_METRICS.length - 1 ? 130 : 105,
        y_axis_label: label, min_border_left: 50, min_border_top: 4, min_border_bottom: 4,
        tools: [new B.PanTool({ dimensions: "width" }), new B.WheelZoomTool({ dimensions: "width" }),
                new B.ResetTool()],
      });
      fig.line({ x: { field: "t" }, y: { field: m.key }, source, line_color: COLOURS.summary[k], line_alpha: 0.5,
                 line_width: 1 });
      const points = fig.scatter({ x: { field: "t" }, y: { field: m.key }, source, size: 7,
                                   fill_color: COLOURS.summary[k], line_color: THEME.page, name: "summary-" + m.key });
      fig.add_tools(new B.TapTool({ renderers: [points] }), new B.HoverTool({
        renderers: [points], formatters: { "@t": "datetime" },
        tooltips: [["file", "@file_name"], ["time", "@t{%H:%M:%S} UT"],
                   [m.label, "@" + m.key + "{0." + "0".repeat(m.digits) + "}"]],
      }));
      if (k < SUMMARY_METRICS.length - 1) fig.xaxis.major_label_text_font_size = "0px";
      return fig;
    });
    const root = B.Plotting.gridplot(figures.map((f) => [f]), {
      toolbar_location: "right", merge_tools: true, sizing_mode: "stretch_width",
    });
    let quiet = false;
    source.selected.properties.indices.change.connect(() => {
      const i = source.selected.indices[0];
      if (!quiet && i != null && options.onSelect) options.onSelect(source.data.file_name[i]);
    });
    const rootView = await show(B, root, plotEl);
    return {
      figures, source,
      xRange: () => [xRange.start, xRange.end],
      /** Replace the rows (a new frame was reduced). */
      update(newRows) {
        source.data = summaryData(newRows);
      },
      /** Highlight a file's points (without telling onSelect). */
      select(fileName) {
        quiet = true;
        const i = source.data.file_name.indexOf(fileName);
        source.selected.indices = i >= 0 ? [i] : [];
        quiet = false;
      },
      /** Page coordinates of a file's point on plot k (0: S/N, 1: seeing, 2: RMS). */
      clientPoint(fileName, k) {
        const i = source.data.file_name.indexOf(fileName);
        const fig = figures[k || 0];
        return clientPoint(viewOf(rootView, fig), source.data.t[i], source.data[SUMMARY_METRICS[k || 0].key][i]);
      },
      destroy() {
        root.document.clear();
        container.replaceChildren();
        container.classList.remove("gp", "gp-summary");
      },
    };
  }

  window.GoodmanPlots = {
    BOKEH_VERSION, LINE_LISTS, ready, spectrum, imexam, summary, parseRedshift, frameFromCanvas, canvasFromFrame,
  };
})();
