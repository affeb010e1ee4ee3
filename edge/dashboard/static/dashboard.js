// The control room's dashboard: built on /api/summary and /api/fleet, asked again every
// few seconds. Whatever a device sent (checkpoint names, reason codes, modes, alerts)
// is written with textContent only: never parsed as HTML. No inline script or style
// (the CSP forbids them); the charts are uPlot's (static/vendor).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // the common reason codes in the control room's words; any other code is shown as is
  const REASONS = {
    expired: "Declaration expired",
    not_yet_valid: "Declaration not valid yet",
    revoked: "Declaration cancelled",
    replayed: "Code used again",
    bad_signature: "Signature not valid",
    unknown_kid: "Unknown issuer key",
    bad_prefix: "Unreadable code",
    bad_base45: "Damaged code",
    bad_cose: "Damaged code",
    bad_fields: "Missing or wrong fields",
    unrecognised: "Not a health declaration",
    declaration_too_old: "Declaration too old",
    symptoms_declared: "Symptoms declared",
    exposure_declared: "Exposure declared",
    proof_required: "Vaccination or test needed",
    id_card_required: "ID card needed",
    id_mismatch: "ID card does not match",
    id_card_only: "ID card alone",
    no_declaration: "No declaration shown",
    dcc_only: "Health certificate alone",
    vaccination_incomplete: "Vaccination incomplete",
    test_positive: "Positive test",
    test_too_old: "Test too old",
    recovery_not_valid: "Recovery not valid",
    dcc_holder_mismatch: "Certificate of another person",
    personal_qr_unconfirmed: "Personal QR not confirmed",
    lookup_unavailable: "Online check unavailable",
    lookup_refused: "Refused by the online check",
    group_empty: "Vehicle without codes",
    no_decision: "No decision in time",
    closed: "Checkpoint closed",
    shutdown: "Kiosk shutting down",
    internal_error: "Technical problem",
    rules_unavailable: "Rules unavailable",
  };
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
    "#8c564b", "#e377c2", "#7f7f7f"];

  const state = {
    cfg: null,
    custom: null, // {from, to}: the inputs' values; null: today
    site: "",
    sites: new Set(),
    timer: null,
    charts: {},
  };
  const count = new Intl.NumberFormat("en-GB");

  function label(code) {
    if (Object.prototype.hasOwnProperty.call(REASONS, code)) return REASONS[code];
    const rule = /^rule_(failed|error):(.+)$/.exec(code);
    if (rule) return `Rule ${rule[1] === "failed" ? "not met" : "not evaluated"}: ${rule[2]}`;
    if (code.startsWith("fault_")) return `Kiosk fault: ${code.slice(6)}`;
    return code;
  }

  function when(iso, withDate) {
    const options = { timeZone: state.cfg.tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (withDate) Object.assign(options, { day: "2-digit", month: "2-digit", year: "numeric" });
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return "–"; // not a time: nothing to show, nothing thrown
    return new Intl.DateTimeFormat("en-GB", options).format(at);
  }

  function duration(seconds) {
    if (seconds < 120) return `${Math.round(seconds)} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function cell(row, value, className) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function rows(tableId, items, fill) {
    const body = $(tableId).tBodies[0];
    const fresh = document.createElement("tbody");
    for (const item of items) fill(fresh.insertRow(), item);
    body.replaceWith(fresh);
  }

  function status(text, problem) {
    $("status").textContent = text;
    $("status").classList.toggle("problem", Boolean(problem));
  }

  async function ask(url, options) {
    const answer = await fetch(url, { cache: "no-store", credentials: "same-origin", ...options });
    let doc = null;
    try {
      doc = await answer.json();
    } catch (_) {
      doc = null;
    }
    return { status: answer.status, doc };
  }

  // -- the figures -------------------------------------------------------------------

  function showTotals(doc) {
    for (const name of ["passages", "approved", "denied", "vehicles", "occupants", "surge"]) {
      $(`t-${name}`).textContent = count.format(doc[name]);
    }
    $("range-text").textContent =
      `${when(doc.from, true)} – ${when(doc.to, true)} (${doc.tz}, whole hours)`;
  }

  function showSites(doc) {
    for (const name of Object.keys(doc.by_site)) state.sites.add(name);
    const select = $("site");
    const have = new Set([...select.options].map((o) => o.value));
    for (const name of [...state.sites].sort()) {
      if (have.has(name)) continue;
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      select.appendChild(option);
    }
    const entries = Object.entries(doc.by_site).sort((a, b) => b[1].passages - a[1].passages);
    rows("sites", entries, (row, [name, c]) => {
      cell(row, name).title = name;
      for (const key of ["passages", "approved", "denied", "vehicles"]) {
        cell(row, count.format(c[key]), "n");
      }
    });
  }

  function showReasons(doc) {
    const entries = Object.entries(doc.by_reason);
    rows("reasons", entries, (row, [code, n]) => {
      cell(row, label(code)).title = label(code);
      cell(row, code, "code").title = code;
      cell(row, count.format(n), "n");
    });
    $("reasons-note").textContent = entries.length ? "A passage may give several reasons." : "No denials.";
  }

  function showSurges(doc) {
    rows("surges", doc.surge_periods, (row, p) => {
      cell(row, p.site).title = p.site;
      cell(row, when(p.from, true));
      cell(row, when(p.to, true));
      cell(row, count.format(p.passages), "n");
    });
    $("surges-note").textContent = doc.surge_periods.length ? "" : "No surge in this range.";
  }

  // uPlot's axis labels, with a 24-hour clock and the day before the month
  function dayFirst(template) {
    return template
      .replace(/\{h\}(:\{mm\})?\{aa\}/g, (_m, mm) => `{HH}${mm || ":00"}`)
      .replace("{M}/{D}", "{D}/{M}");
  }

  function chart(id, key, series, data) {
    const box = $(id);
    const width = Math.max(box.clientWidth, 300);
    const old = state.charts[id];
    if (old && old.key === key) {
      old.plot.setData(data);
      if (old.plot.width !== width) old.plot.setSize({ width, height: old.plot.height });
      return;
    }
    if (old) old.plot.destroy();
    const opts = {
      width,
      height: id === "chart" ? 220 : 170,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), state.cfg.tz),
      fmtDate: (template) => uPlot.fmtDate(dayFirst(template)),
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(max, 1)] } },
      series: [{}, ...series],
      axes: [{}, { size: 50 }],
    };
    state.charts[id] = { key, plot: new uPlot(opts, data, box) };
  }

  function showCharts(doc) {
    const xs = doc.by_hour.map((h) => Date.parse(h.hour) / 1000);
    const ranked = Object.entries(doc.by_site)
      .sort((a, b) => b[1].passages - a[1].passages || (a[0] < b[0] ? -1 : 1))
      .map(([name]) => name);
    const top = ranked.slice(0, state.cfg.top_sites);
    const rest = ranked.slice(state.cfg.top_sites);
    const series = top.map((name, i) => ({ label: name, stroke: PALETTE[i % PALETTE.length], width: 2 }));
    const data = [xs, ...top.map((name) => doc.by_hour.map((h) => h.by_site[name] || 0))];
    if (rest.length) {
      series.push({ label: `${rest.length} others`, stroke: PALETTE[8], width: 1, dash: [4, 4] });
      data.push(doc.by_hour.map((h) => rest.reduce((sum, name) => sum + (h.by_site[name] || 0), 0)));
    }
    $("chart-note").textContent = rest.length
      ? `The ${top.length} busiest checkpoints as their own lines; the other ${rest.length} summed up.`
      : ranked.length ? "" : "No passages in this range.";
    chart("chart", JSON.stringify([xs.length, ...top, rest.length]), series, data);
    chart("chart-decisions", `${xs.length}`, [
      { label: "Approved", stroke: "#1e7d32", fill: "rgba(30,125,50,0.12)", width: 2 },
      { label: "Denied", stroke: "#b3261e", fill: "rgba(179,38,30,0.12)", width: 2 },
    ], [xs, doc.by_hour.map((h) => h.approved), doc.by_hour.map((h) => h.denied)]);
  }

  // -- the kiosks --------------------------------------------------------------------

  function showFleet(doc) {
    const note = $("fleet-note");
    if (!doc.configured) {
      note.textContent = "The fleet is not configured: start the dashboard with -c FILE holding an [mqtt] section to see the kiosks live.";
      $("kiosks").hidden = true;
      return;
    }
    $("kiosks").hidden = false;
    const online = doc.kiosks.filter((k) => k.state === "online").length;
    note.textContent = `${doc.kiosks.length} kiosks, ${online} online` +
      (doc.connected ? "" : ". The dashboard has lost the broker: this may be out of date.");
    rows("kiosks", doc.kiosks, (row, k) => {
      cell(row, k.device).title = k.device;
      cell(row, k.site).title = k.site || "";
      cell(row, k.state, k.state);
      cell(row, k.mode);
      cell(row, k.outbox_depth === null ? null : count.format(k.outbox_depth), "n");
      cell(row, k.oldest_unacked_s === null ? null : duration(k.oldest_unacked_s), "n");
      cell(row, k.alerts.join(", "), k.alerts.length ? "alerting" : "");
      cell(row, k.last_seen ? when(k.last_seen, true) : null);
    });
  }

  // -- refreshing --------------------------------------------------------------------

  function summaryUrl() {
    const params = new URLSearchParams();
    if (state.custom) {
      params.set("from", state.custom.from);
      params.set("to", state.custom.to);
    }
    if (state.site) params.set("site", state.site);
    const query = params.toString();
    return `/api/summary${query ? `?${query}` : ""}`;
  }

  async function refresh() {
    clearTimeout(state.timer);
    try {
      const [summary, fleet] = await Promise.all([ask(summaryUrl()), ask("/api/fleet")]);
      if (summary.status === 401 || fleet.status === 401) {
        showLogin();
        return;
      }
      if (summary.status === 200) {
        showTotals(summary.doc);
        showSites(summary.doc);
        showReasons(summary.doc);
        showSurges(summary.doc);
        showCharts(summary.doc);
        status(`Updated ${when(new Date().toISOString(), false)}`, false);
      } else {
        status((summary.doc && summary.doc.error) || `The server answered ${summary.status}`, true);
      }
      if (fleet.status === 200) showFleet(fleet.doc);
      document.body.dataset.updated = String(Date.now());
    } catch (_) {
      status("The dashboard's server cannot be reached: trying again", true);
    }
    state.timer = setTimeout(refresh, state.cfg.refresh_s * 1000);
  }

  function showMain() {
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = !state.cfg.login;
    refresh();
  }

  function showLogin() {
    clearTimeout(state.timer);
    $("main").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("password").focus();
  }

  async function login(event) {
    event.preventDefault();
    $("login-error").textContent = "";
    const answer = await ask("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ password: $("password").value }),
    });
    $("password").value = "";
    if (answer.status === 200) {
      state.cfg.csrf = answer.doc.csrf;
      showMain();
    } else {
      $("login-error").textContent = (answer.doc && answer.doc.error) || `refused (${answer.status})`;
    }
  }

  async function logout() {
    await ask("/api/logout", { method: "POST", headers: { "X-CSRF-Token": state.cfg.csrf || "" } });
    showLogin();
  }

  function pickRange(event) {
    event.preventDefault();
    const from = $("from").value;
    const to = $("to").value;
    state.custom = from && to ? { from, to } : null;
    state.site = $("site").value;
    refresh();
  }

  function today() {
    state.custom = null;
    $("from").value = "";
    $("to").value = "";
    refresh();
  }

  async function boot() {
    const answer = await ask("/api/config");
    state.cfg = answer.doc;
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("range").addEventListener("submit", pickRange);
    $("site").addEventListener("change", pickRange);
    $("today").addEventListener("click", today);
    window.addEventListener("resize", () => {
      for (const [id, c] of Object.entries(state.charts)) {
        c.plot.setSize({ width: Math.max($(id).clientWidth, 300), height: c.plot.height });
      }
    });
    if (state.cfg.login && !state.cfg.logged_in) showLogin();
    else showMain();
    document.documentElement.dataset.script = "ready";
  }

  boot();
})();
