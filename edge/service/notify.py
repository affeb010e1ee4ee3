"""The systemd notify protocol, spoken directly (no libsystemd, no python-systemd).

systemd starts a ``Type=notify`` service with ``NOTIFY_SOCKET`` set to a
datagram socket (a path, or an abstract name written with a leading ``@``);
the service sends newline-separated ``KEY=VALUE`` lines: ``READY=1`` once it
serves, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` at least every
``WATCHDOG_USEC`` microseconds while healthy (systemd kills and restarts it
otherwise), ``STOPPING=1`` when it begins to stop. Without ``NOTIFY_SOCKET``
(run by hand, in tests, under another supervisor) every call does nothing, so
the daemon behaves the same with or without systemd.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Messages to the service manager; a no-op when there is none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]  # an abstract socket
        elif address.startswith("/"):
            self.address = address
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (``ready=1`` -> ``READY=1``); False when not sent."""
        if self.address is None:
            return False
        text = "\n".join(f"{k.upper()}={_one_line(str(v))}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: a supervisor that went away must not flood the log
                log.warning("notify: cannot reach the service manager: %s", exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def watchdog(self) -> bool:
        return self.send(watchdog=1)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(stopping=1, status=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return text.replace("\n", " ")
