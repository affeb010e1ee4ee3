"""``checkpoint-edge outbox``: what a kiosk holds, read while its daemon runs.

``status`` prints the outbox depth (passages the ingest has not acknowledged),
how many the broker has accepted, the oldest, the last sequence number and
the last acknowledgement; ``export`` writes every passage the kiosk still
holds (archive and outbox) as JSON lines or CSV, for an audit, made safe by
:mod:`edge.textout` like ``trace``'s (no formula in a cell, no terminal escape).
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from edge.central.trace import COLUMNS, flat
from edge.core.times import parse_iso
from edge.store.journal import ranges
from edge.store.records import SENT
from edge.store.snapshot import StoreSnapshot, snapshot
from edge.textout import csv_cell, terminal_json

ACKNOWLEDGED = "acknowledged"
REJECTED = "rejected"  # refused by the ingest: archived, never sent again


def status(directory: Path, out: TextIO = sys.stdout, as_json: bool = False) -> dict[str, Any]:
    snap = snapshot(directory)
    states = [doc.get("state") for doc in snap.live.values()]
    oldest = min((str(doc["msg"].get("ts")) for doc in snap.live.values()), default=None)
    report: dict[str, Any] = {
        "store": str(directory),
        "depth": len(snap.live),
        "stored": sum(1 for s in states if s != SENT),
        "sent": sum(1 for s in states if s == SENT),
        "oldest_unacknowledged": oldest,
        "oldest_age_s": _age(oldest),
        "last_seq": snap.last_seq,
        "last_ack": snap.last_ack,
        "archived": len(snap.archived),
        "rejected": len(snap.rejected),
        "archive_days": len(snap.archive_days),
        # damaged files moved aside at a start (each also raised a store_corrupt alert)
        "quarantined": sorted(
            str(p.relative_to(directory)) for p in directory.glob("**/quarantine/*")
        ),
        # damaged segments found now, before the daemon repairs them: what the journal
        # holds of them is counted above; "missing" is in nothing (by seq)
        "damaged": list(snap.damaged),
        "missing": list(snap.missing),
        # the daemon's repairs: what it restored from the journal, what was missing
        "incidents": [i["text"] for i in snap.incidents],
    }
    if as_json:
        out.write(json.dumps(report) + "\n")
        return report
    out.write(f"store        {directory}\n")
    out.write(
        f"outbox       {report['depth']} awaiting the ingest "
        f"({report['stored']} not yet accepted by the broker, {report['sent']} accepted)\n"
    )
    age = report["oldest_age_s"]
    when = f"{oldest} ({_duration(age)} ago)" if oldest and age is not None else "-"
    out.write(f"oldest       {when}\n")
    out.write(f"last seq     {snap.last_seq}\n")
    out.write(f"last ack     {snap.last_ack or 'never'}\n")
    out.write(f"archive      {len(snap.archived)} passages over {len(snap.archive_days)} day(s)\n")
    if snap.rejected:
        out.write(
            f"rejected     {len(snap.rejected)} of them refused by the ingest (state rejected)\n"
        )
    if report["quarantined"]:
        out.write(
            f"quarantine   {len(report['quarantined'])} damaged file(s) moved aside, "
            f"({', '.join(report['quarantined'])})\n"
        )
    if snap.damaged:
        out.write(
            f"damaged      {', '.join(snap.damaged)} (repaired from the journal at the next "
            "start)\n"
        )
    if snap.missing:
        out.write(f"missing      seq {ranges(snap.missing)} (in no segment, journal or archive)\n")
    for text in report["incidents"]:
        out.write(f"repaired     {text}\n")
    return report


def export(
    directory: Path,
    fmt: str,
    since: date | None = None,
    until: date | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Write the kiosk's passages, oldest first; how many."""
    rows = list(_passages(snapshot(directory), since, until))
    if fmt == "jsonl":
        for state, msg in rows:
            out.write(terminal_json({**msg, "state": state}) + "\n")
    else:
        writer = csv.DictWriter(out, fieldnames=["state", "pid", *COLUMNS])
        writer.writeheader()
        for state, msg in rows:
            for person in flat(msg):  # a row per person: a vehicle's occupants each
                row = {"state": state, "pid": msg.get("pid", ""), **person}
                writer.writerow({column: csv_cell(value) for column, value in row.items()})
    return len(rows)


def _passages(
    snap: StoreSnapshot, since: date | None, until: date | None
) -> list[tuple[str, dict[str, Any]]]:
    everything = [
        (REJECTED if str(m.get("pid")) in snap.rejected else ACKNOWLEDGED, m) for m in snap.archived
    ]
    everything += [(str(doc.get("state")), doc["msg"]) for doc in snap.live.values()]
    kept = []
    for state, msg in everything:
        day = str(msg.get("ts", ""))[:10]
        if since is not None and day < since.isoformat():
            continue
        if until is not None and day > until.isoformat():
            continue
        kept.append((state, msg))
    return sorted(kept, key=lambda sm: (str(sm[1].get("device")), int(sm[1].get("seq", 0))))


def _age(ts: str | None) -> float | None:
    if ts is None:
        return None
    try:
        then = parse_iso(ts, naive="keep")
    except ValueError:
        return None
    return (datetime.now(UTC) - then).total_seconds()


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    days, h = divmod(hours, 24)
    return f"{days}d {h}h" if days else f"{h}h {m}m" if h else f"{m}m {s}s"
