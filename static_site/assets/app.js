// Goodman Live page: lists a night's files and keeps the list current by polling the
// API's change cursor (cheap: one indexed query that usually returns nothing), as a
// signed-in user (session.js: the sign-in, the tokens, every call to the API).
//
// What the page keeps in the address (#night=&type=&q=&file=) opens the same view on a
// reload or a shared link. Product URLs are signed and expire: the night's listing is read
// again, quietly, before they do. The card shows the interactive views of plots.js
// (BokehJS) where it shows PNGs in light mode, and falls back to the PNGs, saying why.
(function () {
  "use strict";
  const body = document.body;
  const API = body.dataset.apiBase || "";
  const POLL_MS = parseInt(body.dataset.pollMs, 10) || 1500;
  const Session = window.GoliveSession;
  const SignedOut = Session.SignedOut;
  const api = Session.api;
  const postJson = Session.postJson;
  const nightSelect = document.getElementById("night-select");
  const typeFilter = document.getElementById("type-filter");
  const search = document.getElementById("search");
  const table = document.getElementById("files");
  const tbody = table.querySelector("tbody");
  const empty = document.getElementById("empty");
  const counts = document.getElementById("counts");
  const live = document.getElementById("live");
  const toast = document.getElementById("toast");
  const appView = document.getElementById("app");
  const layout = document.getElementById("layout");
  const signinForm = document.getElementById("signin");
  const signinUser = document.getElementById("signin-username");
  const signinPassword = document.getElementById("signin-password");
  const signinSubmit = document.getElementById("signin-submit");
  const signinError = document.getElementById("signin-error");
  const whoami = document.getElementById("whoami");
  const signoutButton = document.getElementById("signout");
  const lightToggle = document.getElementById("light-mode");
  const summaryBox = document.getElementById("summary");
  const summaryBody = document.getElementById("summary-body");
  const summaryCount = document.getElementById("summary-count");
  const downloads = document.getElementById("downloads");
  const downloadsNote = document.getElementById("downloads-note");
  const detail = document.getElementById("detail");

  // Below this width the card is a full-width panel over the list (style.css says the same).
  const NARROW = window.matchMedia("(max-width: 899.98px)");
  const URL_LIFETIME_MS = 10 * 60 * 1000;    // when a listing does not say when its URLs expire
  const PLATE_SCALE = 0.15;                   // Goodman: arcsec per unbinned pixel
  const LIGHT_KEY = "golive.lightMode";       // localStorage: "1" while light mode is on, absent otherwise
  const TOAST_FADE_MS = 5000;

  // How long before the product URLs expire the night is read again (data-url-refresh-lead-s,
  // read each time so that a test may shorten it; 120 s by default).
  function urlRefreshLeadMs() {
    const s = parseFloat(body.dataset.urlRefreshLeadS);
    return (isFinite(s) && s >= 0 ? s : 120) * 1000;
  }

  let night = null;
  let cursor = "";
  let files = new Map();          // file_id -> file as the API serves it
  let lastOk = 0;
  let generation = 0;             // bumps when the night changes, so late answers are dropped
  let selected = null;            // file_id shown in the detail card
  let versionsOf = new Map();     // file_id -> {versions, updated_at, error} from GET /api/files/{id}
  let wanted = readHash();        // the view the address asks for, until the first night is shown
  let lightMode = readLightMode();

  // ---- signed in, or the form -------------------------------------------------------------
  let me = null;                  // GET /api/me
  let pollTimer = null;
  let nightsTimer = null;
  let settingsDeclaration = null; // GET /api/settings, once per session

  function showSignIn(message) {
    appView.hidden = true;
    live.hidden = whoami.hidden = signoutButton.hidden = true;
    signinForm.hidden = false;
    signinError.textContent = message || "";
    (signinUser.value ? signinPassword : signinUser).focus();
  }

  function showApp() {
    signinForm.hidden = true;
    signinError.textContent = "";
    appView.hidden = false;
    live.hidden = whoami.hidden = signoutButton.hidden = false;
    whoami.textContent = me ? me.username + " · " + me.role : "signed in";
  }

  // Everything the previous user saw, forgotten.
  function forget() {
    generation++;
    night = null;
    cursor = "";
    files = new Map();
    versionsOf = new Map();
    selected = null;
    reducePanel = null;
    settingsDeclaration = null;
    clearTimeout(urlTimer);
    urlsExpireAt = 0;
    imageRetried = new Set();
    nightSelect.replaceChildren();
    destroyMounts(function () { return true; });
    cardShown = null;
    detail.replaceChildren();
    clearSummary();
    summaryFailure = null;
    apiDown = null;
    hideToast();
    live.classList.remove("stale");
    live.textContent = "connecting…";
    render();
  }

  // The session ended (signed out, or refused): back to the form.
  function signedOut(message) {
    me = null;
    clearTimeout(pollTimer);
    clearInterval(nightsTimer);
    forget();
    showSignIn(message);
  }

  function begin() {
    clearTimeout(pollTimer);
    clearInterval(nightsTimer);
    forget();
    wanted = readHash();
    typeFilter.value = wanted.type;
    if (typeFilter.value !== wanted.type) typeFilter.value = "";
    search.value = wanted.q;
    showApp();
    poll();
    const mine = Session.epoch();
    nightsTimer = setInterval(function () { if (mine === Session.epoch()) loadNights().catch(failed); }, 10000);
  }

  signinForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    signinError.textContent = "";
    signinSubmit.disabled = true;
    try {
      await Session.signIn(signinUser.value.trim(), signinPassword.value);
      signinPassword.value = "";
      begin();
    } catch (err) {
      signinError.textContent = err.message;
    } finally {
      signinSubmit.disabled = false;
    }
  });

  signoutButton.addEventListener("click", function () { Session.end(""); });

  // ---- the view in the address: #night=&type=&q=&file= ------------------------------------
  function readHash() {
    const p = new URLSearchParams(location.hash.replace(/^#/, ""));
    return { night: p.get("night") || "", type: p.get("type") || "", q: p.get("q") || "", file: p.get("file") || "" };
  }

  // Written (without a history entry) once a night is shown, whenever the view changes.
  function writeHash() {
    if (!night) return;
    const p = new URLSearchParams();
    p.set("night", night);
    if (typeFilter.value) p.set("type", typeFilter.value);
    if (search.value.trim()) p.set("q", search.value.trim());
    if (selected) p.set("file", selected);
    const h = p.toString();
    if (location.hash.replace(/^#/, "") !== h) history.replaceState(null, "", "#" + h);
  }

  // A link pasted into the address bar of an open page.
  window.addEventListener("hashchange", function () {
    if (!me || appView.hidden) return;
    const w = readHash();
    typeFilter.value = w.type;
    if (typeFilter.value !== w.type) typeFilter.value = "";
    search.value = w.q;
    if (w.night && w.night !== night) {
      wanted = w;
      loadNight(w.night).then(function (done) { if (done) showWanted(); }).catch(failed);
    } else if ((w.file || null) !== selected) {
      select(w.file || null);
    } else {
      render();
    }
  });

  // ---- small helpers ----------------------------------------------------------------------
  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value == null ? "" : String(value);
    if (cls) el.className = cls;
    return el;
  }

  // A product as a link that downloads it (its signed URL; `data-product` lets the URL be
  // replaced in place when the night's listing is read again).
  function appendLink(parent, p, label) {
    const a = text("a", label, "product");
    a.href = p.url; a.target = "_blank"; a.rel = "noopener"; a.title = p.file_name;
    a.download = p.file_name;
    if (p.key || p.file_name) a.dataset.product = p.key || p.file_name;
    parent.appendChild(a);
    parent.appendChild(document.createTextNode(" "));
  }

  function fixed(v, digits) { return v == null ? "?" : Number(v).toFixed(digits); }

  function finite(v) { return v != null && v !== "" && isFinite(Number(v)); }

  // HH:MM:SS of a moment (ms), in UT.
  function utClock(ms) { return new Date(ms).toISOString().slice(11, 19); }

  // HH:MM:SS of an ISO time as written (DATE-OBS is UT already).
  function utOf(iso) {
    const m = /[T ](\d{2}:\d{2}:\d{2})/.exec(iso || "");
    return m ? m[1] : "";
  }

  function timeOf(iso) {
    if (!iso) return NaN;
    const s = String(iso);
    return Date.parse(/(Z|[+-]\d{2}:?\d{2})$/.test(s) ? s : s + "Z");
  }

  // hh:mm:ss of a sexagesimal string, the fraction of a second dropped; a sign on a declination.
  function sexagesimal(v, signed) {
    if (v == null || v === "") return "";
    if (typeof v === "number") return v.toFixed(4);
    let s = String(v).trim().replace(/^(\S*?\d{1,2}[: ]\d{2}[: ]\d{2})\.\d+$/, "$1");
    if (signed && /^\d/.test(s)) s = "+" + s;
    return s;
  }

  function binningY(f) {
    const parts = String(f.binning || "").split(/x/i);
    const y = parseInt(parts[1] || parts[0], 10);
    return y > 0 ? y : 1;
  }

  function why(err) {
    const message = err && err.message ? err.message : String(err);
    return (err && err.status ? "the API answered " + err.status + ": " : "") + message;
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

  // A science frame whose spectra are final while its whole 2-D frame waits for its
  // cosmic-ray cleaning (reduction.clean_file, behind newer frames).
  const CLEANING_TITLE = "the spectra are final (cosmic rays rejected in the rows they are extracted from); " +
    "the whole 2-D frame is cleaned of cosmic rays next, after newer frames";

  function cleaningBadge(f) {
    if (f.cleaning !== "queued" && f.cleaning !== "failed") return null;
    const failed = f.cleaning === "failed";
    const el = text("span", failed ? "2-D cleaning failed" : "2-D cleaning queued",
      failed ? "cleaning-badge cleaning-failed" : "cleaning-badge");
    el.title = failed ? "the spectra are final; the whole 2-D frame could not be cleaned of cosmic rays " +
      "(the preview is the uncleaned quicklook): " + (f.error || "no reason recorded") : CLEANING_TITLE;
    return el;
  }

  // What the user asks first about a science frame: are its spectra calibrated, why
  // not, what would fix it, and what differed in the calibrations used.
  function spectraSummary(f) {
    const notes = f.calibration_notes || [];
    if (!f.spectra_status && !notes.length && !f.sensitivity) return null;
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
    const sens = f.sensitivity;
    if (sens) {
      box.appendChild(text("div", "spectrophotometric standard " + sens.standard + " (by " + sens.how + "): " +
        (sens.error ? "no sensitivity: " + sens.error
          : "sensitivity from target " + sens.target + ", " + sens.points + " bins, rms " + fixed(100 * sens.rms, 1) +
            "%, " + fixed(sens.range[0], 0) + "-" + fixed(sens.range[1], 0) + " Å, airmass " + fixed(sens.airmass, 2)),
        "sensitivity" + (sens.error ? " skipped" : "")));
      const plot = sens.file_name ? named(f, stem(sens.file_name) + ".png") : null;
      if (plot) box.appendChild(figure(plot, "sensitivity function", f));
    }
    return box;
  }

  // ---- the list -----------------------------------------------------------------------------
  // One line per file: the long cells end in an ellipsis, their full text in the title.
  function cell(value, cls, title) {
    const td = text("td", value, cls);
    if (title) td.title = title;
    return td;
  }

  function row(f) {
    const tr = document.createElement("tr");
    tr.dataset.fileId = f.file_id;
    tr.dataset.status = f.status;
    tr.tabIndex = 0;
    if (f.file_id === selected) {
      tr.classList.add("selected");
      tr.setAttribute("aria-current", "true");
    }
    const shown = f.path || f.file_name;   // path: a folder below the night's
    tr.appendChild(cell(shown, "name c-file", shown + " — Enter or click: previews and provenance"));
    tr.appendChild(cell(f.obstype || "", "obstype c-type"));
    tr.appendChild(cell(f.object || "", "c-object", f.object || ""));
    tr.appendChild(cell(utOf(f.date_obs), "c-ut", f.date_obs ? "exposure start " + f.date_obs + " UT" : ""));
    tr.appendChild(cell(f.exptime == null ? "" : f.exptime, "c-exp"));
    tr.appendChild(cell(finite(f.airmass) ? Number(f.airmass).toFixed(2) : "", "c-airmass"));
    const ra = sexagesimal(f.ra, false), dec = sexagesimal(f.dec, true);
    tr.appendChild(cell(ra || dec ? ra + " " + dec : "", "c-radec",
                        ra || dec ? "RA " + (f.ra || "?") + "  Dec " + (f.dec || "?") : ""));
    tr.appendChild(cell(f.configuration || "", "config c-config", f.configuration || ""));
    const st = document.createElement("td");
    st.className = "state c-status";
    const line = document.createElement("div");
    line.className = "state-line";
    line.appendChild(text("span", f.status, "status status-" + f.status));
    const badge = spectraBadge(f);
    if (badge) line.appendChild(badge);
    const cleaning = cleaningBadge(f);
    if (cleaning) line.appendChild(cleaning);
    if (f.access_note) {   // staff only: a frame of no known proposal
      const unknown = text("span", "proposal unknown", "access-badge");
      unknown.title = f.access_note;
      line.appendChild(unknown);
    }
    st.appendChild(line);
    tr.appendChild(st);
    // One line: the error and notes (in full in the title), then the products (every one is
    // in the card too).
    const details = document.createElement("td");
    details.className = "c-details";
    const said = [f.error].concat(f.notes || []).filter(Boolean);
    if (f.error) details.appendChild(text("span", f.error, "error"));
    (f.notes || []).forEach(function (n) { details.appendChild(text("span", n, "note")); });
    if (said.length) details.title = said.join("\n");
    (f.products || []).forEach(function (p) { appendLink(details, p, p.kind); });
    tr.appendChild(details);
    return tr;
  }

  // Object, file name or proposal containing the search text (any case).
  function matches(f, q) {
    return [f.object, f.file_name, f.path, f.proposal, f.proposal_header].some(function (v) {
      return v != null && String(v).toLowerCase().indexOf(q) >= 0;
    });
  }

  function shownFiles() {
    const want = typeFilter.value;
    const q = search.value.trim().toLowerCase();
    return Array.from(files.values())
      .filter(function (f) { return (!want || f.obstype === want) && (!q || matches(f, q)); })
      .sort(function (a, b) {
        const x = a.path || a.file_name, y = b.path || b.file_name;
        return x < y ? -1 : x > y ? 1 : 0;
      });
  }

  function rowOf(fileId) {
    return fileId ? tbody.querySelector('tr[data-file-id="' + CSS.escape(fileId) + '"]') : null;
  }

  // opts.reveal: scroll the selected row into view (after the card opened and the table reflowed).
  function render(freshIds, opts) {
    opts = opts || {};
    const active = document.activeElement;
    const focusedRow = active && tbody.contains(active) ? active.closest("tr") : null;
    const focusedId = focusedRow ? focusedRow.dataset.fileId : null;
    const list = shownFiles();
    tbody.replaceChildren.apply(tbody, list.map(function (f) {
      const tr = row(f);
      if (freshIds && freshIds.has(f.file_id)) tr.classList.add("fresh");
      return tr;
    }));
    renderDetail(files.get(selected));
    table.hidden = list.length === 0;
    empty.hidden = list.length !== 0;
    empty.textContent = files.size && !list.length ? "No file of this night matches the type and search."
      : "No files yet for this night. New frames appear here seconds after the shutter closes.";
    const byStatus = {};
    files.forEach(function (f) { byStatus[f.status] = (byStatus[f.status] || 0) + 1; });
    counts.replaceChildren(text("span", files.size + " files"));
    if (list.length !== files.size) counts.appendChild(text("span", list.length + " shown", "shown"));
    const option = Array.from(nightSelect.options).find(function (o) { return o.value === night; });
    if (option) option.textContent = night + " (" + files.size + ")";
    Object.keys(byStatus).sort().forEach(function (s) {
      counts.appendChild(text("span", byStatus[s] + " " + s, "status-" + s));
    });
    // The row that had the focus keeps it (the rows were rebuilt).
    const again = rowOf(focusedId);
    if (again) again.focus({ preventScroll: true });
    renderSummary();
    fitCard();
    if (opts.reveal) reveal(selected);
  }

  // The row in view, the least scrolling that does it; read after the layout changed.
  function reveal(fileId) {
    const tr = rowOf(fileId);
    if (tr) tr.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  // Rows: a click or Enter/Space opens the card, arrows move between rows; Escape closes it.
  tbody.addEventListener("click", function (event) {
    if (event.target.closest("a, button, input, select, label")) return;
    const tr = event.target.closest("tr[data-file-id]");
    if (tr) select(tr.dataset.fileId, { reveal: true });
  });

  tbody.addEventListener("keydown", function (event) {
    const tr = event.target.closest("tr[data-file-id]");
    if (!tr || event.target !== tr) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(tr.dataset.fileId, { reveal: true, focusCard: true });
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) {
        event.preventDefault();
        next.focus({ preventScroll: true });
        next.scrollIntoView({ block: "nearest" });
      }
    }
  });

  // Escape closes the open menu, else the card (but not from a field being typed in).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    if (downloads.open) {
      event.preventDefault();
      downloads.open = false;
      downloads.querySelector("summary").focus();
      return;
    }
    const t = event.target;
    if (!selected || (t.matches && t.matches("input:not([type=checkbox]):not([type=radio]), textarea, select"))) return;
    event.preventDefault();
    closeCard();
  });

  // Close the card; the focus goes back to the file's row.
  function closeCard() {
    const was = selected;
    select(null);
    const tr = rowOf(was);
    if (tr) {
      tr.focus({ preventScroll: true });
      tr.scrollIntoView({ block: "nearest" });
    }
  }

  typeFilter.addEventListener("change", function () { render(); writeHash(); });
  search.addEventListener("input", function () { render(); writeHash(); });

  // ---- the detail card ----------------------------------------------------------------------
  function product(f, kind) {
    return (f.products || []).find(function (p) { return p.kind === kind; });
  }

  // A PNG product; an error (an expired URL) reads the night's URLs again, once per file.
  function figure(p, caption, f) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = p.url; img.alt = caption; img.loading = "lazy";
    if (p.key || p.file_name) img.dataset.product = p.key || p.file_name;
    if (f) img.dataset.fileId = f.file_id;
    fig.appendChild(img);
    fig.appendChild(text("figcaption", caption + " — " + p.file_name));
    return fig;
  }

  function named(f, fileName) {
    return (f.products || []).find(function (p) { return p.file_name === fileName; });
  }

  function stem(name) { return name.replace(/\.[^.]*$/, ""); }

  // How good a wavelength solution is, in one line: range, dispersion, lamp, RMS, lines, flexure.
  function quality(w, science) {
    let line = "λ " + fixed(w.range && w.range[0], 1) + "–" + fixed(w.range && w.range[1], 1) + " Å, " +
      fixed(w.dispersion, 3) + " Å/px · lamp " + w.lamp + " · RMS " + fixed(w.rms_angstrom, 3) + " Å (" +
      fixed(w.rms_pixels, 3) + " px) · " + w.n_lines + " lines" + (w.rejected ? " (" + w.rejected + " rejected)" : "") +
      " · " + w.method + (w.reference ? " " + w.reference : "");
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
      if (plot) card.appendChild(figure(plot, "calibrated lamp", f));
      card.appendChild(text("div", quality(f.wavelength, false), "quality"));
    } else {
      card.appendChild(text("div", "no wavelength solution: " + f.wavelength_error, "skipped"));
    }
    return card;
  }

  // Which standard (and night) flux-calibrated a target, with its plot in erg/s/cm²/Å;
  // or why the frame has no flux calibration (no standard of its setup, ...).
  function fluxStandard(c) {
    return c.standard + " (" + c.file_name + ", night " + c.night +
      (c.airmass != null ? ", airmass " + fixed(c.airmass, 2) : "") + ")";
  }

  function fluxPart(card, f, s) {
    const c = f.flux_calibration;
    if (!c) return;
    if (s.flux_file_name) {
      const plot = named(f, stem(s.flux_file_name) + ".png");
      if (plot) card.appendChild(figure(plot, "flux-calibrated spectrum (erg/s/cm²/Å)", f));
      card.appendChild(text("div", "flux-calibrated with " + fluxStandard(c) +
        ((c.notes || []).length ? " · " + c.notes.join(" · ") : ""), "flux-standard"));
    } else if (s.wavelength && c.status !== "calibrated") {
      card.appendChild(text("div", "not flux calibrated: " + (c.reason || c.status) + (c.fix ? " (" + c.fix + ")" : ""),
        "skipped flux-missing"));
    }
  }

  // One target: its spectrum (interactive, or the PNG in light mode), the lamp that
  // calibrated it and how well, or why it is not calibrated yet; then the downloads.
  function spectrumCard(f, s) {
    const card = document.createElement("section");
    card.className = "spectrum";
    card.dataset.target = s.number;
    card.appendChild(text("h3", "target " + s.number + " · row " + fixed(s.row, 1) + " · FWHM " + fixed(s.fwhm, 2) +
      " rows · " + s.extraction + " extraction" + (s.median_snr != null ? " · S/N " + fixed(s.median_snr, 0) : "")));
    const w = s.wavelength;
    const plot = w ? named(f, stem(s.calibrated_file_name || "") + ".png") : null;
    const png = plot ? figure(plot, "calibrated spectrum", f) : null;
    if (interactiveWanted() && (s.file_name || s.calibrated_file_name)) {
      card.appendChild(spectrumView(f, s, png));
    } else if (png) {
      card.appendChild(png);
    }
    if (w) {
      card.appendChild(text("div", quality(w, true), "quality"));
    } else if (s.wavelength_error) {
      card.appendChild(text("div", "not wavelength calibrated: " + s.wavelength_error, "skipped"));
    }
    fluxPart(card, f, s);
    const links = document.createElement("div");
    [["extracted", s.file_name], ["calibrated", s.calibrated_file_name],
     ["flux-calibrated", s.flux_file_name]].forEach(function (pair) {
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

  // What the card shows depends on: the file as listed, its versions, the mode and the user.
  // While these stay the same the card is not rebuilt (its plots stay): new product URLs are
  // written into it in place.
  let cardShown = null;           // {file_id, signature}

  function cardSignature(f) {
    const known = versionsOf.get(f.file_id);
    const v = known ? (known.error || "") + known.versions.map(function (x) {
      return x.version + ":" + x.status + ":" + (x.finished_at || "");
    }).join(",") : "loading";
    return [f.file_id, f.updated_at, f.status, lightMode, v, me ? me.username : ""].join("|");
  }

  // The card the paper's interface had: previews of the raw and reduced frame and
  // what went into the reduction.
  function renderDetail(f) {
    layout.classList.toggle("with-detail", !!f);
    body.classList.toggle("card-open", !!f);
    if (!f) {
      detail.hidden = true;
      if (cardShown) {
        destroyMounts(function () { return true; });
        detail.replaceChildren();
        reducePanel = null;
        cardShown = null;
      }
      return;
    }
    detail.hidden = false;
    const signature = cardSignature(f);
    if (cardShown && cardShown.signature === signature) {
      renewUrls(detail, productUrls(f));
      return;
    }
    cardShown = { file_id: f.file_id, signature: signature };
    mountsUsed = new Set();
    const head = document.createElement("div");
    head.className = "card-head";
    const close = text("button", "×", "close");
    close.type = "button";
    close.title = "close (Escape)";
    close.setAttribute("aria-label", "close the card");
    close.addEventListener("click", closeCard);
    head.appendChild(close);
    head.appendChild(text("h2", f.file_name + " · " + (f.obstype || "") + " · " + f.status));
    const parts = [head];
    const proposal = proposalLine(f);
    if (proposal) parts.push(proposal);
    if (f.access_note) parts.push(text("div", f.access_note, "access-note"));
    if (f.error) parts.push(text("div", f.error, "error"));
    const summary = spectraSummary(f);
    if (summary) parts.push(summary);
    const where = observedLine(f);
    if (where) parts.push(where);
    const previews = document.createElement("div");
    previews.className = "previews";
    const raw = product(f, "preview_raw");
    const red = product(f, "preview_reduced"), quick = product(f, "quicklook"), other = product(f, "preview");
    if (raw) previews.appendChild(figure(raw, "raw", f));
    if (red) previews.appendChild(interactiveWanted() ? imexamView(f, red) : figure(red, "reduced", f));
    else if (quick) {
      previews.appendChild(figure(quick, "quicklook: reduced, cosmic rays not yet cleaned" +
        (f.cleaning === "queued" ? " (cleaning queued; the spectra below are cleaned)" : ""), f));
    }
    else if (other) previews.appendChild(figure(other, "preview", f));
    parts.push(previews);
    if (f.obstype === "COMP" && (f.wavelength || f.wavelength_error)) parts.push(lampCard(f));
    (f.products || []).forEach(function (p) {
      if (p.kind === "quicklook_spectrum") parts.push(figure(p, "quicklook spectrum: cosmic rays not yet cleaned", f));
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
    if ((f.products || []).length) parts.push(downloadsSection(f));
    parts.push(versionsSection(f));
    place(parts, reduceSection(f));
    // Plots of what the card no longer shows are destroyed.
    destroyMounts(function (key) { return !mountsUsed.has(key); });
  }

  // Every product of the file, each a download through its signed URL.
  function downloadsSection(f) {
    const box = document.createElement("section");
    box.className = "downloads-list";
    box.appendChild(text("h3", "products"));
    const list = document.createElement("ul");
    f.products.forEach(function (p) {
      const li = document.createElement("li");
      appendLink(li, p, p.file_name);
      li.appendChild(text("span", p.kind, "note"));
      list.appendChild(li);
    });
    box.appendChild(list);
    return box;
  }

  // On a wide screen the card fits between the top of the list (or of the viewport, once
  // scrolled) and the bottom of the viewport, and scrolls on its own.
  function fitCard() {
    if (detail.hidden || NARROW.matches) {
      detail.style.maxHeight = "";
      return;
    }
    const top = Math.max(layout.getBoundingClientRect().top, 8);
    detail.style.maxHeight = Math.max(window.innerHeight - top - 8, 240) + "px";
  }

  let fitting = false;
  function fitCardSoon() {
    if (fitting) return;
    fitting = true;
    requestAnimationFrame(function () { fitting = false; fitCard(); });
  }
  window.addEventListener("scroll", fitCardSoon, { passive: true });
  window.addEventListener("resize", fitCardSoon);
  NARROW.addEventListener("change", fitCard);

  // Exposure start, airmass and pointing, in one line at the top of the card.
  function observedLine(f) {
    const bits = [];
    if (f.object) bits.push(f.object);
    if (f.date_obs) bits.push("start " + String(f.date_obs).replace("T", " ") + " UT");
    if (f.exptime != null) bits.push(f.exptime + " s");
    if (finite(f.airmass)) bits.push("airmass " + Number(f.airmass).toFixed(2));
    if (f.ra || f.dec) bits.push("RA " + (f.ra || "?") + " Dec " + (f.dec || "?"));
    return bits.length ? text("div", bits.join(" · "), "observed") : null;
  }

  // The card is rebuilt when what it shows changes but for the "Reduce again" form, which
  // may be half filled in (and have the focus): it stays while the same file is shown.
  function place(parts, keep) {
    Array.from(detail.childNodes).forEach(function (n) { if (n !== keep) n.remove(); });
    const before = keep && keep.parentNode === detail ? keep : null;
    parts.forEach(function (p) { detail.insertBefore(p, before); });
    if (keep && keep.parentNode !== detail) detail.appendChild(keep);
  }

  const PROPOSAL_SOURCES = {
    header: "from its PROPOSAL header", alias: "from its PROPOSAL header, through an operator's alias",
    schedule: "from the night's schedule",
  };

  // Whose frame this is, and so who may see it.
  function proposalLine(f) {
    if (!f.proposal_source) return null;
    if (f.proposal_source === "calibration") {
      return text("div", "calibration: visible to every signed-in user", "proposal");
    }
    if (!f.proposal) return text("div", "proposal unknown", "proposal proposal-unknown");
    return text("div", "proposal " + f.proposal + " (" + (PROPOSAL_SOURCES[f.proposal_source] || f.proposal_source) +
                ")", "proposal");
  }

  // ---- signed URLs: read again before they expire ---------------------------------------------
  let urlTimer = null;
  let urlsExpireAt = 0;           // ms: when the product URLs of the last listing stop working
  let refreshing = null;          // the quiet re-read under way
  let imageRetried = new Set();   // file_ids whose broken image has asked for new URLs (once per file)

  // Every product URL the card may show, by product key: the file's and its versions'.
  function productUrls(f) {
    const urls = new Map();
    const add = function (p) { const k = p.key || p.file_name; if (k && p.url && !urls.has(k)) urls.set(k, p.url); };
    (f.products || []).forEach(add);
    const known = versionsOf.get(f.file_id);
    if (known) known.versions.forEach(function (v) { (v.products || []).forEach(add); });
    return urls;
  }

  function renewUrls(root, urls) {
    root.querySelectorAll("[data-product]").forEach(function (el) {
      const url = urls.get(el.dataset.product);
      if (!url) return;
      if (el.tagName === "IMG") {
        if (el.getAttribute("src") !== url) el.src = url;
      } else if (el.getAttribute("href") !== url) {
        el.href = url;
      }
    });
  }

  function scheduleUrlRefresh(expiresAt) {
    clearTimeout(urlTimer);
    urlsExpireAt = expiresAt;
    const left = expiresAt - Date.now();
    const lead = urlRefreshLeadMs();
    // URLs that live no longer than the lead time: read again half-way through their life.
    const wait = left > lead ? left - lead : Math.max(left / 2, 5000);
    const mine = Session.epoch();
    urlTimer = setTimeout(function () { if (mine === Session.epoch()) refreshNight(); }, wait);
  }

  // A background tab's timers are slowed down: when it is shown again, URLs close to their
  // end are renewed at once.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && night && urlsExpireAt &&
        Date.now() > urlsExpireAt - urlRefreshLeadMs()) refreshNight();
  });

  // A product image that does not load (its URL expired, say): new URLs, once per file.
  document.addEventListener("error", function (event) {
    const img = event.target;
    if (!img || img.tagName !== "IMG" || !img.dataset.fileId || !night) return;
    if (imageRetried.has(img.dataset.fileId)) return;
    imageRetried.add(img.dataset.fileId);
    refreshNight();
  }, true);

  // The night's listing read again without a trace on the page: the selection, the open
  // card (and its plots), the scroll and the focus stay; only the URLs change.
  function refreshNight() {
    if (refreshing || !night) return refreshing;
    const gen = generation, name = night;
    refreshing = (async function () {
      const listing = await listNight(name, gen);
      if (!listing || gen !== generation) return;
      listing.files.forEach(function (f, id) {
        const old = files.get(id);
        // A change the feed brought after the listing was read is newer (and freshly signed).
        if (!old || !old.updated_at || !f.updated_at || f.updated_at >= old.updated_at) files.set(id, f);
      });
      // The versions' URLs are as old as the listing's were: the card's read again (in place,
      // so that the card is not rebuilt meanwhile), the others forgotten.
      const keep = selected && versionsOf.has(selected) ? selected : null;
      if (keep) await loadVersions(keep);
      if (gen !== generation) return;
      Array.from(versionsOf.keys()).forEach(function (id) { if (id !== keep) versionsOf.delete(id); });
      render();
      scheduleUrlRefresh(listing.expiresAt);
    })().catch(function (err) {
      if (err instanceof SignedOut) return;
      const mine = Session.epoch();
      clearTimeout(urlTimer);
      urlTimer = setTimeout(function () { if (mine === Session.epoch()) refreshNight(); }, 15000);
    }).finally(function () { refreshing = null; });
    return refreshing;
  }

  // Every page of a night's listing: the files, and when their URLs expire.
  async function listNight(name, gen) {
    const asked = Date.now();
    const out = new Map();
    let expires = null;
    let token = null;
    do {
      const page = await api("/api/files?night=" + encodeURIComponent(name) + "&limit=200" +
                             (token ? "&next=" + encodeURIComponent(token) : ""));
      if (gen !== generation) return null;
      page.files.forEach(function (f) { out.set(f.file_id, f); });
      const e = timeOf(page.urls_expire_at);
      if (isFinite(e)) expires = expires == null ? e : Math.min(expires, e);
      token = page.next;
    } while (token);
    return { files: out, expiresAt: expires != null ? expires : asked + URL_LIFETIME_MS };
  }

  // ---- interactive views: plots.js (BokehJS), never in light mode ---------------------------
  // plots.js is loaded only when a view is wanted, so light mode loads neither it nor BokehJS.
  // Each view is mounted where its PNG is; the PNG stays, with a note saying why, when
  // plots.js, BokehJS or the data route fails.
  let mounts = new Map();         // key -> {el, dead, destroy(), refresh()}; a key names file, version of it, view
  let mountsUsed = new Set();     // keys the card being built shows
  let plotsPromise = null;        // window.GoodmanPlots once BokehJS is ready (or why not)

  function interactiveWanted() { return !lightMode; }

  function loadPlots() {
    if (!plotsPromise) {
      plotsPromise = new Promise(function (resolve, reject) {
        if (window.GoodmanPlots) { resolve(window.GoodmanPlots); return; }
        const src = body.dataset.plotsSrc || "plots.js";
        if (body.dataset.plotsCss && !document.querySelector("link[data-plots-css]")) {
          const css = document.createElement("link");
          css.rel = "stylesheet";
          css.href = body.dataset.plotsCss;
          css.dataset.plotsCss = "";
          document.head.appendChild(css);
        }
        const script = document.createElement("script");
        script.src = src;
        script.async = true;
        script.onload = function () {
          if (window.GoodmanPlots) resolve(window.GoodmanPlots);
          else reject(new Error(src + " defines no GoodmanPlots"));
        };
        script.onerror = function () { reject(new Error(src + " did not load")); };
        document.head.appendChild(script);
      }).then(function (plots) {
        if (typeof plots.ready !== "function") return plots;
        return Promise.resolve(plots.ready()).then(function () { return plots; }, function (err) {
          throw new Error("BokehJS did not load: " + (err && err.message ? err.message : err));
        });
      });
      const mine = plotsPromise;
      mine.catch(function () { if (plotsPromise === mine) plotsPromise = null; });   // the next view tries again
    }
    return plotsPromise;
  }

  function destroyHandle(handle) {
    if (handle && typeof handle.destroy === "function") handle.destroy();
  }

  function destroyMounts(which) {
    mounts.forEach(function (m, key) {
      if (!which(key)) return;
      m.dead = true;
      mounts.delete(key);
      try {
        if (m.destroy) m.destroy();
      } catch (err) {
        console.error("a plot could not be destroyed", key, err);
      }
    });
  }

  // The element of view `key`: the one already up when the card is rebuilt, else a new one
  // that shows `fallback` (a PNG figure, or null) until `start(plots, host, m)` has drawn.
  function mount(key, fallback, start) {
    mountsUsed.add(key);
    const known = mounts.get(key);
    if (known) {
      if (known.refresh) known.refresh();
      return known.el;
    }
    const el = document.createElement("div");
    el.className = "interactive";
    el.dataset.view = key.split("|")[0];
    const m = { el: el, dead: false, destroy: null, refresh: null };
    mounts.set(key, m);
    if (fallback) el.appendChild(fallback);
    const note = text("div", "loading the interactive view…", "note plot-note");
    el.appendChild(note);
    const host = document.createElement("div");
    host.className = "plot-host";
    el.appendChild(host);
    loadPlots().then(function (plots) {
      if (!m.dead) return start(plots, host, m);
    }).then(function () {
      if (m.dead) return;
      if (fallback) fallback.hidden = true;
      note.remove();
      el.classList.add("mounted");
    }).catch(function (err) {
      if (m.dead || err instanceof SignedOut) return;
      try {
        if (m.destroy) m.destroy();
      } catch (e) {
        console.error("a plot could not be destroyed", key, e);
      }
      m.destroy = m.refresh = null;
      Array.from(el.children).forEach(function (n) { if (n !== fallback && n !== note) n.remove(); });
      note.textContent = "interactive view unavailable (" + why(err) + ")" + (fallback ? ": showing the PNG" : "");
      note.classList.add("fallback");
    });
    return el;
  }

  // The reduced 2-D frame: click a pixel, the API's imexam answers (cuts, box, the source's FWHM).
  function imexamView(f, preview) {
    const key = ["imexam", f.file_id, f.updated_at, preview.key || preview.file_name].join("|");
    return mount(key, figure(preview, "reduced", f), async function (plots, host, m) {
      if (typeof plots.imexam !== "function") throw new Error("plots.js has no imexam view");
      const handle = await plots.imexam(host, preview, {
        examine: function (x, y) {
          return api("/api/files/" + encodeURIComponent(f.file_id) + "/imexam?x=" + Math.floor(x) +
                     "&y=" + Math.floor(y));
        },
        arcsecPerPixel: PLATE_SCALE * binningY(f),
      });
      m.destroy = function () { destroyHandle(handle); };
      host.goodmanPlot = handle;   // the view's handle, for whoever inspects the page (tests, a console)
      host.after(text("div", "reduced — " + preview.file_name, "note plot-caption"));
    });
  }

  function spectrumView(f, s, png) {
    const key = ["spectrum", f.file_id, f.updated_at, s.number].join("|");
    return mount(key, png, function (plots, host, m) { return startSpectrum(plots, host, m, f, s); });
  }

  const FIT_MODELS = ["gaussian", "voigt"];

  // A target's spectrum as data (plots.js draws it, with its own "Fit a line" mode), other
  // targets and versions to overlay, the line model and rest wavelength the API fits with,
  // and the table of the target's fits.
  async function startSpectrum(plots, host, m, f, s) {
    if (typeof plots.spectrum !== "function") throw new Error("plots.js has no spectrum view");
    const base = "/api/files/" + encodeURIComponent(f.file_id);
    const listed = api(base + "/linefit").then(function (answer) { return answer.fits || []; });
    listed.catch(function () { /* said under the plot */ });
    const data = await api(base + "/spectrum?target=" + s.number);
    let fits = await listed.catch(function () { return []; });
    // Counts, or erg/s/cm²/Å once the target is flux-calibrated: line fits are made on
    // counts, so the fit mode and the fits drawn are those of the counts alone.
    const byUnits = {};    // units -> Promise of the target's spectrum JSON in them
    let units = "counts";
    if (m.dead) return;
    const unit = data.x_unit === "pixel" || data.calibrated === false ? "px" : "Å";
    function ours(x) { return Number(x.target) === Number(s.number); }
    function drawn(x) { return ours(x) && x.version == null; }   // the plot is the current reduction's

    // Overlays: the frame's other targets and the file's other versions of this target.
    const overlayBox = document.createElement("fieldset");
    overlayBox.className = "overlays";
    const overlayNote = text("span", "", "note");
    const chosen = new Set();
    const cached = new Map();    // option id and units -> Promise of its spectrum JSON
    let options = [];
    function overlayOptions() {
      const opts = [];
      (f.spectra || []).forEach(function (t) {
        if (t.number !== s.number) opts.push({ id: "t" + t.number, label: "target " + t.number, query: "target=" + t.number });
      });
      const known = versionsOf.get(f.file_id);
      (known ? known.versions : []).filter(function (v) { return v.status === "done"; })
        .sort(function (a, b) { return a.version - b.version; })
        .forEach(function (v) {
          opts.push({ id: "v" + v.version, label: "v" + v.version, query: "target=" + s.number + "&version=" + v.version });
        });
      return opts;
    }
    function refreshOverlays() {
      options = overlayOptions();
      const boxes = options.map(function (o) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "checkbox";
        input.value = o.id;
        input.checked = chosen.has(o.id);
        input.addEventListener("change", function () {
          if (input.checked) chosen.add(o.id); else chosen.delete(o.id);
          redraw().catch(function (err) {
            if (!(err instanceof SignedOut)) overlayNote.textContent = "cannot draw: " + why(err);
          });
        });
        label.appendChild(input);
        label.appendChild(document.createTextNode(" " + o.label));
        return label;
      });
      overlayBox.replaceChildren.apply(overlayBox, [text("legend", "overlay")].concat(
        boxes.length ? boxes : [text("span", "no other target or version of this frame", "note")], [overlayNote]));
    }

    let handle = null;
    let drawing = 0;
    async function redraw() {
      const mine = ++drawing;
      const overlays = [];
      const problems = [];
      const fluxed = units === "flux";
      let shown = data;
      if (fluxed) {
        if (!byUnits.flux) {
          byUnits.flux = api(base + "/spectrum?target=" + s.number + "&units=flux");
          byUnits.flux.catch(function () { delete byUnits.flux; });
        }
        shown = await byUnits.flux;
      }
      unitsNote.textContent = fluxed && !shown.fluxed ? "no flux-calibrated spectrum of this target yet: counts shown"
        : "line fits are made on counts";
      fitBox.hidden = !!shown.fluxed;
      for (const o of options.filter(function (x) { return chosen.has(x.id); })) {
        const id = o.id + "|" + units;
        if (!cached.has(id)) {
          const p = api(base + "/spectrum?" + o.query + (fluxed ? "&units=flux" : ""));
          p.catch(function () { cached.delete(id); });
          cached.set(id, p);
        }
        try {
          const other = await cached.get(id);
          if (!other.fluxed !== !shown.fluxed) problems.push(o.label + ": not flux-calibrated");
          else overlays.push(other);
        } catch (err) {
          if (err instanceof SignedOut) throw err;
          problems.push(o.label + ": " + why(err));
        }
      }
      if (m.dead || mine !== drawing) return;
      destroyHandle(handle);
      handle = null;
      const made = await plots.spectrum(host, shown, shown.fluxed ? { overlays: overlays }
        : { overlays: overlays, onFit: fit, fits: fits.filter(drawn) });
      if (m.dead || mine !== drawing) {
        destroyHandle(made);
        return;
      }
      handle = made;
      host.goodmanPlot = made;   // the view's handle, for whoever inspects the page (tests, a console)
      overlayNote.textContent = problems.length ? "not overlaid: " + problems.join("; ") : "";
    }

    // What the API fits with: the model, and a rest wavelength for a redshift.
    const fitBox = document.createElement("div");
    fitBox.className = "fit-controls";
    const model = document.createElement("select");
    FIT_MODELS.forEach(function (name) { model.appendChild(text("option", name)); });
    const rest = document.createElement("input");
    rest.type = "number"; rest.step = "any"; rest.min = "0";
    rest.placeholder = "optional";
    const modelLabel = document.createElement("label");
    modelLabel.appendChild(document.createTextNode("line model "));
    modelLabel.appendChild(model);
    const restLabel = document.createElement("label");
    restLabel.appendChild(document.createTextNode("rest λ (Å) "));
    restLabel.appendChild(rest);
    restLabel.title = "the line's rest wavelength: the fit then gives a redshift";
    fitBox.appendChild(modelLabel);
    fitBox.appendChild(restLabel);
    const fitList = document.createElement("div");
    fitList.className = "fits";

    // Asked by plots.js for a window chosen on the plot; it draws the fit this answers.
    function fit(range) {
      const payload = { target: s.number, window: [Math.min(range[0], range[1]), Math.max(range[0], range[1])],
                        model: model.value };
      if (rest.value.trim() !== "" && isFinite(Number(rest.value))) payload.rest_wavelength = Number(rest.value);
      return postJson(base + "/linefit", payload).then(function (result) {
        fits = [result].concat(fits.filter(function (x) { return x.fit_id !== result.fit_id; }));
        drawFits();
        return result;
      });
    }

    function drawFits() {
      const mineFits = fits.filter(ours);
      fitList.replaceChildren(mineFits.length ? fitsTable(mineFits, unit, function (x) {
        return deleteFit(base, x).then(function () {
          fits = fits.filter(function (y) { return y.fit_id !== x.fit_id; });
          drawFits();
          if (handle && typeof handle.clearFits === "function" && typeof handle.showFit === "function") {
            handle.clearFits();
            fits.filter(drawn).slice().reverse().forEach(function (y) { handle.showFit(y); });
          }
        });
      }) : text("div", "no line fitted yet: “Fit a line”, then drag across it", "note"));
    }

    // The y axis: counts, or the flux-calibrated spectrum when the target has one.
    const unitsNote = text("span", "line fits are made on counts", "note");
    const unitsBox = document.createElement("fieldset");
    unitsBox.className = "units";
    unitsBox.appendChild(text("legend", "y axis"));
    [["counts", "counts (ADU)"], ["flux", "flux-calibrated (erg/s/cm²/Å)"]].forEach(function (pair) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "units-" + f.file_id + "-" + s.number;
      input.value = pair[0];
      input.checked = pair[0] === units;
      input.addEventListener("change", function () {
        if (!input.checked) return;
        units = pair[0];
        redraw().catch(function (err) {
          if (!(err instanceof SignedOut)) overlayNote.textContent = "cannot draw: " + why(err);
        });
      });
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + pair[1]));
      unitsBox.appendChild(label);
    });
    unitsBox.appendChild(unitsNote);

    refreshOverlays();
    m.refresh = refreshOverlays;
    m.destroy = function () { drawing++; destroyHandle(handle); handle = null; };
    await redraw();
    if (m.dead) return;
    const tools = document.createElement("div");
    tools.className = "spectrum-tools";
    if (s.flux_file_name) tools.appendChild(unitsBox);
    tools.appendChild(fitBox);
    tools.appendChild(overlayBox);
    tools.appendChild(fitList);
    host.after(tools);
    drawFits();
    listed.catch(function (err) {
      if (!(err instanceof SignedOut)) fitList.prepend(text("div", "cannot list the fits: " + why(err), "error"));
    });
  }

  // DELETE answers 204 with no body, which the session's JSON reader cannot parse: that is success.
  function deleteFit(base, x) {
    return api(base + "/linefit/" + encodeURIComponent(x.fit_id), { method: "DELETE" }).catch(function (err) {
      if (err instanceof SyntaxError) return null;
      throw err;
    });
  }

  function withError(v, e, digits) {
    if (!finite(v)) return "—";
    return fixed(v, digits) + (finite(e) ? " ± " + fixed(e, digits) : "");
  }

  function flux(v, e) {
    if (!finite(v)) return "—";
    return Number(v).toPrecision(3) + (finite(e) ? " ± " + Number(e).toPrecision(2) : "");
  }

  // The target's fits, newest first: what the API measured, and a delete button for your own.
  function fitsTable(fits, unit, remove) {
    const t = document.createElement("table");
    t.className = "fits-table";
    const head = document.createElement("tr");
    ["line", "centre (" + unit + ")", "FWHM (" + unit + ")", "EW (" + unit + ")", "flux", "z", "by", ""]
      .forEach(function (h) { head.appendChild(text("th", h)); });
    const thead = document.createElement("thead");
    thead.appendChild(head);
    t.appendChild(thead);
    const tb = document.createElement("tbody");
    fits.forEach(function (x) {
      const tr = document.createElement("tr");
      tr.dataset.fitId = x.fit_id;
      tr.appendChild(text("td", (x.kind || "") + " " + x.model + (x.version != null ? " (v" + x.version + ")" : "")));
      tr.appendChild(text("td", withError(x.centre, x.centre_error, 2)));
      tr.appendChild(text("td", withError(x.fwhm, x.fwhm_error, 2)));
      tr.appendChild(text("td", withError(x.equivalent_width, x.equivalent_width_error, 2)));
      tr.appendChild(text("td", flux(x.flux, x.flux_error)));
      tr.appendChild(text("td", finite(x.redshift) ? withError(x.redshift, x.redshift_error, 5) +
        (finite(x.velocity_km_s) ? " (" + fixed(x.velocity_km_s, 0) + " km/s)" : "") : "—"));
      tr.appendChild(text("td", x.by || ""));
      const act = document.createElement("td");
      if (me && (me.staff || x.by === me.username)) {
        const del = text("button", "delete", "small");
        del.type = "button";
        del.title = "remove this fit";
        del.addEventListener("click", function () {
          del.disabled = true;
          remove(x).catch(function (err) {
            del.disabled = false;
            if (!(err instanceof SignedOut)) del.title = "not removed: " + why(err);
          });
        });
        act.appendChild(del);
      }
      tr.appendChild(act);
      tb.appendChild(tr);
    });
    t.appendChild(tb);
    return t;
  }

  // ---- the night at a glance: S/N, seeing and wavelength RMS of each science frame ---------
  let summaryShown = null;        // {mode: "plots"|"plain", destroy, ...} of what the strip shows
  let summaryFailure = null;      // why plots.js could not draw it (the plain strip instead)

  function scienceRows() {
    const rows = [];
    files.forEach(function (f) {
      if (f.obstype !== "OBJECT" || !(f.spectra || []).length) return;
      const s = f.spectra[0];
      const w = s.wavelength || {};
      const angstrom = finite(w.rms_angstrom);
      if (!finite(s.median_snr) && !finite(s.fwhm) && !angstrom && !finite(w.rms_pixels)) return;
      rows.push({
        // ISO with its zone: DATE-OBS is UT, but a time without one would be read as local.
        file_id: f.file_id, file_name: f.file_name, object: f.object || "",
        time: isFinite(timeOf(f.date_obs)) ? new Date(timeOf(f.date_obs)).toISOString() : null,
        snr: finite(s.median_snr) ? Number(s.median_snr) : null,
        fwhm_arcsec: finite(s.fwhm) ? Number(s.fwhm) * binningY(f) * PLATE_SCALE : null,
        rms: angstrom ? Number(w.rms_angstrom) : finite(w.rms_pixels) ? Number(w.rms_pixels) : null,
        rms_unit: angstrom ? "Å" : finite(w.rms_pixels) ? "px" : null,
      });
    });
    return rows.sort(function (a, b) {
      const x = a.time || a.file_name, y = b.time || b.file_name;
      return x < y ? -1 : x > y ? 1 : 0;
    });
  }

  function clearSummary() {
    if (summaryShown && summaryShown.destroy) {
      try {
        summaryShown.destroy();
      } catch (err) {
        console.error("the summary plot could not be destroyed", err);
      }
    }
    summaryShown = null;
    summaryBody.replaceChildren();
  }

  function rmsUnitOf(rows) {
    const units = rows.map(function (r) { return r.rms_unit; }).filter(Boolean);
    return units.every(function (u) { return u === units[0]; }) ? units[0] || "Å" : "Å or px";
  }

  // plots.js's three linked plots (updated in place as frames arrive), or the plain one drawn
  // here in light mode and when plots.js fails.
  function renderSummary() {
    let rows = scienceRows();
    summaryBox.hidden = !rows.length;
    summaryCount.textContent = rows.length ? "(" + rows.length + " science frame" + (rows.length > 1 ? "s" : "") + ")" : "";
    if (!rows.length) {
      clearSummary();
      return;
    }
    if (!summaryBox.open && !summaryShown) return;   // drawn when opened (a plot needs its width)
    // plots.js puts the frames on a time axis: those without DATE-OBS are in the plain strip only.
    const timed = rows.filter(function (r) { return r.time; });
    if (lightMode || summaryFailure || !timed.length) {
      plainSummary(rows);
      return;
    }
    rows = timed;
    const data = JSON.stringify(rows);
    let shown = summaryShown;
    if (!shown || shown.mode !== "plots") {
      clearSummary();
      shown = summaryShown = { mode: "plots", data: data, selected: null, destroy: null };
      const host = document.createElement("div");
      host.className = "summary-plot";
      summaryBody.appendChild(host);
      shown.ready = loadPlots().then(function (plots) {
        if (typeof plots.summary !== "function") throw new Error("plots.js has no summary view");
        return plots.summary(host, rows, { onSelect: selectFromSummary, rmsUnit: rmsUnitOf(rows) });
      }).then(function (handle) {
        if (summaryShown !== shown) {
          destroyHandle(handle);
          return null;
        }
        shown.destroy = function () { destroyHandle(handle); };
        if (selected) reveal(selected);   // the list moved down by the plots' height
        return handle;
      }).catch(function (err) {
        if (summaryShown !== shown || err instanceof SignedOut) return null;
        summaryFailure = why(err);
        clearSummary();
        renderSummary();
        return null;
      });
    } else if (shown.data !== data) {
      shown.data = data;
      shown.ready.then(function (handle) {
        if (handle && summaryShown === shown && typeof handle.update === "function") handle.update(rows);
      });
    }
    if (shown.selected !== selected) {
      shown.selected = selected;
      const f = files.get(selected);
      shown.ready.then(function (handle) {
        if (handle && summaryShown === shown && typeof handle.select === "function") handle.select(f ? f.file_name : null);
      });
    }
  }

  // Open unless the screen is short (the plots take some 370 px) or the user closed it here.
  const SUMMARY_KEY = "golive.summaryOpen";   // localStorage: "1"/"0" once the user opened or closed it
  summaryBox.open = (function () {
    try {
      const said = localStorage.getItem(SUMMARY_KEY);
      if (said != null) return said === "1";
    } catch (err) { /* storage refused: the default */ }
    return window.innerHeight >= 800 && window.innerWidth >= 600;
  })();
  summaryBox.querySelector("summary").addEventListener("click", function () {
    try {
      localStorage.setItem(SUMMARY_KEY, summaryBox.open ? "0" : "1");   // the click toggles it after this
    } catch (err) {
      console.warn("the summary's state is not remembered:", err.message);
    }
  });

  summaryBox.addEventListener("toggle", function () { if (summaryBox.open) renderSummary(); });

  function plainSummary(rows) {
    const signature = JSON.stringify([selected, summaryFailure, rows]);
    if (summaryShown && summaryShown.mode === "plain" && summaryShown.signature === signature) return;
    clearSummary();
    summaryShown = { mode: "plain", signature: signature, destroy: null };
    summaryBody.appendChild(sparklines(rows));
    if (!lightMode && summaryFailure) {
      summaryBody.appendChild(text("div", "interactive summary unavailable (" + summaryFailure + "): a plain one instead",
                                   "note plot-note fallback"));
    }
  }

  // plots.js may answer with the row, its file name or its file_id.
  function selectFromSummary(which) {
    const key = which && typeof which === "object" ? (which.file_id || which.file_name) : which;
    const found = files.get(key) || Array.from(files.values()).find(function (f) { return f.file_name === key; });
    if (found) select(found.file_id, { reveal: true });
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  // Three small plots drawn here (light mode, or without plots.js): a value per science frame
  // in the order of the night; a point opens its frame.
  function sparklines(rows) {
    const box = document.createElement("div");
    box.className = "sparklines";
    [["snr", "S/N", 0, ""], ["fwhm_arcsec", "seeing FWHM", 2, "″"], ["rms", "λ RMS", 3, " " + rmsUnitOf(rows)]]
      .forEach(function (m) { box.appendChild(sparkline(rows, m[0], m[1], m[2], m[3])); });
    const times = rows.map(function (r) { return utOf(r.time); }).filter(Boolean);
    if (times.length) box.appendChild(text("div", "UT " + times[0] + " – " + times[times.length - 1], "note spark-span"));
    return box;
  }

  function sparkline(rows, field, label, digits, unit) {
    const W = 240, H = 46, P = 5;
    const panel = document.createElement("figure");
    panel.className = "spark";
    panel.dataset.metric = field;
    const pts = rows.filter(function (r) { return r[field] != null; });
    const last = pts.length ? pts[pts.length - 1] : null;
    const values = pts.map(function (r) { return r[field]; });
    const lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    panel.appendChild(text("figcaption", label + (last ? " " + fixed(last[field], digits) + unit +
      (pts.length > 1 ? " (" + fixed(lo, digits) + "–" + fixed(hi, digits) + ")" : "") : ": no values")));
    if (!pts.length) return panel;
    const timed = rows.every(function (r) { return isFinite(timeOf(r.time)); });
    const t0 = timed ? timeOf(rows[0].time) : 0, t1 = timed ? timeOf(rows[rows.length - 1].time) : rows.length - 1;
    function x(r) {
      const t = timed ? timeOf(r.time) : rows.indexOf(r);
      return t1 > t0 ? P + (t - t0) / (t1 - t0) * (W - 2 * P) : W / 2;
    }
    function y(v) { return hi > lo ? H - P - (v - lo) / (hi - lo) * (H - 2 * P) : H / 2; }
    const plot = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "group",
                              "aria-label": label + " of " + pts.length + " science frames over the night" });
    plot.appendChild(svg("polyline", { class: "spark-line", fill: "none",
      points: pts.map(function (r) { return x(r).toFixed(1) + "," + y(r[field]).toFixed(1); }).join(" ") }));
    pts.forEach(function (r) {
      const c = svg("circle", { cx: x(r).toFixed(1), cy: y(r[field]).toFixed(1), r: 3.5, tabindex: 0, role: "button",
                                class: "spark-point" + (r.file_id === selected ? " selected" : ""),
                                "data-file-id": r.file_id,
                                "aria-label": r.file_name + " " + label + " " + fixed(r[field], digits) + unit });
      const title = svg("title");
      title.textContent = r.file_name + " · " + r.object + " · " + (utOf(r.time) || "?") + " UT · " + label + " " +
        fixed(r[field], digits) + (field === "rms" ? " " + (r.rms_unit || "") : unit);
      c.appendChild(title);
      c.addEventListener("click", function () { select(r.file_id, { reveal: true }); });
      c.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(r.file_id, { reveal: true });
        }
      });
      plot.appendChild(c);
    });
    panel.appendChild(plot);
    return panel;
  }

  // ---- light mode: PNGs only, no BokehJS (remembered in this browser) ----------------------
  function readLightMode() {
    try {
      return localStorage.getItem(LIGHT_KEY) === "1";
    } catch (err) {
      return false;   // storage refused (private mode): light mode is not remembered
    }
  }

  lightToggle.checked = lightMode;
  body.classList.toggle("light-mode", lightMode);
  lightToggle.addEventListener("change", function () {
    lightMode = lightToggle.checked;
    try {
      if (lightMode) localStorage.setItem(LIGHT_KEY, "1");
      else localStorage.removeItem(LIGHT_KEY);
    } catch (err) {
      console.warn("light mode is not remembered:", err.message);
    }
    body.classList.toggle("light-mode", lightMode);
    summaryFailure = null;
    render();
  });

  // ---- downloads of the whole night -------------------------------------------------------
  function saveAs(content, name, type) {
    const url = URL.createObjectURL(new Blob([content], { type: type }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  // The API wants the bearer token, so a plain link cannot do: the list is read with it and
  // offered as a file. The text list is the JSON answer's URLs, one a line (what ?format=text
  // serves): the session's reader takes JSON only.
  async function downloadNight(format) {
    if (!night) return;
    const name = "goodman-" + night + "-urls." + (format === "text" ? "txt" : "json");
    downloadsNote.className = "note";
    downloadsNote.textContent = "asking the API…";
    try {
      const answer = await api("/api/nights/" + encodeURIComponent(night) + "/downloads?format=json" +
                               (downloadProposal.value ? "&proposal=" + encodeURIComponent(downloadProposal.value) : ""));
      const list = answer.files || [];
      if (format === "text") {
        saveAs(list.map(function (x) { return x.url; }).join("\n") + (list.length ? "\n" : ""), name, "text/plain");
      } else {
        saveAs(JSON.stringify(answer, null, 2) + "\n", name, "application/json");
      }
      const expires = timeOf(answer.expires_at);
      downloadsNote.textContent = list.length + " files in " + name + "; the URLs expire at " +
        (isFinite(expires) ? utClock(expires) + " UT (" + answer.expires_at + ")" : "an unknown time") +
        (format === "text" ? ": wget -i " + name : "");
    } catch (err) {
      if (err instanceof SignedOut) return;
      downloadsNote.className = "error";
      downloadsNote.textContent = "not downloaded: " + why(err);
    }
  }

  document.addEventListener("click", function (event) {
    if (event.isTrusted && downloads.open && !downloads.contains(event.target)) downloads.open = false;
  });

  // One proposal's frames (with the night's calibrations), or all the user may see: the
  // proposals offered are theirs and those of the night's files they see.
  const downloadProposal = document.getElementById("download-proposal");
  downloads.addEventListener("toggle", function () {
    if (!downloads.open) return;
    const kept = downloadProposal.value;
    const names = new Set((me && me.proposals) || []);
    files.forEach(function (f) { if (f.proposal) names.add(f.proposal); });
    downloadProposal.replaceChildren(text("option", "everything I may see"));
    downloadProposal.firstChild.value = "";
    Array.from(names).sort().forEach(function (n) { downloadProposal.appendChild(text("option", n)); });
    downloadProposal.value = names.has(kept) ? kept : "";
  });

  downloads.querySelectorAll("button[data-format]").forEach(function (b) {
    b.addEventListener("click", function () { downloadNight(b.dataset.format); });
  });

  // One zip of the night: a worker builds it (seconds to a minute for a night); the page
  // asks how it goes every second and offers it when done, or says why not.
  const ARCHIVE_POLL_MS = 1000;
  async function archiveNight() {
    if (!night) return;
    const mine = Session.epoch();
    downloadsNote.className = "note";
    downloadsNote.textContent = "asking for an archive…";
    try {
      let archive = await postJson("/api/nights/" + encodeURIComponent(night) + "/archive",
                                   { proposal: downloadProposal.value || null });
      while (archive.status === "queued" || archive.status === "building") {
        downloadsNote.textContent = "archive " + archive.status + ": " + archive.count + " files, " +
          (archive.bytes / 1e6).toFixed(0) + " MB…";
        await new Promise(function (resolve) { setTimeout(resolve, ARCHIVE_POLL_MS); });
        if (mine !== Session.epoch()) return;
        archive = await api("/api/archives/" + encodeURIComponent(archive.archive_id));
      }
      if (archive.status !== "done") throw new Error(archive.error || "the archive " + archive.status);
      const a = document.createElement("a");
      a.href = archive.url;
      a.download = archive.file_name || "";
      a.id = "archive-link";
      a.textContent = archive.file_name + " (" + (archive.size / 1e6).toFixed(1) + " MB)";
      downloadsNote.replaceChildren(document.createTextNode("ready: "), a,
        document.createTextNode(" — the link works until " + utClock(timeOf(archive.expires_at)) + " UT" +
          (archive.missing ? "; gone before it was copied: " + archive.missing.join(", ") : "")));
      a.click();
    } catch (err) {
      if (err instanceof SignedOut) return;
      downloadsNote.className = "error";
      downloadsNote.textContent = "no archive: " + why(err);
    }
  }
  document.getElementById("download-zip").addEventListener("click", archiveNight);

  // ---- the card's file ----------------------------------------------------------------------
  // opts.reveal: scroll its row into view; opts.focusCard: the focus goes to the card (keyboard).
  function select(fileId, opts) {
    opts = opts || {};
    selected = fileId || null;
    writeHash();
    render(null, { reveal: !!selected && !!opts.reveal });
    if (selected && opts.focusCard) detail.focus({ preventScroll: true });
    if (selected && versionsStale(selected)) loadVersions(selected).then(function () { render(); }, failed);
  }

  // ---- versions: every reduction of the file kept, from GET /api/files/{id} -------------
  const IN_PROGRESS = ["queued", "reducing"];

  // Read again when the file changed, and while one of its versions is queued or reducing.
  function versionsStale(fileId) {
    const known = versionsOf.get(fileId);
    const f = files.get(fileId);
    if (!known || (f && f.updated_at !== known.updated_at)) return true;
    return known.versions.some(function (v) { return IN_PROGRESS.indexOf(v.status) >= 0; });
  }

  async function loadVersions(fileId) {
    const f = files.get(fileId);
    try {
      const full = await api("/api/files/" + encodeURIComponent(fileId));
      const versions = full.versions || [];
      delete full.versions;
      // Read after the listing: when newer, it is the file as it is now.
      if (f && full.updated_at && full.updated_at > (f.updated_at || "")) files.set(fileId, full);
      versionsOf.set(fileId, { versions: versions, updated_at: full.updated_at });
    } catch (err) {
      if (err instanceof SignedOut) throw err;
      versionsOf.set(fileId, { versions: [], error: err.message, updated_at: f && f.updated_at });
    }
  }

  function settingsText(settings) {
    const names = Object.keys(settings || {}).sort();
    if (!names.length) return "default settings";
    return names.map(function (n) { return n + " = " + JSON.stringify(settings[n]); }).join(", ");
  }

  function when(iso) {
    return iso ? String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/(Z|\+00:00)$/, " UT") : "";
  }

  function versionItem(v) {
    const li = document.createElement("li");
    li.className = "version";
    li.dataset.version = v.version;
    li.dataset.status = v.status;
    const head = document.createElement("div");
    head.appendChild(text("span", "v" + v.version, "version-number"));
    head.appendChild(text("span", v.status, "status status-" + v.status));
    head.appendChild(text("span", v.version === 0 ? "the reduction made as the frame arrived" : settingsText(v.settings),
                          "version-settings"));
    li.appendChild(head);
    const who = [];
    if (v.requested_by && v.version !== 0) who.push("asked by " + v.requested_by + " " + when(v.requested_at));
    if (v.finished_at) who.push("finished " + when(v.finished_at));
    if (who.length) li.appendChild(text("div", who.join(" · "), "note"));
    if (v.error) li.appendChild(text("div", v.error, "error"));
    if ((v.products || []).length) {
      const links = document.createElement("div");
      links.className = "version-products";
      v.products.forEach(function (p) { appendLink(links, p, p.kind); });
      li.appendChild(links);
    }
    return li;
  }

  function versionsSection(f) {
    const box = document.createElement("section");
    box.className = "versions";
    box.appendChild(text("h3", "versions"));
    const known = versionsOf.get(f.file_id);
    if (!known) {
      box.appendChild(text("div", "loading…", "note"));
    } else if (known.error) {
      box.appendChild(text("div", "cannot list the versions: " + known.error, "error"));
    } else if (!known.versions.length) {
      box.appendChild(text("div", "only the reduction made as the frame arrived", "note"));
    } else {
      const list = document.createElement("ol");
      list.className = "version-list";
      known.versions.slice().sort(function (a, b) { return b.version - a.version; })
        .forEach(function (v) { list.appendChild(versionItem(v)); });
      box.appendChild(list);
    }
    return box;
  }

  // ---- "Reduce again": a form built from GET /api/settings ------------------------------
  let reducePanel = null;         // {file_id, box} of the form shown

  // Staff reduce anything again; members of its proposal, a science frame of it.
  function mayReduce(f) {
    if (!me) return false;
    if (me.staff) return true;
    return f.proposal_source !== "calibration" && !!f.proposal && (me.proposals || []).indexOf(f.proposal) >= 0;
  }

  function reduceSection(f) {
    if (!mayReduce(f)) {
      reducePanel = null;
      return null;
    }
    if (!reducePanel || reducePanel.file_id !== f.file_id) {
      reducePanel = { file_id: f.file_id, box: reduceForm(f.file_id) };
    }
    return reducePanel.box;
  }

  function declaredSettings() {
    if (!settingsDeclaration) {
      settingsDeclaration = api("/api/settings").then(function (d) { return d.settings; });
      settingsDeclaration.catch(function () { settingsDeclaration = null; });   // asked again next time
    }
    return settingsDeclaration;
  }

  function settingInput(s) {
    let input;
    if (s.type === "bool") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.defaultChecked = !!s.default;
    } else if (s.choices && s.choices.length) {
      input = document.createElement("select");
      (s.nullable ? [null] : []).concat(s.choices).forEach(function (c) {
        const o = text("option", c == null ? "(none)" : c);
        o.value = c == null ? "" : String(c);
        o.defaultSelected = c === s.default || (c == null && s.default == null);
        input.appendChild(o);
      });
    } else {
      input = document.createElement("input");
      if (s.type === "int" || s.type === "float") {
        input.type = "number";
        input.step = s.type === "int" ? "1" : "any";
        if (s.min != null) input.min = String(s.min);
        if (s.max != null) input.max = String(s.max);
      } else {
        input.type = "text";
      }
      input.defaultValue = s.default == null ? "" : String(s.default);
      if (s.default == null) input.placeholder = "default";
    }
    input.name = s.name;
    input.title = s.help || "";
    return input;
  }

  // What an input says, as the API takes it: a boolean, a number, a string or null.
  function inputValue(input, s) {
    if (s.type === "bool") return input.checked;
    const raw = input.value.trim();
    if (raw === "") return null;
    return s.type === "int" || s.type === "float" ? Number(raw) : raw;
  }

  // The settings the user changed from what the form showed: only those are sent.
  function changedSettings(form, declaration) {
    const changed = {};
    declaration.forEach(function (s) {
      const input = form.elements.namedItem(s.name);
      if (!input) return;
      const value = inputValue(input, s);
      if (JSON.stringify(value) !== JSON.stringify(s.default == null ? null : s.default)) changed[s.name] = value;
    });
    return changed;
  }

  function settingField(s) {
    const label = document.createElement("label");
    label.className = "setting";
    label.appendChild(text("span", s.name, "setting-name"));
    label.appendChild(settingInput(s));
    const bounds = s.min != null || s.max != null ? " [" + (s.min != null ? s.min : "") + " … " +
      (s.max != null ? s.max : "") + "]" : "";
    label.appendChild(text("span", (s.help || "") + bounds, "setting-help"));
    return label;
  }

  function settingGroups(declaration) {
    const groups = new Map();
    declaration.forEach(function (s) {
      const g = s.group || "settings";
      if (!groups.has(g)) groups.set(g, []);
      groups.get(g).push(s);
    });
    return Array.from(groups.keys()).map(function (g, i) {
      const box = document.createElement("details");
      box.className = "setting-group";
      box.dataset.group = g;
      box.open = i === 0;
      box.appendChild(text("summary", g + " (" + groups.get(g).length + ")"));
      groups.get(g).forEach(function (s) { box.appendChild(settingField(s)); });
      return box;
    });
  }

  function reduceForm(fileId) {
    const box = document.createElement("section");
    box.className = "reduce";
    box.appendChild(text("h3", "reduce again"));
    const form = document.createElement("form");
    form.id = "reduce-form";
    form.noValidate = true;   // the API checks every value against the declaration and says what is wrong
    form.appendChild(text("p", "Change only what should differ: what you leave as it is keeps the deployment's and " +
                               "the proposal's settings. Earlier versions are kept.", "note"));
    const fields = document.createElement("div");
    fields.className = "reduce-fields";
    fields.appendChild(text("div", "reading the settings…", "note"));
    form.appendChild(fields);
    const actions = document.createElement("div");
    actions.className = "reduce-actions";
    const submit = text("button", "Reduce again");
    submit.type = "submit";
    submit.disabled = true;
    const reset = text("button", "Reset");
    reset.type = "reset";
    actions.appendChild(submit);
    actions.appendChild(reset);
    form.appendChild(actions);
    const result = text("div", "", "reduce-result");
    result.id = "reduce-result";
    result.setAttribute("role", "status");
    box.appendChild(form);
    box.appendChild(result);

    let declaration = null;
    declaredSettings().then(function (d) {
      declaration = d;
      fields.replaceChildren.apply(fields, settingGroups(d));
      submit.disabled = false;
    }, function (err) {
      if (!(err instanceof SignedOut)) fields.replaceChildren(text("div", "cannot read the settings: " + err.message, "error"));
    });

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (!declaration) return;
      const settings = changedSettings(form, declaration);
      result.className = "reduce-result";
      result.textContent = "sending…";
      submit.disabled = true;
      try {
        const answer = await postJson("/api/files/reduce/", { file_id: fileId, settings: settings });
        result.textContent = "version " + answer.version + " " + answer.status + " (" + settingsText(settings) + ")";
        result.classList.add("ok");
        await loadVersions(fileId);
        render();
      } catch (err) {
        if (err instanceof SignedOut) return;
        const why = { 400: "not accepted: ", 403: "not allowed: " }[err.status] || "not sent: ";
        result.textContent = why + err.message;
        result.classList.add("error");
      } finally {
        submit.disabled = false;
      }
    });
    return box;
  }

  // ---- is the list current? Said where the eye is: a toast fixed in the viewport ------------
  let apiDown = null;             // {reason} while the API does not answer
  let toastTimer = null;

  function showToast(message, cls) {
    clearTimeout(toastTimer);
    toast.textContent = message;
    toast.className = "toast " + cls;
    toast.hidden = false;
  }

  function hideToast() {
    clearTimeout(toastTimer);
    toast.hidden = true;
    toast.className = "toast";
    toast.textContent = "";
  }

  function failed(err) {
    if (!(err instanceof SignedOut)) showError(err);
  }

  function showError(err) {
    const reason = err.status ? "the API answered " + err.status + ": " + err.message
      : "the API is not answering: " + err.message;
    apiDown = { reason: reason };
    showToast((lastOk ? "not updated since " + utClock(lastOk) + " UT" : "not updated yet") + " (" + reason + ")", "stale");
    live.classList.add("stale");
  }

  function markOk() {
    lastOk = Date.now();
    live.classList.remove("stale");
    live.textContent = "live · updated " + utClock(lastOk) + " UT";
    if (apiDown) {
      apiDown = null;
      showToast("back at " + utClock(lastOk) + " UT: the list is current again", "back");
      toastTimer = setTimeout(function () {
        toast.classList.add("fading");
        toastTimer = setTimeout(hideToast, 1200);
      }, TOAST_FADE_MS);
    }
  }

  // ---- the night's files, and what changes in them --------------------------------------
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

  let listingGen = 0;             // the generation whose listing is being read (0: none)

  async function loadNight(name) {
    const gen = ++generation;
    night = name;
    files = new Map();
    cursor = "";
    imageRetried = new Set();
    clearTimeout(urlTimer);
    const started = new Date(Date.now() - 10000).toISOString();
    listingGen = gen;
    let read;
    try {
      read = await listNight(name, gen);
    } finally {
      if (listingGen === gen) listingGen = 0;
    }
    if (!read || gen !== generation) return false;   // another night was asked for meanwhile
    files = read.files;
    // Changes from a little before the listing began, so nothing written during it is missed.
    cursor = started;
    if (nightSelect.value !== name && Array.from(nightSelect.options).some(function (o) { return o.value === name; })) {
      nightSelect.value = name;
    }
    render();
    writeHash();
    markOk();
    scheduleUrlRefresh(read.expiresAt);
    return true;
  }

  // The file the address named, once its night is listed.
  function showWanted() {
    const w = wanted;
    wanted = null;
    if (w && w.file && files.has(w.file)) select(w.file, { reveal: true });
    else writeHash();
  }

  async function poll() {
    const mine = Session.epoch();
    try {
      if (!me) {
        me = await api("/api/me");
        showApp();
      }
      if (!night) {
        const nights = await loadNights();
        if (nights.length) {
          const asked = wanted && wanted.night;
          const known = asked && nights.some(function (n) { return n.night === asked; });
          if (await loadNight(known ? asked : nights[0].night)) showWanted();
        } else {
          markOk();
        }
      } else if (!cursor) {       // the night's listing failed (or is being read): read it again
        if (!listingGen && await loadNight(night)) showWanted();
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
          const reread = selected && files.has(selected) && versionsStale(selected);
          if (reread) await loadVersions(selected);
          if (fresh.size || reread) render(fresh);
        }
        markOk();
      }
    } catch (err) {
      failed(err);
    }
    if (mine === Session.epoch()) pollTimer = setTimeout(poll, POLL_MS);
  }

  nightSelect.addEventListener("change", function () {
    selected = null;
    loadNight(nightSelect.value).catch(failed);
  });

  Session.init(API, signedOut);
  if (Session.resume()) begin();
  else showSignIn("");
})();
