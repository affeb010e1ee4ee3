// The traveller's screen. The state comes from /events?view=traveller (personal
// data already masked by the server); this page only chooses what to show.
//
// The arrow of the "ready" screen points at the camera: up unless the page's
// address says otherwise (/?camera=down|left|right).

import * as kiosk from "./kiosk.js";

// Screens that say why (the policy's or the lane's reason codes).
const WITH_REASONS = new Set(["denied", "awaiting_officer", "closed", "failsafe"]);
// Back to the kiosk's default language after this long on "ready" without a touch:
// the next traveller may not read the last one's language.
const LANGUAGE_RESET_MS = 90_000;
const CAMERA_SIDES = new Set(["up", "down", "left", "right"]);

const els = {
  title: document.getElementById("title"),
  hint: document.getElementById("hint"),
  reasons: document.getElementById("reasons"),
  needs: document.getElementById("needs"),
  needsList: document.getElementById("needs-list"),
  person: document.getElementById("person"),
  languages: document.getElementById("languages"),
  message: document.querySelector(".message"),
};

let state = null; // the last state received
let online = false;
let resetTimer = null;

// The state the server rendered this page with: shown until the live stream speaks
// (the page has just come from the kiosk, so it is up).
try {
  const initial = JSON.parse(document.getElementById("initial-state").textContent);
  if (initial && typeof initial === "object") {
    state = initial;
    online = true;
  }
} catch {
  // no initial state: "offline" until the stream connects
}

function reasonText(code) {
  const rule = kiosk.ruleText(code, state);
  if (rule) return rule;
  const key = `reason.${code}`;
  if (!kiosk.has(key) && code.startsWith("fault_")) return kiosk.t("reason.fault");
  return kiosk.t(key);
}

function fillList(list, items) {
  const now = [...list.children].map((li) => li.textContent);
  if (now.length === items.length && now.every((text, i) => text === items[i])) return;
  list.replaceChildren(
    ...items.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
}

function render() {
  const screen = online && state ? state.screen : "offline";
  document.body.dataset.screen = screen;
  els.title.textContent = kiosk.t(`screen.${screen}`);
  els.hint.textContent = kiosk.t(`screen.${screen}.hint`);

  const codes = online && state && WITH_REASONS.has(screen) ? state.reasons || [] : [];
  // "closed" on the closed screen says nothing new; the same text twice neither
  const texts = [...new Set(codes.filter((code) => code !== screen).map(reasonText))];
  fillList(els.reasons, texts);
  els.reasons.hidden = texts.length === 0;

  const needs = online && state && screen === "awaiting_officer" ? state.needs || [] : [];
  fillList(
    els.needsList,
    needs.map((need) => kiosk.t(`need.${need}`)),
  );
  els.needs.hidden = needs.length === 0;

  const person = online && state && screen !== "ready" ? state.traveller : null;
  const group = online && state ? state.group : null;
  if (group) {
    els.person.textContent = kiosk.t("group.people", { count: String(group.people) });
  } else {
    els.person.textContent = person
      ? kiosk.t("traveller.masked", { initials: person.initials, id: person.id_last })
      : "";
  }
  els.person.hidden = !person && !group;
  fit();
  scheduleLanguageReset();
}

/** A size smaller when the reasons do not fit the screen (many, or long ones). */
function fit() {
  document.body.classList.remove("compact");
  if (els.message.scrollHeight > els.message.clientHeight + 1) {
    document.body.classList.add("compact");
  }
}

function scheduleLanguageReset() {
  if (resetTimer !== null) window.clearTimeout(resetTimer);
  resetTimer = null;
  if (kiosk.language() === kiosk.defaultLanguage()) return;
  if (state && state.screen !== "ready") return;
  resetTimer = window.setTimeout(() => {
    resetTimer = null;
    kiosk.setLanguage(kiosk.defaultLanguage());
  }, LANGUAGE_RESET_MS);
}

async function main() {
  const side = new URLSearchParams(window.location.search).get("camera");
  if (CAMERA_SIDES.has(side)) document.body.dataset.camera = side;

  await kiosk.startI18n("checkpoint-edge.language.traveller");
  kiosk.languageButtons(els.languages);
  kiosk.onLanguage(render);
  document.addEventListener("pointerdown", scheduleLanguageReset, { passive: true });
  window.addEventListener("resize", fit);
  render();
  kiosk.ready();
  kiosk.liveState(
    "traveller",
    (next) => {
      state = next;
      render();
    },
    (up) => {
      if (!up) state = null; // never leave an old decision on screen: wait for a new state
      if (up !== online) {
        online = up;
        render();
      }
    },
  );
}

main();
