"""An outbox segment as an append-only log, behind TinyDB's ``Storage`` interface.

TinyDB reads the whole database, changes it and hands the whole of it back to
``write``. :class:`SegmentLog` compares what it is handed with what it holds
and appends only the difference, one record per write, fdatasynced: a new
passage costs its own bytes, not its segment's. The log is rewritten whole
(compacted, through :func:`edge.store.storage.replace_file`: temp file, fsync,
rename, directory fsync) when its segment is done or when it has grown past
``COMPACT_FACTOR`` times what it holds.

A record is one line::

    <crc32 of the rest, 8 hex digits> SP <header: JSON> [TAB <message texts>] LF

The header is one of ``{"put": {key: fields}, "len": [bytes, ...]}`` (documents
whole; each one's ``msg`` text follows the tab, raw, in the order of ``len``,
so that it is neither escaped nor parsed again), ``{"set": {key: {field:
value}}}``, ``{"del": [key, ...]}`` and ``{"probe": 1}`` (a write test). A
compacted log is a single ``put`` record. Message texts are JSON written with
``ensure_ascii``: they hold neither a newline nor a tab.

Reading replays the records. A last record that is cut short (a power cut
during an append: it was never acknowledged) is left out and cut off before
the next append; any other record that fails its checksum makes the file
*damaged*: the records that pass are kept and the outbox fills in the rest
from its journal (:mod:`edge.store.journal`).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from edge.store import storage

TABLE = "passages"
COMPACT_FACTOR = 4  # a log beyond this many times its live size is compacted...
COMPACT_SLACK = 32 * 1024  # ...once it is also this much larger (bytes)
_HEX = frozenset(b"0123456789abcdef")

Docs = dict[str, dict[str, Any]]


@dataclass
class Replayed:
    """A segment log as read: its documents, and the state of the file."""

    fields: Docs = field(default_factory=dict)  # key -> the document without its message
    texts: dict[str, bytes | memoryview] = field(default_factory=dict)  # key -> text (raw)
    end: int = 0  # bytes up to the end of the last good record
    size: int = 0  # bytes in the file
    bad: int = 0  # records that failed their check, other than a torn last one
    holes: int = 0  # ... of which start with zeros (their first block never written)
    torn: bool = False  # the last record was cut short

    @property
    def damaged(self) -> bool:
        return self.bad > 0

    def docs(self) -> Docs:
        """The documents with their messages, as TinyDB holds them."""
        out: Docs = {}
        for key, fields in self.fields.items():
            text = self.texts.get(key)
            out[key] = fields if text is None else {**fields, "msg": str(text, "utf-8")}
        return out


def encode(header: dict[str, Any], texts: list[bytes] | None = None) -> bytes:
    """One record (the line, its checksum, its newline)."""
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    if texts:
        body += b"\t" + b"".join(texts)
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def encode_put(docs: Docs) -> bytes:
    """A record holding these documents whole. Documents that all have the same fields
    and a message text are written by column (``{"keys", "cols", "len"}``): an index
    read back as a few lists of strings, rather than as an object per document, is
    what makes opening a large backlog quick."""
    names = _same_fields(docs)
    if names is not None:
        raw = [d["msg"].encode("utf-8") for d in docs.values()]
        cols = {n: [d[n] for d in docs.values()] for n in names}
        return encode({"keys": list(docs), "cols": cols, "len": [len(t) for t in raw]}, raw)
    put: Docs = {}
    lens: list[int] = []
    texts: list[bytes] = []
    for key, doc in docs.items():
        text = doc["msg"].encode("utf-8")
        put[key] = {k: v for k, v in doc.items() if k != "msg"}
        lens.append(len(text))
        texts.append(text)
    return encode({"put": put, "len": lens}, texts)


def _same_fields(docs: Docs) -> list[str] | None:
    """The fields (but ``msg``) every document has, if they all have the same ones and
    a message text; else None."""
    first = next(iter(docs.values()), None)
    if first is None or len(docs) < 2:
        return None
    names = list(first)
    if any(list(d) != names or not isinstance(d.get("msg"), str) for d in docs.values()):
        return None
    return [n for n in names if n != "msg"]


def replay(data: bytes) -> Replayed:
    """The documents a log's bytes hold; see the module's docstring for damage."""
    size = storage.data_end(data)  # the zeros the log was grown by ahead are no records
    out = Replayed(size=size)
    pos = 0
    bad_at: list[int] = []
    while pos < size:
        nl = data.find(b"\n", pos, size)
        line = data[pos:size] if nl < 0 else data[pos:nl]
        if nl >= 0 and _apply(line, out):
            out.end = nl + 1
        else:
            bad_at.append(pos)
        pos = size if nl < 0 else nl + 1
    if bad_at and bad_at[-1] >= out.end and _looks_like_a_record(data[bad_at[-1] : size]):
        # only the last: an append cut short, never acknowledged
        out.torn = True
        bad_at.pop()
    out.bad = len(bad_at)
    out.holes = sum(1 for at in bad_at if data[at] == 0)
    if out.bad and not out.torn:
        out.end = size  # a damaged file is replaced whole, never appended to
    return out


def _looks_like_a_record(tail: bytes) -> bool:
    """A torn record still starts like one; garbage over a file does not. (Nor does a
    record whose first block never reached the disk while a later one did, which
    writes into a file grown ahead allow: it starts with zeros, a *hole*. It is taken
    for damage: the segment is repaired from the journal, nothing is lost; and where
    it is a record the journal's tail says was not yet synced, that is no alert.)"""
    head = tail[:10]
    return (len(head) >= 9 and all(b in _HEX for b in head[:8]) and head[8:9] == b" ") or (
        len(head) < 9 and all(b in _HEX for b in head[:8])
    )


def _apply(line: bytes, out: Replayed) -> bool:
    """Apply one record to ``out``; False (and nothing applied) if it is not a good one."""
    if len(line) < 11 or line[8:9] != b" " or not all(b in _HEX for b in line[:8]):
        return False
    body = line[9:]
    if zlib.crc32(body) != int(line[:8], 16):
        return False
    tab = body.find(b"\t")
    try:
        header = json.loads(body if tab < 0 else body[:tab])
        if not isinstance(header, dict):
            return False
        return _apply_header(header, b"" if tab < 0 else body[tab + 1 :], out)
    except (ValueError, TypeError, AttributeError, KeyError):
        return False


def _apply_header(header: dict[str, Any], texts: bytes, out: Replayed) -> bool:
    if "cols" in header:
        return _apply_columns(header, texts, out)
    if "put" in header:
        put, lens = header["put"], header["len"]
        if not isinstance(put, dict) or not isinstance(lens, list) or len(put) != len(lens):
            return False
        if any(not isinstance(n, int) or n < 0 for n in lens) or sum(lens) != len(texts):
            return False
        at = 0
        for (key, fields), n in zip(put.items(), lens, strict=True):
            if not isinstance(fields, dict):
                return False
            out.fields[key] = fields
            out.texts[key] = texts[at : at + n]
            at += n
        return True
    for key, changes in header.get("set", {}).items():
        if key in out.fields:
            out.fields[key] = {**out.fields[key], **changes}
    for key in header.get("del", ()):
        out.fields.pop(key, None)
        out.texts.pop(key, None)
    return bool(header.keys() & {"set", "del", "probe"})


def _apply_columns(header: dict[str, Any], texts: bytes, out: Replayed) -> bool:
    keys, cols, lens = header["keys"], header["cols"], header["len"]
    names = list(cols)
    columns = list(cols.values())
    if any(len(c) != len(keys) for c in columns) or len(lens) != len(keys):
        return False
    if sum(lens) != len(texts):
        return False
    view = memoryview(texts)  # slices of it copy nothing
    at = 0
    fields, kept = out.fields, out.texts
    for key, n, row in zip(keys, lens, zip(*columns)):  # noqa: B905 - lengths checked
        fields[key] = dict(zip(names, row))  # noqa: B905
        kept[key] = view[at : at + n]
        at += n
    return True


def load(path: Path) -> Replayed | None:
    """Read a segment log (None if absent). Raises OSError if it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return replay(data)


class SegmentLog(Storage):
    """TinyDB storage for one segment: an append-only log, served from memory.

    TinyDB changes what ``read`` returns before it writes, so ``read`` hands out
    copies; the outbox's own lookups use :meth:`peek` (never to be changed), and
    its bulk bookkeeping :meth:`update` and :meth:`delete`, which skip TinyDB's
    read-modify-write.
    """

    def __init__(self, path: str | os.PathLike[str], replayed: Replayed | None = None) -> None:
        self.path = Path(path)
        self._log = storage.AppendLog(self.path)
        self._docs: Docs = replayed.docs() if replayed is not None else {}
        self._size = replayed.end if replayed is not None else 0
        # While ``deferred``, what TinyDB writes is not synced (a new passage: its journal
        # line is its durable record until the outbox's next checkpoint syncs it here).
        self.deferred = False
        self.unsynced = False  # a deferred write not synced since

    def read(self) -> dict[str, Docs]:
        return {TABLE: {key: dict(doc) for key, doc in self._docs.items()}}

    def peek(self) -> Docs:
        """The documents as last written (read-only)."""
        return self._docs

    def write(self, data: dict[str, Docs]) -> None:
        new = data.get(TABLE, {})
        old = self._docs
        put = {k: d for k, d in new.items() if k not in old or old[k].get("msg") != d.get("msg")}
        changed: Docs = {}
        for key, doc in new.items():
            if key in put or doc == old[key]:
                continue
            before = old[key]
            if any(f not in doc for f in before):  # a field removed: the document whole
                put[key] = doc
                continue
            changed[key] = {f: v for f, v in doc.items() if f not in before or before[f] != v}
        gone = [k for k in old if k not in new]
        record = b""
        if put:
            record += encode_put(put)
        if changed:
            record += encode({"set": changed})
        if gone:
            record += encode({"del": gone})
        if record:
            self._append(record, dict(new), sync=not self.deferred)
            self.unsynced = self.unsynced or self.deferred

    def update(self, changes: Docs, sync: bool = True) -> None:
        """Change these fields of these documents (keys not held are left out). Without
        ``sync`` the record is written but not made durable until the next synced one
        (for changes a power cut may take)."""
        changes = {k: c for k, c in changes.items() if k in self._docs}
        if changes:
            docs = dict(self._docs)
            for key, fields in changes.items():
                docs[key] = {**docs[key], **fields}
            self._append(encode({"set": changes}), docs, sync)

    def delete(self, keys: list[str]) -> None:
        """Take these documents out (keys not held are left out)."""
        gone = [k for k in keys if k in self._docs]
        if gone:
            leaving = set(gone)
            docs = {k: d for k, d in self._docs.items() if k not in leaving}
            self._append(encode({"del": gone}), docs)

    def probe(self) -> None:
        """Append a record that changes nothing: raise StoreError unless the disk takes it."""
        self._append(encode({"probe": 1}), self._docs)

    def _append(self, record: bytes, docs: Docs, sync: bool = True) -> None:
        try:
            if sync:
                self._log.append(record)
            else:
                self._log.write(record)
        except storage.Unsynced:
            self._docs, self._size = docs, self._size + len(record)  # in the file all the same
            raise
        self._docs, self._size = docs, self._size + len(record)
        if sync:
            self.unsynced = False  # a sync makes what was written before durable too

    def sync(self, *, written_before: bool = False) -> None:
        """Make the deferred writes durable (raises Unsynced); ``written_before``: whatever
        the file holds, even if written by an earlier process (the store's opening)."""
        if self.unsynced or written_before:
            self._log.sync()
            self.unsynced = False

    def live_bytes(self) -> int:
        """About what a compacted log would take."""
        return sum(len(d.get("msg", "")) + 160 for d in self._docs.values())

    def worth_compacting(self) -> bool:
        return self._size > COMPACT_FACTOR * self.live_bytes() + COMPACT_SLACK

    def compact(self) -> None:
        """Rewrite the log as one record holding what it holds now (atomically)."""
        data = encode_put(self._docs)
        self._log.close()  # the next append opens the new file
        storage.replace_file(self.path, data, keep_prev=False)
        self._size = len(data)
        self.unsynced = False

    def close(self) -> None:
        """Close the file; deferred writes are synced first (raises Unsynced, and then the
        file stays open)."""
        self.sync()
        self._log.close()


def write_compacted(path: Path, docs: Docs) -> None:
    """Write a segment log holding ``docs``, atomically (a repaired segment)."""
    storage.replace_file(path, encode_put(docs), keep_prev=False)
