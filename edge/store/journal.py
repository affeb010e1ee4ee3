"""The journal: a second, independent record of every passage until it is acknowledged.

On disk, under the store's ``journal/``, one file per day (the passage's UTC
day, as the archive)::

    journal/2026-11-26.jsonl    {"seq":12,"crc":<crc32 of the text>,"msg":<text as published>}
                                {"seq":12,"void":"<pid>"}   (that append failed: not a passage)

A passage's line is written and fdatasynced *before* its segment record, by
the same thread, in another file: no single damaged file can lose a passage
the outbox has acknowledged to its caller. A day file is deleted once no
passage of that day is waiting (they are all in the archive).

The journal is only read when a segment is found damaged: the outbox then
takes from it every passage of that segment that is neither in the segment
(what could be saved of it) nor in the archive (acknowledged), and reports,
by number, any seq that is in none of the three (:func:`recover`).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.errors import StoreError
from edge.store import storage

log = logging.getLogger(__name__)

_MSG = b',"msg":'


def line_of(seq: int, text: str) -> bytes:
    data = text.encode("utf-8")
    return b'{"seq":%d,"crc":%d,"msg":%s}\n' % (seq, zlib.crc32(data), data)


class Journal:
    """Appends to the day files of one store's journal; one thread owns it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._day: str | None = None
        self._log: storage.AppendLog | None = None

    def path(self, day: str) -> Path:
        return self.directory / f"{day}.jsonl"

    def _file(self, day: str) -> storage.AppendLog:
        if self._log is None or self._day != day:
            if self._log is not None:
                self._log.close()
            storage.ensure_dir(self.directory)
            self._log, self._day = storage.AppendLog(self.path(day), lines=True), day
        return self._log

    def write(self, seq: int, text: str, day: str) -> storage.AppendLog:
        """Write a passage's line, not yet synced: the log to sync (raises StoreError)."""
        log_ = self._file(day)
        log_.write(line_of(seq, text))
        return log_

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
        for line in data[: storage.data_end(data)].splitlines():
            parsed = _parse(line)
            if parsed is None:
                continue
            seq, text, void = parsed
            if text is not None:
                out[seq] = text
            elif void is not None and seq in out and _pid_of(out[seq]) == void:
                del out[seq]
    return out


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
