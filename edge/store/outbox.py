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
Each passage is first written to the journal and synced, then to its segment,
not synced: :meth:`Outbox.append` returns after one sync, as a database with a
write-ahead log. A *checkpoint* syncs the segments written since the last one
and marks the journal (every :data:`CHECKPOINT_EVERY` passages, when the store
thread has been idle :data:`CHECKPOINT_AFTER` seconds, when the journal turns to
another day, and at close); the next start puts back from the journal's tail
what a power cut took from a segment (:func:`edge.store.journal.tail`). A
segment found damaged is repaired from the journal too
(:mod:`edge.store.segments`), and a seq found in neither (nor in the archive)
is reported by number. Acknowledged
passages leave their segment for the day archive; an emptied segment is
deleted. Day archives older than ``retention_days`` are deleted: personal data
does not outlive them; but only on a clock consistent with ``last_known``, the
newest passage time the store has seen (:mod:`edge.store.retention`). Every
file is written through :mod:`edge.store.storage`; another process reads them
through :mod:`edge.store.snapshot`.

``seq`` is monotonic per device and never repeats: the next one is 1 + the
highest of ``meta.last_seq`` and every seq still in a segment; ``meta`` is
brought up to date before a segment is deleted.

:class:`Outbox` is not thread-safe: one thread owns it (:class:`StoreThread`).
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tinydb.table import Document

from edge.core.model import Passage, PassageDraft, iso_utc
from edge.errors import StoreCorrupt, StoreError
from edge.store import journal, storage
from edge.store.alerts import StoreAlert
from edge.store.records import (
    SENT,
    STORED,
    Entry,
    LiveIndex,
    Payload,
    archived_seqs,
    aware,
    day_from_name,
    day_of_ts,
    doc_of,
    parse_ts,
    read_archive,
)
from edge.store.retention import Purge, clock_problem
from edge.store.seglog import TABLE
from edge.store.segments import Segments, storage_of

# what the outbox's users speak in, wherever it is defined
__all__ = ["SENT", "STORED", "Entry", "Outbox", "OutboxStatus", "Payload"]

log = logging.getLogger(__name__)

META_EVERY = timedelta(seconds=5)
CHECKPOINT_EVERY = 64  # passages whose only synced record is the journal, at most...
CHECKPOINT_AFTER = 1.0  # ...and seconds the store thread waits idle before a checkpoint


@dataclass(frozen=True)
class OutboxStatus:
    depth: int  # passages not yet acknowledged
    stored: int  # ... of which never accepted by the broker
    sent: int  # ... of which accepted by the broker (PUBACK), awaiting the ingest
    oldest: str | None  # time of the oldest unacknowledged passage
    last_seq: int
    last_ack: str | None
    archive_days: int
    alerts: tuple[StoreAlert, ...] = ()


@dataclass
class _Meta:
    last_seq: int = 0
    last_ack: str | None = None
    last_known: datetime | None = None  # the latest time known to be right (edge.store.retention)


def _check_meta(data: Any) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("last_seq", 0), int):
        raise TypeError("meta.json is not {last_seq: int, ...}")


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
        self.alerts: list[StoreAlert] = []
        self._live = LiveIndex()
        self._index = self._live.entries  # the live passages by seq (the same dict)
        self._journal = journal.Journal(directory / "journal")
        self._meta = self._load_meta()
        self._meta_written = datetime.min.replace(tzinfo=UTC)
        self._segments = Segments(
            directory, segment_size, self._live, self.alerts, lambda: self._meta.last_seq
        )
        gc.disable()  # opening makes an object per passage waiting, and no cycle
        try:
            repaired = self._segments.load_all(journal.tail(self._journal.directory))
        finally:
            gc.enable()
        self._unsynced = 0  # passages appended since the last checkpoint
        floor = max(self._meta.last_seq, repaired)
        if not floor and self.alerts:
            floor = max(archived_seqs(self.archive_dir), default=0)  # meta lost: the archive knows
        self._last_seq = max([floor, *self._index])
        self._last_known = self._known_time()
        foreign = sorted({e.device for e in self._index.values() if e.device != device})
        if foreign:
            # the device id changed with passages waiting: the ingest would refuse them
            # (a device speaks only for itself), so they are kept, not sent
            count = sum(1 for e in self._index.values() if e.device != device)
            self.alerts.append(
                StoreAlert(
                    "store_foreign",
                    f"{count} passage(s) stored as {', '.join(foreign)} cannot be "
                    f"delivered as {device}; kept (checkpoint-edge outbox export)",
                )
            )

    # -- meta.json -------------------------------------------------------

    def _load_meta(self) -> _Meta:
        try:
            loaded = storage.read_json(self.meta_path, _check_meta)
        except OSError as exc:
            raise StoreCorrupt(f"cannot read {self.meta_path}: {exc.strerror or exc}") from exc
        if loaded is not None and loaded.recovered:
            self.alerts.append(
                StoreAlert("store_corrupt", "meta.json recovered from its last good copy")
            )
        if loaded is not None and loaded.lost:
            self.alerts.append(
                StoreAlert("store_corrupt", "meta.json damaged, no good copy; moved aside")
            )
        if loaded is None or loaded.data is None:
            return _Meta()
        data = loaded.data
        return _Meta(
            int(data.get("last_seq", 0)),
            data.get("last_ack"),
            aware(parse_ts(str(data["last_known"]))) if data.get("last_known") else None,
        )

    def _known_time(self) -> datetime | None:
        """The last known time at start-up: meta's, unless the newest live passage is later
        (meta.json is not rewritten for each passage); a store without one (an older
        version) falls back on its newest passage: live, or the newest archive day."""
        newest = _ts_of(self._index[max(self._index)]) if self._index else None
        if self._meta.last_known is not None:
            return max(t for t in (self._meta.last_known, newest) if t)
        known = [t for t in map(_ts_of, self._index.values()) if t]
        days = [d for d in map(day_from_name, self.archive_dir.glob("*.jsonl")) if d]
        if days:
            known.append(datetime.combine(max(days), datetime.min.time(), UTC))
        return max(known, default=None)

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

    @property
    def last_known(self) -> datetime | None:
        """The time of the latest passage written, or of the latest purge on a consistent
        clock (UTC); None for an empty store. The latest, not the greatest: once a jumped
        clock is put right, the next passage brings it back."""
        return self._last_known

    # -- the operations --------------------------------------------------

    def append(self, draft: PassageDraft) -> Passage:
        """Number the passage and write it durably (journal, then segment); return it."""
        seq = self._last_seq + 1
        passage = Passage(
            pid=str(uuid.uuid4()), seq=seq, device=self.device, site=self.site, draft=draft
        )
        msg = passage.to_message(self.fields)
        doc = doc_of(json.dumps(msg, separators=(",", ":")), msg, STORED)
        day = day_of_ts(doc["ts"])
        if self._journal.day not in (None, day):
            self.checkpoint_or_log()  # the day file left behind ends with its checkpoint
        journaled = False
        failed_sync: storage.Unsynced | None = None
        try:
            # the journal's line, synced: the passage's durable record from now on
            try:
                self._journal.append(seq, doc["msg"], day)
            except storage.Unsynced as exc:
                failed_sync = exc  # in the file all the same: kept, and the caller told
            journaled = True
            # its segment's record, synced at the next checkpoint
            index = self._segments.of(seq)
            db = self._segments.db(index)
            segment = storage_of(db)
            segment.deferred = True
            try:
                db.table(TABLE).insert(Document(doc, seq))
            finally:
                segment.deferred = False
        except StoreError:
            if journaled:
                self._journal.void(seq, doc["pid"], day)  # in the journal: never put back
            raise
        self._last_seq = seq
        self._live.add(seq, doc)
        self._last_known = aware(draft.ts)
        self._unsynced += 1
        if self._segments.of(seq + 1) != index:
            self._segments.compact(index)  # the segment is done: its log becomes one record
        if failed_sync is not None:
            raise failed_sync  # stored, and never a seq again; but a power cut may take it
        if self._unsynced >= CHECKPOINT_EVERY:
            self.checkpoint_or_log()
        return passage

    @property
    def unsynced(self) -> int:
        """Passages appended since the last checkpoint (their segment records not synced)."""
        return self._unsynced

    def checkpoint(self) -> None:
        """Sync the segments written since the last checkpoint, then mark the journal:
        the next start reads it back only from there. Raises StoreError."""
        if self._unsynced:
            self._segments.sync_all()
            self._journal.checkpoint(self._last_seq)
            self._unsynced = 0

    def checkpoint_or_log(self) -> bool:
        """:meth:`checkpoint`; a failure logged (the journal holds those passages: tried
        again later). Whether it was made."""
        try:
            self.checkpoint()
        except StoreError as exc:
            log.warning("store: checkpoint failed: %s", exc)
            return False
        return True

    def entries(self) -> dict[int, Entry]:
        """The live passages by seq (a copy), oldest first."""
        return {seq: self._index[seq] for seq in sorted(self._index)}

    def payloads(self, seqs: Iterable[int]) -> list[Payload]:
        """What to publish for these live passages, in the order asked: the stored text."""
        out = []
        for seq in seqs:
            doc = self._peek(seq)
            if doc is not None:
                out.append(Payload(seq, self._index[seq].pid, doc["msg"].encode()))
        return out

    def pids(self, seqs: Iterable[int]) -> list[str]:
        """The pids of these live passages (the unknown are left out)."""
        return [self._index[s].pid for s in seqs if s in self._index]

    def _peek(self, seq: int) -> Mapping[str, Any] | None:
        """A live passage's record, from memory, without copying (never change it)."""
        if seq not in self._index:
            return None
        return self._segments.log(self._segments.of(seq)).peek().get(str(seq))

    def mark_sent(self, seqs: Iterable[int]) -> None:
        """Record that the broker accepted these passages (a successful PUBACK)."""
        todo = sorted(s for s in set(seqs) if s in self._index and self._index[s].state == STORED)
        for index, group in _by_segment(todo, self._segments.of):
            segment = self._segments.log(index)
            # not synced: a "sent" mark a power cut takes only sends the passage again,
            # which the ingest recognises by its pid (an acknowledgement is synced)
            segment.update({str(s): {"state": SENT} for s in group}, sync=False)
            for seq in group:
                self._index[seq].state = SENT
            if segment.worth_compacting():
                self._segments.compact(index)

    def acknowledge(
        self, pids: Iterable[str], now: datetime, rejected: Mapping[str, str] | None = None
    ) -> list[int]:
        """The ingest has stored these: archive them and take them out of the outbox.

        ``rejected`` (pid -> reason): those the ingest refused to store; they are
        archived all the same, marked ``"rejected": reason``, and never sent again.
        Returns the seqs acknowledged; unknown pids (already archived) are ignored.
        """
        seqs = sorted({self._live.by_pid[p] for p in pids if p in self._live.by_pid})
        if not seqs:
            return []
        if self._meta.last_seq < self._last_seq:
            # First: once these leave the outbox, meta.json is what remembers how far
            # the numbering went (a kill right after would otherwise reuse seqs).
            self._meta.last_seq = self._last_seq
            self._write_meta()
        groups = _by_segment(seqs, self._segments.of)
        lines = self._archive_lines(groups, json.dumps(iso_utc(now)), rejected or {})
        for day, day_lines in lines.items():  # one write and sync per day, not per segment
            storage.append_lines(self.archive_dir / f"{day}.jsonl", day_lines)
        # only after the archive holds them: a crash duplicates, never loses
        current = self._segments.of(self._last_seq + 1)  # the one appends go to stays
        dropped = False
        for index, group in groups:
            segment = self._segments.log(index)
            keys = [str(s) for s in group]
            if index != current and segment.peek().keys() <= set(keys):
                self._segments.drop(index)  # all of it acknowledged: no delete record first
                dropped = True
            else:
                segment.delete(keys)
                # a done segment is dropped when its last passage is acknowledged:
                # rewriting it meanwhile would only write its rest once more
                if index == current and segment.worth_compacting():
                    self._segments.compact(index)
            for seq in group:
                self._live.remove(seq)
        if dropped:
            storage.fsync_dir(self.segment_dir)  # once for all the files removed
            self._journal.prune(self._live.days())  # the journal's days with no passage waiting
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
            docs = self._segments.log(index).peek()
            for seq in group:
                doc = docs.get(str(seq))
                if doc is None:
                    continue
                # {"msg": <the text as published>, "acked_at": ...}: no re-encoding
                record = f'{{"msg":{doc["msg"]},"acked_at":{acked_at}'
                reason = refused.get(self._index[seq].pid)
                if reason is not None:
                    record += f',"rejected":{json.dumps(reason)}'
                record += "}"
                lines.setdefault(day_of_ts(self._index[seq].ts), []).append(record)
        return lines

    def approved_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(credential ref, time) of approved passages at or after ``since``: live and archived."""
        out: list[tuple[str, datetime]] = []
        for entry in self._index.values():
            ts = parse_ts(entry.ts)
            if entry.approved and ts is not None and ts >= since:
                out += [(ref, ts) for ref in entry.refs]
        first_day = since.astimezone(UTC).date()
        for path in sorted(self.archive_dir.glob("*.jsonl")):
            if day_from_name(path) is None or day_from_name(path) < first_day:  # type: ignore[operator]
                continue
            for msg in read_archive(path):
                ts = parse_ts(str(msg.get("ts")))
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
            day = day_from_name(path)
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
        self._segments.log(self._segments.of(self._last_seq + 1)).probe()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def close(self) -> None:
        self.checkpoint_or_log()
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


def _by_segment(seqs: list[int], segment_of: Callable[[int], int]) -> list[tuple[int, list[int]]]:
    groups: dict[int, list[int]] = {}
    for seq in seqs:
        groups.setdefault(segment_of(seq), []).append(seq)
    return sorted(groups.items())


def _ts_of(entry: Entry) -> datetime | None:
    return aware(parse_ts(entry.ts))
