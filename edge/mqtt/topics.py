"""Every MQTT topic of the fleet, built and parsed here and nowhere else.

Namespace ``cp/v1/<device_id>/...`` (the table in ``docs/architecture.md``).
Device ids are validated by the config (``[a-z0-9-]+``), so they never contain
MQTT wildcards or separators; names of alerts and commands are checked by
:func:`valid_name` before they become topic levels. Two pseudo devices start
with ``$`` and so can never be a device id: ``$all`` (fleet-wide commands and
pushes) and ``$central`` (the ingest). A builder given :data:`ANY` for a device
id or a name makes a subscription filter (or a broker ACL pattern) instead of
a topic: ``status(ANY)`` is ``cp/v1/+/status``.

Up (device -> broker): ``status``, ``meta``, ``passage``, ``telemetry``,
``alert/<name>``, ``res/<cmd>``, ``config/reported``.
Down (operators and ingest -> device): ``cmd/<cmd>``, ``config/desired``,
``ack``; fleet-wide ``$all/cmd/<cmd>``, ``$all/trust``, ``$all/policy``;
``$central/status``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "cp/v1"
ALL = "$all"
CENTRAL = "$central"
ANY = "+"  # MQTT's one-level wildcard: any device id, or any name

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def valid_name(name: str) -> bool:
    """A device id, command or alert name: 1-63 of ``a-z 0-9 -``, no wildcard or separator."""
    return bool(_NAME_RE.fullmatch(name))


def _join(device_id: str, *rest: str) -> str:
    return "/".join((PREFIX, device_id, *rest))


# -- up ------------------------------------------------------------------------


def status(device_id: str) -> str:
    """Retained ``online`` / ``offline`` (the will) / ``stopped``, with a session counter."""
    return _join(device_id, "status")


def meta(device_id: str) -> str:
    """Retained: version, site, lane, camera, config version."""
    return _join(device_id, "meta")


def passage(device_id: str) -> str:
    """One passage per message, QoS 1, in sequence order."""
    return _join(device_id, "passage")


def telemetry(device_id: str) -> str:
    """QoS 0, not retained, every ``[fleet] telemetry_s``."""
    return _join(device_id, "telemetry")


def alert(device_id: str, name: str) -> str:
    """Retained while raised; an empty retained payload clears it."""
    return _join(device_id, "alert", name)


def reply(device_id: str, command: str) -> str:
    """The reply to a command: ``id``, ``status``, ``data``, ``error``."""
    return _join(device_id, "res", command)


def reply_prefix(device_id: str) -> str:
    """Where a command's MQTT v5 response topic may point (the device's own replies)."""
    return _join(device_id, "res") + "/"


def config_reported(device_id: str) -> str:
    """Retained: the applied config version, or why a desired one was rejected."""
    return _join(device_id, "config", "reported")


# -- down ----------------------------------------------------------------------


def command(device_id: str, name: str) -> str:
    """A command to one device (never retained); ``device_id`` may be :data:`ALL`."""
    return _join(device_id, "cmd", name)


def commands(device_id: str) -> str:
    """Subscription filter for a device's commands (or the fleet-wide ones, with :data:`ALL`)."""
    return _join(device_id, "cmd", "+")


def config_desired(device_id: str) -> str:
    """Retained, versioned config for one device."""
    return _join(device_id, "config", "desired")


def ack(device_id: str) -> str:
    """The ingest's acknowledgements to one device: ``{"pids": [...]}``."""
    return _join(device_id, "ack")


def fleet_push(kind: str) -> str:
    """Retained, signed fleet-wide push: ``trust`` (a trust list) or ``policy``."""
    return _join(ALL, kind)


PUSH_KINDS = ("trust", "policy", "rules")


def central_status() -> str:
    """Retained ``{"state": "online" | "offline"}`` of the central ingest (its will: offline)."""
    return _join(CENTRAL, "status")


# -- filters for the ingest and operators --------------------------------------


def all_passages() -> str:
    """Subscription filter for every device's passages."""
    return passage(ANY)


def replies(device_id: str) -> str:
    """Filter for a device's replies, response topics below ``res/<cmd>/`` included."""
    return _join(device_id, "res", "#")


def everything() -> str:
    """Filter for every topic of the fleet."""
    return f"{PREFIX}/#"


def device_state(device_id: str) -> tuple[str, ...]:
    """Filters for the retained state a device keeps: status, meta, config/reported, alerts."""
    return status(device_id), meta(device_id), config_reported(device_id), alert(device_id, ANY)


def up(device_id: str) -> tuple[str, ...]:
    """Filters for every topic a device publishes on (what the broker lets it write)."""
    d = device_id
    return (
        status(d),
        meta(d),
        passage(d),
        telemetry(d),
        alert(d, ANY),
        replies(d),
        config_reported(d),
    )


def down(device_id: str) -> tuple[str, ...]:
    """Filters for what is addressed to one device alone: commands, desired config, acks."""
    return commands(device_id), config_desired(device_id), ack(device_id)


def fleet_wide() -> tuple[str, ...]:
    """Filters for what goes to every device: fleet-wide commands and the signed pushes."""
    return commands(ALL), *(fleet_push(kind) for kind in PUSH_KINDS)


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription: one member of ``group`` gets each message."""
    return f"$share/{group}/{topic_filter}"


# -- NATS subjects (a NATS cluster's MQTT listener) -----------------------------


def nats_subject(topic_filter: str) -> str:
    """The NATS subject of an MQTT topic or filter, as a NATS server's MQTT listener maps
    them: each level a token (``/`` -> ``.``), a ``.`` inside a level ``//``, ``+`` -> ``*``
    and ``#`` -> ``>``: ``cp/v1/+/passage`` is ``cp.v1.*.passage``."""
    tokens = []
    for level in topic_filter.split("/"):
        tokens.append({"+": "*", "#": ">"}.get(level) or level.replace(".", "//"))
    return ".".join(tokens)


def topic_of_subject(subject: str) -> str | None:
    """The MQTT topic a NATS subject stands for (``cp.v1.lane-a.passage`` ->
    ``cp/v1/lane-a/passage``), or None for a subject no MQTT topic maps to (a lone ``/``
    in a token: published by a NATS client, not through MQTT)."""
    levels = []
    for token in subject.split("."):
        if "/" in token.replace("//", ""):
            return None
        levels.append(token.replace("//", "."))
    return "/".join(levels)


# -- parsing -------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """A fleet topic taken apart: ``cp/v1/<device>/<kind>[/<name>]``."""

    device: str
    kind: str  # status, meta, passage, telemetry, alert, res, cmd, config, ack, trust, policy
    name: str = ""  # alert or command name; "desired"/"reported" for config


_KINDS_WITH_NAME = {"alert", "res", "cmd", "config"}
_KINDS = {"status", "meta", "passage", "telemetry", "ack", *PUSH_KINDS}


def parse(topic: str) -> Parsed | None:
    """The parts of a fleet topic, or None for anything not of this scheme."""
    parts = topic.split("/")
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return None
    device, kind, rest = parts[2], parts[3], parts[4:]
    if not (valid_name(device) or device in (ALL, CENTRAL)):
        return None
    if kind in _KINDS and not rest:
        return Parsed(device, kind)
    if kind in _KINDS_WITH_NAME and len(rest) == 1 and valid_name(rest[0]):
        return Parsed(device, kind, rest[0])
    if kind == "res" and len(rest) > 1 and valid_name(rest[0]):
        return Parsed(device, kind, rest[0])  # a response topic below res/<cmd>/
    return None


def device_of(topic: str) -> str | None:
    """The device id in a ``cp/v1/<id>/...`` topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX or not parts[2]:
        return None
    return parts[2]
