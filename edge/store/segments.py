"""The segment files of a running outbox: where a seq goes, which are open, and reading
them into the index, the damaged ones repaired from the journal.

Segment ``i`` (``outbox/seg-<i:08d>.log``, a :mod:`.seglog`) holds the passages
numbered ``i * segment_size + 1`` to ``(i + 1) * segment_size``. Opening a store
reads every segment's index fields, not its messages (:class:`LiveIndex`), and
keeps the oldest segments open, since a drain reads them first.

A segment is damaged when a record other than a torn last one fails its check, or
a document in it is not a passage. It is moved to ``quarantine/``; what its good
records hold is kept, the journal restores the seqs of its range that are neither
kept nor archived, and every seq in none of the three is reported by number: an
alert, and a line of ``incidents.jsonl`` for ``checkpoint-edge outbox status``.
The same happens to a segment found damaged when it is opened again later.

Then the journal's tail (its passages after the last checkpoint, whose segment
records were written but perhaps not synced) is put back where a segment lacks
it and the archive does not have it, and the segments it is in are synced. A
segment of that tail damaged only by holes (zeros where a record began: a power
cut) is repaired the same way, with a warning rather than an alert when nothing
is missing. New passages' records are synced before their segment is closed.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from edge.core.model import iso_utc
from edge.errors import StoreCorrupt, StoreError
from edge.store import journal, seglog, storage
from edge.store.alerts import StoreAlert
from edge.store.records import INCIDENTS, STORED, LiveIndex, archived_seqs, doc_of, segment_files
from edge.store.seglog import Replayed, SegmentLog

log = logging.getLogger(__name__)

# Segments kept open (in memory, about 150 KB each): the oldest, which a drain
# reads first and acknowledges some 1,000-2,000 passages later (the ingest's
# batches, paho's window): with 8 the acknowledgements reloaded them from disk.
OPEN_SEGMENTS = 24


@dataclass
class Damage:
    """A damaged segment file: its name, what was done, the passages it still held."""

    file: str
    how: str
    docs: dict[str, dict[str, Any]]
    unsynced: bool = False  # only holes, where records not yet synced were written


class Segments:
    """The segments of one store, open ones closed least recently used first.

    ``live`` is the index they are read into; ``alerts`` gets a ``store_corrupt``
    alert for each repair; ``numbered`` is the numbering floor meta.json keeps
    (a repair restores nothing beyond the highest seq known to be numbered).
    """

    def __init__(
        self,
        directory: Path,
        segment_size: int,
        live: LiveIndex,
        alerts: list[StoreAlert],
        numbered: Callable[[], int],
    ) -> None:
        self.store_dir = directory
        self.dir = directory / "outbox"
        self.size = segment_size
        self.live = live
        self.alerts = alerts
        self.numbered = numbered
        self.open: OrderedDict[int, TinyDB] = OrderedDict()
        # segments with records written since the last checkpoint (the journal's tail,
        # read at opening): a power cut may have left holes in them
        self.unsynced: set[int] = set()

    def of(self, seq: int) -> int:
        """The index of the segment a seq goes in."""
        return (seq - 1) // self.size

    def path(self, index: int) -> Path:
        return self.dir / f"seg-{index:08d}.log"

    # -- opening ---------------------------------------------------------

    def load_all(self, tail: journal.Tail) -> int:
        """Read every segment into the index; repair the damaged ones from the journal and
        put back what a power cut took of the journal's ``tail`` (:meth:`_replay`).
        Returns the highest seq known to be numbered (0 without one)."""
        self.unsynced = {self.of(s) for s in tail.pending()}
        for leftover in self.dir.glob("seg-*.tmp"):
            leftover.unlink()  # a compaction cut short: the log it was to replace is whole
        damaged: dict[int, Damage] = {}
        for index, path in sorted(segment_files(self.dir).items()):
            replayed = self._load(index, path, damaged)
            if replayed is not None and len(self.open) < OPEN_SEGMENTS:
                # the oldest segments stay open: a drain reads them first
                self.open[index] = TinyDB(path, storage=SegmentLog, replayed=replayed)
        repaired = self._recover(damaged) if damaged else 0
        self.unsynced.clear()
        return max(repaired, self._replay(tail))

    def _replay(self, tail: journal.Tail) -> int:
        """Put back into their segments the passages of the journal's tail (after its last
        checkpoint) that a power cut took from them, unless archived, and sync the segments
        the others are in (an earlier process may have left their records unsynced: killed,
        the machine up). Returns the highest seq of the tail (0 without one)."""
        pending = tail.pending()
        if not pending:
            return tail.highest
        missing = {s: t for s, t in pending.items() if s not in self.live.entries}
        days = {tail.days[s] for s in missing}
        archived = archived_seqs(self.store_dir / "archive", days) if missing else set()
        restore = sorted(s for s in missing if s not in archived)  # not acknowledged meanwhile
        for index in sorted({self.of(s) for s in restore}):
            docs = [_restored(missing[s], s) for s in restore if self.of(s) == index]
            self.db(index).table(seglog.TABLE).insert_multiple(docs)  # synced
            for doc in docs:
                self.live.add(doc.doc_id, doc)
        if restore:
            log.warning(
                "store: seq %s put back from the journal (their segment records were not "
                "yet synced when the kiosk stopped)",
                journal.ranges(restore),
            )
        for index in sorted({self.of(s) for s in pending if s in self.live.entries}):
            self.log(index).sync(written_before=True)
        for path in tail.late:
            journal.mark(path, tail.highest)  # all synced now: the next start reads less
        return tail.highest

    def _load(self, index: int, path: Path, damaged: dict[int, Damage]) -> Replayed | None:
        try:
            replayed = seglog.load(path)
        except OSError as exc:
            raise StoreCorrupt(f"cannot read {path}: {exc.strerror or exc}") from exc
        if replayed is None:
            return None
        invalid = self.live.add_all(replayed.fields, replayed.texts)
        for key in invalid:
            replayed.fields.pop(key)
            replayed.texts.pop(key, None)
        if replayed.damaged or invalid:
            kept = replayed.docs()
            storage.quarantine(path, f"{replayed.bad + len(invalid)} damaged record(s)")
            holes = not invalid and replayed.holes == replayed.bad and index in self.unsynced
            damaged[index] = Damage(path.name, "damaged, moved aside", kept, holes)
            return replayed
        if replayed.torn:  # an append cut short by a power cut: never acknowledged
            storage.truncate(path, replayed.end)
        return replayed

    def _recover(self, damaged: dict[int, Damage]) -> int:
        """Damaged segments: what their files still hold, plus what the journal holds of
        theirs that the archive does not (acknowledged); every seq in none of them is
        reported by number. The repaired segment is written whole. Returns the highest
        seq known to be numbered."""
        texts = journal.read(self.store_dir / "journal")
        archived = archived_seqs(self.store_dir / "archive")
        known = max([self.numbered(), *self.live.entries, *texts, *archived])
        for index, damage in sorted(damaged.items()):
            first = index * self.size + 1
            candidates = range(first, min(first + self.size - 1, known) + 1)
            kept = {int(k) for k in damage.docs}
            report, restore = journal.recover(damage.file, candidates, kept, texts, archived)
            docs = dict(damage.docs)
            for seq, text in restore.items():
                docs[str(seq)] = doc_of(text, json.loads(text), STORED)
            self.live.add_all({k: d for k, d in docs.items() if int(k) in restore})
            if docs or index == self.of(known + 1):
                seglog.write_compacted(self.path(index), docs)
            else:
                self.path(index).unlink(missing_ok=True)
            alert = report.describe(damage.how)
            if damage.unsynced and not report.missing:
                # a power cut before the checkpoint: what the journal is there for
                log.warning("store: %s (records not yet synced when the power went)", alert)
                continue
            self.alerts.append(StoreAlert("store_corrupt", alert))
            self._write_incident(report, alert)
        return known

    def _write_incident(self, report: journal.Recovery, text: str) -> None:
        """Kept in ``incidents.jsonl`` for ``checkpoint-edge outbox status``."""
        record = {
            "at": iso_utc(datetime.now(UTC)),
            "file": report.file,
            "restored": list(report.restored),
            "missing": list(report.missing),
            "text": text,
        }
        storage.append_lines(self.store_dir / INCIDENTS, [json.dumps(record)])

    # -- open segments -----------------------------------------------------

    def db(self, index: int) -> TinyDB:
        """A segment's database, opened (and read, and repaired) if it is not open."""
        db = self.open.get(index)
        if db is not None:
            self.open.move_to_end(index)
            return db
        path = self.path(index)
        damaged: dict[int, Damage] = {}
        replayed = self._load(index, path, damaged)
        if damaged:  # damaged since the store was opened: repaired the same way
            self._recover(damaged)
            replayed = self._load(index, path, {})
        if len(self.open) >= OPEN_SEGMENTS:
            oldest = next(iter(self.open.values()))
            storage_of(oldest).sync()  # its new passages' records, before its file is closed
            self.open.popitem(last=False)
            oldest.close()
        db = TinyDB(path, storage=SegmentLog, replayed=replayed)
        self.open[index] = db
        return db

    def log(self, index: int) -> SegmentLog:
        """A segment's storage, for the outbox's own reads and bulk bookkeeping."""
        return storage_of(self.db(index))

    def sync_all(self) -> None:
        """Sync every open segment's deferred writes (raises Unsynced). Closed segments
        have none: they are synced before they are closed."""
        for db in self.open.values():
            storage_of(db).sync()

    def compact(self, index: int) -> None:
        """Rewrite a segment's log whole. A failure costs nothing but bytes: the log holds
        everything as it is, so it is logged and tried again later."""
        try:
            self.log(index).compact()
        except StoreError as exc:
            log.warning("store: cannot compact segment %d: %s", index, exc)

    def drop(self, index: int) -> None:
        """Delete a segment none of whose passages is waiting (the directory not synced)."""
        db = self.open.pop(index, None)
        if db is not None:
            storage_of(db).unsynced = False  # its passages are in the archive: nothing to sync
            db.close()
        self.path(index).unlink(missing_ok=True)

    def close_all(self) -> None:
        for index, db in self.open.items():
            try:
                db.close()
            except StoreError as exc:  # its new passages stay in the journal's tail
                log.warning("store: segment %d closed unsynced: %s", index, exc)
        self.open.clear()


def _restored(text: str, seq: int) -> Document:
    """A passage put back from the journal: as stored, never yet sent."""
    return Document(doc_of(text, json.loads(text), STORED), seq)


def storage_of(db: TinyDB) -> SegmentLog:
    """A segment database's storage (the log)."""
    segment = db.storage
    assert isinstance(segment, SegmentLog)
    return segment
