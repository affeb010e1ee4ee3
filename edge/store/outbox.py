"""The passage outbox: every passage until the central ingest has it, then the archive.

On disk, under ``[store] dir``::

    meta.json                    last_seq (the floor for numbering), last_ack, last_known
    outbox/seg-00000042.log      TinyDB (:mod:`.seglog`): seq 4201..4300 not yet acknowledged
    journal/2026-11-26.jsonl     the second record of those passages (:mod:`.journal`)
    archive/2026-11-26.jsonl     acknowledged passages of that day (by passage time)
    incidents.jsonl              damaged segments repaired: seqs restored, seqs missing
    [outbox/]quarantine/         damaged files, moved aside with a timestamp

A passage's message is kept as the exact JSON text that is published (a
string in its TinyDB document): a resend is byte for byte the first send,
and a drain neither re-encodes it nor parses it to publish or archive it.

The live outbox is segmented (``segment_size`` passages at most); a segment
is an append-only log: a new passage appends its own bytes, and a segment is
rewritten whole only when it is done or its log has outgrown what it holds.
Each passage is first written to the journal, then to its segment, both
synced before :meth:`Outbox.append` returns: a damaged segment is repaired
from the journal at the next start, and a seq found in neither (nor in the
archive) is reported by number. Acknowledged passages leave their segment for
the day archive; an emptied segment is deleted. Day archives older than
``retention_days`` are deleted: personal data does not outlive them; but only
on a clock consistent with ``last_known``, the newest passage time the store has
seen (:mod:`edge.store.retention`). Every file is written through :mod:`edge.store.storage`.

``seq`` is monotonic per device and never repeats: the next one is 1 + the
highest of ``meta.last_seq`` and every seq still in a segment; ``meta`` is
brought up to date before a segment is deleted.

:class:`Outbox` is not thread-safe: one thread owns it (:class:`StoreThread`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import logging
import os
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from sys import intern
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from edge.core.model import Passage, PassageDraft, iso_utc
from edge.errors import StoreCorrupt, StoreError
from edge.store import journal, seglog, storage
from edge.store.retention import Purge, clock_problem
from edge.store.seglog import TABLE, Replayed, SegmentLog

log = logging.getLogger(__name__)

STORED = "stored"
SENT = "sent"
META_EVERY = timedelta(seconds=5)
INCIDENTS = "incidents.jsonl"
# Segments kept open (in memory, about 150 KB each): the oldest, which a drain
# reads first and acknowledges some 1,000-2,000 passages later (the ingest's
# batches, paho's window): with 8 the acknowledgements reloaded them from disk.
OPEN_SEGMENTS = 24
_STATES = frozenset((STORED, SENT))


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


@dataclass(frozen=True)
class OutboxStatus:
    depth: int  # passages not yet acknowledged
    stored: int  # ... of which never accepted by the broker
    sent: int  # ... of which accepted by the broker (PUBACK), awaiting the ingest
    oldest: str | None  # time of the oldest unacknowledged passage
    last_seq: int
    last_ack: str | None
    archive_days: int
    alerts: tuple[str, ...] = ()


@dataclass
class _Meta:
    last_seq: int = 0
    last_ack: str | None = None
    last_known: datetime | None = None  # the latest time known to be right (edge.store.retention)


def _check_meta(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("last_seq", 0), int):
        raise TypeError("meta.json is not {last_seq: int, ...}")


def _check_segment(data: Any, parsed: dict[int, dict[str, Any]] | None = None) -> None:
    """Raise unless ``data`` is a well-formed segment. With ``parsed``, every message is
    parsed too (start-up: the index needs them) and left there by seq; without, only
    the shape is checked (reopening a segment this process already checked)."""
    if not isinstance(data, dict) or not isinstance(data.get(TABLE, {}), dict):
        raise TypeError("not a TinyDB segment")
    if parsed is not None:
        parsed.clear()  # a damaged file's partial results must not outlive it
    for key, doc in data.get(TABLE, {}).items():
        if not key.isdigit() or not isinstance(doc, dict):
            raise ValueError(f"malformed passage {key!r}")
        if doc.get("state") not in (STORED, SENT):
            raise ValueError(f"passage {key} has no valid state")
        if parsed is None:
            if not isinstance(doc.get("msg"), str | dict):
                raise ValueError(f"passage {key} has no message")
            continue
        msg = message_of(doc)
        if msg is None:
            raise ValueError(f"passage {key} has no readable message")
        parsed[int(key)] = msg


def message_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """A stored passage's message as an object (None if unreadable). It is stored as
    its JSON text; stores written before that hold the object itself."""
    msg = doc.get("msg")
    if isinstance(msg, str):
        try:
            msg = json.loads(msg)
        except ValueError:
            return None
    return msg if isinstance(msg, dict) else None


def _payload_of(doc: Mapping[str, Any]) -> str:
    msg = doc["msg"]
    return msg if isinstance(msg, str) else json.dumps(msg, separators=(",", ":"))


def _doc_of(text: str, msg: Mapping[str, Any], state: str) -> dict[str, Any]:
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


def _entry_of(doc: Mapping[str, Any]) -> Entry | None:
    """The index entry of a stored passage (from its fields, else from its message)."""
    try:
        return Entry(
            doc["pid"], doc["state"], doc["ts"], doc["approved"], tuple(doc["refs"]),
            doc["device"],
        )  # fmt: skip
    except (KeyError, TypeError):
        msg = message_of(doc)
        if msg is None:
            return None
        fields = _doc_of("", msg, doc["state"])
        return Entry(
            fields["pid"], doc["state"], fields["ts"], fields["approved"], tuple(fields["refs"]),
            fields["device"],
        )  # fmt: skip


def _valid_doc(key: str, fields: Any, texts: Mapping[str, object]) -> bool:
    """A segment log's document is usable: its key, its state, a message."""
    return (
        key.isdigit()
        and isinstance(fields, dict)
        and fields.get("state") in (STORED, SENT)
        and (key in texts or isinstance(fields.get("msg"), dict))
    )


@dataclass
class _Damage:
    """A damaged segment file: its name, what was done, the passages it still held."""

    file: str
    how: str
    docs: dict[str, dict[str, Any]]


def _segment_files(directory: Path, suffix: str) -> dict[int, Path]:
    out = {}
    for path in directory.glob(f"seg-*{suffix}"):
        index = path.name.removeprefix("seg-").removesuffix(suffix)
        if index.isdigit():
            out[int(index)] = path
    return out


def _remove_json(path: Path) -> None:
    """A JSON-layout segment, once its log is written."""
    for p in (path, storage.prev_of(path)):
        p.unlink(missing_ok=True)
    storage.fsync_dir(path.parent)


@dataclass
class _Segments:
    """Open segment databases, least recently used closed first."""

    limit: int
    open: OrderedDict[int, TinyDB] = field(default_factory=OrderedDict)

    def close_all(self) -> None:
        for db in self.open.values():
            db.close()
        self.open.clear()


class Outbox:
    """The live, segmented outbox and the day archive of one device."""

    def __init__(
        self,
        directory: Path,
        device: str,
        site: str,
        fields: tuple[str, ...] = (),
        *,
        segment_size: int = 100,
        retention_days: int = 30,
    ) -> None:
        self.directory = directory
        self.device = device
        self.site = site
        self.fields = fields
        self.segment_size = segment_size
        self.retention_days = retention_days
        self.segment_dir = directory / "outbox"
        self.archive_dir = directory / "archive"
        self.meta_path = directory / "meta.json"
        for d in (directory, self.segment_dir, self.archive_dir):
            storage.ensure_dir(d)
        self._lock_file = _lock(directory)
        self.alerts: list[str] = []
        self._index: dict[int, Entry] = {}
        self._by_pid: dict[str, int] = {}
        # live passages per UTC day (the journal's days), counted when first needed
        self._days: Counter[str] | None = None
        self._segments = _Segments(limit=OPEN_SEGMENTS)
        self.journal_dir = directory / "journal"
        self._journal = journal.Journal(self.journal_dir)
        self._floor = 0  # the highest seq a damaged segment's repair found numbered
        self._meta = self._load_meta()
        self._meta_written = datetime.min.replace(tzinfo=UTC)
        gc.disable()  # opening makes an object per passage waiting, and no cycle
        try:
            self._load_segments()
        finally:
            gc.enable()
        self._migrate_single_file()
        floor = max(self._meta.last_seq, self._floor)
        if not floor and self.alerts:
            floor = self._archived_max_seq()  # meta was lost: the archive still knows
        self._last_seq = max([floor, *self._index])
        self._last_known = self._known_time()
        foreign = sorted({e.device for e in self._index.values() if e.device != device})
        if foreign:
            # the device id changed with passages waiting: the ingest would refuse them
            # (a device speaks only for itself), so they are kept, not sent
            count = sum(1 for e in self._index.values() if e.device != device)
            self.alerts.append(
                f"store_foreign: {count} passage(s) stored as {', '.join(foreign)} cannot be "
                f"delivered as {device}; kept (checkpoint-edge outbox export)"
            )

    # -- loading ---------------------------------------------------------

    def _load_meta(self) -> _Meta:
        loaded = self._read(self.meta_path, _check_meta)
        if loaded is None or loaded.data is None:
            return _Meta()
        data = loaded.data
        return _Meta(
            int(data.get("last_seq", 0)),
            data.get("last_ack"),
            _aware(_parse_ts(str(data["last_known"]))) if data.get("last_known") else None,
        )

    def _known_time(self) -> datetime | None:
        """The last known time at start-up: meta's, unless the newest live passage is later
        (meta.json is not rewritten for each passage); a store without one (an older
        version) falls back on its newest passage: live, or the newest archive day."""
        newest = _ts_of(self._index[max(self._index)]) if self._index else None
        if self._meta.last_known is not None:
            return max(t for t in (self._meta.last_known, newest) if t)
        known = [t for t in map(_ts_of, self._index.values()) if t]
        days = [d for d in map(_day_from_name, self.archive_dir.glob("*.jsonl")) if d]
        if days:
            known.append(datetime.combine(max(days), datetime.min.time(), UTC))
        return max(known, default=None)

    @property
    def last_known(self) -> datetime | None:
        """The time of the latest passage written, or of the latest purge on a consistent
        clock (UTC); None for an empty store. The latest, not the greatest: once a jumped
        clock is put right, the next passage brings it back."""
        return self._last_known

    def _read(self, path: Path, check: Any) -> storage.Loaded | None:
        try:
            loaded = storage.read_json(path, check)
        except OSError as exc:
            raise StoreCorrupt(f"cannot read {path}: {exc.strerror or exc}") from exc
        if loaded is not None and loaded.recovered:
            self.alerts.append(f"store_corrupt: {path.name} recovered from its last good copy")
        if loaded is not None and loaded.lost:
            self.alerts.append(f"store_corrupt: {path.name} damaged, no good copy; moved aside")
        return loaded

    def _load_segments(self) -> None:
        """Read every segment; convert those of the JSON layout; repair the damaged ones
        from the journal (:meth:`_recover`). Only the index stays in memory, and the
        oldest segments (a drain reads them first)."""
        for leftover in self.segment_dir.glob("seg-*.tmp"):
            leftover.unlink()  # a compaction cut short: the log it was to replace is whole
        logs = _segment_files(self.segment_dir, ".log")
        olds = _segment_files(self.segment_dir, ".json")
        damaged: dict[int, _Damage] = {}
        converted: dict[int, dict[str, dict[str, Any]]] = {}
        for index in sorted(logs.keys() | olds.keys()):
            if index in logs:
                if index in olds:  # a conversion cut short after its log was complete
                    _remove_json(olds[index])
                replayed = self._load_log(index, logs[index], damaged)
                if replayed is not None:
                    self._keep_open(index, replayed)
                continue
            docs = self._load_json(index, olds[index], damaged)
            if docs is not None:
                converted[index] = docs
                self._remember_all(docs)
        if converted:
            self._convert(converted, damaged)
            for index, path in olds.items():
                if index in converted:
                    _remove_json(path)
        if damaged:
            self._recover(damaged)

    def _load_log(self, index: int, path: Path, damaged: dict[int, _Damage]) -> Replayed | None:
        try:
            replayed = seglog.load(path)
        except OSError as exc:
            raise StoreCorrupt(f"cannot read {path}: {exc.strerror or exc}") from exc
        if replayed is None:
            return None
        invalid = self._remember_all(replayed.fields, replayed.texts)
        for key in invalid:
            replayed.fields.pop(key)
            replayed.texts.pop(key, None)
        if replayed.damaged or invalid:
            kept = replayed.docs()
            storage.quarantine(path, f"{replayed.bad + len(invalid)} damaged record(s)")
            damaged[index] = _Damage(path.name, "damaged, moved aside", kept)
            return replayed
        if replayed.torn:  # an append cut short by a power cut: never acknowledged
            storage.truncate(path, replayed.end)
        return replayed

    def _load_json(
        self, index: int, path: Path, damaged: dict[int, _Damage]
    ) -> dict[str, dict[str, Any]] | None:
        """A segment of the JSON layout (before segment logs), with its index fields."""
        parsed: dict[int, dict[str, Any]] = {}
        try:
            loaded = storage.read_json(path, lambda data: _check_segment(data, parsed))
        except OSError as exc:
            raise StoreCorrupt(f"cannot read {path}: {exc.strerror or exc}") from exc
        if loaded is None:
            return None
        docs = {}
        for key, doc in (loaded.data or {}).get(TABLE, {}).items():
            docs[key] = _doc_of(_payload_of(doc), parsed[int(key)], doc["state"])
        if loaded.recovered or loaded.lost:
            how = (
                "recovered from its last good copy"
                if loaded.recovered
                else "damaged, no good copy; moved aside"
            )
            damaged[index] = _Damage(path.name, how, docs)
        return docs

    def _convert(
        self, converted: dict[int, dict[str, dict[str, Any]]], damaged: dict[int, _Damage]
    ) -> None:
        """Write passages of an older layout as segment logs, each in the journal first."""
        by_day: dict[str, list[bytes]] = {}
        for docs in converted.values():
            for key, doc in docs.items():
                line = journal.line_of(int(key), doc["msg"])
                by_day.setdefault(_day_of_ts(doc["ts"]), []).append(line)
        for day, lines in sorted(by_day.items()):
            self._journal.append_lines(day, lines)
        for index, docs in converted.items():
            if index not in damaged:  # a damaged one is written once repaired
                seglog.write_compacted(self._segment_path(index), docs)
        count = sum(len(d) for d in converted.values())
        log.info("store: %d passage(s) converted into %d segment log(s)", count, len(converted))

    def _recover(self, damaged: dict[int, _Damage]) -> None:
        """Damaged segments: what their files still hold, plus what the journal holds of
        theirs that the archive does not (acknowledged); every seq in none of them is
        reported by number. The repaired segment is written whole."""
        texts = journal.read(self.journal_dir)
        archived = self._archived_seqs()
        known = max([self._meta.last_seq, *self._index, *texts, *archived])
        self._floor = max(self._floor, known)
        for index, damage in sorted(damaged.items()):
            first = index * self.segment_size + 1
            candidates = range(first, min(first + self.segment_size - 1, known) + 1)
            kept = {int(k) for k in damage.docs}
            report, restore = journal.recover(damage.file, candidates, kept, texts, archived)
            docs = dict(damage.docs)
            for seq, text in restore.items():
                msg = json.loads(text)
                docs[str(seq)] = _doc_of(text, msg, STORED)
            self._remember_all({k: d for k, d in docs.items() if int(k) in restore})
            if docs or index == self._segment_of(known + 1):
                seglog.write_compacted(self._segment_path(index), docs)
            else:
                self._segment_path(index).unlink(missing_ok=True)
            alert = report.describe(damage.how)
            self.alerts.append(f"store_corrupt: {alert}")
            self._write_incident(report, alert)
        self._days = None  # counted afresh when next needed

    def _write_incident(self, report: journal.Recovery, text: str) -> None:
        """Kept in ``incidents.jsonl`` for ``checkpoint-edge outbox status``."""
        record = {
            "at": iso_utc(datetime.now(UTC)),
            "file": report.file,
            "restored": list(report.restored),
            "missing": list(report.missing),
            "text": text,
        }
        storage.append_lines(self.directory / INCIDENTS, [json.dumps(record)])

    def _archived_seqs(self) -> set[int]:
        seqs: set[int] = set()
        for path in self.archive_dir.glob("*.jsonl"):
            for msg in _read_archive(path):
                seq = msg.get("seq")
                if isinstance(seq, int):
                    seqs.add(seq)
        return seqs

    def _remember_all(
        self, docs: Mapping[str, Mapping[str, Any]], texts: Mapping[str, object] | None = None
    ) -> list[str]:
        """Index these passages; the keys of those that are not valid (left out). With
        ``texts``, a segment log's documents, whose message texts are apart."""
        invalid = []
        index, by_pid = self._index, self._by_pid
        for key, doc in docs.items():
            # inline: this runs for every passage waiting when the store opens
            suspect = texts is not None and (
                key not in texts or doc.get("state") not in _STATES or not key.isdigit()
            )
            if suspect and not _valid_doc(key, doc, texts or {}):  # a message object is valid
                invalid.append(key)
                continue
            try:
                pid = doc["pid"]
                # one string for the few states and device ids, not one per passage
                entry = Entry(
                    pid, intern(doc["state"]), doc["ts"], doc["approved"], tuple(doc["refs"]),
                    intern(doc["device"]),
                )  # fmt: skip
            except (KeyError, TypeError):
                if not self._remember(int(key), doc):  # a passage stored before index fields
                    invalid.append(key)
                continue
            index[int(key)] = entry
            by_pid[pid] = int(key)
        return invalid

    def _remember(self, seq: int, doc: Mapping[str, Any]) -> bool:
        entry = _entry_of(doc)
        if entry is None:
            return False
        old = self._index.get(seq)
        if old is not None:
            self._forget_day(old)
        self._index[seq] = entry
        self._by_pid[entry.pid] = seq
        if self._days is not None:
            self._days[_day_of_ts(entry.ts)] += 1
        return True

    def _live_days(self) -> Counter[str]:
        """Live passages per UTC day: counted once (not when the store opens, which
        must be quick), then kept up to date as passages come and go."""
        if self._days is None:
            self._days = Counter(_day_of_ts(e.ts) for e in self._index.values())
        return self._days

    def _forget_day(self, entry: Entry) -> None:
        if self._days is None:
            return
        day = _day_of_ts(entry.ts)
        left = self._days[day] - 1
        if left > 0:
            self._days[day] = left
        else:
            del self._days[day]

    def _keep_open(self, index: int, replayed: Replayed) -> None:
        seg = self._segments
        if len(seg.open) < seg.limit and index not in seg.open:
            # the oldest segments stay open: a drain reads them first
            path = self._segment_path(index)
            seg.open[index] = TinyDB(path, storage=SegmentLog, replayed=replayed)

    def _migrate_single_file(self) -> None:
        """Passages of the first store layout (one ``outbox.json``) move into segments."""
        old = self.directory / "outbox.json"
        parsed: dict[int, dict[str, Any]] = {}
        check = lambda data: _check_segment(data, parsed)  # noqa: E731
        loaded = self._read(old, check) if old.exists() else None
        if loaded is None or loaded.data is None:
            return
        converted: dict[int, dict[str, dict[str, Any]]] = {}
        for key, doc in loaded.data.get(TABLE, {}).items():
            if int(key) not in self._index:
                stored = _doc_of(_payload_of(doc), parsed[int(key)], doc["state"])
                converted.setdefault(self._segment_of(int(key)), {})[key] = stored
        for index, docs in converted.items():
            db = self._segments.open.pop(index, None)
            if db is not None:
                db.close()
            found = seglog.load(self._segment_path(index))
            converted[index] = {**(found.docs() if found else {}), **docs}
        self._convert(converted, {})
        for docs in converted.values():
            self._remember_all(docs)
        os.replace(old, old.with_name("outbox.json.migrated"))
        storage.fsync_dir(self.directory)
        log.info("store: moved %d passage(s) from outbox.json into segments", len(converted))

    def _archived_max_seq(self) -> int:
        best = 0
        for path in self.archive_dir.glob("*.jsonl"):
            for msg in _read_archive(path):
                best = max(best, int(msg.get("seq", 0)))
        return best

    # -- segments --------------------------------------------------------

    def _segment_of(self, seq: int) -> int:
        return (seq - 1) // self.segment_size

    def _segment_path(self, index: int) -> Path:
        return self.segment_dir / f"seg-{index:08d}.log"

    def _db(self, index: int) -> TinyDB:
        seg = self._segments
        db = seg.open.get(index)
        if db is not None:
            seg.open.move_to_end(index)
            return db
        path = self._segment_path(index)
        damaged: dict[int, _Damage] = {}
        replayed = self._load_log(index, path, damaged)
        if damaged:  # damaged since the store was opened: repaired the same way
            self._recover(damaged)
            replayed = self._load_log(index, path, {})
        db = TinyDB(path, storage=SegmentLog, replayed=replayed)
        seg.open[index] = db
        if len(seg.open) > seg.limit:
            _, oldest = seg.open.popitem(last=False)
            oldest.close()
        return db

    # -- the operations --------------------------------------------------

    def append(self, draft: PassageDraft) -> Passage:
        """Number the passage and write it durably (journal, then segment); return it."""
        seq = self._last_seq + 1
        passage = Passage(
            pid=str(uuid.uuid4()), seq=seq, device=self.device, site=self.site, draft=draft
        )
        msg = passage.to_message(self.fields)
        doc = _doc_of(json.dumps(msg, separators=(",", ":")), msg, STORED)
        day = _day_of_ts(doc["ts"])
        # The journal's line first; it is synced on a helper thread while the segment
        # record is written and synced here: the answer waits for both.
        pending = storage.sync_soon(self._journal.write(seq, doc["msg"], day))
        index = self._segment_of(seq)
        table = self._db(index).table(TABLE)
        try:
            table.insert(Document(doc, seq))
        except StoreError:
            with contextlib.suppress(StoreError):
                storage.settle(pending)
            if table.contains(doc_id=seq):
                self._last_seq = seq  # on disk after all (only its sync failed): never reuse
                self._remember(seq, doc)
            else:
                self._journal.void(seq, doc["pid"], day)
            raise
        self._last_seq = seq
        self._remember(seq, doc)
        self._last_known = _aware(draft.ts)
        storage.settle(pending)  # Unsynced: the journal's line may not survive a power cut
        if self._segment_of(seq + 1) != index:
            self._compact(index)  # the segment is done: its log becomes one record
        return passage

    def _compact(self, index: int) -> None:
        """Rewrite a segment's log whole. A failure costs nothing but bytes: the log holds
        everything as it is, so it is logged and tried again later."""
        try:
            self._segment(index).compact()
        except StoreError as exc:
            log.warning("store: cannot compact segment %d: %s", index, exc)

    def entries(self) -> dict[int, Entry]:
        """The live passages by seq (a copy), oldest first."""
        return {seq: self._index[seq] for seq in sorted(self._index)}

    def messages(self, seqs: Iterable[int]) -> list[dict[str, Any]]:
        """The stored messages of these live passages, in the order asked."""
        out = []
        for seq in seqs:
            doc = self._peek(seq)
            msg = message_of(doc) if doc is not None else None
            if msg is not None:
                out.append(msg)
        return out

    def payloads(self, seqs: Iterable[int]) -> list[Payload]:
        """What to publish for these live passages, in the order asked: the stored text."""
        out = []
        for seq in seqs:
            doc = self._peek(seq)
            if doc is not None:
                out.append(Payload(seq, self._index[seq].pid, _payload_of(doc).encode()))
        return out

    def pids(self, seqs: Iterable[int]) -> list[str]:
        """The pids of these live passages (the unknown are left out)."""
        return [self._index[s].pid for s in seqs if s in self._index]

    def _peek(self, seq: int) -> Mapping[str, Any] | None:
        """A live passage's record, from memory, without copying (never change it)."""
        if seq not in self._index:
            return None
        return self._segment(self._segment_of(seq)).peek().get(str(seq))

    def _segment(self, index: int) -> SegmentLog:
        segment = self._db(index).storage
        assert isinstance(segment, SegmentLog)
        return segment

    def get(self, seq: int) -> dict[str, Any] | None:
        """The stored record of one live passage (``msg`` and ``state``), or None."""
        doc = self._peek(seq)
        msg = message_of(doc) if doc is not None else None
        return {"msg": msg, "state": doc["state"]} if doc is not None and msg is not None else None

    def mark_sent(self, seqs: Iterable[int]) -> None:
        """Record that the broker accepted these passages (a successful PUBACK)."""
        todo = sorted(s for s in set(seqs) if s in self._index and self._index[s].state == STORED)
        for index, group in _by_segment(todo, self._segment_of):
            segment = self._segment(index)
            # not synced: a "sent" mark a power cut takes only sends the passage again,
            # which the ingest recognises by its pid (an acknowledgement is synced)
            segment.update({str(s): {"state": SENT} for s in group}, sync=False)
            for seq in group:
                self._index[seq].state = SENT
            if segment.worth_compacting():
                self._compact(index)

    def acknowledge(
        self, pids: Iterable[str], now: datetime, rejected: Mapping[str, str] | None = None
    ) -> list[int]:
        """The ingest has stored these: archive them and take them out of the outbox.

        ``rejected`` (pid -> reason): those the ingest refused to store; they are
        archived all the same, marked ``"rejected": reason``, and never sent again.
        Returns the seqs acknowledged; unknown pids (already archived) are ignored.
        """
        seqs = sorted({self._by_pid[p] for p in pids if p in self._by_pid})
        if not seqs:
            return []
        if self._meta.last_seq < self._last_seq:
            # First: once these leave the outbox, meta.json is what remembers how far
            # the numbering went (a kill right after would otherwise reuse seqs).
            self._meta.last_seq = self._last_seq
            self._write_meta()
        groups = _by_segment(seqs, self._segment_of)
        lines = self._archive_lines(groups, json.dumps(iso_utc(now)), rejected or {})
        for day, day_lines in lines.items():  # one write and sync per day, not per segment
            storage.append_lines(self.archive_dir / f"{day}.jsonl", day_lines)
        # only after the archive holds them: a crash duplicates, never loses
        current = self._segment_of(self._last_seq + 1)  # the one appends go to stays
        dropped = False
        for index, group in groups:
            segment = self._segment(index)
            keys = [str(s) for s in group]
            if index != current and segment.peek().keys() <= set(keys):
                self._drop_segment(index)  # all of it acknowledged: no delete record first
                dropped = True
            else:
                segment.delete(keys)
                # a done segment is dropped when its last passage is acknowledged:
                # rewriting it meanwhile would only write its rest once more
                if index == current and segment.worth_compacting():
                    self._compact(index)
            for seq in group:
                entry = self._index.pop(seq)
                self._by_pid.pop(entry.pid, None)
                self._forget_day(entry)
        if dropped:
            storage.fsync_dir(self.segment_dir)  # once for all the files removed
            self._journal.prune(self._live_days())  # the days with no passage waiting go
        self._meta.last_ack = iso_utc(now)
        if now - self._meta_written > META_EVERY:  # last_ack is for people: not every batch
            self._write_meta()
        return seqs

    def _archive_lines(
        self, groups: list[tuple[int, list[int]]], acked_at: str, refused: Mapping[str, str]
    ) -> dict[str, list[str]]:
        """The archive's records of these passages, by UTC day."""
        lines: dict[str, list[str]] = {}
        for index, group in groups:
            docs = self._segment(index).peek()
            for seq in group:
                doc = docs.get(str(seq))
                if doc is None:
                    continue
                # {"msg": <the text as published>, "acked_at": ...}: no re-encoding
                record = f'{{"msg":{_payload_of(doc)},"acked_at":{acked_at}'
                reason = refused.get(self._index[seq].pid)
                if reason is not None:
                    record += f',"rejected":{json.dumps(reason)}'
                record += "}"
                lines.setdefault(_day_of_ts(self._index[seq].ts), []).append(record)
        return lines

    def _drop_segment(self, index: int) -> None:
        db = self._segments.open.pop(index, None)
        if db is not None:
            db.close()
        self._segment_path(index).unlink(missing_ok=True)

    def _write_meta(self) -> None:
        self._meta_written = datetime.now(UTC)
        doc = {
            "device": self.device,
            "last_seq": self._meta.last_seq,
            "last_ack": self._meta.last_ack,
            "last_known": iso_utc(self._last_known) if self._last_known else None,
            "segment_size": self.segment_size,  # for readers of the files (snapshot)
        }
        storage.replace_file(self.meta_path, json.dumps(doc).encode())

    def approved_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(credential ref, time) of approved passages at or after ``since``: live and archived."""
        out: list[tuple[str, datetime]] = []
        for entry in self._index.values():
            ts = _parse_ts(entry.ts)
            if entry.approved and ts is not None and ts >= since:
                out += [(ref, ts) for ref in entry.refs]
        first_day = since.astimezone(UTC).date()
        for path in sorted(self.archive_dir.glob("*.jsonl")):
            if _day_from_name(path) is None or _day_from_name(path) < first_day:  # type: ignore[operator]
                continue
            for msg in _read_archive(path):
                ts = _parse_ts(str(msg.get("ts")))
                if msg.get("decision") == "approved" and ts is not None and ts >= since:
                    out += [(c["ref"], ts) for c in msg.get("credentials", []) if c.get("ref")]
        return out

    def status(self) -> OutboxStatus:
        entries = list(self._index.values())
        stored = sum(1 for e in entries if e.state == STORED)
        oldest = min((e.ts for e in entries), default=None)
        return OutboxStatus(
            depth=len(entries),
            stored=stored,
            sent=len(entries) - stored,
            oldest=oldest,
            last_seq=self._last_seq,
            last_ack=self._meta.last_ack,
            archive_days=len(list(self.archive_dir.glob("*.jsonl"))),
            alerts=tuple(self.alerts),
        )

    def purge(self, now: datetime, synchronised: bool | None = None) -> Purge:
        """Delete day archives older than ``retention_days`` before ``now``'s day, unless
        ``now`` is not to be trusted (:func:`edge.store.retention.clock_problem`: the kernel's
        ``synchronised``, or ``now`` far from the last known time): then nothing."""
        problem = clock_problem(now, self._last_known, synchronised)
        if problem is not None:
            return Purge(refused=problem)
        if self._last_known is None or now > self._last_known:
            self._last_known = now.astimezone(UTC)  # an idle kiosk's time moves on too
            self._write_meta()
        limit = now.astimezone(UTC).date() - timedelta(days=self.retention_days)
        gone = []
        for path in sorted(self.archive_dir.glob("*.jsonl")):
            day = _day_from_name(path)
            if day is not None and day < limit:
                path.unlink()
                gone.append(path.name)
        if gone:
            storage.fsync_dir(self.archive_dir)
            log.info("store: archive days past retention deleted: %s", ", ".join(gone))
        return Purge(deleted=tuple(gone))

    def check_writable(self) -> None:
        """Raise StoreError unless the journal and the head segment take a write right now."""
        self._journal.probe()
        self._segment(self._segment_of(self._last_seq + 1)).probe()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def close(self) -> None:
        try:
            self._meta.last_seq = max(self._meta.last_seq, self._last_seq)
            self._write_meta()
        except StoreError as exc:
            log.warning("store: could not update meta.json at close: %s", exc)
        self._segments.close_all()
        self._journal.close()
        self._lock_file.close()  # releases the lock


def _lock(directory: Path) -> Any:
    """Hold ``<dir>/lock`` while open: two kiosks writing one store would corrupt it."""
    fh = open(directory / "lock", "a+")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise StoreError(f"the store {directory} is in use by another kiosk process") from exc
    return fh


def _by_segment(seqs: list[int], segment_of: Any) -> list[tuple[int, list[int]]]:
    groups: dict[int, list[int]] = {}
    for seq in seqs:
        groups.setdefault(segment_of(seq), []).append(seq)
    return sorted(groups.items())


def _parse_ts(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ts_of(entry: Entry) -> datetime | None:
    return _aware(_parse_ts(entry.ts))


def _aware(ts: datetime | None) -> datetime | None:
    return ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)


def _day_of_ts(text: str) -> str:
    if len(text) == 24 and text[10] == "T" and text[-1] == "Z":
        return text[:10]  # a passage's own form (iso_utc): the UTC day is its first ten
    ts = _parse_ts(text)
    return (ts or datetime.now(UTC)).astimezone(UTC).date().isoformat()


def _day_from_name(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


def _read_archive(path: Path) -> Iterable[dict[str, Any]]:
    """The messages of a day archive, tolerating a torn last line (a power cut mid-append)."""
    return [record["msg"] for record in archive_records(path)]


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


read_archive = _read_archive


# -- reading a store from another process (``checkpoint-edge outbox``) ----------


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
    """Read a store's files as they are now. A segment log is only appended to or replaced
    whole, so what is read is complete but for a last record being written (left out); a
    segment removed meanwhile (acknowledged) is read from the archive."""
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    live: dict[int, dict[str, Any]] = {}
    damaged: dict[str, tuple[int, set[int]]] = {}  # file -> (segment, seqs it still holds)
    for index, seg in sorted(_segment_files(directory / "outbox", ".log").items()):
        try:
            replayed = seglog.load(seg)
        except OSError:
            continue
        docs = replayed.docs() if replayed is not None else {}
        _add_live(live, docs)
        if replayed is not None and replayed.damaged:
            damaged[seg.name] = (index, {int(k) for k in docs if k.isdigit()})
    for index, seg in sorted(_segment_files(directory / "outbox", ".json").items()):
        try:  # the JSON layout: a store its daemon has not opened since
            _add_live(live, json.loads(seg.read_text(encoding="utf-8")).get(TABLE, {}))
        except FileNotFoundError:
            continue  # converted or acknowledged meanwhile
        except (OSError, ValueError, AttributeError):
            damaged[seg.name] = (index, set())
    days = sorted((directory / "archive").glob("*.jsonl"))
    archived: dict[str, dict[str, Any]] = {}
    rejected: dict[str, str] = {}
    for day in days:
        for record in archive_records(day):
            pid = str(record["msg"].get("pid"))
            archived.setdefault(pid, record["msg"])  # a crash may have written it twice
            if isinstance(record.get("rejected"), str):
                rejected[pid] = record["rejected"]
    last_seq = max([int(meta.get("last_seq", 0) or 0), *live])
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
        msg = message_of(doc) if key.isdigit() and isinstance(doc, dict) else None
        if msg is not None:
            live[int(key)] = {"msg": msg, "state": doc.get("state")}


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
