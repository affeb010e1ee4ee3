"""An MQTT v5 (or 3.1.1) connection (paho-mqtt 2.x) that keeps itself up.

One :class:`MqttLink` owns a paho client and the network thread that drives
it (``loop()``). When the broker is away at start-up or goes away later, the
thread reconnects with *jittered* exponential backoff: the wait before attempt
``n`` is uniform in ``[0, min(max, min * 2**n)]`` seconds, so that a fleet does
not reconnect in step after a broker restart (paho's own reconnect has no
jitter). With ``[mqtt] servers`` (the other nodes of a broker cluster), an
attempt that fails, or a connection that is lost, moves the next attempt to the
next node in turn. The supervisor can see a dead network thread and :meth:`restart` it.

Callbacks run on the network thread: they never block and never raise (a raise
would end the thread); they only hand results to the handlers given. The
device, the central ingest and the operator's tool all use this class (the
paho client itself is made by :func:`edge.mqtt.client.new_client`); the
operator connects with :meth:`MqttLink.open`, which answers at once whether
the broker took the connection, and subscribes with :meth:`MqttLink.subscribe`.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttConfig
from edge.config.delivery import split_address
from edge.mqtt.client import LinkOptions, is_v5, new_client

log = logging.getLogger(__name__)

# (mid, ok, reason) of every PUBACK read in one pass of the network loop
PubackHandler = Callable[[list[tuple[int, bool, str]]], None]
MessageHandler = Callable[[mqtt.MQTTMessage], None]


def backoff(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(high, low * 2**attempt)]."""
    return rng.uniform(0.0, min(high, low * 2 ** min(attempt, 30)))


class MqttLink:
    """A paho client, its network thread, and reconnection with jitter."""

    def __init__(
        self,
        cfg: MqttConfig,
        options: LinkOptions,
        *,
        on_connected: Callable[[], None] = lambda: None,
        on_puback: PubackHandler = lambda acks: None,
        on_message: MessageHandler = lambda msg: None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.options = options
        self._on_connected = on_connected
        self._on_puback = on_puback
        self._pubacks: list[tuple[int, bool, str]] = []  # of the current loop pass
        self._acks: deque[tuple[int, int, int]] = deque()  # PUBACKs to send (ack_later)
        self._on_message = on_message
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribed: dict[int, threading.Event] = {}
        # subscribed inside every connect: the options' and those of subscribe()
        self._subscriptions = list(options.subscriptions)
        self._subacks: queue.Queue[tuple[int, set[str], set[str]]] | None = None  # subscribe()
        self._sent: dict[int, list[tuple[str, int]]] = {}  # SUBSCRIBE mid -> its filters
        # refused: subscribed again at _again_at, later with each refusal (_refusals)
        self._again: list[tuple[str, int]] = []
        self._again_at, self._refusals = 0.0, 0
        self._early: dict[int, list[ReasonCode]] = {}  # SUBACKs read before their mid was noted
        self._sub_lock = threading.Lock()
        self._subscribing = threading.Lock()
        # open(): the socket is open already; the broker's answer, and a refusal
        self._opened = False
        self._opening = False
        self._answered = threading.Event()
        self._refused: str | None = None
        self._client = self._make_client()
        self.connects = 0
        self.failures = 0
        # the broker's nodes, tried in turn; the one the paho client was last pointed at
        self.servers = [(cfg.host, cfg.port), *map(split_address, cfg.servers)]
        self._server = 0
        self._pointed: tuple[str, int] | None = None

    def _make_client(self) -> mqtt.Client:
        opts = self.options
        client = new_client(
            self.cfg,
            opts.client_id,
            manual_ack=opts.manual_ack,
            max_queued=opts.max_queued,
            persistent=not opts.clean_start,
        )
        if opts.will is not None:
            client.will_set(opts.will.topic, opts.will.payload, qos=1, retain=opts.will.retain)
        client.on_connect = self._guard(self._handle_connect)
        client.on_disconnect = self._guard(self._handle_disconnect)
        client.on_publish = self._guard(self._handle_publish)
        client.on_message = self._guard(self._handle_message)
        client.on_subscribe = self._guard(self._handle_subscribe)
        client.on_unsubscribe = self._guard(self._handle_unsubscribe)
        return client

    # -- lifecycle ---------------------------------------------------------

    @property
    def v5(self) -> bool:
        """MQTT v5 (False: 3.1.1, which has no properties, reason codes or session expiry)."""
        return is_v5(self.cfg)

    @property
    def server(self) -> str:
        """The node connected to, or tried next: ``host:port``."""
        host, port = self.servers[self._server]
        return f"{host}:{port}"

    def _next_server(self) -> None:
        self._server = (self._server + 1) % len(self.servers)

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    @property
    def alive(self) -> bool:
        """The network thread is running (False before start and after stop)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the network thread; returns at once even if the broker is away."""
        log.info("mqtt: connecting to %s as %s", self.server, self.options.client_id)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def open(self, timeout: float) -> str | None:
        """Connect now and wait up to ``timeout`` s for the broker's answer; then the
        network thread keeps the connection up, as after :meth:`start`. None when the
        broker took it; else why not, and the link is stopped: for a tool that must
        fail at once rather than retry (the operator's), where the kiosk waits.
        """
        self._refused = None
        self._answered.clear()
        failed = []
        for _ in self.servers:  # each node once, until one takes the connection
            try:
                self._connect()  # TCP and TLS here, in the caller's thread
                break
            except (OSError, ValueError) as exc:  # refused, unreachable, DNS, TLS (ssl: OSError)
                failed.append(f"{self.server}: {exc}")
                self._next_server()
        else:
            return f"cannot reach the broker at {'; '.join(failed)}"
        where = self.server
        self._opened = self._opening = True
        try:
            self.start()
            if not self._answered.wait(timeout):
                self.stop()
                return f"no answer from the broker at {where} within {timeout:g} s"
            if self._refused is not None:
                self.stop()
                return f"the broker at {where} refused the connection: {self._refused}"
            return None
        finally:
            self._opening = False

    def restart(self) -> None:
        """Start a new network thread after the old one died (the supervisor's job)."""
        log.warning("mqtt: network thread restarted")
        self.start()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
        *,
        response_topic: str | None = None,
    ) -> int | None:
        """Queue a message (never blocks); its mid, or None when paho refused it.

        ``correlation``: MQTT v5 correlation data, echoed in a reply to a request;
        ``response_topic``: where a request wants its reply (both dropped in 3.1.1, which
        has no properties: the reply then goes to ``res/<command>`` and is matched by the
        id in its payload).
        """
        props = None
        if (correlation is not None or response_topic is not None) and self.v5:
            make: Any = Properties  # paho's Properties has no type hints
            props = make(PacketTypes.PUBLISH)
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("mqtt: publish to %s refused: %s", topic, mqtt.error_string(info.rc))
            return None
        return info.mid

    def publish_and_wait(self, topic: str, payload: bytes, retain: bool, timeout: float) -> bool:
        """Publish at QoS 1 and wait for the PUBACK (only while connected)."""
        return self.connected and self.confirm(topic, payload, retain, timeout) is None

    def confirm(self, topic: str, payload: bytes, retain: bool, timeout: float) -> str | None:
        """Publish at QoS 1 and wait up to ``timeout`` s for the PUBACK: None when it
        came, else why not."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            return f"not published: {exc}"
        if not info.is_published():
            return f"the broker did not confirm within {timeout:g} s"
        return None

    def subscribe(self, filters: list[tuple[str, int]], timeout: float) -> str | None:
        """Subscribe to ``(filter, qos)`` now, and again after every reconnection; wait up
        to ``timeout`` s until the broker has taken every filter (one it refuses is sent
        again after a backoff, as at connect). None once it has, else why not."""
        with self._subscribing:  # one waiter: the SUBACKs it drains are its own
            self._subscriptions += filters
            acks: queue.Queue[tuple[int, set[str], set[str]]] = queue.Queue()
            self._subacks = acks
            deadline = time.monotonic() + timeout
            try:
                result, mid = self._send_subscribe(filters)
                if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
                    return f"subscribe failed: {mqtt.error_string(result)}"
                refused: set[str] | None = None  # still refused, once its SUBACK came
                while refused is None or refused:
                    try:
                        acked, no, yes = acks.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        if refused:
                            return f"the broker refused {', '.join(sorted(refused))}"
                        return f"the broker did not confirm the subscription within {timeout:g} s"
                    if refused is not None:
                        refused -= yes  # taken when subscribed again
                    elif acked == mid:
                        refused = no
                return None
            finally:
                self._subacks = None

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> tuple[MQTTErrorCode, int | None]:
        result, mid = self._client.subscribe(filters)  # paho may send it in this thread
        if mid is not None:
            with self._sub_lock:
                early = self._early.pop(mid, None)
                if early is None:
                    self._sent[mid] = filters
            if early is not None:  # the network thread read its SUBACK already
                self._suback(mid, filters, early)
        return result, mid

    def unsubscribe(self, filters: list[str], timeout: float = 2.0) -> bool:
        """Unsubscribe and wait for the broker's UNSUBACK (so that nothing more arrives)."""
        done = threading.Event()
        result, mid = self._client.unsubscribe(filters)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return False
        self._unsubscribed[mid] = done
        return done.wait(timeout)

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK a received message (with ``manual_ack``): after it is safely stored."""
        self._client.ack(mid, qos)

    def ack_later(self, acks: list[tuple[int, int, int]]) -> None:
        """PUBACK many received messages, ``(mid, qos, connection)`` each, from the network
        thread on its next pass (a publish, or the next packet, wakes it): one thread
        writes them all, instead of the caller waiting for the interpreter lock the
        network thread holds, once per message. Those of an earlier connection are
        dropped: the broker sends them again, and their packet ids may name another
        message by now."""
        self._acks.extend(acks)

    def _flush_acks(self) -> None:
        while self._acks:
            mid, qos, connection = self._acks.popleft()
            if connection == self.connects:
                self._client.ack(mid, qos)

    def stop(self) -> None:
        """Disconnect cleanly (no will) and end the network thread."""
        self._stop.set()
        if self._client.is_connected():
            self._client.disconnect()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # -- the network thread ----------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            if self._try_connect():
                # the socket is open: drive it until the connection ends
                while not self._stop.is_set():
                    self._flush_acks()
                    rc = self._client.loop(timeout=0.2)
                    self._flush_acks()
                    self._deliver_pubacks()
                    if self._again and time.monotonic() >= self._again_at:
                        again, self._again = self._again, []
                        self._send_subscribe(again)
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        self._next_server()  # lost: another node, if there are others
                        break
                    if self._client.is_connected():
                        attempt = 0
            if self._stop.wait(self._backoff(attempt)):
                break
            attempt += 1
        try:
            self._client.loop(timeout=0.1)  # let a DISCONNECT go out
        except Exception:
            log.debug("mqtt: error while closing", exc_info=True)

    def _deliver_pubacks(self) -> None:
        """Hand over the PUBACKs of a loop pass at once: one wake-up for the receiver,
        not one per message."""
        if self._pubacks:
            acks, self._pubacks = self._pubacks, []
            try:
                self._on_puback(acks)
            except Exception:
                log.exception("mqtt: PUBACK handler failed (ignored: the network thread lives on)")

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s, self._rng)

    def _connect(self) -> None:
        """TCP, TLS and CONNECT (the CONNACK comes to the network thread); OSError or
        ValueError when that fails at once."""
        factory = self.options.will_factory
        if factory is not None:
            will = factory()
            self._client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        target = self.servers[self._server]
        if target == self._pointed:
            self._client.reconnect()
            return
        self._pointed = target  # paho keeps the address even when connecting fails
        host, port = target
        if not self.v5:  # 3.1.1: clean-session was set when the client was made
            self._client.connect(host, port, keepalive=self.cfg.keepalive_s)
            return
        props = None
        if self.options.session_expiry_s or self.options.receive_maximum:
            make: Any = Properties  # paho's Properties has no type hints
            props = make(PacketTypes.CONNECT)
            if self.options.session_expiry_s:
                props.SessionExpiryInterval = self.options.session_expiry_s
            if self.options.receive_maximum:
                props.ReceiveMaximum = self.options.receive_maximum
        self._client.connect(
            host,
            port,
            keepalive=self.cfg.keepalive_s,
            clean_start=self.options.clean_start,
            properties=props,
        )

    def _try_connect(self) -> bool:
        """One connection attempt (TCP, TLS, CONNECT); False when it failed at once."""
        if self._opened:  # open() has made this attempt already
            self._opened = False
            return True
        try:
            self._connect()
        except (OSError, ValueError) as exc:  # refused, unreachable, DNS, TLS (ssl: OSError)
            self.failures += 1
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning(
                    "mqtt: cannot reach %s (attempt %d): %s; retrying with backoff",
                    self.server,
                    self.failures,
                    exc,
                )
            self._next_server()
            return False
        return True

    # -- paho callbacks (network thread) ---------------------------------

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                fn(*args)
            except Exception:
                log.exception(
                    "mqtt: error in %s (ignored: the network thread lives on)", fn.__name__
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
            self._refused = str(reason)
            if not self._opening:  # open() says it to its caller
                log.warning("mqtt: connection refused by %s: %s", self.server, reason)
            self._answered.set()
            return
        self.connects += 1
        self.failures = 0
        log.info("mqtt: connected to %s", self.server)
        if self._subscriptions:
            with self._sub_lock:
                self._sent.clear()
                self._early.clear()
            self._again, self._refusals = [], 0
            self._send_subscribe(list(self._subscriptions))
        self._answered.set()
        self._on_connected()

    def _handle_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure and self._opening:
            log.debug("mqtt: disconnected while opening: %s", reason)  # open() says why
        elif reason.is_failure:
            log.warning("mqtt: disconnected: %s; reconnecting with backoff", reason)
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
        failed = reason.is_failure
        self._pubacks.append((mid, not failed, str(reason) if failed else "Success"))

    def _handle_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        with self._sub_lock:
            filters = self._sent.pop(mid, None)
            if filters is None:
                self._early[mid] = reasons  # its sender notes it and hands it on
                return
        self._suback(mid, filters, reasons)

    def _suback(self, mid: int, filters: list[tuple[str, int]], reasons: list[ReasonCode]) -> None:
        refused = [f for f, reason in zip(filters, reasons, strict=False) if reason.is_failure]
        if refused:  # a NATS node does, while its JetStream is busy or electing leaders
            self._refusals += 1
            if self._refusals == 1 or self._refusals % 10 == 0:
                said = ", ".join(topic for topic, _ in refused)
                log.warning("mqtt: %s refused %s; subscribing again", self.server, said)
            self._again += refused  # after a backoff that grows with each refusal
            self._again_at = (
                time.monotonic() + self.cfg.reconnect_min_s + self._backoff(self._refusals)
            )
        if (acks := self._subacks) is not None:  # (mid, refused, taken) for subscribe()
            no = {topic for topic, _ in refused}
            acks.put((mid, no, {topic for topic, _ in filters} - no))

    def _handle_unsubscribe(self, _client: mqtt.Client, _u: Any, mid: int, *_rest: Any) -> None:
        done = self._unsubscribed.pop(mid, None)
        if done is not None:
            done.set()

    def _handle_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(msg)
