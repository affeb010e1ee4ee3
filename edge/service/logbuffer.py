"""The last log lines, kept in memory for the ``get-logs`` command, masked.

Log lines never carry personal data by design (passages are logged by seq and
kind, credentials by a keyed hash). This buffer masks anyway what could still
look like it: long digit runs (ID card and phone numbers), vehicle plates and
e-mail addresses, so that a remote operator's copy is safe even if a future
log line slips.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque

MAX_LINES = 2000
_MASKS = (
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<email>"),
    # Vietnamese plates: 29A-123.45, 51F12345, 30E-12345
    (re.compile(r"\b\d{2}[A-Z]{1,2}\d?-?\d{3}\.?\d{2}\b"), "<plate>"),
    (re.compile(r"\d{6,}"), "<number>"),
)


def mask(text: str) -> str:
    """``text`` with anything that may be personal data replaced by a placeholder."""
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return text


class RecentLogs(logging.Handler):
    """A logging handler that keeps the last ``capacity`` formatted lines."""

    def __init__(self, capacity: int = MAX_LINES) -> None:
        super().__init__(level=logging.DEBUG)
        self._lines: deque[tuple[int, str]] = deque(maxlen=capacity)
        self._guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a broken record must not break logging
            line = f"{record.levelname} {record.name}: (unformattable message)"
        with self._guard:
            self._lines.append((record.levelno, line))

    def lines(self, count: int, level: int = logging.INFO) -> list[str]:
        """The last ``count`` lines at ``level`` or above, oldest first, masked."""
        with self._guard:
            chosen = [line for lvl, line in self._lines if lvl >= level]
        return [mask(line) for line in chosen[-count:]] if count > 0 else []


_installed: RecentLogs | None = None
_install_lock = threading.Lock()


def install() -> RecentLogs:
    """The process's buffer, attached to the root logger once."""
    global _installed  # noqa: PLW0603 - one buffer per process, like logging itself
    with _install_lock:
        if _installed is None:
            _installed = RecentLogs()
            logging.getLogger().addHandler(_installed)
        return _installed
