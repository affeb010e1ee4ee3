"""Contact tracing over the central store: who passed where, and when.

``checkpoint-edge trace`` prints the passages matching every filter given, in
time order: as a table (for a person at a terminal), CSV (for a spreadsheet)
or JSON lines (for other tools: each line is the passage message itself,
with ``pid``, ``seq``, ``device``, ...). A person is found as a passage's
traveller or as one of a party's occupants (a vehicle, a family); the table
and CSV have a row per person, the vehicle's kind and plate on each.

What a passage holds came from a traveller's code and a device: every format
is made safe by :mod:`edge.textout` (no terminal escapes or bidi marks in the
table, no formula in a CSV cell, JSON escaped so that it reads back the same).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from edge.central.db import Query, open_db
from edge.textout import csv_cell, terminal_json, terminal_text

COLUMNS = (
    "ts",
    "site",
    "device",
    "seq",
    "decision",
    "decided_by",
    "verdict",
    "reasons",
    "vehicle",
    "declaration_id",
    "id_number",
    "name",
    "origin",
    "destination",
    "plate",
)


def flat(msg: dict[str, Any]) -> list[dict[str, str]]:
    """One passage as table rows: one per person (its occupants, or its traveller)."""
    occupants = msg.get("occupants")
    people = (
        [o.get("traveller", {}) for o in occupants if isinstance(o, dict)]
        if isinstance(occupants, list) and occupants
        else [msg.get("traveller", {})]
    )
    found = msg.get("vehicle")
    vehicle: dict[str, Any] = found if isinstance(found, dict) else {}
    rows = []
    for traveller in people:
        cells: dict[str, str] = {}
        for column in COLUMNS:
            value = msg.get(column, traveller.get(column) if isinstance(traveller, dict) else None)
            if column == "vehicle":
                value = vehicle.get("kind")
            elif column == "plate" and vehicle.get("plate"):
                value = vehicle["plate"]
            if isinstance(value, dict):  # a place
                value = "/".join(v for v in (value.get("province"), value.get("district")) if v)
            elif isinstance(value, list):
                value = ",".join(map(str, value))
            cells[column] = "" if value is None else str(value)
        rows.append(cells)
    return rows


def find(url: str, query: Query) -> list[dict[str, Any]]:
    db = open_db(url, readonly=True)
    try:
        return db.find(query)
    finally:
        db.close()


def write(messages: Sequence[dict[str, Any]], fmt: str, out: TextIO = sys.stdout) -> None:
    if fmt == "json":
        for msg in messages:
            out.write(terminal_json(msg) + "\n")
        return
    rows = [row for m in messages for row in flat(m)]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: csv_cell(v) for c, v in r.items()} for r in rows)
        return
    rows = [{c: terminal_text(v) for c, v in r.items()} for r in rows]
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in COLUMNS}
    shown = [c for c in COLUMNS if any(r[c] for r in rows)] or list(COLUMNS[:5])
    out.write("  ".join(c.ljust(widths[c]) for c in shown).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(r[c].ljust(widths[c]) for c in shown).rstrip() + "\n")
    people = f", {len(rows)} people" if len(rows) != len(messages) else ""
    out.write(f"({len(messages)} passage{'s' if len(messages) != 1 else ''}{people})\n")
