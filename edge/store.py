"""The passage outbox: every passage until the central ingest has it, then the archive.

On disk, under ``[store] dir``::

    meta.json                    last_seq (the floor for numbering), last_ack
    outbox/seg-00000042.json     TinyDB: passages with seq 4201..4300 not yet acknowledged
    archive/2026-11-26.jsonl     acknowledged passages of that day (by passage time)
    quarantine/                  damaged files, moved aside with a timestamp

The live outbox is segmented: a new passage rewrites only its own segment
(``segment_size`` passages at most), so the bytes written per passage stay
bounded however long the ingest is away. Acknowledged passages leave their
segment for the day archive; an emptied segment is deleted. Day archives
older than ``retention_days`` are deleted: personal data does not outlive
them. Every file is written through :mod:`edge.storage` (atomic, fsynced,
with a last good copy).

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

log = logging.getLogger(__name__)

STORED = "stored"
SENT = "sent"
TABLE = "passages"


class SegmentStorage(Storage):
    """TinyDB storage for one segment: read once, then served from memory;
    written with :func:`edge.storage.replace_file`."""

    def __init__(self, path: str | os.PathLike[str], data: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._text = json.dumps(data) if data is not None else None

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self._text is None:
            return None
        data: dict[str, dict[str, Any]] = json.loads(self._text)
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        try:
            storage.replace_file(self.path, text.encode("utf-8"))
        except StoreError:
            if self.path.exists() and self.path.read_text(encoding="utf-8") == text:
                self._text = text  # in place after all; only its sync failed
            raise
        self._text = text

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


def _check_meta(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("last_seq", 0), int):
        raise TypeError("meta.json is not {last_seq: int, ...}")


def _check_segment(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get(TABLE, {}), dict):
        raise TypeError("not a TinyDB segment")
    for key, doc in data.get(TABLE, {}).items():
        if not key.isdigit() or not isinstance(doc, dict) or not isinstance(doc.get("msg"), dict):
            raise ValueError(f"malformed passage {key!r}")
        if doc.get("state") not in (STORED, SENT):
            raise ValueError(f"passage {key} has no valid state")


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
        self._load_segments()
        self._migrate_single_file()
        floor = self._meta.last_seq
        if not floor and self.alerts:
            floor = self._archived_max_seq()  # meta was lost: the archive still knows
        self._last_seq = max([floor, *self._index])

    # -- loading ---------------------------------------------------------

    def _load_meta(self) -> _Meta:
        loaded = self._read(self.meta_path, _check_meta)
        if loaded is None or loaded.data is None:
            return _Meta()
        return _Meta(int(loaded.data.get("last_seq", 0)), loaded.data.get("last_ack"))

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
            loaded = self._read(path, _check_segment)
            if loaded is None or loaded.data is None:
                continue
            for key, doc in loaded.data.get(TABLE, {}).items():
                self._remember(int(key), doc)

    def _remember(self, seq: int, doc: Mapping[str, Any]) -> None:
        msg = doc["msg"]
        approved = msg.get("decision") == "approved"
        refs = tuple(c["ref"] for c in msg.get("credentials", []) if c.get("ref"))
        self._index[seq] = Entry(
            str(msg.get("pid")), doc["state"], str(msg.get("ts")), approved, refs
        )
        self._by_pid[str(msg.get("pid"))] = seq

    def _migrate_single_file(self) -> None:
        """Passages of the first store layout (one ``outbox.json``) move into segments."""
        old = self.directory / "outbox.json"
        loaded = self._read(old, _check_segment) if old.exists() else None
        if loaded is None or loaded.data is None:
            return
        docs = sorted(loaded.data.get(TABLE, {}).items(), key=lambda kv: int(kv[0]))
        for key, doc in docs:
            seq = int(key)
            if seq not in self._index:
                self._db(self._segment_of(seq)).table(TABLE).insert(Document(doc, seq))
                self._remember(seq, doc)
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
        loaded = storage.read_json(path, _check_segment)
        data = loaded.data if loaded is not None and loaded.data is not None else None
        db = TinyDB(path, storage=SegmentStorage, data=data)
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
        doc = {"msg": passage.to_message(self.fields), "state": STORED}
        table = self._db(self._segment_of(seq)).table(TABLE)
        try:
            table.insert(Document(doc, seq))
        except StoreError:
            if table.contains(doc_id=seq):
                self._last_seq = seq  # on disk after all (only its sync failed): never reuse
                self._remember(seq, doc)
            raise
        self._last_seq = seq
        self._remember(seq, doc)
        return passage

    def entries(self) -> dict[int, Entry]:
        """The live passages by seq (a copy), oldest first."""
        return {seq: self._index[seq] for seq in sorted(self._index)}

    def messages(self, seqs: Iterable[int]) -> list[dict[str, Any]]:
        """The stored messages of these live passages, in the order asked."""
        out = []
        for seq in seqs:
            if seq not in self._index:
                continue
            doc = self._db(self._segment_of(seq)).table(TABLE).get(doc_id=seq)
            if isinstance(doc, Mapping):
                out.append(dict(doc["msg"]))
        return out

    def get(self, seq: int) -> dict[str, Any] | None:
        """The stored record of one live passage (``msg`` and ``state``), or None."""
        if seq not in self._index:
            return None
        doc = self._db(self._segment_of(seq)).table(TABLE).get(doc_id=seq)
        return dict(doc) if isinstance(doc, Mapping) else None

    def mark_sent(self, seqs: Iterable[int]) -> None:
        """Record that the broker accepted these passages (a successful PUBACK)."""
        todo = sorted(s for s in set(seqs) if s in self._index and self._index[s].state == STORED)
        for index, group in _by_segment(todo, self._segment_of):
            self._db(index).table(TABLE).update({"state": SENT}, doc_ids=group)
            for seq in group:
                self._index[seq].state = SENT

    def acknowledge(self, pids: Iterable[str], now: datetime) -> list[int]:
        """The ingest has stored these: archive them and take them out of the outbox.

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
        for index, group in _by_segment(seqs, self._segment_of):
            table = self._db(index).table(TABLE)
            lines: dict[str, list[str]] = {}
            for seq in group:
                doc = table.get(doc_id=seq)
                if not isinstance(doc, Mapping):
                    continue
                msg = doc["msg"]
                day = _day_of(msg)
                record = {"msg": msg, "acked_at": iso_utc(now)}
                lines.setdefault(day, []).append(json.dumps(record, separators=(",", ":")))
            for day, day_lines in lines.items():
                storage.append_lines(self.archive_dir / f"{day}.jsonl", day_lines)
            table.remove(
                doc_ids=group
            )  # after the archive holds them: a crash duplicates, never loses
            for seq in group:
                entry = self._index.pop(seq)
                self._by_pid.pop(entry.pid, None)
            if not table.all() and index != self._segment_of(self._last_seq + 1):
                self._drop_segment(index)
        self._meta.last_ack = iso_utc(now)
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
        doc = {
            "device": self.device,
            "last_seq": self._meta.last_seq,
            "last_ack": self._meta.last_ack,
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

    def purge(self, today: date) -> list[str]:
        """Delete day archives older than ``retention_days``; the names deleted."""
        limit = today - timedelta(days=self.retention_days)
        gone = []
        for path in sorted(self.archive_dir.glob("*.jsonl")):
            day = _day_from_name(path)
            if day is not None and day < limit:
                path.unlink()
                gone.append(path.name)
        if gone:
            storage.fsync_dir(self.archive_dir)
            log.info("store: archive days past retention deleted: %s", ", ".join(gone))
        return gone

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
        if self._meta.last_seq < self._last_seq:
            try:
                self._meta.last_seq = self._last_seq
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


def _day_of(msg: Mapping[str, Any]) -> str:
    ts = _parse_ts(str(msg.get("ts")))
    return (ts or datetime.now(UTC)).astimezone(UTC).date().isoformat()


def _day_from_name(path: Path) -> date | None:
    try:
        return date.fromisoformat(path.stem)
    except ValueError:
        return None


def _read_archive(path: Path) -> Iterable[dict[str, Any]]:
    """The messages of a day archive, tolerating a torn last line (a power cut mid-append)."""
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
            out.append(record["msg"])
    return out


read_archive = _read_archive


# -- reading a store from another process (``checkpoint-edge outbox``) ----------


@dataclass(frozen=True)
class StoreSnapshot:
    """What a store holds, read without taking it from the daemon that owns it."""

    live: dict[int, dict[str, Any]]  # seq -> {"msg", "state"}
    archived: list[dict[str, Any]]  # messages, one per pid, oldest day first
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
            if key.isdigit() and isinstance(doc, dict) and isinstance(doc.get("msg"), dict):
                live[int(key)] = doc
    days = sorted((directory / "archive").glob("*.jsonl"))
    archived: dict[str, dict[str, Any]] = {}
    for day in days:
        for msg in _read_archive(day):
            archived.setdefault(str(msg.get("pid")), msg)  # a crash may have written it twice
    last_seq = max([int(meta.get("last_seq", 0) or 0), *live])
    return StoreSnapshot(
        live=dict(sorted(live.items())),
        archived=list(archived.values()),
        last_seq=last_seq,
        last_ack=meta.get("last_ack"),
        archive_days=[d.stem for d in days],
    )
