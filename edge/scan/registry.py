"""The one table of credential formats, and what the rest of the kiosk asks of it.

Order is the order of detection; the shapes never overlap (a property test
holds every format's samples to exactly one format), so it only matters for
speed: the commonest first. A new format is one module with a ``FORMAT``
(:class:`~edge.scan.format.Format`), one line here, its tests and its catalogue
keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.scan import dcc, declaration, greenlane, idcard, personal_qr
from edge.scan.format import Format
from edge.scan.reasons import UNRECOGNISED

FORMATS: tuple[Format[Any], ...] = (
    declaration.FORMAT,
    dcc.FORMAT,
    idcard.FORMAT,
    personal_qr.FORMAT,
    greenlane.FORMAT,
)

BY_KIND: Mapping[str, Format[Any]] = {f.kind: f for f in FORMATS}
KINDS: tuple[str, ...] = (*BY_KIND, UNRECOGNISED)
# Formats that may approve a passage (what [policy] accept may name).
AUTHORISING: tuple[str, ...] = tuple(f.kind for f in FORMATS if f.authorises)
# Formats with something to confirm online (what [lookup] kinds may name).
LOOKED_UP: tuple[str, ...] = tuple(f.kind for f in FORMATS if f.looked_up)
# Every traveller field some format fills (what [passage] fields may name).
TRAVELLER_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(x for f in FORMATS for x in f.fields))


def detect(text: str) -> Format[Any] | None:
    """The format whose shape ``text`` has, or None (unrecognised)."""
    return next((f for f in FORMATS if f.detect(text)), None)


def get(kind: str) -> Format[Any] | None:
    return BY_KIND.get(kind)
