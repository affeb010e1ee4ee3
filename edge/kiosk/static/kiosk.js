// Shared by the traveller's and the officer's pages: message catalogues, the
// language switch, and the live state (Server-Sent Events).
//
// Every visible text comes from a catalogue (/i18n/<code>.json) by key; a key
// missing from the chosen language falls back to English, then to the key
// itself. Elements carry their key in data-i18n (text), data-i18n-label
// (aria-label) or data-i18n-placeholder; applyTexts() fills them in.

const FALLBACK = "en";
const RETRY_MS = 2000;

const i18n = {
  languages: [], // [{code, name}] from /i18n/index.json
  default: FALLBACK,
  voice: { on: false, volume: 80, clips: [] }, // the screen's voice ([kiosk] voice*)
  code: FALLBACK,
  messages: {},
  fallback: {},
  storageKey: "",
  listeners: [],
  turn: 0,
};

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}`);
  }
  return response.json();
}

function stored(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null; // storage disabled: the kiosk's default language
  }
}

function store(key, value) {
  try {
    if (value === null) {
      window.localStorage.removeItem(key);
    } else {
      window.localStorage.setItem(key, value);
    }
  } catch {
    // storage disabled: the choice lasts until the page reloads
  }
}

const catalogues = new Map(); // code -> messages (only those that loaded)

async function catalogue(code) {
  if (!catalogues.has(code)) {
    try {
      const doc = await getJSON(`/i18n/${encodeURIComponent(code)}.json`);
      if (doc && typeof doc.messages === "object") catalogues.set(code, doc.messages);
    } catch {
      return {}; // not cached: the next switch tries again
    }
  }
  return catalogues.get(code) || {};
}

/** The text for `key` in the chosen language, `{name}` placeholders filled from `params`. */
export function t(key, params) {
  let text = i18n.messages[key];
  if (typeof text !== "string") text = i18n.fallback[key];
  if (typeof text !== "string") text = key;
  if (params) {
    text = text.replace(/\{(\w+)\}/g, (whole, name) =>
      Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole,
    );
  }
  return text;
}

/** A business rule's reason (`rule_failed:<Identifier>`) in the chosen language: the
 * rule's own description from the state's `rules`, else the generic text; null for
 * other reasons. */
export function ruleText(code, state) {
  const [prefix, identifier] = String(code).split(":", 2);
  if (!identifier) return null;
  const texts = state && state.rules ? state.rules[identifier] : null;
  const own = texts && (texts[i18n.code] || texts[FALLBACK]);
  if (prefix === "rule_failed" && typeof own === "string") return own;
  return t(`reason.${prefix}`);
}

/** Whether `key` is in the chosen language's or the English catalogue. */
export function has(key) {
  return typeof i18n.messages[key] === "string" || typeof i18n.fallback[key] === "string";
}

export function language() {
  return i18n.code;
}

export function defaultLanguage() {
  return i18n.default;
}

/** The voice's settings: {on, volume (0-100), clips (the clip ids the kiosk has)}. */
export function voiceSettings() {
  return i18n.voice;
}

/** Fill every element under `root` that names a catalogue key. */
export function applyTexts(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
}

/** Call `listener` after every change of language (and once texts are first loaded). */
export function onLanguage(listener) {
  i18n.listeners.push(listener);
}

/** Switch to `code`; `remember` keeps the choice in localStorage (the default
 * language is remembered as no choice at all). */
export async function setLanguage(code, remember = true) {
  const known = i18n.languages.some((lang) => lang.code === code);
  const chosen = known ? code : i18n.default;
  const turn = ++i18n.turn; // a later switch wins over one still loading
  const [messages, fallback] = await Promise.all([catalogue(chosen), catalogue(FALLBACK)]);
  if (turn !== i18n.turn) return;
  i18n.code = chosen;
  i18n.messages = messages;
  i18n.fallback = fallback;
  if (remember) store(i18n.storageKey, chosen === i18n.default ? null : chosen);
  document.documentElement.lang = chosen;
  applyTexts();
  for (const listener of i18n.listeners) listener(chosen);
}

/** Load the list of languages and the remembered (or default) one. `storageKey`:
 * where this page remembers its language (each view has its own). */
export async function startI18n(storageKey) {
  i18n.storageKey = storageKey;
  for (;;) {
    try {
      const index = await getJSON("/i18n/index.json");
      i18n.languages = Array.isArray(index.languages) ? index.languages : [];
      i18n.default = typeof index.default === "string" ? index.default : FALLBACK;
      if (index.voice && typeof index.voice === "object") i18n.voice = index.voice;
      break;
    } catch {
      // the daemon is (re)starting: without texts there is nothing to show yet
      await new Promise((resolve) => window.setTimeout(resolve, RETRY_MS));
    }
  }
  await setLanguage(stored(storageKey) || i18n.default, false);
}

/** One button per language into `container` (each named in its own language). */
export function languageButtons(container, onChoose) {
  container.replaceChildren();
  container.hidden = i18n.languages.length < 2;
  for (const lang of i18n.languages) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "lang";
    button.lang = lang.code;
    button.dataset.lang = lang.code;
    button.textContent = lang.name || lang.code;
    button.addEventListener("click", () => {
      setLanguage(lang.code).then(() => onChoose && onChoose(lang.code));
    });
    container.append(button);
  }
  const mark = () => {
    for (const button of container.querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === i18n.code));
    }
  };
  onLanguage(mark);
  mark();
}

/**
 * The live state of the lane: `onState(state)` at every change, `onLink(up)` when
 * the stream connects or drops. The browser's EventSource reconnects by itself
 * after a network error; after an HTTP error it gives up, so we open a new one.
 */
export function liveState(view, onState, onLink) {
  let source = null;
  let closed = false;
  let retry = null;
  let version = -1;

  const connect = () => {
    retry = null;
    source = new EventSource(`/events?view=${encodeURIComponent(view)}`);
    source.addEventListener("open", () => onLink(true));
    source.addEventListener("state", (event) => {
      let state;
      try {
        state = JSON.parse(event.data);
      } catch {
        return; // a broken message: the next one replaces it
      }
      if (!state || typeof state !== "object") return;
      if (typeof state.version === "number") {
        if (state.version < version) {
          // the daemon restarted (its version counts from 0 again), perhaps upgraded:
          // load this page, its script and its catalogues anew
          window.location.reload();
          return;
        }
        version = state.version;
      }
      onLink(true);
      onState(state);
    });
    source.addEventListener("error", () => {
      onLink(false);
      if (source.readyState === EventSource.CLOSED && !closed && retry === null) {
        retry = window.setTimeout(connect, RETRY_MS);
      }
    });
  };
  connect();
  return {
    close() {
      closed = true;
      if (retry !== null) window.clearTimeout(retry);
      if (source) source.close();
    },
  };
}

/** Show the page once its texts are in (no flash of empty labels), and say that its
 * script now runs it (data-script="ready": the server's first render is replaced). */
export function ready() {
  document.body.classList.remove("loading");
  document.documentElement.dataset.script = "ready";
}
