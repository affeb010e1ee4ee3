"""The device's MQTT connection (paho-mqtt 2.x, MQTT v5).

One :class:`MqttLink` owns the paho client and its network thread. The will
(``status`` = offline, retained) is set before the first connect; every
successful connect publishes ``status`` = online; a clean stop publishes
``stopped`` before disconnecting. A broker that is absent at start-up or goes
away is retried by paho's network thread with the configured backoff; the
daemon works on meanwhile.

Callbacks run on paho's thread: they never block and never raise (a raise
would kill the network thread); they only hand results to the handlers given.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge import __version__
from edge.config import MqttConfig
from edge.errors import ConfigError
from edge.model import iso_utc
from edge.mqtt import topics

log = logging.getLogger(__name__)

PubackHandler = Callable[[int, bool, str], None]


def status_payload(state: str) -> bytes:
    return json.dumps(
        {"state": state, "ts": iso_utc(datetime.now(UTC)), "version": __version__},
        separators=(",", ":"),
    ).encode()


class MqttLink:
    """A paho client configured for a device; ``publish`` never blocks."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        on_connected: Callable[[], None],
        on_puback: PubackHandler,
        max_queued: int = 1000,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self._on_connected = on_connected
        self._on_puback = on_puback
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device_id,
            protocol=mqtt.MQTTv5,
        )
        client.will_set(topics.status(device_id), status_payload("offline"), qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
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
            client.username_pw_set(cfg.username, _read_secret(cfg))
        client.on_connect = self._guard(self._handle_connect)
        client.on_disconnect = self._guard(self._handle_disconnect)
        client.on_publish = self._guard(self._handle_publish)
        client.on_connect_fail = self._guard(self._handle_connect_fail)
        self._client = client
        self.connects = 0
        self._failures = 0

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def start(self) -> None:
        """Connect in the background; returns at once even if the broker is away."""
        log.info("mqtt: connecting to %s:%d as %s", self.cfg.host, self.cfg.port, self.device_id)
        self._client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Queue a message; its mid, or None when paho refused it (queue full)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("mqtt: publish to %s refused: %s", topic, mqtt.error_string(info.rc))
            return None
        return info.mid

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``stopped``, disconnect cleanly (no will), stop the network thread."""
        if self.connected:
            info = self._client.publish(
                topics.status(self.device_id), status_payload("stopped"), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt: could not publish stopped status: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (network thread) ----------------------------------

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                log.exception(
                    "mqtt: error in %s (ignored to keep the network thread alive)", fn.__name__
                )

        return guarded

    def _handle_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning(
                "mqtt: connection refused by %s:%d: %s", self.cfg.host, self.cfg.port, reason
            )
            return
        self.connects += 1
        self._failures = 0
        log.info("mqtt: connected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(topics.status(self.device_id), status_payload("online"), qos=1, retain=True)
        self._on_connected()

    def _handle_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        """The TCP/TLS connection could not be made (broker down, DNS, TLS): say so once,
        then every tenth attempt, so an outage neither hides nor floods the log."""
        self._failures += 1
        if self._failures == 1 or self._failures % 10 == 0:
            log.warning(
                "mqtt: cannot reach %s:%d (attempt %d); retrying with backoff",
                self.cfg.host,
                self.cfg.port,
                self._failures,
            )

    def _handle_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt: disconnected: %s; retrying", reason)
        else:
            log.info("mqtt: disconnected")

    def _handle_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._on_puback(mid, not reason.is_failure, str(reason))


def _read_secret(cfg: MqttConfig) -> str | None:
    if cfg.password_file is None:
        return None
    try:
        return cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError([f"mqtt.password_file: cannot read: {exc.strerror}"]) from exc
