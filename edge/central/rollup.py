"""Hourly roll-ups of the passages, kept by the ingest: what the dashboard and the daily
reports count, without reading 30 million passages.

Two tables, one row per hour (UTC, ``YYYY-MM-DDTHH``) and checkpoint (``site``)::

    hourly          passages, approved, denied, vehicles (vehicle passages),
                    occupants (people in them), surge (passages let through in surge mode)
    hourly_reasons  per reason code: how many denied passages gave it

The ingest adds each passage it stores **for the first time** in the same
transaction as the passage itself (a passage sent again changes nothing, here as
in ``passages``), with one upsert per table for the batch, its rows in key order
so that concurrent workers never deadlock on them. Counts only: no personal data
(the purge leaves them alone). A database written before the roll-ups existed is
counted once when an ingest first opens it (:func:`backfill`, under a lock so
that two workers starting together do not both count it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS hourly (
    hour TEXT NOT NULL,
    site TEXT NOT NULL,
    passages INTEGER NOT NULL,
    approved INTEGER NOT NULL,
    denied INTEGER NOT NULL,
    vehicles INTEGER NOT NULL,
    occupants INTEGER NOT NULL,
    surge INTEGER NOT NULL,
    PRIMARY KEY (hour, site)
);
CREATE TABLE IF NOT EXISTS hourly_reasons (
    hour TEXT NOT NULL,
    site TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour, site, reason)
);
CREATE TABLE IF NOT EXISTS rollup_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
COUNTS = ("passages", "approved", "denied", "vehicles", "occupants", "surge")
BACKFILL_CHUNK = 5000
MAX_REASON = 120  # a reason code longer than this is cut (they are short identifiers)


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


def hour_of(ts: str) -> str:
    """The roll-up hour of a passage's time (ISO 8601 UTC: ``2026-12-07T03:15:22.123Z``)."""
    return ts[:13]


@dataclass
class Batch:
    """The counts of some passages, by (hour, site) and by (hour, site, reason)."""

    hours: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    reasons: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, msg: Mapping[str, Any]) -> None:
        key = (hour_of(str(msg["ts"])), str(msg["site"]))
        counts = self.hours.setdefault(key, Counter())
        counts["passages"] += 1
        denied = msg.get("decision") == "denied"
        counts["denied" if denied else "approved"] += 1
        if isinstance(msg.get("vehicle"), Mapping):
            counts["vehicles"] += 1
            occupants = msg.get("occupants")
            counts["occupants"] += len(occupants) if isinstance(occupants, list) else 0
        if msg.get("mode") == "surge":
            counts["surge"] += 1
        if denied:
            reasons = msg.get("reasons")
            for reason in dict.fromkeys(reasons if isinstance(reasons, list) else []):
                self.reasons[(*key, str(reason)[:MAX_REASON])] += 1

    def rows(self) -> list[tuple[Any, ...]]:
        return [(*key, *(c[n] for n in COUNTS)) for key, c in sorted(self.hours.items())]

    def reason_rows(self) -> list[tuple[Any, ...]]:
        return [(*key, n) for key, n in sorted(self.reasons.items())]


def upserts(mark: str) -> tuple[str, str]:
    """The two upsert statements (both SQLite and PostgreSQL speak ON CONFLICT)."""
    marks = ", ".join([mark] * (2 + len(COUNTS)))
    adds = ", ".join(f"{n} = hourly.{n} + excluded.{n}" for n in COUNTS)
    hourly = (
        f"INSERT INTO hourly (hour, site, {', '.join(COUNTS)}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT (hour, site) DO UPDATE SET {adds}"
    )
    reasons = (
        f"INSERT INTO hourly_reasons (hour, site, reason, count) VALUES ({mark}, {mark}, "  # noqa: S608
        f"{mark}, {mark}) ON CONFLICT (hour, site, reason) "
        "DO UPDATE SET count = hourly_reasons.count + excluded.count"
    )
    return hourly, reasons


def add(tx: Cursor, mark: str, messages: Iterable[Mapping[str, Any]]) -> None:
    """Count ``messages`` (passages stored for the first time) into the roll-ups."""
    batch = Batch()
    for msg in messages:
        batch.add(msg)
    hourly, reasons = upserts(mark)
    if batch.hours:
        tx.executemany(hourly, batch.rows())
    if batch.reasons:
        tx.executemany(reasons, batch.reason_rows())


def backfill(tx: Cursor, mark: str) -> int | None:
    """Count every stored passage, once per database (the marker row says it was done);
    how many were counted, or None when it was done before. Call it in a transaction
    that holds the roll-up tables against other writers."""
    done = tx.execute("SELECT value FROM rollup_state WHERE name = 'backfill'").fetchone()
    if done is not None:
        return None
    counted = 0
    last = ""
    while True:
        rows = tx.execute(
            "SELECT pid, ts, site, decision, mode, message FROM passages "  # noqa: S608
            f"WHERE pid > {mark} ORDER BY pid LIMIT {BACKFILL_CHUNK}",
            (last,),
        ).fetchall()
        if not rows:
            break
        add(tx, mark, (_stored(row) for row in rows))
        counted += len(rows)
        last = rows[-1][0]
    tx.execute(
        f"INSERT INTO rollup_state (name, value) VALUES ('backfill', {mark})",  # noqa: S608
        (str(counted),),
    )
    return counted


@dataclass(frozen=True)
class Rows:
    """What the roll-ups hold for some hours: (hour, site, *COUNTS) per hour, and
    (site, reason, count) summed over the hours (a month holds a million reason rows:
    the database sums them)."""

    hours: list[tuple[Any, ...]]
    reasons: list[tuple[Any, ...]]

    def counted(self) -> Iterator[tuple[str, str, Counter[str]]]:
        """(hour, site, its counts by name) of each hourly row."""
        for hour, site, *values in self.hours:
            yield str(hour), str(site), Counter(dict(zip(COUNTS, map(int, values), strict=True)))


def _stored(row: Sequence[Any]) -> dict[str, Any]:
    """A stored passage as Batch counts it: the columns (always there), with what its
    message adds (vehicle, occupants, reasons; a message that no longer parses adds
    nothing). ``row``: pid, ts, site, decision, mode, message."""
    pid, ts, site, decision, mode, text = row
    try:
        msg = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        msg = None
    extra = msg if isinstance(msg, dict) else {}
    return {**extra, "pid": pid, "ts": ts, "site": site, "decision": decision, "mode": mode}


def read(tx: Cursor, mark: str, first: str, end: str, site: str | None) -> Rows:
    where = f"hour >= {mark} AND hour < {mark}" + (f" AND site = {mark}" if site else "")
    params = (first, end, site) if site else (first, end)
    hours = tx.execute(
        f"SELECT hour, site, {', '.join(COUNTS)} FROM hourly WHERE {where}",  # noqa: S608
        params,
    ).fetchall()
    reasons = tx.execute(
        f"SELECT site, reason, sum(count) FROM hourly_reasons WHERE {where} "  # noqa: S608
        "GROUP BY site, reason",
        params,
    ).fetchall()
    return Rows([tuple(r) for r in hours], [tuple(r) for r in reasons])
