"""The traveller's page as the server sends it: the current state already in the HTML.

The page's script (``traveller.js``) keeps it live, but the first HTML is
complete on its own: a browser without script, a screenshot taken the moment
the page loads, or a screen whose script failed shows the lane's state in the
kiosk's default language, never an empty page. Without script the page
reloads itself every few seconds (``<noscript>`` refresh). The script starts
from the same state, embedded as JSON, so nothing flickers while it connects.

Everything here mirrors ``render()`` in ``traveller.js``: the screen's title
and hint, the reasons (on the screens that give them), what the officer still
needs, and the traveller's masked initials and ID digits. Every text is
escaped: initials come from a code a traveller brought.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from string import Template
from typing import Any

from edge.core.events import Screen
from edge.scan.reasons import RULE_FAILED, is_fault, rule_of

FALLBACK = "en"
# Screens that say why (the policy's or the lane's reason codes); as in traveller.js.
WITH_REASONS: frozenset[Screen] = frozenset({"denied", "awaiting_officer", "closed", "failsafe"})
NOSCRIPT_REFRESH_S = 3


class Texts:
    """One language's catalogue with the English one behind it, as ``kiosk.t()``."""

    def __init__(self, messages: Mapping[str, Any], fallback: Mapping[str, Any]) -> None:
        self.messages = messages
        self.fallback = fallback

    def has(self, key: str) -> bool:
        return isinstance(self.messages.get(key), str) or isinstance(self.fallback.get(key), str)

    def __call__(self, key: str, **params: str) -> str:
        text = self.messages.get(key)
        if not isinstance(text, str):
            text = self.fallback.get(key)
        if not isinstance(text, str):
            text = key
        for name, value in params.items():
            text = text.replace("{" + name + "}", value)
        return text


def _reason(t: Texts, code: str, rules: Any, language: str) -> str:
    named = rule_of(code)
    if named is not None:  # a business rule: its own description in the screen's language
        prefix, identifier = named  # (as kiosk.js)
        texts = rules.get(identifier) if isinstance(rules, Mapping) else None
        own = texts.get(language) or texts.get(FALLBACK) if isinstance(texts, Mapping) else None
        if prefix == RULE_FAILED and isinstance(own, str):
            return own
        return t(f"reason.{prefix}")
    key = f"reason.{code}"
    if not t.has(key) and is_fault(code):
        return t("reason.fault")
    return t(key)


def _items(texts: Sequence[str]) -> str:
    return "".join(f"<li>{escape(text)}</li>" for text in texts)


def _hidden(empty: bool) -> str:
    return " hidden" if empty else ""


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def state_json(state: Mapping[str, Any]) -> str:
    """The state as JSON that is safe inside a ``<script>`` element (no ``</script>``)."""
    text = json.dumps(state, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def traveller_page(
    template: str,
    state: Mapping[str, Any],
    catalogues: Mapping[str, Mapping[str, Any]],
    language: str,
) -> str:
    """``template`` (``traveller.html``) filled with ``state`` (the traveller's view of
    :meth:`ScreenModel.snapshot`) in ``language`` (falling back to English)."""
    chosen = language if language in catalogues else FALLBACK
    messages = catalogues.get(chosen, {}).get("messages", {})
    t = Texts(messages, catalogues.get(FALLBACK, {}).get("messages", {}))
    screen = str(state.get("screen") or "offline")
    codes = _strings(state.get("reasons")) if screen in WITH_REASONS else []
    rules = state.get("rules")
    reasons = list(dict.fromkeys(_reason(t, c, rules, chosen) for c in codes if c != screen))
    needs = _strings(state.get("needs")) if screen == "awaiting_officer" else []
    person = state.get("traveller") if screen != "ready" else None
    group = state.get("group")
    masked = ""
    if isinstance(group, Mapping):
        masked = t("group.people", count=str(group.get("people", 0)))
    elif isinstance(person, Mapping):
        masked = t(
            "traveller.masked",
            initials=str(person.get("initials", "")),
            id=str(person.get("id_last", "")),
        )
    buttons = "".join(
        f'<button type="button" class="lang" lang="{escape(code)}" data-lang="{escape(code)}"'
        f' aria-pressed="{str(code == chosen).lower()}">'
        f"{escape(str(doc.get('name', code)))}</button>"
        for code, doc in sorted(catalogues.items())
    )
    return Template(template).substitute(
        lang=escape(chosen),
        page_title=escape(t("page.traveller")),
        screen=escape(screen),
        refresh_s=NOSCRIPT_REFRESH_S,
        state_json=state_json(state),
        title=escape(t(f"screen.{screen}")),
        hint=escape(t(f"screen.{screen}.hint")),
        reasons=_items(reasons),
        reasons_hidden=_hidden(not reasons),
        needs_title=escape(t("needs.title")),
        needs=_items([t(f"need.{n}") for n in needs]),
        needs_hidden=_hidden(not needs),
        person=escape(masked),
        person_hidden=_hidden(not masked),
        choose=escape(t("lang.choose")),
        languages=buttons,
        languages_hidden=_hidden(len(catalogues) < 2),
    )


def traveller_template() -> str:
    return (resources.files("edge.kiosk") / "static" / "traveller.html").read_text("utf-8")
