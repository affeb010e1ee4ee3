"""Reading a store from another process (``checkpoint-edge outbox``), without taking it
from the daemon that owns it.

A segment log is only appended to or replaced whole, so what is read is complete but
for a last record being written (left out); a segment removed meanwhile
(acknowledged) is read from the archive. A damaged segment is read as the daemon
will repair it at its next start (:mod:`edge.store.segments`), and so is the
journal's tail (passages whose segment records a power cut took), changing nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.store import journal, seglog
from edge.store.records import STORED, archive_records, read_incidents, segment_files


@dataclass(frozen=True)
class StoreSnapshot:
    """What a store holds, read without taking it from the daemon that owns it."""

    live: dict[int, dict[str, Any]]  # seq -> {"msg", "state"}
    archived: list[dict[str, Any]]  # messages, one per pid, oldest day first
    rejected: dict[str, str]  # pid -> reason, of archived passages the ingest refused
    last_seq: int
    last_ack: str | None
    archive_days: list[str]
    # damaged segments found now (the daemon repairs them at its next start): what of
    # them the journal holds is counted in ``live``; ``missing`` is in nothing
    damaged: tuple[str, ...] = ()
    missing: tuple[int, ...] = ()
    incidents: tuple[dict[str, Any], ...] = ()  # repairs the daemon made (incidents.jsonl)


def snapshot(directory: Path) -> StoreSnapshot:
    """Read a store's files as they are now."""
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    live: dict[int, dict[str, Any]] = {}
    damaged: dict[str, tuple[int, set[int]]] = {}  # file -> (segment, seqs it still holds)
    for index, seg in sorted(segment_files(directory / "outbox").items()):
        try:
            replayed = seglog.load(seg)
        except OSError:
            continue
        docs = replayed.docs() if replayed is not None else {}
        _add_live(live, docs)
        if replayed is not None and replayed.damaged:
            damaged[seg.name] = (index, {int(k) for k in docs if k.isdigit()})
    days = sorted((directory / "archive").glob("*.jsonl"))
    archived: dict[str, dict[str, Any]] = {}
    rejected: dict[str, str] = {}
    for day in days:
        for record in archive_records(day):
            pid = str(record["msg"].get("pid"))
            archived.setdefault(pid, record["msg"])  # a crash may have written it twice
            if isinstance(record.get("rejected"), str):
                rejected[pid] = record["rejected"]
    tail = journal.tail(directory / "journal")
    pids = set(archived)
    for seq, text in tail.pending().items():  # what the daemon puts back at its next start
        msg = _message_of({"msg": text})
        if seq not in live and msg is not None and str(msg.get("pid")) not in pids:
            live[seq] = {"msg": msg, "state": STORED}
    last_seq = max([int(meta.get("last_seq", 0) or 0), tail.highest, *live])
    missing: list[int] = []
    if damaged:  # what the daemon will do at its next start, read-only
        texts = journal.read(directory / "journal")
        numbered = {m.get("seq") for m in archived.values()}
        archived_seqs = {s for s in numbered if isinstance(s, int)}
        last_seq = max([last_seq, *texts, *archived_seqs])
        size = int(meta.get("segment_size", 100) or 100)
        for name, (index, kept) in damaged.items():
            first = index * size + 1
            candidates = range(first, min(first + size - 1, last_seq) + 1)
            report, restore = journal.recover(name, candidates, kept, texts, archived_seqs)
            for seq, text in restore.items():
                live[seq] = {"msg": json.loads(text), "state": STORED}
            missing += report.missing
    return StoreSnapshot(
        live=dict(sorted(live.items())),
        archived=list(archived.values()),
        rejected=rejected,
        last_seq=last_seq,
        last_ack=meta.get("last_ack"),
        archive_days=[d.stem for d in days],
        damaged=tuple(sorted(damaged)),
        missing=tuple(sorted(missing)),
        incidents=tuple(read_incidents(directory)),
    )


def _add_live(live: dict[int, dict[str, Any]], docs: Mapping[str, Any]) -> None:
    for key, doc in docs.items():
        msg = _message_of(doc) if key.isdigit() and isinstance(doc, dict) else None
        if msg is not None:
            live[int(key)] = {"msg": msg, "state": doc.get("state")}


def _message_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """A stored passage's message, parsed from its text (None if unreadable)."""
    try:
        msg = json.loads(doc["msg"])
    except (KeyError, TypeError, ValueError):
        return None
    return msg if isinstance(msg, dict) else None
