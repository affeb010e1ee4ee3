"""Officer keys on a terminal, for the kiosk simulation: ``a`` approve, ``d`` deny, ``q`` quit.

Active only when standard input is a terminal. The terminal is put in cbreak
mode (keys arrive without Enter, Ctrl-C still works) and restored on stop.
"""

from __future__ import annotations

import logging
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class KeyboardThread(threading.Thread):
    def __init__(self, on_key: Callable[[str], None]) -> None:
        super().__init__(name="keys", daemon=True)
        self.on_key = on_key
        self.stop_event = threading.Event()
        self._saved: list[Any] | None = None

    @staticmethod
    def available() -> bool:
        return sys.stdin.isatty()

    def start(self) -> None:
        fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        super().start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=1.0)
        if self._saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def run(self) -> None:
        fd = sys.stdin.fileno()
        while not self.stop_event.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            key = sys.stdin.read(1)
            if not key:
                return
            try:
                self.on_key(key.lower())
            except Exception:
                log.exception("keys: handler failed")
