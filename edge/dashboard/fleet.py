"""The kiosks' live state for the dashboard: an operator's connection to the broker
(:class:`~edge.fleet.operator.FleetClient`, the one ``checkpoint-edge fleet``
uses), kept up to date by what every kiosk keeps retained there (status, meta,
alerts, telemetry). No commands are sent: the page only looks.

Each kiosk is one row of ``fleet status``'s columns (online/offline, mode,
outbox waiting, oldest unacknowledged, alerts), its strings made fit for JSON
and bounded: what a device publishes is anyone's text, and the page shows it as
text only.
"""

from __future__ import annotations

import uuid
from typing import Any

from edge.config import MqttConfig
from edge.fleet.cli import device_row
from edge.fleet.operator import FleetClient

MAX_TEXT = 40  # characters of a device's string (a site: twice that), as in fleet status


def page_text(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A device's string for the page: bounded, and encodable (a lone surrogate, which
    JSON can carry and UTF-8 cannot, becomes "?")."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)[:limit]
    return text.encode("utf-8", "replace").decode("utf-8")


class FleetView:
    """The broker's picture of the fleet, for ``/api/fleet``."""

    def __init__(self, cfg: MqttConfig) -> None:
        name = cfg.username or "dashboard"
        self.client = FleetClient(cfg, client_id=f"{name}-dashboard-{uuid.uuid4().hex[:8]}")

    def start(self, timeout: float = 10.0) -> FleetView:
        """Connect and take the snapshot; FleetError when the broker cannot be reached."""
        self.client.connect(timeout)
        return self

    def stop(self) -> None:
        self.client.close()

    def state(self) -> dict[str, Any]:
        """``{"connected": bool, "kiosks": [row, ...]}``, the rows by device id."""
        return {
            "connected": self.client.link.connected,
            "kiosks": [device_row(view, page_text) for view in self.client.snapshot()],
        }
