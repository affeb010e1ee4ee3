"""The device's MQTT side: status and will, passages out, acknowledgements and
operators' messages in.

``cp/v1/<id>/status`` is retained: ``online`` on every connect, ``offline``
as the will (an unclean end), ``stopped`` on a clean shutdown, each with the
connection's session number. The device subscribes, inside every connect, to
its acknowledgements and the central ingest's retained status (for the
publisher and the officer's screen, which shows "unknown" until a status has
been seen), and to the topic filters registered with it (the fleet agent's:
its commands, the fleet-wide commands, its desired config and the fleet-wide
signed pushes, which it handles on its own thread). In MQTT 3.1.1 the session
is persistent (clean-session off): what is addressed to the kiosk while it is
away waits at the broker. Each message goes to the
handler of the first filter it matches, in a table built once. Anything
malformed from outside is logged (without content) and dropped.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from paho.mqtt.client import topic_matches_sub

from edge.config import MqttConfig
from edge.mqtt import topics
from edge.mqtt.client import Inbound, LinkOptions, Will, receiving, state_payload
from edge.mqtt.link import MqttLink
from edge.mqtt.publisher import Publisher
from edge.scan.text import clean_text

log = logging.getLogger(__name__)

MAX_ACK_PIDS = 10_000
QUEUED_BESIDE_PASSAGES = 200  # paho's queue beyond the passages: birth, alerts, replies

# Called on the network thread: it must not block (the fleet agent only queues).
Handler = Callable[[Inbound], None]


def status_payload(state: str, session: int = 0) -> bytes:
    """``{"state": online|offline|stopped, "session": N, "ts": ..., "version": ...}``."""
    return state_payload(state, session=session)


@dataclass(frozen=True)
class Ack:
    """The ingest's answer: pids it stored, and pids it refused with the reason."""

    pids: tuple[str, ...]
    rejected: Mapping[str, str]


def parse_ack(payload: bytes) -> Ack | None:
    """The ingest's acknowledgement (``{"pids": [...], "rejected": [{"pid", "reason"}]}``),
    or None when it is not one."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    pids = doc.get("pids") if isinstance(doc, dict) else None
    if not isinstance(pids, list) or len(pids) > MAX_ACK_PIDS:
        return None
    if not all(isinstance(p, str) and len(p) <= 64 for p in pids):
        return None
    rejected = doc.get("rejected", [])
    if not isinstance(rejected, list) or len(rejected) > MAX_ACK_PIDS:
        return None
    refused: dict[str, str] = {}
    for entry in rejected:
        pid = entry.get("pid") if isinstance(entry, dict) else None
        reason = entry.get("reason") if isinstance(entry, dict) else None
        if not (isinstance(pid, str) and len(pid) <= 64 and isinstance(reason, str)):
            return None
        refused[pid] = clean_text(reason)[:300]  # for logs and the alert: printable only
    return Ack(tuple(pids), refused)


def parse_central(payload: bytes) -> bool | None:
    """True/False for an online/offline central status; None when malformed."""
    if not payload:
        return False  # the retained status was cleared: nobody is there
    try:
        doc: Any = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    state = doc.get("state") if isinstance(doc, dict) else None
    if state not in ("online", "offline"):
        return None
    return bool(state == "online")


class DeviceLink:
    """MQTT for one kiosk: an :class:`MqttLink` wired to the publisher and to the
    handlers registered with it (the fleet agent's).

    ``handlers`` maps a topic filter to what takes its messages; ``on_connected``
    runs after each connect, once ``online`` is queued. ``session`` gives a new
    session number for each connection attempt (saved by the caller before use):
    the will and the ``online`` status of one connection carry the same number,
    so an operator can tell a late will of an earlier connection from the
    current state.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        publisher: Publisher,
        *,
        handlers: Mapping[str, Handler] | None = None,
        on_connected: Callable[[], None] = lambda: None,
        session: Callable[[], int] | None = None,
    ) -> None:
        self.device_id = device_id
        self.publisher = publisher
        self._on_connected = on_connected
        self._next_session = session or itertools.count(1).__next__
        self.session = 0
        self.ack_topic = topics.ack(device_id)
        self.central_topic = topics.central_status()
        self._registered = list(handlers or {})
        self._handlers: tuple[tuple[str, Handler], ...] = (
            (self.ack_topic, self._ack),
            (self.central_topic, self._central),
            *(handlers or {}).items(),
        )
        # The central status in both ack modes: the officer's screen shows it.
        subscriptions = [(self.central_topic, 1)]
        if cfg.ack == "ingest":
            subscriptions.append((self.ack_topic, 1))
        subscriptions += [(topic_filter, 1) for topic_filter in self._registered]
        options = LinkOptions(
            client_id=device_id,
            will_factory=self._will,
            # MQTT 3.1.1: a persistent session (clean-session off), so that acknowledgements,
            # commands and config sent while the kiosk is away wait for it at the broker
            clean_start=cfg.protocol == "5",
            subscriptions=subscriptions,
            # room beyond the publisher's window for the status, alerts and replies: with
            # a drain filling the window they would be refused (and, at a connect, passages
            # behind them)
            max_queued=publisher.window + QUEUED_BESIDE_PASSAGES,
        )
        self.link = MqttLink(
            cfg,
            options,
            on_connected=self._connected,
            on_puback=publisher.on_puback,
            on_message=receiving(self._dispatch),
        )
        publisher.link = self.link

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def alive(self) -> bool:
        """The network thread runs (it may be reconnecting)."""
        return self.link.alive

    def restart(self) -> None:
        """A new network thread for a dead one (the supervisor's remedy)."""
        self.link.restart()

    def start(self) -> None:
        self.link.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``stopped``, disconnect cleanly (no will)."""
        status = status_payload("stopped", self.session)
        if not self.link.publish_and_wait(topics.status(self.device_id), status, True, timeout):
            log.warning("mqtt: could not publish the stopped status")
        self.link.stop()

    def stop_commands(self) -> None:
        """Unsubscribe from the registered filters, commands and config (the kiosk is
        stopping or restarting): an operator's command then times out and can be sent
        again, never half-run."""
        if self._registered and self.link.connected:
            self.link.unsubscribe(self._registered)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> None:
        """Publish for a handler (replies carry the request's correlation data)."""
        self.link.publish(topic, payload, qos, retain, correlation)

    def _will(self) -> Will:
        self.session = self._next_session()
        return Will(topics.status(self.device_id), status_payload("offline", self.session))

    def _connected(self) -> None:
        status = status_payload("online", self.session)
        self.link.publish(topics.status(self.device_id), status, retain=True)
        self.publisher.connected()
        self._on_connected()

    def _dispatch(self, msg: Inbound) -> None:
        for topic_filter, handler in self._handlers:
            if topic_matches_sub(topic_filter, msg.topic):
                handler(msg)
                return
        log.debug("mqtt: message on %s ignored", msg.topic)

    def _ack(self, msg: Inbound) -> None:
        ack = parse_ack(msg.payload)
        if ack is None:
            log.warning("mqtt: malformed acknowledgement dropped (%d bytes)", len(msg.payload))
            return
        self.publisher.on_ack(list(ack.pids), ack.rejected)

    def _central(self, msg: Inbound) -> None:
        online = parse_central(msg.payload)
        if online is None:
            log.warning("mqtt: malformed central status dropped")
            return
        self.publisher.on_central(online)
