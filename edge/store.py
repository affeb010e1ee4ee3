"""The passage outbox: a TinyDB database that survives crashes and power cuts.

TinyDB rewrites its whole file on every write and, with its stock JSON
storage, not atomically. :class:`AtomicJSONStorage` writes a temp file,
fsyncs it, ``os.replace``s it over the old one and fsyncs the directory, so
the file on disk is always either the old or the new complete state.

The :class:`Outbox` numbers passages (``seq``: monotonic per device, never
repeated across restarts) and tracks their delivery state. A passage is on
disk before :meth:`Outbox.append` returns. All methods are thread-safe; one
lock serialises access to the database.

On disk: ``<dir>/outbox.json``, table ``passages`` (document id = ``seq``,
``{"msg": <passage message>, "state": "stored" | "sent"}``) and table
``meta`` (``last_seq``, kept for when delivered passages leave the outbox).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB, where
from tinydb.storages import Storage
from tinydb.table import Document

from edge.errors import StoreCorrupt, StoreError
from edge.model import Passage, PassageDraft

STORED = "stored"
SENT = "sent"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Put ``data`` in place of ``path`` (temp file, fsync, rename); the rename still
    needs :func:`fsync_dir` to survive a power cut."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class AtomicJSONStorage(Storage):
    """TinyDB storage: JSON, written atomically and durably, read from memory.

    One process owns the file, so the last written text is kept in memory and
    ``read`` parses it again (TinyDB mutates what ``read`` returns, so each
    caller needs a fresh copy). A file that is not a JSON object raises
    :class:`StoreCorrupt` and is left untouched.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._text: str | None = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._text = None
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreCorrupt(f"cannot read store {self.path}: {exc}") from exc
        if self._text is not None:
            self._parse()  # fail now, at open, not at the first passage

    def _parse(self) -> dict[str, dict[str, Any]] | None:
        if self._text is None:
            return None
        try:
            data = json.loads(self._text)
        except ValueError as exc:
            raise StoreCorrupt(f"store {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise StoreCorrupt(f"store {self.path} does not hold TinyDB tables")
        return data

    def read(self) -> dict[str, dict[str, Any]] | None:
        return self._parse()

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        try:
            replace_file(self.path, text.encode("utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write store {self.path}: {exc.strerror or exc}") from exc
        self._text = text  # the new file is in place: memory must agree with it
        try:
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise StoreError(f"store {self.path} written but not synced: {exc.strerror}") from exc

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class OutboxCounts:
    stored: int
    sent: int
    last_seq: int


class Outbox:
    """Durable, numbered passages awaiting delivery."""

    FILE = "outbox.json"

    def __init__(
        self, directory: Path, device: str, site: str, fields: tuple[str, ...] = ()
    ) -> None:
        self.directory = directory
        self.device = device
        self.site = site
        self.fields = fields
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {directory}: {exc.strerror}") from exc
        self.path = directory / self.FILE
        self._lock = threading.Lock()
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)
        self._passages = self._db.table("passages", cache_size=0)
        self._meta = self._db.table("meta", cache_size=0)
        try:
            meta = self._meta.get(doc_id=1)
            floor = int(meta["last_seq"]) if isinstance(meta, Mapping) else 0
            docs = self._passages.all()
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreCorrupt(f"store {self.path} has malformed tables: {exc!r}") from exc
        for doc in docs:
            if not isinstance(doc.get("msg"), dict) or doc.get("state") not in (STORED, SENT):
                raise StoreCorrupt(f"store {self.path}: passage {doc.doc_id} is malformed")
        self._last_seq = max([floor, *(doc.doc_id for doc in docs)])

    def append(self, draft: PassageDraft) -> Passage:
        """Number the passage and write it durably; return it as stored."""
        with self._lock:
            seq = self._last_seq + 1
            passage = Passage(
                pid=str(uuid.uuid4()), seq=seq, device=self.device, site=self.site, draft=draft
            )
            msg = passage.to_message(self.fields)
            try:
                self._passages.insert(Document({"msg": msg, "state": STORED}, seq))
            except StoreError:
                if self._passages.contains(doc_id=seq):
                    self._last_seq = seq  # on disk after all (only its sync failed): never reuse
                raise
            self._last_seq = seq
            return passage

    def unsent(self, limit: int, exclude: Iterable[int] = ()) -> list[dict[str, Any]]:
        """Up to ``limit`` unsent passage messages, oldest first, skipping ``exclude`` seqs."""
        skip = set(exclude)
        with self._lock:
            docs = self._passages.search(where("state") == STORED)
        docs.sort(key=lambda d: d.doc_id)
        return [dict(d["msg"]) for d in docs if d.doc_id not in skip][:limit]

    def mark_sent(self, seqs: Iterable[int]) -> None:
        """Record that the broker accepted these passages (a successful PUBACK)."""
        ids = sorted(set(seqs))
        if not ids:
            return
        with self._lock:
            present = [i for i in ids if self._passages.contains(doc_id=i)]
            self._passages.update({"state": SENT}, doc_ids=present)

    def approved_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(credential ref, time) of every approved passage at or after ``since``."""
        with self._lock:
            docs = self._passages.all()
        out = []
        for doc in docs:
            msg = doc["msg"]
            if msg.get("decision") != "approved":
                continue
            try:
                ts = datetime.fromisoformat(msg["ts"].replace("Z", "+00:00"))
            except (KeyError, ValueError, AttributeError):
                continue
            if ts >= since:
                out += [(c["ref"], ts) for c in msg.get("credentials", []) if c.get("ref")]
        return out

    def get(self, seq: int) -> dict[str, Any] | None:
        """The stored record of one passage (``msg`` and ``state``), or None."""
        with self._lock:
            doc = self._passages.get(doc_id=seq)
        return dict(doc) if isinstance(doc, Mapping) else None

    def counts(self) -> OutboxCounts:
        with self._lock:
            docs = self._passages.all()
        stored = sum(1 for d in docs if d["state"] == STORED)
        return OutboxCounts(stored=stored, sent=len(docs) - stored, last_seq=self._last_seq)

    def check_writable(self) -> None:
        """Raise StoreError unless the whole store can be rewritten durably right now.

        It rewrites the store as it is, so it needs (and proves) the space a
        real append needs.
        """
        with self._lock:
            storage = self._db.storage
            data = storage.read()
            storage.write(data if data is not None else {})

    def close(self) -> None:
        with self._lock:
            self._db.close()
