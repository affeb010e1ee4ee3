"""How the store keeps a passage: its document in a segment, its entry in memory, its
record in the day archive, and the names and times its files go by.

Shared by the running outbox (:mod:`edge.store.outbox`), the opening and repair of
its segments (:mod:`edge.store.segments`) and the read-only view of a store
(:mod:`edge.store.snapshot`).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from sys import intern
from typing import Any

from edge.core.times import parse_iso

STORED = "stored"
SENT = "sent"
STATES = frozenset((STORED, SENT))
INCIDENTS = "incidents.jsonl"


@dataclass(slots=True)
class Entry:
    """What the outbox keeps in memory of a live passage (the message stays on disk)."""

    pid: str
    state: str
    ts: str
    approved: bool
    refs: tuple[str, ...]
    device: str = ""  # the device id the passage was stored under


@dataclass(frozen=True)
class Payload:
    """A live passage ready to publish: its seq, pid and message as stored."""

    seq: int
    pid: str
    data: bytes


def doc_of(text: str, msg: Mapping[str, Any], state: str) -> dict[str, Any]:
    """A passage as its segment keeps it: the text published, its delivery state, and
    what the outbox indexes (so that opening a store parses no message)."""
    credentials = msg.get("credentials")
    refs = [
        str(c["ref"])
        for c in (credentials if isinstance(credentials, list) else [])
        if isinstance(c, dict) and c.get("ref")
    ]
    return {
        "msg": text,
        "state": state,
        "pid": str(msg.get("pid")),
        "ts": str(msg.get("ts")),
        "approved": msg.get("decision") == "approved",
        "refs": refs,
        "device": str(msg.get("device")),
    }


def _entry_of(doc: Mapping[str, Any]) -> Entry:
    """The index entry of a segment's document; KeyError or TypeError if it is not one."""
    # one string for the few states and device ids, not one per passage
    return Entry(
        doc["pid"], intern(doc["state"]), doc["ts"], doc["approved"], tuple(doc["refs"]),
        intern(doc["device"]),
    )  # fmt: skip


class LiveIndex:
    """The live passages in memory: an entry by seq, the seq of each pid, and how many
    passages of each UTC day are waiting (the journal's days)."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.by_pid: dict[str, int] = {}
        self._days: Counter[str] | None = None  # counted when first needed

    def add_all(
        self, docs: Mapping[str, Mapping[str, Any]], texts: Mapping[str, object] | None = None
    ) -> list[str]:
        """Index these passages; the keys of those that are not valid (left out). With
        ``texts``, a segment log's documents, whose message texts are apart. Once the
        days are counted, they are kept up to date here too: a drain loads each segment
        again (only the oldest stay open) and drops one as often, and a recount of every
        waiting passage at each drop would cost a drain of N passages N squared."""
        invalid = []
        entries, by_pid, days = self.entries, self.by_pid, self._days
        for key, doc in docs.items():
            # inline: this runs for every passage waiting when the store opens
            if texts is not None and (
                key not in texts or doc.get("state") not in STATES or not key.isdigit()
            ):
                invalid.append(key)
                continue
            try:
                entry = _entry_of(doc)
            except (KeyError, TypeError):
                invalid.append(key)
                continue
            seq = int(key)
            if days is not None:  # (None while the store opens: nothing to keep)
                old = entries.get(seq)
                if old is None or old.ts != entry.ts:
                    if old is not None:
                        self._forget_day(old)
                    days[day_of_ts(entry.ts)] += 1
            entries[seq] = entry
            by_pid[entry.pid] = seq
        return invalid

    def add(self, seq: int, doc: Mapping[str, Any]) -> None:
        """Index a passage just written (its document made by :func:`doc_of`)."""
        entry = _entry_of(doc)
        old = self.entries.get(seq)
        if old is not None:
            self._forget_day(old)
        self.entries[seq] = entry
        self.by_pid[entry.pid] = seq
        if self._days is not None:
            self._days[day_of_ts(entry.ts)] += 1

    def remove(self, seq: int) -> Entry:
        """Take an acknowledged passage out; its entry."""
        entry = self.entries.pop(seq)
        self.by_pid.pop(entry.pid, None)
        self._forget_day(entry)
        return entry

    def days(self) -> Counter[str]:
        """Live passages per UTC day: counted once when first needed (not while the
        store opens, which must be quick), then kept up to date as passages come and go."""
        if self._days is None:
            self._days = Counter(day_of_ts(e.ts) for e in self.entries.values())
        return self._days

    def _forget_day(self, entry: Entry) -> None:
        if self._days is None:
            return
        day = day_of_ts(entry.ts)
        left = self._days[day] - 1
        if left > 0:
            self._days[day] = left
        else:
            del self._days[day]


# -- times and names --------------------------------------------------------------


def parse_ts(text: str) -> datetime | None:
    try:
        return parse_iso(text, naive="keep")
    except ValueError:
        return None


def aware(ts: datetime | None) -> datetime | None:
    return ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)


def day_of_ts(text: str) -> str:
    """The UTC day of a passage's time (its journal and archive file)."""
    if len(text) == 24 and text[10] == "T" and text[-1] == "Z":
        return text[:10]  # a passage's own form (iso_utc): the UTC day is its first ten
    ts = parse_ts(text)
    return (ts or datetime.now(UTC)).astimezone(UTC).date().isoformat()


def day_from_name(path: Path) -> date | None:
    """The day of a day file (``2026-11-26.jsonl``), or None for another name."""
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


def segment_files(directory: Path) -> dict[int, Path]:
    """The segment logs in ``directory`` by index (``seg-00000042.log`` is 42)."""
    out = {}
    for path in directory.glob("seg-*.log"):
        index = path.name.removeprefix("seg-").removesuffix(".log")
        if index.isdigit():
            out[int(index)] = path
    return out


# -- the archive and the incidents --------------------------------------------------


def archive_records(path: Path) -> list[dict[str, Any]]:
    """The records of a day archive (``{"msg", "acked_at"}``, and ``"rejected"`` with the
    ingest's reason when it refused the passage), skipping a torn last line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("msg"), dict):
            out.append(record)
    return out


def read_archive(path: Path) -> list[dict[str, Any]]:
    """The messages of a day archive, tolerating a torn last line (a power cut mid-append)."""
    return [record["msg"] for record in archive_records(path)]


def archived_seqs(archive_dir: Path, days: Iterable[str] | None = None) -> set[int]:
    """The seqs of every archived passage (acknowledged: never restored, never reused); of
    those days only, if given."""
    seqs: set[int] = set()
    names = ["*"] if days is None else sorted(days)
    for path in (p for name in names for p in archive_dir.glob(f"{name}.jsonl")):
        for msg in read_archive(path):
            seq = msg.get("seq")
            if isinstance(seq, int):
                seqs.add(seq)
    return seqs


def read_incidents(directory: Path) -> list[dict[str, Any]]:
    """The repairs of damaged segments, oldest first (what was restored, what is missing)."""
    try:
        lines = (directory / INCIDENTS).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                out.append(record)
    return out
