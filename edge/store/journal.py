"""The journal: the write-ahead record of every passage, kept until it is acknowledged.

On disk, under the store's ``journal/``, one file per day (the passage's UTC
day, as the archive)::

    journal/2026-11-26.jsonl    {"seq":12,"crc":<crc32 of the text>,"msg":<text as published>}
                                {"seq":12,"void":"<pid>"}   (that append failed: not a passage)
                                {"ckpt":12}   (every passage up to seq 12 is durable in its segment)

A passage's line is written and fdatasynced *before* its segment record, which
is written but not synced: :meth:`Outbox.append` returns once the journal line
is on the disk (one sync per passage, as a database's write-ahead log). A
*checkpoint* later syncs the segments written since the last one and then
writes a ``ckpt`` line (synced with the next passage's line; losing it costs
only a longer read at the next start). At every start the outbox reads each
day file back from its end to its last ``ckpt`` line (:func:`tail`): the
passages after it, and no others, may be missing or torn in their segments
after a power cut, and are put back from here. A day file is deleted once no
passage of that day is waiting (they are all in the archive).

Beyond that, the journal is the second, independent record of a passage until
it is acknowledged: when a segment is found damaged, the outbox takes from it
every passage of that segment that is neither in the segment (what could be
saved of it) nor in the archive (acknowledged), and reports, by number, any seq
that is in none of the three (:func:`read`, :func:`recover`).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import StoreError
from edge.store import storage

log = logging.getLogger(__name__)

_MSG = b',"msg":'
_CKPT = b'{"ckpt":'
TAIL_STEP = 16 * 1024  # bytes read back from a day file's end at a time, looking for a ckpt


def line_of(seq: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return b'{"seq":%d,"crc":%d,"msg":%s}\n' % (seq, zlib.crc32(data), data)


def checkpoint_line(seq: int) -> bytes:
    """Every passage up to ``seq`` is durable in its segment."""
    return b"%s%d}\n" % (_CKPT, seq)


class Journal:
    """Appends to the day files of one store's journal; one thread owns it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._day: str | None = None
        self._log: storage.AppendLog | None = None

    def path(self, day: str) -> Path:
        return self.directory / f"{day}.jsonl"

    @property
    def day(self) -> str | None:
        """The day file being written (None before the first write)."""
        return self._day

    def _file(self, day: str) -> storage.AppendLog:
        if self._log is None or self._day != day:
            if self._log is not None:
                self._log.close()
            storage.ensure_dir(self.directory)
            self._log, self._day = storage.AppendLog(self.path(day), lines=True), day
        return self._log

    def append(self, seq: int, text: str, day: str) -> None:
        """Write a passage's line and sync it (raises StoreError; Unsynced when only the
        sync failed)."""
        self._file(day).append(line_of(seq, text))

    def checkpoint(self, seq: int) -> None:
        """Every passage up to ``seq`` is durable in its segment: say so in the day file
        being written, without a sync of its own (the next passage's line syncs it)."""
        if self._log is not None:
            self._log.write(checkpoint_line(seq))

    def append_lines(self, day: str, lines: list[bytes]) -> None:
        """Record many passages at once (lines made by :func:`line_of`)."""
        self._file(day).append(b"".join(lines))

    def void(self, seq: int, pid: str, day: str) -> None:
        """That passage's append failed: never restore it. Best effort."""
        try:
            record = json.dumps({"seq": seq, "void": pid}, separators=(",", ":"))
            self._file(day).append(record.encode() + b"\n")
        except StoreError as exc:
            log.warning("store: cannot void seq %d in the journal: %s", seq, exc)

    def probe(self) -> None:
        """Raise StoreError unless the current day file takes a write."""
        if self._day is not None:
            self._file(self._day).append(b'{"probe":1}\n')

    def prune(self, live_days: Iterable[str]) -> list[str]:
        """Delete the day files no waiting passage is in; the names deleted."""
        keep = set(live_days)
        if self._day is not None:
            keep.add(self._day)  # the day being written stays open
        gone = []
        for path in sorted(self.directory.glob("*.jsonl")):
            if path.stem not in keep:
                path.unlink(missing_ok=True)
                gone.append(path.name)
        if gone:
            storage.fsync_dir(self.directory)
        return gone

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log, self._day = None, None


def read(directory: Path) -> dict[int, str]:
    """Every passage the journal holds: seq -> message text (the last line of a seq wins;
    a voided one is left out). Damaged lines are skipped."""
    out: dict[int, str] = {}
    for path in sorted(directory.glob("*.jsonl")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.error("store: cannot read the journal %s: %s", path, exc)  # noqa: TRY400
            continue
        _replay(data[: storage.data_end(data)].splitlines(), out)
    return out


def _replay(lines: Iterable[bytes], out: dict[int, str]) -> int:
    """Apply a day file's lines to ``out`` (seq -> text); the highest seq seen."""
    highest = 0
    for line in lines:
        parsed = _parse(line)
        if parsed is None:
            continue
        seq, text, void = parsed
        highest = max(highest, seq)
        if text is not None:
            out[seq] = text
        elif void is not None and seq in out and _pid_of(out[seq]) == void:
            del out[seq]
    return highest


@dataclass
class Tail:
    """What the journal's day files hold after their last ``ckpt`` line."""

    checkpoint: int = 0  # the highest ckpt found: every seq up to it is in its segment
    texts: dict[int, str] = field(default_factory=dict)  # seq -> text, after the ckpt lines
    highest: int = 0  # the highest seq of a line or ckpt read (voided ones too): numbered
    days: dict[int, str] = field(default_factory=dict)  # seq -> its day file's day
    late: list[Path] = field(default_factory=list)  # files with lines after their last ckpt

    def pending(self) -> dict[int, str]:
        """The passages whose segment record may not be durable: after the checkpoint."""
        return {s: t for s, t in self.texts.items() if s > self.checkpoint}


def tail(directory: Path) -> Tail:
    """Read each day file back from its end to its last ``ckpt`` line (a file with none,
    as an older version left them, is read whole)."""
    out = Tail()
    for path in sorted(directory.glob("*.jsonl")):
        try:
            with open(path, "rb") as fh:
                lines, ckpt = _after_last_checkpoint(fh.fileno())
        except OSError as exc:
            log.error("store: cannot read the journal %s: %s", path, exc)  # noqa: TRY400
            continue
        if ckpt is not None:
            out.checkpoint = max(out.checkpoint, ckpt)
            out.highest = max(out.highest, ckpt)
        if lines:
            out.late.append(path)
        texts: dict[int, str] = {}
        out.highest = max(out.highest, _replay(lines, texts))
        out.texts.update(texts)
        out.days.update(dict.fromkeys(texts, path.stem))
    return out


def mark(path: Path, seq: int) -> None:
    """Append a ``ckpt`` line to a day file, not synced (best effort: without it, the next
    start only reads more)."""
    log_ = storage.AppendLog(path, lines=True)
    try:
        log_.write(checkpoint_line(seq))
    except StoreError as exc:
        log.warning("store: cannot mark the journal %s: %s", path.name, exc)
    finally:
        log_.close()


def _after_last_checkpoint(fd: int) -> tuple[list[bytes], int | None]:
    """The lines of a day file after its last whole ``ckpt`` line, and that line's seq
    (None if there is none): read backwards, twice as far each time."""
    end = storage.data_end_of(fd)
    step = TAIL_STEP
    while True:
        start = max(0, end - step)
        data = os.pread(fd, end - start, start)
        found = _last_checkpoint(data, whole=start == 0)
        if found is not None:
            at, seq = found
            return data[at:].splitlines(), seq
        if start == 0:
            return data.splitlines(), None
        step *= 2


def _last_checkpoint(data: bytes, *, whole: bool) -> tuple[int, int] | None:
    """Where the lines after the last whole, readable ``ckpt`` line of ``data`` begin, and
    its seq. ``whole``: ``data`` starts at the file's start (else its first line may be a
    part of one)."""
    pos = len(data)
    while (at := data.rfind(_CKPT, 0, pos)) >= 0:
        pos = at
        if (at == 0 and not whole) or (at > 0 and data[at - 1] != 0x0A):
            continue  # not at the start of a line
        nl = data.find(b"\n", at)
        if nl < 0:
            continue  # torn by a power cut
        try:
            seq = json.loads(data[at:nl])["ckpt"]
        except (ValueError, KeyError, TypeError):
            continue
        if type(seq) is int:
            return nl + 1, seq
    return None


def _parse(line: bytes) -> tuple[int, str | None, str | None] | None:
    at = line.find(_MSG)
    try:
        if at < 0:
            head = json.loads(line)
            if isinstance(head, dict) and isinstance(head.get("seq"), int):
                void = head.get("void")
                return head["seq"], None, void if isinstance(void, str) else None
            return None
        head = json.loads(line[:at] + b"}")
        data = line[at + len(_MSG) : -1]
        if line[-1:] != b"}" or zlib.crc32(data) != head["crc"] or not isinstance(head["seq"], int):
            return None
        return head["seq"], data.decode("utf-8"), None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None


def _pid_of(text: str) -> str | None:
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    return str(msg.get("pid")) if isinstance(msg, dict) else None


@dataclass(frozen=True)
class Recovery:
    """What became of the passages of one damaged segment."""

    file: str
    kept: tuple[int, ...]  # in what could be read of the file
    restored: tuple[int, ...]  # from the journal
    missing: tuple[int, ...]  # in neither, nor in the archive: lost

    def describe(self, how: str) -> str:
        parts = [f"{self.file} {how}"]
        if self.restored:
            parts.append(f"seq {ranges(self.restored)} restored from the journal")
        if self.missing:
            parts.append(f"seq {ranges(self.missing)} missing (in neither the journal nor the "
                         "archive)")  # fmt: skip
        if not self.restored and not self.missing:
            parts.append("no passage lost")
        return "; ".join(parts)


def recover(
    file: str,
    candidates: Iterable[int],
    kept: Iterable[int],
    journal: dict[int, str],
    archived: set[int],
) -> tuple[Recovery, dict[int, str]]:
    """Sort out the seqs a damaged segment should hold: kept, restored, missing.
    ``candidates``: every seq of the segment's range that was ever numbered;
    ``archived``: the seqs in the archive. Returns the report and the texts to restore."""
    live = set(kept)
    absent = [s for s in sorted(candidates) if s not in live and s not in archived]
    restore = {s: journal[s] for s in absent if s in journal}
    missing = tuple(s for s in absent if s not in journal)
    return Recovery(file, tuple(sorted(live)), tuple(restore), missing), restore


def ranges(seqs: Iterable[int]) -> str:
    """``[10, 11, 12, 15]`` -> ``"10-12, 15"``."""
    out: list[str] = []
    run: list[int] = []
    for s in sorted(seqs):
        if run and s == run[-1] + 1:
            run.append(s)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [s]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
