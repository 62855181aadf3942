// Goodman Live page: lists a night's files and keeps the list current by polling the
// API's change cursor (cheap: one indexed query that usually returns nothing), as a
// signed-in user (session.js: the sign-in, the tokens, every call to the API).
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
  const table = document.getElementById("files");
  const tbody = table.querySelector("tbody");
  const empty = document.getElementById("empty");
  const counts = document.getElementById("counts");
  const banner = document.getElementById("banner");
  const live = document.getElementById("live");
  const appView = document.getElementById("app");
  const signinForm = document.getElementById("signin");
  const signinUser = document.getElementById("signin-username");
  const signinPassword = document.getElementById("signin-password");
  const signinSubmit = document.getElementById("signin-submit");
  const signinError = document.getElementById("signin-error");
  const whoami = document.getElementById("whoami");
  const signoutButton = document.getElementById("signout");

  let night = null;
  let cursor = "";
  let files = new Map();          // file_id -> file as the API serves it
  let lastOk = 0;
  let generation = 0;             // bumps when the night changes, so late answers are dropped
  let selected = null;            // file_id shown in the detail card
  let versionsOf = new Map();     // file_id -> {versions, updated_at, error} from GET /api/files/{id}
  const detail = document.getElementById("detail");

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
    nightSelect.replaceChildren();
    detail.replaceChildren();
    banner.hidden = true;
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
    name.addEventListener("click", function () { select(f.file_id); });
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
    if (f.access_note) {   // staff only: a frame of no known proposal
      const unknown = text("span", "proposal unknown", "access-badge");
      unknown.title = f.access_note;
      st.appendChild(unknown);
    }
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
    close.addEventListener("click", function () { select(null); });
    const parts = [close, text("h2", f.file_name + " · " + (f.obstype || "") + " · " + f.status)];
    const proposal = proposalLine(f);
    if (proposal) parts.push(proposal);
    if (f.access_note) parts.push(text("div", f.access_note, "access-note"));
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
    parts.push(versionsSection(f));
    place(parts, reduceSection(f));
  }

  // The card is rebuilt on every update but for the "Reduce again" form, which may be
  // half filled in (and have the focus): it stays while the same file is shown.
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

  // ---- versions: every reduction of the file kept, from GET /api/files/{id} -------------
  const IN_PROGRESS = ["queued", "reducing"];

  function select(fileId) {
    selected = fileId;
    render();
    if (fileId && versionsStale(fileId)) loadVersions(fileId).then(function () { render(); }, failed);
  }

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

  function failed(err) {
    if (!(err instanceof SignedOut)) showError(err);
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
    const mine = Session.epoch();
    try {
      if (!me) {
        me = await api("/api/me");
        showApp();
      }
      if (!night) {
        const nights = await loadNights();
        if (nights.length) await loadNight(nights[0].night);
        else markOk();
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

  nightSelect.addEventListener("change", function () { loadNight(nightSelect.value).catch(failed); });
  typeFilter.addEventListener("change", function () { render(); });

  Session.init(API, signedOut);
  if (Session.resume()) begin();
  else showSignIn("");
})();
