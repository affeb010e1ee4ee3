// The officer's view. Logging in (POST /officer/login with the PIN) gives an
// HttpOnly session cookie and a CSRF token; the token stays in this page's memory
// and goes with every action in the X-CSRF-Token header. The state, with the
// officer's details, comes from /events?view=officer once the cookie is set.

import * as kiosk from "./kiosk.js";

// The server pushes on every lane event; connectivity, outbox depth and alerts
// change without one, so they are also fetched this often.
const STATUS_POLL_MS = 5000;
const FEEDBACK_MS = 4000;

const $ = (id) => document.getElementById(id);
const els = {
  status: $("status"),
  logout: $("logout"),
  linkLost: $("link-lost"),
  login: $("login"),
  form: $("login-form"),
  pin: $("pin"),
  pad: $("pad"),
  submit: $("login-submit"),
  loginError: $("login-error"),
  desk: $("desk"),
  alerts: $("alerts"),
  screen: $("screen-value"),
  rec: $("rec-value"),
  recLine: $("rec-line"),
  idle: $("idle"),
  policy: $("policy"),
  policyReasons: $("policy-reasons"),
  needs: $("officer-needs"),
  needsList: $("needs-list"),
  codes: $("codes"),
  recent: $("recent"),
  recentNone: $("recent-none"),
  actions: $("actions"),
  decide: $("decide"),
  approve: $("approve"),
  deny: $("deny"),
  feedback: $("action-feedback"),
  vehicleOpen: $("vehicle-open"),
  vehicleKinds: $("vehicle-kinds"),
  vehicleNow: $("vehicle-now"),
  vehicleKind: $("vehicle-kind"),
  vehiclePeople: $("vehicle-people"),
  vehicleDrivers: $("vehicle-drivers"),
  plateForm: $("plate-form"),
  plate: $("plate"),
};

const session = { enabled: true, remote: true, csrf: null };
let stream = null;
let poll = null;
let state = null; // the last state with the officer's details
let loginError = null; // [key, params] of the error shown under the PIN pad
let feedback = null; // [key, params, className] of the last action's result
let feedbackTimer = null;

// -- small helpers -------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function translated(prefix, value) {
  const key = `${prefix}.${value}`;
  return kiosk.has(key) ? kiosk.t(key) : String(value);
}

function reasonText(code) {
  const rule = kiosk.ruleText(code, state);
  if (rule) return `${rule} (${String(code).split(":")[1]})`;
  if (!kiosk.has(`reason.${code}`) && code.startsWith("fault_")) {
    return `${kiosk.t("reason.fault")} (${code.slice(6)})`;
  }
  return translated("reason", code);
}

function locale() {
  const code = kiosk.language();
  return code === "en" ? "en-GB" : code; // day before month, as on Vietnamese papers
}

function formatDate(value) {
  try {
    if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
      return new Intl.DateTimeFormat(locale(), {
        day: "2-digit", month: "2-digit", year: "numeric", timeZone: "UTC",
      }).format(new Date(`${value}T00:00:00Z`));
    }
    if (/^\d{4}-\d{2}-\d{2}T/.test(value)) {
      const when = new Date(value);
      if (!Number.isNaN(when.getTime())) {
        return new Intl.DateTimeFormat(locale(), {
          day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit",
        }).format(when);
      }
    }
  } catch {
    // an unknown locale: the value as sent
  }
  return value;
}

function formatTime(value) {
  const when = new Date(value);
  if (Number.isNaN(when.getTime())) return String(value);
  try {
    return new Intl.DateTimeFormat(locale(), {
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).format(when);
  } catch {
    return when.toTimeString().slice(0, 8);
  }
}

/** One decoded field, readable: booleans, places, coded values, dates. */
function formatValue(name, value) {
  if (value === null || value === undefined || value === "") return kiosk.t("value.none");
  if (typeof value === "boolean") return kiosk.t(value ? "value.yes" : "value.no");
  if (typeof value === "object" && !Array.isArray(value)) {
    if ("province" in value || "text" in value) {
      return [
        value.text,
        value.province && `${kiosk.t("field.province")} ${value.province}`,
        value.district && `${kiosk.t("field.district")} ${value.district}`,
      ]
        .filter(Boolean)
        .join(" · ");
    }
    return Object.entries(value)
      .map(([k, v]) => `${translated("field", k)}: ${formatValue(k, v)}`)
      .join(" · ");
  }
  if (Array.isArray(value)) return value.map((v) => formatValue(name, v)).join(", ");
  switch (name) {
    case "sex":
      return translated("sex", value);
    case "transport":
      return translated("transport", value);
    case "test_result":
      return translated("test_result", value);
    case "type":
      return translated("dcc_type", value);
    default:
      return typeof value === "string" ? formatDate(value) : String(value);
  }
}

function fillList(list, items) {
  list.replaceChildren(...items.map((text) => el("li", "", text)));
}

// -- rendering -----------------------------------------------------------------------

function showPanel(which) {
  document.body.dataset.panel = which;
  els.login.hidden = which !== "login";
  els.desk.hidden = which !== "desk";
  els.status.hidden = which !== "desk";
  els.logout.hidden = which !== "desk";
  if (which !== "desk") els.linkLost.hidden = true;
}

function renderLogin() {
  const usable = session.enabled && session.remote;
  els.pin.disabled = !usable;
  for (const button of els.pad.querySelectorAll("button")) button.disabled = !usable;
  let error = loginError;
  if (!session.enabled) error = ["officer.error.no_pin"];
  else if (!session.remote) error = ["officer.error.remote"];
  els.loginError.textContent = error ? kiosk.t(error[0], error[1]) : "";
  els.loginError.hidden = !error;
}

// good: true (green), false (red), undefined (neutral: nothing known to judge)
function chip(id, text, good) {
  $(`${id}-value`).textContent = text;
  const node = $(id);
  node.classList.toggle("good", good === true);
  node.classList.toggle("bad", good === false);
}

function renderStatus(officer) {
  chip("mode", translated("mode", state.mode));
  chip("lane", translated("state", officer.state));
  $("lane").dataset.state = officer.state;
  chip("broker", kiosk.t(officer.connected ? "status.connected" : "status.disconnected"), !!officer.connected);
  // null: no retained status of the central ingest seen yet (none may be running)
  const central = officer.central_online;
  const known = typeof central === "boolean";
  chip("ingest", kiosk.t(known ? (central ? "status.online" : "status.offline") : "status.unknown"), known ? central : undefined);
  const depth = Number(officer.outbox_depth) || 0;
  chip("outbox", String(depth));
  $("outbox").classList.toggle("warn", depth > 0);

  const alerts = Array.isArray(officer.alerts) ? officer.alerts : [];
  els.alerts.replaceChildren(
    ...alerts.map((alert) => {
      const name = typeof alert === "string" ? alert : alert.name;
      return el("li", "", translated("alert", name));
    }),
  );
  els.alerts.hidden = alerts.length === 0;
}

function renderDecision(officer) {
  els.screen.textContent = kiosk.t(`screen.${state.screen}`);
  els.screen.dataset.screen = state.screen;
  const rec = officer.recommendation;
  els.rec.textContent = rec ? translated("recommendation", rec) : "";
  els.rec.dataset.rec = rec || "none";
  els.recLine.hidden = !rec;
  els.idle.hidden = !!rec;
  const reasons = officer.policy_reasons || [];
  fillList(els.policyReasons, reasons.map(reasonText));
  els.policy.hidden = reasons.length === 0;
  const needs = rec === "refer" ? state.needs || [] : [];
  fillList(els.needsList, needs.map((need) => translated("need", need)));
  els.needs.hidden = needs.length === 0;

  const pending = officer.state === "awaiting_decision";
  els.actions.classList.toggle("pending", pending);
  els.decide.hidden = !pending;
}

function renderCodes(codes) {
  els.codes.replaceChildren(
    ...codes.map((code) => {
      const card = el("article", `code ${code.valid ? "valid" : "invalid"}`);
      const head = el("header");
      head.append(
        el("h3", "", translated("kind", code.kind)),
        el("span", "badge", kiosk.t(code.valid ? "officer.code.valid" : "officer.code.invalid")),
      );
      card.append(head);
      if (code.reasons && code.reasons.length) {
        const list = el("ul", "code-reasons");
        fillList(list, code.reasons.map(reasonText));
        card.append(list);
      }
      const fields = el("dl", "fields");
      for (const [name, value] of Object.entries(code.fields || {})) {
        const item = el("div", "field");
        item.dataset.field = name;
        item.append(el("dt", "", translated("field", name)), el("dd", "", formatValue(name, value)));
        fields.append(item);
      }
      card.append(fields);
      return card;
    }),
  );
}

function renderRecent(recent) {
  const body = els.recent.tBodies[0];
  body.replaceChildren(
    ...recent.map((passage) => {
      const row = el("tr");
      row.dataset.decision = passage.decision;
      const decision = el("td");
      decision.append(el("span", `badge ${passage.decision}`, translated("decision", passage.decision)));
      row.append(
        el("td", "", formatTime(passage.ts)),
        decision,
        el("td", "", translated("decided_by", passage.decided_by)),
        el("td", "", passage.name || kiosk.t("value.none")),
        el("td", "", passage.id_number || kiosk.t("value.none")),
        el("td", "wide", (passage.kinds || []).map((kind) => translated("kind", kind)).join(", ")),
        el("td", "", (passage.reasons || []).map(reasonText).join("; ")),
      );
      return row;
    }),
  );
  els.recent.hidden = recent.length === 0;
  els.recentNone.hidden = recent.length !== 0;
}

/** The vehicle being decided (kind, people, plate, registered drivers), or the buttons
 * that open a vehicle group while the lane is ready. */
function renderVehicle(officer) {
  const vehicle = officer.vehicle;
  els.vehicleNow.hidden = !vehicle;
  els.vehicleOpen.hidden = !!vehicle || !["ready", "surge"].includes(officer.state);
  if (!vehicle) return;
  els.vehicleKind.textContent = translated("vehicle", vehicle.kind);
  els.vehiclePeople.textContent = kiosk.t("group.people", { count: String(vehicle.people) });
  const drivers = Array.isArray(vehicle.drivers) ? vehicle.drivers : [];
  els.vehicleDrivers.hidden = drivers.length === 0;
  els.vehicleDrivers.textContent = `${kiosk.t("officer.vehicle.drivers")} ${drivers.join(", ")}`;
  if (document.activeElement !== els.plate) els.plate.value = vehicle.plate || "";
}

function renderFeedback() {
  els.feedback.textContent = feedback ? kiosk.t(feedback[0], feedback[1]) : "";
  els.feedback.className = feedback ? feedback[2] || "" : "";
}

function render() {
  renderLogin();
  renderFeedback();
  if (!state || !state.officer) return;
  const officer = state.officer;
  renderStatus(officer);
  renderDecision(officer);
  renderCodes(officer.codes || []);
  renderRecent(officer.recent || []);
  renderVehicle(officer);
}

// -- the session ---------------------------------------------------------------------

function setFeedback(key, className, params) {
  feedback = [key, params, className];
  renderFeedback();
  if (feedbackTimer !== null) window.clearTimeout(feedbackTimer);
  feedbackTimer = window.setTimeout(() => {
    feedback = null;
    feedbackTimer = null;
    renderFeedback();
  }, FEEDBACK_MS);
}

function applyState(next) {
  if (!next || typeof next !== "object") return;
  if (!next.officer) {
    // the session ended (expired, or logged out elsewhere)
    if (session.csrf) loggedOut(["officer.error.session"]);
    return;
  }
  if (state && state.officer && next.version < state.version) return; // an older poll
  state = next;
  render();
}

async function pollStatus() {
  try {
    const response = await fetch("/state?view=officer", { cache: "no-store" });
    if (response.ok) applyState(await response.json());
  } catch {
    // the stream's own error already shows that the kiosk is unreachable
  }
}

function loggedIn(csrf) {
  session.csrf = csrf;
  loginError = null;
  els.pin.value = "";
  showPanel("desk");
  render();
  if (stream) stream.close();
  stream = kiosk.liveState("officer", applyState, (up) => {
    els.linkLost.hidden = up;
  });
  if (poll === null) poll = window.setInterval(pollStatus, STATUS_POLL_MS);
}

function loggedOut(error) {
  session.csrf = null;
  state = null;
  loginError = error || null;
  if (stream) stream.close();
  stream = null;
  if (poll !== null) window.clearInterval(poll);
  poll = null;
  showPanel("login");
  render();
  // a keyboard to type on: focus the field (on a touch screen the pad is the keyboard)
  if (window.matchMedia("(pointer: fine)").matches) els.pin.focus();
}

async function post(path, body, headers = {}) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = {};
  try {
    doc = await response.json();
  } catch {
    // no JSON body: the status says enough
  }
  return [response.status, doc];
}

async function login(event) {
  event.preventDefault();
  const pin = els.pin.value.trim();
  if (!pin) {
    loginError = ["officer.error.empty"];
    renderLogin();
    return;
  }
  els.submit.disabled = true;
  els.submit.textContent = kiosk.t("officer.login.busy");
  try {
    const [status, doc] = await post("/officer/login", { pin });
    if (status === 200 && doc.csrf) {
      loggedIn(doc.csrf);
      return;
    }
    els.pin.value = "";
    if (doc.code === "locked") {
      loginError = doc.retry_s
        ? ["officer.error.locked", { seconds: String(doc.retry_s) }]
        : ["officer.error.locked_later"];
    } else if (doc.code === "no_pin") {
      session.enabled = false;
    } else if (doc.code === "remote") {
      session.remote = false;
    } else if (doc.code === "wrong_pin") {
      loginError = ["officer.error.wrong_pin"];
    } else {
      loginError = ["officer.error.refused"];
    }
  } catch {
    loginError = ["officer.error.network"];
  } finally {
    els.submit.disabled = false;
    applyLoginTexts();
    renderLogin();
  }
}

function applyLoginTexts() {
  els.submit.textContent = kiosk.t("officer.login.submit");
}

async function act(action, body) {
  if (!session.csrf) {
    loggedOut(["officer.error.session"]);
    return;
  }
  try {
    const [status] = await post(`/officer/${action}`, body, { "X-CSRF-Token": session.csrf });
    if (status === 202) {
      setFeedback(`officer.sent.${action}`, "ok");
    } else if (status === 403) {
      const info = await sessionInfo();
      if (info && !info.logged_in) loggedOut(["officer.error.session"]);
      else setFeedback(info && !info.remote_allowed ? "officer.error.remote" : "officer.error.refused", "error");
    } else {
      setFeedback("officer.error.refused", "error");
    }
  } catch {
    setFeedback("officer.error.network", "error");
  }
}

async function sessionInfo() {
  try {
    const response = await fetch("/officer/session", { cache: "no-store", credentials: "same-origin" });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

async function logout() {
  try {
    await post("/officer/logout");
  } catch {
    // the cookie expires by itself; the page forgets its token now
  }
  loggedOut(null);
}

function pressKey(key) {
  if (key === "delete") {
    els.pin.value = els.pin.value.slice(0, -1);
  } else if (els.pin.value.length < Number(els.pin.maxLength)) {
    els.pin.value += key;
  }
  if (loginError) {
    loginError = null;
    renderLogin();
  }
}

async function main() {
  await kiosk.startI18n("checkpoint-edge.language.officer");
  kiosk.languageButtons($("languages"));
  kiosk.onLanguage(() => {
    applyLoginTexts();
    render();
  });
  els.form.addEventListener("submit", login);
  els.pad.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (button) pressKey(button.dataset.key);
  });
  els.approve.addEventListener("click", () => act("approve"));
  els.deny.addEventListener("click", () => act("deny"));
  els.vehicleKinds.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-kind]");
    if (button) act("vehicle", { kind: button.dataset.kind });
  });
  els.plateForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const plate = els.plate.value.trim();
    if (plate) act("plate", { plate });
  });
  els.logout.addEventListener("click", logout);

  const info = await sessionInfo();
  if (info) {
    session.enabled = !!info.enabled;
    session.remote = !!info.remote_allowed;
  }
  kiosk.ready();
  if (info && info.logged_in && info.csrf) {
    loggedIn(info.csrf);
  } else {
    loggedOut(info ? null : ["officer.error.network"]);
  }
}

main();
