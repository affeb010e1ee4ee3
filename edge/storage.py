"""Durable files: atomic replacement with a last good copy, fsynced appends.

Every write that matters goes through here, so that its guarantees hold in
one place:

- :func:`replace_file` writes a temp file, fsyncs it, keeps the current file
  as ``<name>.prev`` (a hard link: no copy), renames the temp file over the
  current one and fsyncs the directory. After a crash at any point the file
  is the old or the new complete version, and ``.prev`` is a complete earlier
  version.
- :func:`append_lines` appends whole lines and fsyncs (the day archives).
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


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``; keep the old version as ``.prev``.

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
        if path.exists():
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
        raise StoreError(f"{path} written but not synced: {exc.strerror}") from exc
    crash("dir-synced")


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
