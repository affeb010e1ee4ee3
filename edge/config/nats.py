"""The ``[nats]`` section of the central ingest's file: where a worker takes its passages
when ``[ingest] source = "nats"`` (a NATS JetStream cluster whose MQTT listener the kiosks
publish to; docs/central.md, "Ingesting from a NATS JetStream cluster").

The servers, how to reach them (TLS, a user with a password file, or a NATS credentials
file: secrets from files, never in a URL), and the JetStream stream and durable consumer
the workers share. :func:`cross_checks` holds the rules between keys and sections (a
NATS cluster's MQTT speaks only 3.1.1). Fields as :mod:`edge.config.sections` describes
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.config.delivery import IngestConfig, MqttConfig
from edge.config.sections import doc, non_negative, parse_existing_file, positive

# JetStream names become subject tokens ($JS.API.STREAM.INFO.<name>): no '.', '*', '>'
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
SCHEMES = ("nats", "tls")


def _servers(value: Any, _base: Path) -> tuple[str, ...]:
    if not value:
        raise ValueError("must name at least one server (nats://HOST:PORT or tls://HOST:PORT)")
    for n, url in enumerate(value):
        problem = url_problem(url)
        if problem:
            raise ValueError(f"server {n + 1}: {problem}")
    return tuple(value)


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a NATS server URL (nats://HOST[:PORT], tls://HOST[:PORT]), or None.
    Never quotes a URL that holds credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a server URL ({exc})"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials (use user and password_file, or creds_file)"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return f"must be nats://HOST[:PORT] or tls://HOST[:PORT] (got {url!r})"
    if port == 0 or parts.path not in ("", "/") or parts.query or parts.fragment:
        # not quoted whole: a token may hide in a path or a query
        where = f"{parts.scheme}://{parts.netloc}"
        return f"must be nats://HOST[:PORT] or tls://HOST[:PORT], nothing after it (got {where}...)"
    return None


def _name(value: Any, _base: Path) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"must be 1-64 of A-Z, a-z, 0-9, '_' and '-' (got {value!r})")
    return str(value)


def _replicas(value: Any, _base: Path) -> int:
    if not 1 <= value <= 5:
        raise ValueError(f"must be 1 to 5, as JetStream allows (got {value})")
    return int(value)


@dataclass(frozen=True)
class NatsConfig:
    servers: tuple[str, ...] = field(
        default=("nats://localhost:4222",),
        metadata=doc(
            "NATS servers of the cluster (nats://HOST:PORT or tls://HOST:PORT, no credentials "
            "in them); the worker learns the others from them and reconnects across all, "
            "for ever.",
            _servers,
        ),
    )
    tls: bool = field(
        default=False,
        metadata=doc(
            "TLS, verified with ca_file (also on with tls:// servers). nats-py takes TLS when "
            "the server requires it and does not refuse one that does not: give the servers "
            "a tls block."
        ),
    )
    ca_file: Path | None = field(
        default=None,
        metadata=doc(
            "CA certificate (PEM) that signed the NATS servers' certificates; empty = the "
            "system's CAs.",
            parse_existing_file,
        ),
    )
    cert_file: Path | None = field(
        default=None,
        metadata=doc(
            "This worker's client certificate (PEM), if the servers verify clients; with key_file.",
            parse_existing_file,
        ),
    )
    key_file: Path | None = field(
        default=None,
        metadata=doc("Its private key (PEM), or credential:NAME.", parse_existing_file),
    )
    user: str = field(default="", metadata=doc("NATS user; empty = none."))
    password_file: Path | None = field(
        default=None,
        metadata=doc(
            "File holding the user's password (never the password itself), or credential:NAME.",
            parse_existing_file,
        ),
    )
    creds_file: Path | None = field(
        default=None,
        metadata=doc(
            "NATS credentials file (user JWT and NKey seed), or credential:NAME; empty = none.",
            parse_existing_file,
        ),
    )
    stream: str = field(
        default="CP_PASSAGES",
        metadata=doc(
            "JetStream stream of the passages (subjects cp.v1.*.passage): created if missing "
            "(work-queue retention, file storage); an existing one must capture them.",
            _name,
        ),
    )
    durable: str = field(
        default="ingest",
        metadata=doc(
            "Durable pull consumer every worker shares: each passage goes to one of them.",
            _name,
        ),
    )
    replicas: int = field(
        default=3,
        metadata=doc(
            "Copies of the stream (1-5) when the worker creates it: 3 survive the loss of "
            "one node.",
            _replicas,
        ),
    )
    max_age_s: int = field(
        default=7 * 24 * 3600,
        metadata=doc(
            "A passage no worker has taken this long leaves the stream (its kiosk still "
            "holds it and sends it again); 0 = no limit. Only when the worker creates it.",
            non_negative,
        ),
    )
    ack_wait_s: float = field(
        default=30.0,
        metadata=doc(
            "A passage handed to a worker that has not acknowledged it (stored) within this "
            "many seconds goes to a worker again: a worker that died loses nothing.",
            positive,
        ),
    )
    max_ack_pending: int = field(
        default=2000,
        metadata=doc(
            "Passages handed out and not yet stored and acknowledged, all workers together "
            "(JetStream's max_ack_pending): the depth of the pipeline, best about 4 batches "
            "per worker, so raise it with their number.",
            positive,
        ),
    )


def uses_tls(cfg: NatsConfig) -> bool:
    """TLS is on: asked for, or a tls:// server."""
    return cfg.tls or any(url.startswith("tls://") for url in cfg.servers)


def cross_checks(nats: NatsConfig, ingest: IngestConfig, mqtt: MqttConfig) -> list[str]:
    """The rules between keys of ``[nats]``, and between it and ``[ingest]``, ``[mqtt]``."""
    problems = []
    if ingest.source == "nats" and mqtt.protocol != "3.1.1":
        problems.append(
            'ingest.source: "nats" needs [mqtt] protocol = "3.1.1": the NATS server\'s MQTT '
            f"listener (status and acknowledgements) speaks only MQTT 3.1.1 (got {mqtt.protocol!r})"
        )
    if (nats.cert_file is None) != (nats.key_file is None):
        problems.append("nats.cert_file: cert_file and key_file must be given together")
    if (nats.cert_file or nats.ca_file) and not uses_tls(nats):
        problems.append(
            "nats.tls: must be true (or the servers tls://) when ca_file or cert_file is set"
        )
    if bool(nats.user) != (nats.password_file is not None):
        problems.append("nats.user: user and password_file must be given together")
    return problems
