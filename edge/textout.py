"""Text from outside, made safe to print: to a spreadsheet, a terminal, a JSON reader.

A traveller's code (signed or not) and a device's message can carry anything:
terminal escape sequences, invisible direction marks, a spreadsheet formula.
The kiosk cleans what it reads from unsigned codes (:mod:`edge.scan.text`), but
the operator's tools (``trace``, ``outbox export``, ``fleet``) print what other
machines sent them, so they guard their own output:

* :func:`terminal_text` shows every character that could act on a terminal as
  a visible escape: C0 and C1 controls and DEL (``\\x1b``, ``\\x9b``), format
  characters (bidi overrides and isolates ``\\u202e``, zero-width marks, BOM),
  line and paragraph separators (``\\u2028``) and lone surrogates (``\\ud800``,
  which could not even be encoded). A backslash is doubled, so ``\\x1b`` typed
  by someone is told apart from an escape made here. Nothing it returns can
  move the cursor, recolour, clear or reorder the screen.
* :func:`csv_cell` is :func:`terminal_text` plus the OWASP rule against formula
  injection: a cell whose first non-blank character is ``= + - @`` or one of
  their fullwidth or small forms gets a leading apostrophe, which spreadsheets
  show as text (a tab, CR or LF, OWASP's other triggers, is already an escape
  here and so starts nothing). Strings are never sniffed for numbers: in these
  columns (ids, plates, names, places) a leading ``-`` is text, and ``-1+1``
  is a formula. Only an actual ``int`` or ``float`` is written as it is.
* :func:`terminal_json` is ``json.dumps(ensure_ascii=False)`` (readable
  Vietnamese) with the same characters as ``\\uXXXX`` escapes: still valid JSON
  that reads back to exactly the same values, and safe on a terminal.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from typing import Any

# controls, format marks (bidi, zero-width, BOM, tags), surrogates, line/paragraph separators
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# what makes a spreadsheet read a cell as a formula (OWASP), with the fullwidth
# (U+FF0B...) and small (U+FE62...) forms some spreadsheets fold to them
FORMULA_START = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63\ufe6b")


def unsafe(ch: str) -> bool:
    """Whether one character could act on a terminal (or hide, or reorder text)."""
    return unicodedata.category(ch) in _UNSAFE


def _visible(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if not unsafe(ch):
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def terminal_text(value: object) -> str:
    """``value`` as text for a terminal: every unsafe character a visible escape."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and "\\" not in text:  # the usual case, quickly
        return text
    return "".join(map(_visible, text))


def csv_cell(value: object) -> str:
    """``value`` as a CSV cell no spreadsheet runs as a formula (and safe on a terminal)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # a number is data: -5 stays a number
    text = terminal_text(value)
    if text.lstrip()[:1] in FORMULA_START:
        return "'" + text
    return text


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code > 0xFFFF:  # JSON escapes beyond the BMP as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def terminal_json(obj: Any, indent: int | None = None) -> str:
    """``obj`` as JSON, non-ASCII text kept readable, unsafe characters escaped.

    ``json.dumps`` escapes C0 controls itself but, with ``ensure_ascii=False``,
    passes DEL, C1 controls, bidi marks, U+2028 and lone surrogates through raw;
    here they become ``\\uXXXX``. Outside strings JSON has only ASCII (and the
    newlines of ``indent``), so every such character is inside a string.
    """
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    return _escape(text, _json_escape, keep="\n")


def _escape(text: str, escape: Callable[[str], str], keep: str = "") -> str:
    if text.isprintable():
        return text
    return "".join(escape(ch) if ch not in keep and unsafe(ch) else ch for ch in text)
