"""Every MQTT topic of the fleet, built and parsed here and nowhere else.

Namespace ``cp/v1/<device_id>/...`` (see ``docs/architecture.md``). Device ids
are validated by the config (``[a-z0-9-]+``), so they never contain MQTT
wildcards or separators.
"""

from __future__ import annotations

PREFIX = "cp/v1"


def status(device_id: str) -> str:
    """Retained ``online`` / ``offline`` (the will) / ``stopped``."""
    return f"{PREFIX}/{device_id}/status"


def passage(device_id: str) -> str:
    """One passage per message, QoS 1, in sequence order."""
    return f"{PREFIX}/{device_id}/passage"


def all_passages() -> str:
    """Subscription filter for every device's passages."""
    return f"{PREFIX}/+/passage"


def device_of(topic: str) -> str | None:
    """The device id in a ``cp/v1/<id>/...`` topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX or not parts[2]:
        return None
    return parts[2]


def ack(device_id: str) -> str:
    """The ingest's acknowledgements to one device: ``{"pids": [...]}``."""
    return f"{PREFIX}/{device_id}/ack"


CENTRAL = "$central"


def central_status() -> str:
    """Retained ``{"state": "online" | "offline"}`` of the central ingest (its will: offline)."""
    return f"{PREFIX}/{CENTRAL}/status"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription: one member of ``group`` gets each message."""
    return f"$share/{group}/{topic_filter}"
