"""The operator's side of the fleet: what ``checkpoint-edge fleet`` is built on.

A :class:`FleetClient` is one MQTT v5 connection with the operator's account,
an :class:`~edge.mqtt.link.MqttLink` like the kiosk's (the same client set-up
and reconnection), opened with :meth:`~edge.mqtt.link.MqttLink.open` so that
an unreachable or refusing broker is an error at once. On connect it
subscribes to every device's retained state (status, meta, config/reported,
alerts) at QoS 0, then to one more filter: mosquitto sends a subscription's
retained messages before it handles the next SUBSCRIBE, and QoS 0 messages are
not held back by the in-flight window, so once the second SUBACK is in, the
snapshot of the fleet is complete (no waiting by the clock).

Commands go to ``cp/v1/<id>/cmd/<name>`` (or ``cp/v1/$all/cmd/<name>``) with a
fresh id and an expiry; a command to one device asks for its reply on an MQTT
v5 response topic inside that device's namespace, with the id as correlation
data. Replies are matched by id.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.config import MqttConfig
from edge.core.model import iso_utc
from edge.errors import EdgeError
from edge.mqtt import topics
from edge.mqtt.client import Inbound, LinkOptions, receiving
from edge.mqtt.link import MqttLink

log = logging.getLogger(__name__)


class FleetError(EdgeError, RuntimeError):
    """The operator's connection or request failed; the message says which and why."""


@dataclass
class DeviceView:
    """What the operator knows of one device."""

    id: str
    status: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)  # the last get-status reply's data
    heard: str | None = None  # when this client last received a live message from it (UTC)

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retained: bool


def _from_the_device(kind: str, name: str, payload: bytes) -> bool:
    """A message the device itself sent: not an operator's (commands, desired config),
    nor its will, which the broker sends when the device has gone quiet."""
    if kind == "status":
        return (_json(payload) or {}).get("state") != "offline"
    if kind == "config":
        return name == "reported"
    return kind in ("meta", "telemetry", "alert", "res", "passage")


def _json(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


class FleetClient:
    """An operator's connection to the broker."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.client_id = client_id or f"{cfg.username or 'operator'}-{uuid.uuid4().hex[:8]}"
        self.devices: dict[str, DeviceView] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every message
        self._replies: dict[str, queue.Queue[tuple[str, dict[str, Any]]]] = {}
        self._watchers: list[Callable[[Message], None]] = []
        self.link = MqttLink(
            cfg,
            LinkOptions(client_id=self.client_id),
            on_connected=self._on_connected,
            on_message=receiving(self._on_message),
        )

    # -- connection --------------------------------------------------------------

    def connect(self, timeout: float = 10.0, extra: Iterable[str] = ()) -> FleetClient:
        """Connect and take the snapshot of every device's retained state."""
        why = self.link.open(timeout)
        if why is not None:
            raise FleetError(why)
        filters = [(f, 0) for f in topics.device_state(topics.ANY)]
        filters += [(topics.telemetry(topics.ANY), 0), (topics.replies(topics.ANY), 1)]
        filters += [(f, 1) for f in extra]
        self._subscribe(filters, timeout)
        self._subscribe([(topics.central_status(), 0)], timeout)  # the snapshot is complete
        return self

    def _subscribe(self, filters: list[tuple[str, int]], timeout: float) -> None:
        why = self.link.subscribe(filters, timeout)
        if why is not None:
            raise FleetError(why)

    def close(self) -> None:
        self.link.stop()

    def watch(self, callback: Callable[[Message], None], filters: Iterable[str]) -> None:
        """Hand every message on ``filters`` to ``callback`` (on the network thread)."""
        self._watchers.append(callback)
        self._subscribe([(f, 1) for f in filters], 10.0)

    # -- requests ------------------------------------------------------------------

    def command(
        self,
        device: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        expires_s: float = 60.0,
        command_id: str | None = None,
    ) -> str:
        """Send a command to one device (or ``$all``); its id."""
        cid = command_id or uuid.uuid4().hex
        doc = {
            "id": cid,
            "expires": iso_utc(datetime.now(UTC) + timedelta(seconds=expires_s)),
            "args": args or {},
        }
        response, correlation = None, None
        if device != topics.ALL:
            response = f"{topics.reply(device, name)}/{self.client_id}"
            correlation = cid.encode()
        with self._lock:
            self._replies[cid] = queue.Queue()
        if not self.link.connected:
            raise FleetError(f"{device}: {name} not sent: not connected to the broker")
        mid = self.link.publish(
            topics.command(device, name),
            json.dumps(doc).encode(),
            correlation=correlation,
            response_topic=response,
        )
        if mid is None:
            raise FleetError(f"{device}: {name} not sent: the MQTT client refused it")
        return cid

    def reply(self, cid: str, timeout: float) -> tuple[str, dict[str, Any]] | None:
        """(device, reply) of command ``cid``, or None after ``timeout``."""
        with self._lock:
            q = self._replies.get(cid)
        if q is None:
            return None
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            return None

    def collect(
        self,
        cid: str,
        expect: set[str],
        timeout: float,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """The replies to a fleet-wide command ``cid``: until every device in ``expect``
        has answered or ``timeout`` has passed; ``progress(got, expected)`` as they come."""
        deadline = time.monotonic() + timeout
        got: dict[str, dict[str, Any]] = {}
        while not expect <= set(got):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            one = self.reply(cid, min(left, 0.5))
            if one is not None:
                got[one[0]] = one[1]
            if progress is not None:
                progress(len(got), len(expect))
        return got

    def send(
        self, device: str, name: str, args: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """A command to one device and its reply; FleetError naming the device on a timeout."""
        cid = self.command(device, name, args, expires_s=max(timeout, 5.0))
        got = self.reply(cid, timeout)
        if got is None:
            raise FleetError(f"{device}: no reply to {name} within {timeout:g} s")
        return got[1]

    def publish_retained(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        why = self.link.confirm(topic, payload, True, timeout)
        if why is not None:
            raise FleetError(f"{topic}: {why}")

    # -- the link's callbacks (network thread) --------------------------------------

    def _on_connected(self) -> None:
        if self.link.connects > 1:  # the link reconnected (a clean session): subscribed again
            log.warning("fleet: reconnected to the broker; subscribing again")

    def _on_message(self, msg: Inbound) -> None:
        try:
            self._absorb(Message(msg.topic, msg.payload, msg.retained))
        except Exception:
            log.exception("fleet: message on %s not understood", msg.topic)

    def snapshot(self) -> list[DeviceView]:
        """A copy of every device's view, for another thread (the network thread goes on
        changing the views themselves)."""
        with self._lock:
            return [copy.deepcopy(view) for _, view in sorted(self.devices.items())]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (checked after every message) holds; False on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def _absorb(self, msg: Message) -> None:
        for watcher in self._watchers:
            watcher(msg)
        parsed = topics.parse(msg.topic)
        if parsed is None or parsed.device in (topics.ALL, topics.CENTRAL):
            return
        with self._changed:
            self._changed.notify_all()
            view = self.devices.setdefault(parsed.device, DeviceView(parsed.device))
            if not msg.retained and _from_the_device(parsed.kind, parsed.name, msg.payload):
                view.heard = iso_utc(self.clock())  # it speaks now (a retained one: earlier)
            if parsed.kind == "alert":
                doc = _json(msg.payload)
                if doc is None:
                    view.alerts.pop(parsed.name, None)  # cleared
                else:
                    view.alerts[parsed.name] = doc
                return
            doc = _json(msg.payload)
            if doc is None:
                return
            if parsed.kind in ("status", "meta", "telemetry"):
                setattr(view, parsed.kind, doc)
            elif parsed.kind == "config" and parsed.name == "reported":
                view.reported = doc
            elif parsed.kind == "res":
                self._reply_in(view, parsed.name, doc)

    def _reply_in(self, view: DeviceView, name: str, doc: dict[str, Any]) -> None:
        cid = doc.get("id")
        if name == "get-status" and doc.get("status") == "ok":
            view.live = dict(doc.get("data") or {})
        if isinstance(cid, str) and cid in self._replies:
            self._replies[cid].put((view.id, doc))
