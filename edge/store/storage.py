"""Durable files: atomic replacement with a last good copy, fsynced appends.

Every write that matters goes through here, so that its guarantees hold in
one place:

- :func:`replace_file` writes a temp file, fsyncs it, keeps the current file
  as ``<name>.prev`` (a hard link: no copy), renames the temp file over the
  current one and fsyncs the directory. After a crash at any point the file
  is the old or the new complete version, and ``.prev`` is a complete earlier
  version.
- :func:`append_lines` appends whole lines and fsyncs (the day archives).
- :class:`AppendLog` keeps a file open for appends: each one is written and
  fdatasynced, or written now and synced later (the outbox segments' logs,
  whose new passages the journal holds meanwhile); a write that fails
  half way is cut back off, so the file never holds a torn record followed by
  good ones. The file is grown ahead in zero-filled steps of :data:`PREALLOC`
  bytes, so that most appends overwrite blocks the file already has and their
  sync writes no metadata (the size) as well (SQLite's write-ahead log gets
  its speed the same way). Records never hold a NUL byte: readers take the
  file up to its last non-NUL byte (:func:`data_end`).
- :func:`read_json` reads a file written by :func:`replace_file`; a file that
  does not parse is moved to ``quarantine/`` and the last good copy is used.

:data:`crash` is a hook the power-cut tests set to stop a write between any
two of its steps; in the kiosk it does nothing. :data:`written` counts the
bytes written, for the benchmarks.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.errors import StoreError

log = logging.getLogger(__name__)


CRASH_ENV = "CHECKPOINT_EDGE_CRASH_AT"


def _no_crash(step: str) -> None:
    pass


def _crash_from_env() -> Callable[[str], None]:
    """Fault injection for the power-cut tests: ``CHECKPOINT_EDGE_CRASH_AT=step:n``
    ends the process, as a power cut would, the n-th time a write reaches
    ``step``. Unset (always, outside those tests), it does nothing."""
    spec = os.environ.get(CRASH_ENV, "")
    step, _, nth = spec.partition(":")
    if not step or not nth.isdigit():
        return _no_crash
    seen = [0]

    def cut(reached: str) -> None:
        if reached == step:
            seen[0] += 1
            if seen[0] == int(nth):
                os._exit(137)

    return cut


# Tests set this to stop a write at a named step (a simulated power cut).
crash: Callable[[str], None] = _crash_from_env()
STEPS = (
    "temp-open",
    "temp-half",
    "temp-written",
    "temp-synced",
    "prev-kept",
    "replaced",
    "dir-synced",
    "append-half",
    "appended",
    "record-half",
    "record-written",
    "record-synced",
)


@dataclass
class Counters:
    bytes: int = 0
    files: int = 0


written = Counters()


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prev_of(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


class Unsynced(StoreError):
    """The data is in the file, but could not be made durable (a power cut may undo it)."""


def replace_file(path: Path, data: bytes, *, keep_prev: bool = True) -> None:
    """Replace ``path`` with ``data``; keep the old version as ``.prev`` (unless told not to).

    Raises StoreError. When the rename happened but the directory could not
    be synced, the error says so: the new content is in place (though a power
    cut could still undo the rename).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        crash("temp-open")
        with open(tmp, "wb") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            crash("temp-half")
            fh.write(data[half:])
            fh.flush()
            crash("temp-written")
            os.fsync(fh.fileno())
        crash("temp-synced")
        if keep_prev and path.exists():
            link = path.with_name(path.name + ".prev.tmp")
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, prev_of(path))
            crash("prev-kept")
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    written.bytes += len(data)
    written.files += 1
    crash("replaced")
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        raise Unsynced(f"{path} written but not synced: {exc.strerror}") from exc
    crash("dir-synced")


# An append log grows by this much at a time, zero-filled and synced with the
# append that needed it: one size change (a metadata write) per 64 KiB, not per
# record. Written zeros, not fallocate(): a write into an allocated but unwritten
# extent is a metadata change of its own on ext4.
PREALLOC = 64 * 1024


class AppendLog:
    """A file written only at its end, kept open between appends.

    :meth:`append` returns once the bytes are on the disk (``fdatasync``; the
    directory too when the file is new). A failed append is cut back off the
    file, so the next one starts where the last good one ended; when only the
    sync failed, :class:`Unsynced` says the bytes are in the file all the same.
    The file may end in zeros grown ahead (:data:`PREALLOC`); its data ends at
    its last non-NUL byte.
    """

    def __init__(self, path: Path, *, lines: bool = False) -> None:
        self.path = path
        self.lines = lines  # a file of lines: a torn last line is cut off before appending
        self._fd: int | None = None
        self._end = 0  # where the last good append ended
        self._size = 0  # the file's size: the data, then zeros grown ahead
        self._new = False

    def _open(self) -> int:
        if self._fd is None:
            self._new = not self.path.exists()
            self._fd = fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            self._size = os.fstat(fd).st_size
            self._end = _data_end_of_file(fd, self._size)
            if self.lines and self._end:
                whole = _end_of_last_line(fd, self._end)
                if whole < self._end:  # a power cut tore it: ours must not be glued to it
                    os.ftruncate(fd, whole)
                    self._end = self._size = whole
        return self._fd

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end and make it durable."""
        self.write(data)
        self.sync()
        crash("record-synced")

    def write(self, data: bytes) -> None:
        """Write ``data`` at the end, not yet synced (:meth:`sync`)."""
        try:
            fd = self._open()
            end = self._end
            if end + len(data) > self._size:
                grown = (end + len(data) + PREALLOC - 1) // PREALLOC * PREALLOC
                _pwrite_all(fd, bytes(grown - self._size), self._size)
                written.bytes += grown - self._size
                self._size = grown
                crash("grown")
            half = len(data) // 2
            _pwrite_all(fd, data[:half], end)
            crash("record-half")
            _pwrite_all(fd, data[half:], end + half)
            crash("record-written")
        except OSError as exc:
            self._cut_back()
            raise StoreError(f"cannot append to {self.path}: {exc.strerror or exc}") from exc
        self._end += len(data)
        written.bytes += len(data)

    def sync(self) -> None:
        """Make what was written durable (the directory too for a new file)."""
        try:
            os.fdatasync(self._open())
            if self._new:
                fsync_dir(self.path.parent)
                self._new = False
        except OSError as exc:
            raise Unsynced(f"{self.path} written but not synced: {exc.strerror}") from exc

    def _cut_back(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._end)
            self._size = self._end
        except OSError as exc:  # the next opening cuts the torn record off instead
            log.warning("store: cannot cut a failed append off %s: %s", self.path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _end_of_last_line(fd: int, size: int) -> int:
    """Where the last whole line of a file ends (0 if it has none)."""
    at = size
    while at > 0:
        start = max(0, at - 65536)
        chunk = os.pread(fd, at - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        at = start
    return 0


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n


def data_end(data: bytes) -> int:
    """Where the data of an append log's bytes ends: after its last non-NUL byte
    (what follows is the zeros :class:`AppendLog` grew the file by ahead)."""
    return _last_non_nul(lambda start, end: data[start:end], len(data))


def data_end_of(fd: int) -> int:
    """:func:`data_end` of an open file, reading only its tail."""
    return _data_end_of_file(fd, os.fstat(fd).st_size)


def _data_end_of_file(fd: int, size: int) -> int:
    """:func:`data_end` of an open file, reading only its tail."""
    return _last_non_nul(lambda start, end: os.pread(fd, end - start, start), size)


def _last_non_nul(read: Callable[[int, int], bytes], size: int) -> int:
    """Where the data ends in ``size`` bytes that ``read(start, end)`` hands out:
    read backwards a step of zeros at a time, so a long zero tail costs no more."""
    end = size
    while end:
        start = max(0, end - PREALLOC)
        kept = len(read(start, end).rstrip(b"\0"))
        if kept:
            return start + kept
        end = start
    return 0


def truncate(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes, durably (a torn last record after a power cut)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot cut the torn end off {path}: {exc.strerror or exc}") from exc


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append whole lines to ``path`` and fsync; a new file's directory entry too."""
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if not data:
        return
    new = not path.exists()
    try:
        if not new and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    data = b"\n" + data  # a power cut tore the last line: keep ours whole
        with open(path, "ab") as fh:
            half = len(data) // 2
            fh.write(data[:half])
            crash("append-half")
            fh.write(data[half:])
            fh.flush()
            os.fsync(fh.fileno())
        if new:
            fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot append to {path}: {exc.strerror or exc}") from exc
    written.bytes += len(data)
    crash("appended")


def quarantine(path: Path, why: str) -> Path:
    """Move a damaged file aside (never delete evidence); where it went."""
    qdir = path.parent / "quarantine"
    qdir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = qdir / f"{path.name}.{stamp}"
    os.replace(path, target)
    fsync_dir(path.parent)
    log.error("store: %s is damaged (%s); moved to %s", path, why, target)
    return target


@dataclass(frozen=True)
class Loaded:
    """A JSON file as read: its data, and what had to be done to get it."""

    data: Any
    recovered: bool = False  # the file was damaged; the last good copy was used
    lost: bool = False  # the file was damaged and no good copy was left
    text: str = ""  # the file's text, when data was read


def read_json(path: Path, check: Callable[[Any], None] | None = None) -> Loaded | None:
    """Read ``path`` (None if absent); on damage, quarantine it and use ``.prev``.

    ``check`` may raise ValueError or TypeError to declare well-formed JSON unusable.
    """
    try:
        data, text = _parse(path, check)
        return Loaded(data, text=text)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, OSError) as exc:
        why = str(exc) or type(exc).__name__
    quarantine(path, why)
    prev = prev_of(path)
    try:
        data, text = _parse(prev, check)
    except FileNotFoundError:
        return Loaded(None, lost=True)
    except (ValueError, TypeError, OSError) as exc:
        quarantine(prev, str(exc))
        return Loaded(None, lost=True)
    log.warning("store: recovered %s from its last good copy", path)
    os.link(prev, path)  # the damaged file was moved away: the copy takes its place
    fsync_dir(path.parent)
    return Loaded(data, recovered=True, text=text)


def _parse(path: Path, check: Callable[[Any], None] | None) -> tuple[Any, str]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    if check is not None:
        check(data)
    return data, text


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from exc
