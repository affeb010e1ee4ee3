"""The one place a paho client is made, and what its messages become for the rest.

:func:`new_client` sets up every paho client of the package (through
:class:`~edge.mqtt.link.MqttLink`: the kiosk's, the ingest's and the
operator's): MQTT v5 (or 3.1.1, ``[mqtt] protocol``) with paho's VERSION2
callbacks, the client id, the
in-flight window and queue cap, TLS from ``[mqtt]`` (CA, client certificate
and key) and the username with its password file. The will and reconnection
are the link's.

:func:`receiving` turns a handler of :class:`Inbound` into one paho can call:
code outside ``edge.mqtt`` sees a message's topic, payload, retain flag and
MQTT v5 request properties, never a paho object. What a link is asked to be
(:class:`LinkOptions`, its :class:`Will`) and the retained state payload are here too.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__, files
from edge.config import MqttConfig
from edge.core.model import iso_utc
from edge.errors import ConfigError, InputError


def is_v5(cfg: MqttConfig) -> bool:
    """MQTT v5 (True) or 3.1.1 (False), as ``[mqtt] protocol`` says."""
    return cfg.protocol == "5"


def new_client(
    cfg: MqttConfig,
    client_id: str,
    *,
    manual_ack: bool = False,
    max_queued: int = 1000,
    persistent: bool = False,
) -> mqtt.Client:
    """A paho client for ``cfg``, not yet connected and without callbacks.

    ``persistent``: in MQTT 3.1.1, connect with clean-session off (the broker keeps the
    session and its QoS 1 messages while the client is away); in v5 the link asks for
    that at connect time instead (clean start off, a session expiry).
    ConfigError when the password file cannot be read.
    """
    if is_v5(cfg):
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    client.max_inflight_messages_set(cfg.inflight)
    client.max_queued_messages_set(max_queued)
    if cfg.tls:
        client.tls_set(
            ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
            certfile=str(cfg.cert_file) if cfg.cert_file else None,
            keyfile=str(cfg.key_file) if cfg.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if cfg.username:
        client.username_pw_set(cfg.username, _password(cfg))
    return client


def _password(cfg: MqttConfig) -> str | None:
    if cfg.password_file is None:
        return None
    try:
        secret = files.read_text_limited(cfg.password_file, files.SECRET, "password file")
    except InputError as exc:
        raise ConfigError([f"mqtt.password_file: {exc.reason}"]) from exc
    return secret.rstrip("\r\n")


@dataclass(frozen=True)
class Inbound:
    """A message as the link received it."""

    topic: str
    payload: bytes
    retained: bool
    response_topic: str | None = None  # MQTT v5: where a request wants its reply
    correlation: bytes | None = None  # MQTT v5: to be echoed in that reply


def receiving(handler: Callable[[Inbound], None]) -> Callable[[mqtt.MQTTMessage], None]:
    """``handler`` as a paho message handler (for :class:`~edge.mqtt.link.MqttLink`)."""

    def received(msg: mqtt.MQTTMessage) -> None:
        props: Any = msg.properties  # paho's Properties has no type hints
        response = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        handler(
            Inbound(
                msg.topic,
                bytes(msg.payload),
                bool(msg.retain),
                response if isinstance(response, str) else None,
                bytes(correlation) if isinstance(correlation, bytes | bytearray) else None,
            )
        )

    return received


def state_payload(state: str, **fields: object) -> bytes:
    """A retained state message, the device's status or the ingest's:
    ``{"state": ..., <fields>, "ts": ..., "version": ...}``."""
    doc = {"state": state, **fields, "ts": iso_utc(datetime.now(UTC)), "version": __version__}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass
class LinkOptions:
    """What differs between the device's connection and the ingest's."""

    client_id: str
    will: Will | None = None
    # called before every connection attempt: a will that changes per connection
    will_factory: Callable[[], Will] | None = None
    # False: a persistent session (v5: with session_expiry_s; 3.1.1: clean-session off,
    # kept by the broker until the client connects with it on again)
    clean_start: bool = True
    session_expiry_s: int = 0
    subscriptions: list[tuple[str, int]] = field(default_factory=list)
    manual_ack: bool = False  # PUBACK a received message only when told (ack())
    max_queued: int = 1000
    # MQTT v5 Receive Maximum: QoS 1 messages the broker may send before PUBACKs come
    # back (None: the broker's max_inflight_messages; 3.1.1 has none)
    receive_maximum: int | None = None
