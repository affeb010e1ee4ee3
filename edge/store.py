"""The passage outbox: every passage until the central ingest has it, then the archive.

On disk, under ``[store] dir``::

    meta.json                    last_seq (the floor for numbering), last_ack, last_known
    outbox/seg-00000042.json     TinyDB: passages with seq 4201..4300 not yet acknowledged
    archive/2026-11-26.jsonl     acknowledged passages of that day (by passage time)
    [outbox/]quarantine/         damaged files, moved aside with a timestamp

A passage's message is kept as the exact JSON text that is published (a
string in its TinyDB document): a resend is byte for byte the first send,
and a drain neither re-encodes it nor parses it to publish or archive it.

The live outbox is segmented: a new passage rewrites only its own segment
(``segment_size`` passages at most), so the bytes written per passage stay
bounded however long the ingest is away. Acknowledged passages leave their
segment for the day archive; an emptied segment is deleted. Day archives
older than ``retention_days`` are deleted: personal data does not outlive
them; but only on a clock consistent with ``last_known``, the newest passage
time the store has seen (:mod:`edge.retention`). Every file is written through
:mod:`edge.storage` (atomic, fsynced, with a last good copy).

``seq`` is monotonic per device and never repeats: the next one is 1 + the
highest of ``meta.last_seq`` and every seq still in a segment; ``meta`` is
brought up to date before a segment is deleted.

:class:`Outbox` is not thread-safe: one thread owns it (:class:`StoreThread`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document

from edge import storage
from edge.errors import StoreCorrupt, StoreError
from edge.model import Passage, PassageDraft, iso_utc
from edge.retention import Purge, clock_problem

log = logging.getLogger(__name__)

STORED = "stored"
SENT = "sent"
TABLE = "passages"
META_EVERY = timedelta(seconds=5)


class SegmentStorage(Storage):
    """TinyDB storage for one segment: read once, then served from memory;
    written with :func:`edge.storage.replace_file`.

    TinyDB changes what ``read`` returns before it writes, so ``read`` hands out
    a fresh copy; the outbox's own lookups use :meth:`peek` (the parsed data
    of the last successful write, never to be changed) and pay no copy.
    """

    def __init__(self, path: str | os.PathLike[str], loaded: storage.Loaded | None = None) -> None:
        self.path = Path(path)
        self._text: str | None = None
        self._data: dict[str, dict[str, Any]] = {}
        if loaded is not None and loaded.data is not None:
            self._text, self._data = loaded.text, loaded.data

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self._text is None:
            return None
        data: dict[str, dict[str, Any]] = json.loads(self._text)
        return data

    def peek(self) -> dict[str, dict[str, Any]]:
        """The passages as last written (read-only)."""
        return self._data.get(TABLE, {})

    def rewrite(self, docs: dict[str, Any]) -> None:
        """Write the segment with these passages (TinyDB's layout), without TinyDB's
        read-modify-write copy: for bulk bookkeeping on a drain."""
        self.write({**self._data, TABLE: docs})

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        try:
            storage.replace_file(self.path, text.encode("utf-8"))
        except StoreError:
            if self.path.exists() and self.path.read_text(encoding="utf-8") == text:
                self._text, self._data = text, data  # in place after all; only its sync failed
            raise
        self._text, self._data = text, data

    def close(self) -> None:
        pass


@dataclass
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
    last_known: datetime | None = None  # the latest time known to be right (edge.retention)


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
        self._segments = _Segments(limit=8)
        self._meta = self._load_meta()
        self._meta_written = datetime.min.replace(tzinfo=UTC)
        self._load_segments()
        self._migrate_single_file()
        floor = self._meta.last_seq
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
        for path in sorted(self.segment_dir.glob("seg-*.json")):
            parsed: dict[int, dict[str, Any]] = {}
            loaded = self._read(path, lambda data, out=parsed: _check_segment(data, out))
            if loaded is None or loaded.data is None:
                continue
            for key, doc in loaded.data.get(TABLE, {}).items():
                self._remember(int(key), parsed[int(key)], doc["state"])
            index = path.stem.removeprefix("seg-")
            seg = self._segments
            if len(seg.open) < seg.limit and index.isdigit() and int(index) not in seg.open:
                # the oldest segments stay open: a drain reads them first
                seg.open[int(index)] = TinyDB(path, storage=SegmentStorage, loaded=loaded)

    def _remember(self, seq: int, msg: Mapping[str, Any], state: str) -> None:
        approved = msg.get("decision") == "approved"
        credentials = msg.get("credentials")
        refs = tuple(
            str(c["ref"])
            for c in (credentials if isinstance(credentials, list) else [])
            if isinstance(c, dict) and c.get("ref")
        )
        self._index[seq] = Entry(
            str(msg.get("pid")), state, str(msg.get("ts")), approved, refs, str(msg.get("device"))
        )
        self._by_pid[str(msg.get("pid"))] = seq

    def _migrate_single_file(self) -> None:
        """Passages of the first store layout (one ``outbox.json``) move into segments."""
        old = self.directory / "outbox.json"
        parsed: dict[int, dict[str, Any]] = {}
        check = lambda data: _check_segment(data, parsed)  # noqa: E731
        loaded = self._read(old, check) if old.exists() else None
        if loaded is None or loaded.data is None:
            return
        docs = sorted(loaded.data.get(TABLE, {}).items(), key=lambda kv: int(kv[0]))
        for key, doc in docs:
            seq = int(key)
            if seq not in self._index:
                stored = {"msg": _payload_of(doc), "state": doc["state"]}
                self._db(self._segment_of(seq)).table(TABLE).insert(Document(stored, seq))
                self._remember(seq, parsed[seq], doc["state"])
        os.replace(old, old.with_name("outbox.json.migrated"))
        storage.fsync_dir(self.directory)
        log.info("store: moved %d passage(s) from outbox.json into segments", len(docs))

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
        return self.segment_dir / f"seg-{index:08d}.json"

    def _db(self, index: int) -> TinyDB:
        seg = self._segments
        db = seg.open.get(index)
        if db is not None:
            seg.open.move_to_end(index)
            return db
        path = self._segment_path(index)
        db = TinyDB(path, storage=SegmentStorage, loaded=self._read(path, _check_segment))
        seg.open[index] = db
        if len(seg.open) > seg.limit:
            _, oldest = seg.open.popitem(last=False)
            oldest.close()
        return db

    # -- the operations --------------------------------------------------

    def append(self, draft: PassageDraft) -> Passage:
        """Number the passage and write it durably; return it as stored."""
        seq = self._last_seq + 1
        passage = Passage(
            pid=str(uuid.uuid4()), seq=seq, device=self.device, site=self.site, draft=draft
        )
        msg = passage.to_message(self.fields)
        doc = {"msg": json.dumps(msg, separators=(",", ":")), "state": STORED}
        table = self._db(self._segment_of(seq)).table(TABLE)
        try:
            table.insert(Document(doc, seq))
        except StoreError:
            if table.contains(doc_id=seq):
                self._last_seq = seq  # on disk after all (only its sync failed): never reuse
                self._remember(seq, msg, STORED)
            raise
        self._last_seq = seq
        self._remember(seq, msg, STORED)
        self._last_known = _aware(draft.ts)
        return passage

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

    def _segment(self, index: int) -> SegmentStorage:
        segment = self._db(index).storage
        assert isinstance(segment, SegmentStorage)
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
            marked = {str(s) for s in group}
            segment.rewrite(
                {k: ({**d, "state": SENT} if k in marked else d) for k, d in segment.peek().items()}
            )
            for seq in group:
                self._index[seq].state = SENT

    def acknowledge(
        self, pids: Iterable[str], now: datetime, rejected: Mapping[str, str] | None = None
    ) -> list[int]:
        """The ingest has stored these: archive them and take them out of the outbox.

        ``rejected`` (pid -> reason): those the ingest refused to store; they are
        archived all the same, marked ``"rejected": reason``, and never sent again.
        Returns the seqs acknowledged; unknown pids (already archived) are ignored.
        """
        refused = rejected or {}
        seqs = sorted({self._by_pid[p] for p in pids if p in self._by_pid})
        if not seqs:
            return []
        if self._meta.last_seq < self._last_seq:
            # First: once these leave the outbox, meta.json is what remembers how far
            # the numbering went (a kill right after would otherwise reuse seqs).
            self._meta.last_seq = self._last_seq
            self._write_meta()
        for index, group in _by_segment(seqs, self._segment_of):
            segment = self._segment(index)
            lines: dict[str, list[str]] = {}
            acked_at = json.dumps(iso_utc(now))
            for seq in group:
                doc = self._peek(seq)
                if doc is None:
                    continue
                # {"msg": <the text as published>, "acked_at": ...}: no re-encoding
                record = f'{{"msg":{_payload_of(doc)},"acked_at":{acked_at}'
                reason = refused.get(self._index[seq].pid)
                if reason is not None:
                    record += f',"rejected":{json.dumps(reason)}'
                record += "}"
                lines.setdefault(_day_of_ts(self._index[seq].ts), []).append(record)
            for day, day_lines in lines.items():
                storage.append_lines(self.archive_dir / f"{day}.jsonl", day_lines)
            # after the archive holds them: a crash duplicates, never loses
            leaving = {str(s) for s in group}
            segment.rewrite({k: d for k, d in segment.peek().items() if k not in leaving})
            for seq in group:
                entry = self._index.pop(seq)
                self._by_pid.pop(entry.pid, None)
            if not segment.peek() and index != self._segment_of(self._last_seq + 1):
                self._drop_segment(index)
        self._meta.last_ack = iso_utc(now)
        if now - self._meta_written > META_EVERY:  # last_ack is for people: not every batch
            self._write_meta()
        return seqs

    def _drop_segment(self, index: int) -> None:
        db = self._segments.open.pop(index, None)
        if db is not None:
            db.close()
        path = self._segment_path(index)
        for p in (path, storage.prev_of(path)):
            p.unlink(missing_ok=True)
        storage.fsync_dir(self.segment_dir)

    def _write_meta(self) -> None:
        self._meta_written = datetime.now(UTC)
        doc = {
            "device": self.device,
            "last_seq": self._meta.last_seq,
            "last_ack": self._meta.last_ack,
            "last_known": iso_utc(self._last_known) if self._last_known else None,
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
        ``now`` is not to be trusted (:func:`edge.retention.clock_problem`: the kernel's
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
        """Raise StoreError unless the head segment can be rewritten durably right now."""
        table = self._db(self._segment_of(self._last_seq + 1)).table(TABLE)
        storage_ = table.storage
        data = storage_.read()
        storage_.write(data if data is not None else {})

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


def snapshot(directory: Path) -> StoreSnapshot:
    """Read a store's files as they are now. Files are only ever replaced whole, so each
    one read is complete; one removed meanwhile (acknowledged) is read from the archive."""
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    live: dict[int, dict[str, Any]] = {}
    for seg in sorted((directory / "outbox").glob("seg-*.json")):
        try:
            docs = json.loads(seg.read_text(encoding="utf-8")).get(TABLE, {})
        except (OSError, ValueError):
            continue  # gone (acknowledged) or damaged (the daemon reports it)
        for key, doc in docs.items():
            msg = message_of(doc) if key.isdigit() and isinstance(doc, dict) else None
            if msg is not None:
                live[int(key)] = {"msg": msg, "state": doc.get("state")}
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
    return StoreSnapshot(
        live=dict(sorted(live.items())),
        archived=list(archived.values()),
        rejected=rejected,
        last_seq=last_seq,
        last_ack=meta.get("last_ack"),
        archive_days=[d.stem for d in days],
    )
