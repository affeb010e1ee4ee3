// The traveller's screen. The state comes from /events?view=traveller (personal
// data already masked by the server); this page only chooses what to show.
//
// The arrow of the "ready" screen points at the camera: up unless the page's
// address says otherwise (/?camera=down|left|right).
//
// The screen speaks each new state once, in its language (/voice/<lang>/<clip>:
// the screen's clip, and after "denied" its main reason), through one <audio>
// element, so that no clip ever plays over another: a state that comes while a
// state is being said waits until it is said to its end, reason included (only the
// newest such state waits), except that the prompts said again and again ("ready",
// "reading", "group") are cut short by news.

import * as kiosk from "./kiosk.js";

// Screens that say why (the policy's or the lane's reason codes).
const WITH_REASONS = new Set(["denied", "awaiting_officer", "closed", "failsafe"]);
// Back to the kiosk's default language after this long on "ready" without a touch:
// the next traveller may not read the last one's language.
const LANGUAGE_RESET_MS = 90_000;
const CAMERA_SIDES = new Set(["up", "down", "left", "right"]);
const PROMPTS = new Set(["ready", "reading", "group"]);
const DECISIONS = new Set(["approved", "denied"]);
const CLIP_LIMIT_MS = 12_000; // the longest clip (8 s, lang check's limit) and its load

const els = {
  title: document.getElementById("title"),
  hint: document.getElementById("hint"),
  reasons: document.getElementById("reasons"),
  needs: document.getElementById("needs"),
  needsList: document.getElementById("needs-list"),
  person: document.getElementById("person"),
  languages: document.getElementById("languages"),
  message: document.querySelector(".message"),
  voice: document.getElementById("voice"),
};

let state = null; // the last state received
let online = false;
let resetTimer = null;
// said: the state last said; rest: the clips still to say of the state being said;
// waiting: the newest state's clips, said after it; playing: the clip id now playing;
// cutting: a prompt is being paused for news; hush: the next change is not said
const voice = {
  said: null,
  rest: [],
  waiting: null,
  playing: null,
  cutting: false,
  watchdog: null,
  hush: false,
};

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
  speak(screen, codes);
}

/** The clip of a reason code: a business rule's by its kind, an unknown device fault
 * as any fault. */
function reasonClip(code) {
  const [prefix] = String(code).split(":", 1);
  if (!kiosk.has(`reason.${prefix}`) && prefix.startsWith("fault_")) return "reason.fault";
  return `reason.${prefix}`;
}

function speak(screen, codes) {
  const settings = kiosk.voiceSettings();
  if (!settings.on || screen === "offline") return; // offline: the kiosk cannot be asked
  const known = new Set(settings.clips || []);
  const clips = [screen];
  const main = codes.find((code) => code !== screen);
  if (screen === "denied" && main) clips.push(reasonClip(main));
  const wanted = clips.filter((clip) => known.has(clip));
  // the same state sent again is said once; but each traveller hears their own decision
  // (the next one refused for the same reason too: the lane showed it anew)
  const decision = DECISIONS.has(screen) && state ? state.shown : "";
  const said = `${kiosk.language()}|${wanted.join("|")}|${decision}`;
  if (said === voice.said) return;
  voice.said = said;
  if (voice.hush) {
    voice.hush = false; // the language went back by itself on an idle lane: nothing new
    return;
  }
  const items = wanted.map((clip) => ({ clip, language: kiosk.language() }));
  if (voice.playing === null) {
    voice.rest = items;
    playNext();
  } else if (PROMPTS.has(voice.playing)) {
    voice.rest = items; // news cuts a prompt short
    voice.waiting = null;
    if (!els.voice.paused) {
      voice.cutting = true; // the next clip plays on its "pause"
      els.voice.pause();
    } // (paused: it is ending, and its "ended" plays the next)
  } else {
    voice.waiting = items; // said once the state being said is said to its end
  }
}

function playNext() {
  voice.cutting = false;
  window.clearTimeout(voice.watchdog);
  voice.watchdog = null;
  if (voice.rest.length === 0 && voice.waiting !== null) {
    voice.rest = voice.waiting;
    voice.waiting = null;
  }
  const next = voice.rest.shift();
  voice.playing = next ? next.clip : null;
  if (!next) return;
  const el = els.voice;
  el.volume = Math.min(1, Math.max(0, Number(kiosk.voiceSettings().volume) / 100 || 0));
  el.src = `/voice/${encodeURIComponent(next.language)}/${encodeURIComponent(next.clip)}`;
  // a clip that neither ends nor fails (a stalled load, the sound device gone) never
  // holds the voice up: the next one plays after the longest a clip may last
  voice.watchdog = window.setTimeout(playNext, CLIP_LIMIT_MS);
  el.play().catch((error) => {
    // AbortError: cut short by the next clip; NotSupportedError: no such clip (its
    // "error" event moves on); NotAllowedError: the browser refuses to play without a
    // touch (Chromium needs --autoplay-policy=no-user-gesture-required): silent
    if (error && error.name === "NotAllowedError" && voice.playing === next.clip) {
      window.clearTimeout(voice.watchdog);
      Object.assign(voice, { rest: [], waiting: null, playing: null, watchdog: null });
    }
  });
}

function clipOver() {
  if (voice.playing !== null) playNext();
}

function clipPaused() {
  if (voice.cutting) playNext(); // (at a clip's natural end, "ended" follows)
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
    voice.hush = true;
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
  for (const type of ["ended", "error"]) els.voice.addEventListener(type, clipOver);
  els.voice.addEventListener("pause", clipPaused);
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
