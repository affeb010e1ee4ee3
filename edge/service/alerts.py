"""Open alerts of this kiosk: raised and cleared by name, watched by the MQTT side.

An alert is a condition an operator must see without asking: the camera is
down, the store was corrupt, the disk is nearly full, the clock is not
synchronised, the barrier failed, the trust list is stale. Each has a stable
name (a topic level: ``a-z 0-9 -``) and a detail that never holds personal
data. Raising an open alert again only updates its detail; listeners hear of
every change (on the thread that made it: they must not block).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from edge.core.model import iso_utc

log = logging.getLogger(__name__)

Severity = Literal["critical", "warning"]

# The alerts the kiosk raises (docs/fleet.md lists when each is raised and cleared).
CAMERA_DOWN = "camera-down"
STORE_CORRUPT = "store-corrupt"
STORE_FOREIGN = "store-foreign"
STORE_FAULT = "store-fault"
DISK_LOW = "disk-low"
CLOCK_UNSYNCHRONISED = "clock-unsynchronised"
CLOCK_JUMPED = "clock-jumped"
BARRIER_FAULT = "barrier-fault"
TRUST_STALE = "trust-stale"
TRUST_ERROR = "trust-error"
RULES_STALE = "rules-stale"
RULES_ERROR = "rules-error"
CONFIG_REJECTED = "config-rejected"
SURGE_MODE = "surge-mode"
BARRIER_POSITION = "barrier-position"
PASSAGE_REJECTED = "passage-rejected"
PIN_FAILURES = "pin-failures"

# lane fault name -> alert
FAULT_ALERTS = {"camera": CAMERA_DOWN, "barrier": BARRIER_FAULT, "store": STORE_FAULT}


@dataclass(frozen=True)
class Alert:
    name: str
    detail: str
    severity: Severity
    raised: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "detail": self.detail,
            "raised": iso_utc(self.raised),
        }


Listener = Callable[[str, Alert | None], None]


class Alerts:
    """The open alerts; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._open: dict[str, Alert] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """``listener(name, alert)`` on every change; ``alert`` is None when cleared."""
        self._listeners.append(listener)

    def raise_(self, name: str, detail: str, severity: Severity = "warning") -> None:
        with self._lock:  # listeners hear of changes in the order they happened
            old = self._open.get(name)
            if old is not None and (old.detail, old.severity) == (detail, severity):
                return
            alert = Alert(name, detail, severity, old.raised if old else datetime.now(UTC))
            self._open[name] = alert
            if old is None:
                log.warning("alert raised: %s: %s", name, detail)
            self._tell(name, alert)

    def clear(self, name: str) -> None:
        with self._lock:
            if self._open.pop(name, None) is None:
                return
            log.info("alert cleared: %s", name)
            self._tell(name, None)

    def set(
        self, name: str, raised: bool, detail: str = "", severity: Severity = "warning"
    ) -> None:
        """Raise or clear ``name`` by a condition checked periodically."""
        if raised:
            self.raise_(name, detail, severity)
        else:
            self.clear(name)

    def open(self) -> list[Alert]:
        with self._lock:
            return sorted(self._open.values(), key=lambda a: a.name)

    def names(self) -> list[str]:
        return [a.name for a in self.open()]

    def _tell(self, name: str, alert: Alert | None) -> None:
        """(Under the lock: listeners only queue, never block or call back.)"""
        for listener in self._listeners:
            try:
                listener(name, alert)
            except Exception:
                log.exception("alerts: listener failed")
