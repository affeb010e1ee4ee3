"""Text read from an unsigned code, made safe to keep and to show.

A printed ID card or a screenshot of a personal QR can carry anything its
maker typed: a NUL (which PostgreSQL text refuses), terminal escape sequences,
line breaks, invisible direction marks. :func:`clean_text` keeps what a person
reads and nothing else, so no passage, log, screen or spreadsheet downstream
ever receives control characters from a traveller's code.
"""

from __future__ import annotations

import unicodedata

# Unicode categories never shown as text: controls, format marks (bidi overrides,
# zero-width), surrogates, private use, unassigned.
_DROP = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def clean_text(text: str) -> str:
    """NFC; every control or format character a space; runs of spaces one; trimmed."""
    normal = unicodedata.normalize("NFC", text)
    kept = "".join(" " if unicodedata.category(ch) in _DROP else ch for ch in normal)
    return " ".join(kept.split())
