// Goodman Live page: lists a night's files and keeps the list current by polling the
// API's change cursor (cheap: one indexed query that usually returns nothing).
(function () {
  "use strict";
  const body = document.body;
  const API = body.dataset.apiBase || "";
  const POLL_MS = parseInt(body.dataset.pollMs, 10) || 1500;
  const nightSelect = document.getElementById("night-select");
  const typeFilter = document.getElementById("type-filter");
  const table = document.getElementById("files");
  const tbody = table.querySelector("tbody");
  const empty = document.getElementById("empty");
  const counts = document.getElementById("counts");
  const banner = document.getElementById("banner");
  const live = document.getElementById("live");

  let night = null;
  let cursor = "";
  let files = new Map();          // file_id -> file as the API serves it
  let lastOk = 0;
  let generation = 0;             // bumps when the night changes, so late answers are dropped
  let selected = null;            // file_id shown in the detail card
  const detail = document.getElementById("detail");

  async function api(path) {
    const res = await fetch(API + path, { headers: { "Accept": "application/json" } });
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { const j = await res.json(); msg = j.Message || j.message || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return res.json();
  }

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  function appendLink(parent, p, label) {
    const a = text("a", label, "product");
    a.href = p.url; a.target = "_blank"; a.rel = "noopener"; a.title = p.file_name;
    parent.appendChild(a);
    parent.appendChild(document.createTextNode(" "));
  }

  // An OBJECT frame's spectra in two words (its `spectra_status`); why and what
  // would fix it in the tooltip, and at the top of the detail card.
  const SPECTRA_LABELS = {
    calibrated: "calibrated", partly_calibrated: "partly calibrated", not_calibrated: "not calibrated",
    waiting_for_lamp: "waiting for lamp", no_targets: "no targets",
  };

  function spectraLabel(state) {
    return SPECTRA_LABELS[state] || String(state).replace(/_/g, " ");
  }

  function spectraWhy(f) {
    const parts = [];
    if (f.spectra_reason) parts.push(f.spectra_reason);
    else if (f.spectra_status === "calibrated") parts.push("every target is wavelength-calibrated");
    if (f.spectra_fix) parts.push("fix: " + f.spectra_fix);
    (f.calibration_notes || []).forEach(function (n) { parts.push("calibration: " + n); });
    return parts.join("\n");
  }

  function spectraBadge(f) {
    if (f.obstype !== "OBJECT" || !f.spectra_status) return null;
    const el = text("span", "spectrum: " + spectraLabel(f.spectra_status),
      "spectra-badge spectra-" + f.spectra_status);
    el.title = spectraWhy(f);
    return el;
  }

  // What the user asks first about a science frame: are its spectra calibrated, why
  // not, what would fix it, and what differed in the calibrations used.
  function spectraSummary(f) {
    const notes = f.calibration_notes || [];
    if (!f.spectra_status && !notes.length) return null;
    const box = document.createElement("section");
    box.className = "spectra-summary" + (f.spectra_status ? " spectra-" + f.spectra_status : "");
    if (f.spectra_status) {
      box.appendChild(text("div", "spectra: " + spectraLabel(f.spectra_status), "spectra-state"));
    }
    if (f.spectra_reason) box.appendChild(text("div", "why: " + f.spectra_reason, "spectra-reason"));
    if (f.spectra_fix) box.appendChild(text("div", "fix: " + f.spectra_fix, "spectra-fix"));
    if (notes.length) {
      box.appendChild(text("div", "calibrations used differ from this frame:", "spectra-notes-title"));
      const ul = document.createElement("ul");
      ul.className = "calibration-notes";
      notes.forEach(function (n) { ul.appendChild(text("li", n)); });
      box.appendChild(ul);
    }
    return box;
  }

  function row(f) {
    const tr = document.createElement("tr");
    tr.dataset.fileId = f.file_id;
    tr.dataset.status = f.status;
    const name = text("td", f.path || f.file_name, "name");   // path: a folder below the night's
    name.title = "show previews and provenance";
    name.addEventListener("click", function () { selected = f.file_id; render(); });
    tr.appendChild(name);
    if (f.file_id === selected) tr.classList.add("selected");
    tr.appendChild(text("td", f.obstype || "", "obstype"));
    tr.appendChild(text("td", f.object || ""));
    tr.appendChild(text("td", f.exptime == null ? "" : f.exptime));
    tr.appendChild(text("td", f.configuration || "", "config"));
    const st = document.createElement("td");
    st.className = "state";
    st.appendChild(text("span", f.status, "status status-" + f.status));
    const badge = spectraBadge(f);
    if (badge) st.appendChild(badge);
    tr.appendChild(st);
    const details = document.createElement("td");
    if (f.error) details.appendChild(text("div", f.error, "error"));
    (f.notes || []).forEach(function (n) { details.appendChild(text("div", n, "note")); });
    (f.products || []).forEach(function (p) { appendLink(details, p, p.kind); });
    tr.appendChild(details);
    return tr;
  }

  function render(freshIds) {
    const want = typeFilter.value;
    const list = Array.from(files.values())
      .filter(function (f) { return !want || f.obstype === want; })
      .sort(function (a, b) {
        const x = a.path || a.file_name, y = b.path || b.file_name;
        return x < y ? -1 : x > y ? 1 : 0;
      });
    tbody.replaceChildren.apply(tbody, list.map(function (f) {
      const tr = row(f);
      if (freshIds && freshIds.has(f.file_id)) tr.classList.add("fresh");
      return tr;
    }));
    renderDetail(files.get(selected));
    table.hidden = list.length === 0;
    empty.hidden = list.length !== 0;
    const byStatus = {};
    files.forEach(function (f) { byStatus[f.status] = (byStatus[f.status] || 0) + 1; });
    counts.replaceChildren(text("span", files.size + " files"));
    const option = Array.from(nightSelect.options).find(function (o) { return o.value === night; });
    if (option) option.textContent = night + " (" + files.size + ")";
    Object.keys(byStatus).sort().forEach(function (s) {
      counts.appendChild(text("span", byStatus[s] + " " + s, "status-" + s));
    });
  }

  function product(f, kind) {
    return (f.products || []).find(function (p) { return p.kind === kind; });
  }

  function figure(p, caption) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = p.url; img.alt = caption; img.loading = "lazy";
    fig.appendChild(img);
    fig.appendChild(text("figcaption", caption + " — " + p.file_name));
    return fig;
  }

  function named(f, fileName) {
    return (f.products || []).find(function (p) { return p.file_name === fileName; });
  }

  function stem(name) { return name.replace(/\.[^.]*$/, ""); }

  function fixed(v, digits) { return v == null ? "?" : Number(v).toFixed(digits); }

  // How good a wavelength solution is, in one line: range, dispersion, lamp, RMS, lines, flexure.
  function quality(w, science) {
    let line = "λ " + fixed(w.range[0], 1) + "–" + fixed(w.range[1], 1) + " Å, " + fixed(w.dispersion, 3) +
      " Å/px · lamp " + w.lamp + " · RMS " + fixed(w.rms_angstrom, 3) + " Å (" + fixed(w.rms_pixels, 3) + " px) · " +
      w.n_lines + " lines" + (w.rejected ? " (" + w.rejected + " rejected)" : "") + " · " + w.method +
      (w.reference ? " " + w.reference : "");
    if (w.flexure) {
      line += " · flexure " + (w.flexure.shift_pixels >= 0 ? "+" : "") + fixed(w.flexure.shift_pixels, 3) +
        " px from " + w.flexure.n_lines + " sky lines";
    } else if (science) {
      line += " · flexure not measured (no sky line bright enough)";
    }
    return line;
  }

  // A lamp's own solution along the middle of the slit, shown as soon as it is reduced.
  function lampCard(f) {
    const card = document.createElement("section");
    card.className = "spectrum lamp";
    card.appendChild(text("h3", "lamp solution (middle of the slit)"));
    if (f.wavelength) {
      const plot = product(f, "lamp_plot");
      if (plot) card.appendChild(figure(plot, "calibrated lamp"));
      card.appendChild(text("div", quality(f.wavelength, false), "quality"));
    } else {
      card.appendChild(text("div", "no wavelength solution: " + f.wavelength_error, "skipped"));
    }
    return card;
  }

  // One target: its calibrated spectrum, the lamp that calibrated it and how well,
  // or why it is not calibrated yet; then the downloads.
  function spectrumCard(f, s) {
    const card = document.createElement("section");
    card.className = "spectrum";
    card.dataset.target = s.number;
    card.appendChild(text("h3", "target " + s.number + " · row " + fixed(s.row, 1) + " · FWHM " + fixed(s.fwhm, 2) +
      " rows · " + s.extraction + " extraction" + (s.median_snr != null ? " · S/N " + fixed(s.median_snr, 0) : "")));
    const w = s.wavelength;
    if (w) {
      const plot = named(f, stem(s.calibrated_file_name || "") + ".png");
      if (plot) card.appendChild(figure(plot, "calibrated spectrum"));
      card.appendChild(text("div", quality(w, true), "quality"));
    } else if (s.wavelength_error) {
      card.appendChild(text("div", "not wavelength calibrated: " + s.wavelength_error, "skipped"));
    }
    const links = document.createElement("div");
    [["extracted", s.file_name], ["calibrated", s.calibrated_file_name]].forEach(function (pair) {
      const p = pair[1] && named(f, pair[1]);
      if (p) appendLink(links, p, pair[0] + " " + p.file_name);
    });
    (f.products || []).forEach(function (p) {
      if ((p.kind === "lamp_calibrated" || p.kind === "lamp_plot") && p.file_name.indexOf("_target_" + s.number + ".") > 0) {
        appendLink(links, p, (p.kind === "lamp_plot" ? "lamp plot " : "lamp ") + p.file_name);
      }
    });
    card.appendChild(links);
    return card;
  }

  // The card the paper's interface had: previews of the raw and reduced frame and
  // what went into the reduction.
  function renderDetail(f) {
    document.getElementById("layout").classList.toggle("with-detail", !!f);
    if (!f) { detail.hidden = true; return; }
    detail.hidden = false;
    const close = text("button", "×", "close");
    close.title = "close";
    close.addEventListener("click", function () { selected = null; render(); });
    const parts = [close, text("h2", f.file_name + " · " + (f.obstype || "") + " · " + f.status)];
    if (f.error) parts.push(text("div", f.error, "error"));
    const summary = spectraSummary(f);
    if (summary) parts.push(summary);
    const previews = document.createElement("div");
    previews.className = "previews";
    const raw = product(f, "preview_raw");
    const red = product(f, "preview_reduced"), quick = product(f, "quicklook"), other = product(f, "preview");
    if (raw) previews.appendChild(figure(raw, "raw"));
    if (red) previews.appendChild(figure(red, "reduced"));
    else if (quick) previews.appendChild(figure(quick, "quicklook: reduced, cosmic rays not yet cleaned"));
    else if (other) previews.appendChild(figure(other, "preview"));
    parts.push(previews);
    if (f.obstype === "COMP" && (f.wavelength || f.wavelength_error)) parts.push(lampCard(f));
    (f.products || []).forEach(function (p) {
      if (p.kind === "quicklook_spectrum") parts.push(figure(p, "quicklook spectrum: cosmic rays not yet cleaned"));
    });
    (f.spectra || []).forEach(function (s) { parts.push(spectrumCard(f, s)); });
    (f.spectra_notes || []).forEach(function (n) { parts.push(text("div", n, "note")); });
    const dl = document.createElement("dl");
    function row(label, value, cls) {
      if (value == null || value === "") return;
      dl.appendChild(text("dt", label));
      dl.appendChild(text("dd", value, cls));
    }
    const r = f.reduction || {};
    const c = f.calibrations || {};
    row("configuration", f.configuration);
    row("reduced file", f.reduced_file_name);
    row("master bias", c.master_bias ? c.master_bias.file_name : (r.steps_run ? "none" : null));
    row("master flat", c.master_flat ? c.master_flat.file_name : (r.steps_run ? "none" : null));
    row("overscan region", r.overscan_region);
    row("trim section", r.trim_section);
    row("slit trim section", r.slit_trim_section || f.slit_section);
    row("steps run", (r.steps_run || []).join(", "));
    Object.keys(r.steps_skipped || {}).forEach(function (step) {
      row("skipped", step + ": " + r.steps_skipped[step], "skipped");
    });
    row("cosmic rays", r.cosmic);
    row("members", (f.members || []).join(", "));
    (f.notes || []).forEach(function (n) { row("note", n); });
    parts.push(dl);
    detail.replaceChildren.apply(detail, parts);
  }

  function showError(err) {
    banner.hidden = false;
    banner.textContent = "Cannot reach the API: " + err.message + " — retrying.";
    live.classList.add("stale");
  }

  function markOk() {
    banner.hidden = true;
    lastOk = Date.now();
    live.classList.remove("stale");
    live.textContent = "live · updated " + new Date(lastOk).toLocaleTimeString();
  }

  async function loadNights() {
    const data = await api("/api/nights");
    const current = nightSelect.value;
    nightSelect.replaceChildren.apply(nightSelect, data.nights.map(function (n) {
      const o = text("option", n.night + " (" + n.files + ")");
      o.value = n.night;
      return o;
    }));
    if (current && data.nights.some(function (n) { return n.night === current; })) {
      nightSelect.value = current;
    }
    return data.nights;
  }

  async function loadNight(name) {
    const gen = ++generation;
    night = name;
    files = new Map();
    cursor = "";
    let token = null;
    const started = new Date(Date.now() - 10000).toISOString();
    do {
      const q = "/api/files?night=" + encodeURIComponent(name) + "&limit=200" + (token ? "&next=" + encodeURIComponent(token) : "");
      const page = await api(q);
      if (gen !== generation) return;
      page.files.forEach(function (f) { files.set(f.file_id, f); });
      token = page.next;
    } while (token);
    // Changes from a little before the listing began, so nothing written during it is missed.
    cursor = started;
    render();
    markOk();
  }

  async function poll() {
    try {
      if (!night) {
        const nights = await loadNights();
        if (nights.length) await loadNight(nights[0].night);
      } else {
        const gen = generation;
        const data = await api("/api/files?night=" + encodeURIComponent(night) + "&since=" + encodeURIComponent(cursor));
        if (gen === generation) {
          cursor = data.cursor || cursor;
          const fresh = new Set();
          data.files.forEach(function (f) {
            const old = files.get(f.file_id);
            if (!old || old.updated_at !== f.updated_at) fresh.add(f.file_id);
            files.set(f.file_id, f);
          });
          if (fresh.size) render(fresh);
        }
        markOk();
      }
    } catch (err) {
      showError(err);
    }
    setTimeout(poll, POLL_MS);
  }

  nightSelect.addEventListener("change", function () { loadNight(nightSelect.value).catch(showError); });
  typeFilter.addEventListener("change", function () { render(); });
  setInterval(function () { loadNights().catch(showError); }, 10000);
  poll();
})();
