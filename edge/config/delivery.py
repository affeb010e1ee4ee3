"""The sections of delivery and operation: the broker, the store, the fleet, the central
ingest and the log. ``[mqtt]`` and ``[log]`` are also the ingest's and an operator's
(:class:`edge.config.IngestFile`, :class:`edge.config.OperatorFile`).

Fields as :mod:`edge.config.sections` describes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.config.sections import (
    DEVICE_ID_RE,
    at_least_1,
    doc,
    non_negative,
    parse_device_id,
    parse_existing_file,
    parse_path,
    paths,
    positive,
    resolve,
)
from edge.core.passage import MAX_PASSAGE_BYTES

LogLevel = Literal["debug", "info", "warning", "error"]


def _receive_maximum(value: Any, _base: Path) -> Any:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be 1 to 65535 (got {value})")
    return value


def _port(value: Any, _base: Path) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"must be a TCP port 1-65535 (got {value})")
    return int(value)


def split_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 address) as (host, port); ValueError if not."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host.strip() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port (a TCP port 1-65535)")
    if any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"{text!r}: not a host name or address")
    return host, int(port)


def _servers(value: Any, _base: Path) -> tuple[str, ...]:
    for text in value:
        split_address(text)
    return tuple(value)


def _non_empty(value: Any, _base: Path) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return str(value)


@dataclass(frozen=True)
class MqttConfig:
    host: str = field(default="localhost", metadata=doc("Broker host name.", _non_empty))
    port: int = field(default=1883, metadata=doc("Broker port (8883 for TLS).", _port))
    servers: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "Other nodes of the same broker cluster, host:port each: when the one connected "
            "to is unreachable or lost, the next attempt goes to the next (host:port first).",
            _servers,
        ),
    )
    keepalive_s: int = field(default=30, metadata=doc("MQTT keepalive in seconds.", positive))
    protocol: Literal["5", "3.1.1"] = field(
        default="5",
        metadata=doc(
            'MQTT protocol version: "5", or "3.1.1" for a broker that speaks only that (a '
            "NATS cluster): replies on res/<command> with the id in the payload, persistent "
            "sessions by clean-session off, no PUBACK reason codes (docs/fleet.md)."
        ),
    )
    tls: bool = field(default=False, metadata=doc("Connect with TLS."))
    ca_file: Path | None = field(
        default=None,
        metadata=doc("CA certificate file (PEM); empty = system CAs.", parse_existing_file),
    )
    cert_file: Path | None = field(
        default=None,
        metadata=doc("Client certificate file (PEM) for TLS client auth.", parse_existing_file),
    )
    key_file: Path | None = field(
        default=None,
        metadata=doc(
            "Client private key file (PEM) for TLS client auth, or credential:NAME for a "
            "systemd credential (the unit's LoadCredential=NAME:FILE).",
            parse_existing_file,
        ),
    )
    username: str = field(default="", metadata=doc("Username; empty = none."))
    password_file: Path | None = field(
        default=None,
        metadata=doc(
            "File holding the password (never the password itself), or credential:NAME.",
            parse_existing_file,
        ),
    )
    reconnect_min_s: float = field(
        default=1.0,
        metadata=doc("Reconnect backoff base in seconds (waits are jittered).", positive),
    )
    reconnect_max_s: float = field(
        default=30.0, metadata=doc("Longest reconnect wait in seconds.", positive)
    )
    inflight: int = field(
        default=10,
        metadata=doc("Passages sent and awaiting PUBACK at most at once.", positive),
    )
    ack: Literal["ingest", "broker"] = field(
        default="ingest",
        metadata=doc(
            "Who confirms a passage before it leaves the outbox: the central ingest "
            "(cp/v1/<id>/ack), or the broker's PUBACK (no ingest: simulation, tests)."
        ),
    )
    ack_timeout_s: float = field(
        default=120.0,
        metadata=doc(
            "A passage the broker accepted but the ingest has not acknowledged this long "
            "(while the ingest is online) is sent again.",
            positive,
        ),
    )


def _segment_size(value: Any, _base: Path) -> int:
    if not 10 <= value <= 1000:
        raise ValueError(f"must be 10 to 1000 (got {value})")
    return int(value)


@dataclass(frozen=True)
class StoreConfig:
    dir: Path = field(
        default=Path("/var/lib/checkpoint-edge"),
        metadata=doc("Directory of the passage store.", parse_path),
    )
    retention_days: int = field(
        default=30,
        metadata=doc(
            "Days acknowledged passages are kept in the local archive (personal data).", positive
        ),
    )
    segment_size: int = field(
        default=100,
        metadata=doc(
            "Passages per outbox segment file (bounds the bytes written per passage).",
            _segment_size,
        ),
    )


@dataclass(frozen=True)
class FleetConfig:
    telemetry_s: float = field(
        default=60.0,
        metadata=doc(
            "Seconds between telemetry messages (cp/v1/<id>/telemetry), at least 1.", at_least_1
        ),
    )
    keys: tuple[Path, ...] = field(
        default=(),
        metadata=doc(
            "Fleet public keys (PEM) that sign trust-list and policy pushes; "
            "empty = every push is refused.",
            paths,
        ),
    )
    remote_config: bool = field(
        default=True,
        metadata=doc("Apply a newer valid config/desired from operators (else report refused)."),
    )
    disk_low_mb: float = field(
        default=200.0,
        metadata=doc(
            "Raise the disk-low alert below this much free space at the store (MB).", non_negative
        ),
    )
    trust_max_age_h: float = field(
        default=168.0,
        metadata=doc(
            "Raise trust-stale when the newest trust file or push is older (hours; 0 = off).",
            non_negative,
        ),
    )
    clock_check: bool = field(
        default=True,
        metadata=doc("Raise clock-unsynchronised when the kernel says the clock is not synced."),
    )
    rules_max_age_h: float = field(
        default=0.0,
        metadata=doc(
            "Raise rules-stale when the rule set in use (a push, or [rules] files) is older "
            "(hours; 0 = off: the bundled rules never go stale).",
            non_negative,
        ),
    )


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = field(default="info", metadata=doc("Log level."))


def _database_url(value: Any, base: Path) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if value.startswith("sqlite:///"):
        path = value.removeprefix("sqlite:///")
        if not path:
            raise ValueError("sqlite:///PATH needs a path")
        return "sqlite:///" + str(resolve(path, base))  # relative to the config file
    if value.startswith(("postgresql://", "postgres://")):
        return value
    raise ValueError(f"must be sqlite:///PATH or a postgresql:// URL (got {value!r})")


def _client_id(value: Any, base: Path) -> str:
    return parse_device_id(value, base)


def _group(value: Any, _base: Path) -> str:
    if value and not DEVICE_ID_RE.fullmatch(value):
        raise ValueError("must be empty or a-z, 0-9, '-' (an MQTT topic level)")
    return str(value)


@dataclass(frozen=True)
class IngestConfig:
    source: Literal["mqtt", "nats"] = field(
        default="mqtt",
        metadata=doc(
            'Where the passages come from: "mqtt" (a subscription at the broker) or "nats" (a '
            "durable consumer of a NATS JetStream stream, [nats]; [mqtt] then reaches the "
            'cluster\'s MQTT listener with protocol = "3.1.1", for the status and the acks).'
        ),
    )
    database: str = field(
        default="sqlite:///passages.db",
        metadata=doc(
            "sqlite:///PATH (relative to this file; sqlite:////abs/path for an absolute one) "
            "or a postgresql:// URL.",
            _database_url,
        ),
    )
    client_id: str = field(
        default="ingest-1",
        metadata=doc("MQTT client id of this worker (each worker its own).", _client_id),
    )
    group: str = field(
        default="ingest",
        metadata=doc(
            "Shared-subscription group: workers with the same group share the passages "
            "($share/<group>/cp/v1/+/passage); empty = every worker gets every passage.",
            _group,
        ),
    )
    session_expiry_s: int = field(
        default=7 * 24 * 3600,
        metadata=doc(
            "How long the broker keeps this worker's session and queue while it is away.",
            positive,
        ),
    )
    batch_size: int = field(
        default=500, metadata=doc("Passages stored per database transaction at most.", positive)
    )
    batch_wait_s: float = field(
        default=0.0,
        metadata=doc(
            "Seconds a transaction waits for more passages once the queue is empty (0: it "
            "takes what is waiting; under load the next batch gathers while one is stored).",
            non_negative,
        ),
    )
    receive_maximum: int = field(
        default=2000,
        metadata=doc(
            "Passages the broker may hand this worker before it has stored and PUBACKed "
            "them (MQTT v5 Receive Maximum, 1-65535): the depth of its pipeline, best about "
            "4 batches. The "
            "broker's max_inflight_messages does not apply to a worker that sets it.",
            _receive_maximum,
        ),
    )
    retention_days: int = field(
        default=30,
        metadata=doc(
            "Days the personal data of a passage (ID numbers, names, plates, traveller fields, "
            "rejected messages) is kept, counted from when it was decided or received, "
            "whichever is earlier; then it is purged and only the passage's counts remain. "
            "0 keeps it forever.",
            non_negative,
        ),
    )
    max_message_bytes: int = field(
        default=MAX_PASSAGE_BYTES,
        metadata=doc(
            "Largest passage message taken (bytes); a larger one is rejected unread. "
            "The broker's own limit (deploy/mosquitto) should be at least this.",
            positive,
        ),
    )
