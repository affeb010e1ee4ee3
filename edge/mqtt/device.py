"""The device's MQTT side: status and will, passages out, acknowledgements in.

``cp/v1/<id>/status`` is retained: ``online`` on every connect, ``offline``
as the will (an unclean end), ``stopped`` on a clean shutdown. The device
subscribes, inside every connect, to its acknowledgements and to the central
ingest's retained status, and hands both to the publisher. Anything malformed
from outside is logged (without content) and dropped.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from edge import __version__
from edge.model import iso_utc
from edge.mqtt import topics
from edge.mqtt.link import LinkOptions, MqttLink, Will
from edge.mqtt.publisher import Publisher
from edge.sections import MqttConfig

log = logging.getLogger(__name__)

MAX_ACK_PIDS = 10_000


def status_payload(state: str) -> bytes:
    return json.dumps(
        {"state": state, "ts": iso_utc(datetime.now(UTC)), "version": __version__},
        separators=(",", ":"),
    ).encode()


def parse_ack(payload: bytes) -> list[str] | None:
    """The pids of an acknowledgement, or None when it is not one."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    pids = doc.get("pids") if isinstance(doc, dict) else None
    if not isinstance(pids, list) or len(pids) > MAX_ACK_PIDS:
        return None
    if not all(isinstance(p, str) and len(p) <= 64 for p in pids):
        return None
    return pids


def parse_central(payload: bytes) -> bool | None:
    """True/False for an online/offline central status; None when malformed."""
    if not payload:
        return False  # the retained status was cleared: nobody is there
    try:
        doc: Any = json.loads(payload)
    except ValueError:
        return None
    state = doc.get("state") if isinstance(doc, dict) else None
    if state not in ("online", "offline"):
        return None
    return bool(state == "online")


class DeviceLink:
    """MQTT for one kiosk: an :class:`MqttLink` wired to the publisher."""

    def __init__(self, cfg: MqttConfig, device_id: str, publisher: Publisher) -> None:
        self.device_id = device_id
        self.publisher = publisher
        self.ack_topic = topics.ack(device_id)
        self.central_topic = topics.central_status()
        subscriptions = (
            [(self.ack_topic, 1), (self.central_topic, 1)] if cfg.ack == "ingest" else []
        )
        options = LinkOptions(
            client_id=device_id,
            will=Will(topics.status(device_id), status_payload("offline")),
            subscriptions=subscriptions,
        )
        self.link = MqttLink(
            cfg,
            options,
            on_connected=self._connected,
            on_puback=publisher.on_puback,
            on_message=self._message,
        )
        publisher.link = self.link

    @property
    def connected(self) -> bool:
        return self.link.connected

    def start(self) -> None:
        self.link.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``stopped``, disconnect cleanly (no will)."""
        status = status_payload("stopped")
        if not self.link.publish_and_wait(topics.status(self.device_id), status, True, timeout):
            log.warning("mqtt: could not publish the stopped status")
        self.link.stop()

    def _connected(self) -> None:
        self.link.publish(topics.status(self.device_id), status_payload("online"), retain=True)
        self.publisher.connected()

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self.ack_topic:
            pids = parse_ack(bytes(msg.payload))
            if pids is None:
                log.warning("mqtt: malformed acknowledgement dropped (%d bytes)", len(msg.payload))
                return
            self.publisher.on_ack(pids)
        elif msg.topic == self.central_topic:
            online = parse_central(bytes(msg.payload))
            if online is None:
                log.warning("mqtt: malformed central status dropped")
                return
            self.publisher.on_central(online)
        else:
            log.debug("mqtt: message on %s ignored", msg.topic)
