"""Fleet at scale: N virtual kiosks on one mosquitto, seen by the broker and the operator.

The bench starts a mosquitto of its own (a plain loopback listener, otherwise
sized as docs/central.md says: persistence with a 10 s autosave, queues of a
million, in-flight 100; ``sys_interval 1``), the real central ingest (SQLite)
and one simulator process with N virtual kiosks. They are paho-mqtt clients
driven from ONE thread through paho's external event loop API: each client's
socket() on an epoll selector, loop_read() when readable, loop_write() when
paho asks for writability (the socket register/unregister-write callbacks, as
want_write() says), loop_misc() every second. On the wire each behaves as
docs/fleet.md specifies: client id = device id (``sim-0001``...), MQTT v5, a
retained ``offline`` will with the connection's session number (a new one for
each attempt; reconnects with jittered backoff), then retained ``online`` status,
``meta``, ``config/reported`` and open alerts (1 kiosk in 25 has one), the
device's subscriptions (its commands, ``$all`` commands, acks, desired config,
pushes, the ingest's status), commands checked and answered by the kiosk's own
command table (``edge.fleet.commands``: ping, get-status, rebirth), telemetry
at QoS 0 every ``--telemetry-s`` and passages (QoS 1, a real ~850-byte
passage message) at ``--passage-rate`` per minute, kept as unacknowledged
until the ingest acknowledges them (so get-status reports a real outbox depth).
bench/cluster_bench.py runs the same kiosks in MQTT 3.1.1 (persistent sessions,
a cluster's nodes tried in turn, refused subscriptions made again after a
backoff, as edge.mqtt does) against a NATS cluster.

For each N in ``--devices`` it measures:
(a) the fleet's connect time, all N at once (as after a broker restart): until
    every CONNACK, and until every birth is PUBACKed and every SUBSCRIBE SUBACKed;
(b) ``checkpoint-edge fleet status --json`` as a subprocess of the real CLI (wall
    time, and with ``--no-live``: start-up and snapshot only), and the same through
    :class:`edge.fleet.operator.FleetClient` in this process: the retained snapshot,
    then the fleet-wide get-status until every device's reply is in; every device
    must appear and answer;
(c) a steady-state window of ``--window-s``: PUBLISH rates in and out from
    mosquitto's own counters (``$SYS/broker/publish/messages/received`` and
    ``/sent``, the monitor's own ``$SYS`` messages subtracted; all packets from
    ``$SYS/broker/messages/*``), the broker's CPU time and RSS from /proc, the
    simulator's and the ingest's CPU, and each passage's time from publish to
    the ingest's ack;
(d) with ``--queued N``, for the largest fleet: the ingest stops (its persistent
    session stays), N passages queue for it, the broker's memory per queued
    passage; then the ingest is back, until all of them are acknowledged.

Why the kiosks live in a child process: paho's threaded loop (loop_start, which
FleetClient and the ingest use) calls select(), which cannot watch a file
descriptor above 1023; in a process holding 1,000 sockets such a client never
connects (paho reports a lost connection, nothing else).

Run: ``.venv/bin/python bench/fleet_bench.py [--devices 100,1000] [--window-s S]
[--telemetry-s S] [--passage-rate R] [--queued N] [--json]`` (about 80 s with the
defaults on a 2-core machine). Figures and what they mean: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import json
import logging
import multiprocessing
import os
import platform
import random
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from outbox_bench import sample_message  # noqa: E402

from edge import __version__  # noqa: E402
from edge.config import MqttConfig  # noqa: E402
from edge.core.model import iso_utc  # noqa: E402
from edge.fleet.commands import Command, Commands, Spec, no_args  # noqa: E402
from edge.fleet.operator import FleetClient  # noqa: E402
from edge.mqtt import topics  # noqa: E402
from edge.mqtt.device import parse_ack, parse_central, status_payload  # noqa: E402
from edge.mqtt.link import backoff  # noqa: E402
from tests.conftest import Mosquitto  # noqa: E402

CONNECT_BATCH = 25  # TCP connects per turn of the event loop while the fleet connects
STATUS_TIMEOUT_S = 30.0  # fleet status --timeout
DRAIN_LIMIT_S = 300.0  # --queued: how long to wait for the ingest to acknowledge them all
SYS_COUNTERS = (
    "publish/messages/received",
    "publish/messages/sent",
    "publish/messages/dropped",
    "messages/received",
    "messages/sent",
    "clients/connected",
    "retained messages/count",
    "subscriptions/count",
    "heap/current",
    "store/messages/count",
)


# -- the virtual kiosks (the simulator process) ----------------------------------


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _now() -> str:
    return iso_utc(datetime.now(UTC))


class _Client(mqtt.Client):
    """paho's client with a non-blocking TCP connect: the handshake completes in the
    event loop (paho queues CONNECT and asks for writability), so one kiosk whose SYN
    waits in a full accept queue does not stall all the others. (paho's own connect
    also binds to ("", 0) first, which took 8 of 13 s for 10,000 connects.)"""

    def _create_socket_connection(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex((self._host, self._port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(err, os.strerror(err))
        return sock

    def aim(self, port: int) -> None:
        """The port of the next attempt (another node of a cluster). paho's own setter
        refuses while its state is not yet "closed", as after an attempt that failed."""
        self._port = port


class VirtualKiosk:
    """One kiosk on the wire; every call comes from the simulator's single thread."""

    def __init__(self, sim: Simulator, index: int) -> None:
        self.sim = sim
        self.index = index
        self.id = f"sim-{index + 1:04d}"
        self.site = f"QL{index // 4 + 1} lane {index % 4 + 1}"
        self.mode = "auto" if index % 3 else "officer"
        self.alerts: dict[str, dict[str, Any]] = {}
        if index % 25 == 24:
            self.alerts["clock-unsynchronised"] = {
                "name": "clock-unsynchronised",
                "severity": "warning",
                "detail": "the kernel reports the clock unsynchronised",
                "raised": _now(),
            }
        self.started = time.monotonic()
        self.node = index % len(sim.ports)  # which of the broker's ports (a cluster's nodes)
        self.session = 1  # a new number for each connection attempt, as in docs/fleet.md
        self.attempt = 0  # failed attempts in a row (the backoff's exponent)
        self.seq = 0
        self.unacked: dict[str, tuple[float, str]] = {}  # pid -> (monotonic sent, ts)
        self.unpubacked: set[int] = set()  # mids of passages the broker has not PUBACKed
        self.last_ack: str | None = None
        self.central_online = False
        self.connected = False
        self.subscribed = False
        self.birth: set[int] = set()  # mids of the birth not yet PUBACKed
        self.born = False  # its first birth is complete
        self.ready = False  # this connection's birth is complete
        self.cut = False  # its connection is about to be cut: until its birth is complete again
        self.sent: dict[int, list[str]] = {}  # SUBSCRIBE mid -> its filters
        self.again: list[str] = []  # filters refused, to be subscribed again
        self.commands = Commands(
            {"ping": Spec(self._ping), "get-status": Spec(self._status), "rebirth": Spec(self._rb)}
        )
        if sim.protocol == "5":
            client = _Client(CallbackAPIVersion.VERSION2, client_id=self.id, protocol=mqtt.MQTTv5)
        else:  # as the kiosk in 3.1.1 (edge.mqtt.device): a persistent session
            client = _Client(CallbackAPIVersion.VERSION2, client_id=self.id,
                             protocol=mqtt.MQTTv311, clean_session=False)  # fmt: skip
        client.max_inflight_messages_set(10)  # [mqtt] inflight default
        client.max_queued_messages_set(1000)
        client.on_socket_open = sim.socket_open
        client.on_socket_close = sim.socket_close
        client.on_socket_register_write = sim.want_write
        client.on_socket_unregister_write = sim.written
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.user_data_set(self)
        self.client = client

    def connect(self, first: bool) -> None:
        """One connection attempt; on failure, another after a jittered backoff."""
        will = status_payload("offline", self.session)
        self.client.will_set(topics.status(self.id), will, qos=1, retain=True)
        try:
            if first:
                self.client.connect("127.0.0.1", self.sim.ports[self.node], keepalive=30)
            else:
                self.client.aim(self.sim.ports[self.node])
                self.client.reconnect()
        except OSError:
            self.sim.errors += 1
            self.retry()

    def retry(self) -> None:
        """The next attempt after a jittered backoff; on a cluster, to the next node in
        turn (as the kiosk's link does with ``[mqtt] servers``)."""
        self.attempt += 1
        self.session += 1
        self.node = (self.node + 1) % len(self.sim.ports)
        self.sim.timer(backoff(self.attempt, 1.0, 30.0, self.sim.rng), self.index, "reconnect")

    # -- publishing ----------------------------------------------------------------

    def publish(
        self, kind: str, topic: str, payload: bytes, qos: int = 1, retain: bool = False, **kw: Any
    ) -> int:
        self.sim.published[kind] += 1
        return int(self.client.publish(topic, payload, qos=qos, retain=retain, **kw).mid)

    def publish_birth(self) -> None:
        dev = self.id
        meta = {
            "version": __version__, "device": dev, "site": self.site,
            "camera": "picamera2 1280x720", "decoder": "zxing", "mode": self.mode,
            "ack": "ingest", "config_version": 0, "policy_version": None,
            "trust_version": 6, "session": self.session,
        }  # fmt: skip
        reported = {"version": 0, "policy_version": None, "trust_version": 6,
                    "remote_config": True, "last": {}}  # fmt: skip
        retained = [
            ("status", topics.status(dev), status_payload("online", self.session)),
            ("meta", topics.meta(dev), _json(meta)),
            ("reported", topics.config_reported(dev), _json(reported)),
        ]
        retained += [("alert", topics.alert(dev, n), _json(a)) for n, a in self.alerts.items()]
        for kind, topic, payload in retained:
            self.birth.add(self.publish(kind, topic, payload, retain=True))

    def publish_telemetry(self) -> None:
        oldest = min(self.unacked.values(), default=None)
        doc = {
            "ts": _now(), "session": self.session, "state": "ready", "mode": self.mode,
            "outbox_depth": len(self.unacked),
            "oldest_unacked_s": None if oldest is None else round(time.monotonic() - oldest[0], 1),
            "camera_fps": 15.0, "decoded_fps": 15.0, "fps": 15.0, "decode_ms": 11.3,
            "frames_dropped": 0, "scans": self.seq,
            "approved": self.seq, "denied": 0, "disk_free_mb": 24000.0, "cpu_temp_c": 51.2,
            "uptime_s": round(time.monotonic() - self.started, 1), "alerts": len(self.alerts),
        }  # fmt: skip
        self.publish("telemetry", topics.telemetry(self.id), _json(doc), qos=0)

    def publish_passage(self, burst: bool = False) -> None:
        self.seq += 1
        pid = str(uuid.uuid4())
        if burst:
            self.sim.burst.add(pid)
        ts = _now()
        doc = {**self.sim.template, "pid": pid, "seq": self.seq, "device": self.id,
               "site": self.site, "ts": ts, "mode": self.mode}  # fmt: skip
        self.unacked[pid] = (time.monotonic(), ts)
        self.unpubacked.add(self.publish("passage", topics.passage(self.id), _json(doc)))

    # -- commands ------------------------------------------------------------------

    def _ping(self, command: Command) -> dict[str, Any]:
        no_args(command)
        return {"pong": True, "uptime_s": round(time.monotonic() - self.started, 1)}

    def _status(self, command: Command) -> dict[str, Any]:
        no_args(command)
        oldest = min(self.unacked.values(), default=None)
        return {
            "state": "ready", "mode": self.mode, "faults": [], "barrier_open": False,
            "connected": True, "central_online": self.central_online,
            "outbox": {
                "depth": len(self.unacked), "stored": 0, "sent": len(self.unacked),
                "oldest": None if oldest is None else oldest[1],
                "oldest_age_s": None if oldest is None
                else round(time.monotonic() - oldest[0], 1),
                "last_seq": self.seq, "last_ack": self.last_ack,
            },
            "alerts": sorted(self.alerts), "trust": "6 signers (3 files, push v6)",
            "config_version": 0, "session": self.session,
            "uptime_s": round(time.monotonic() - self.started, 1), "version": __version__,
        }  # fmt: skip

    def _rb(self, command: Command) -> dict[str, Any]:
        no_args(command)
        self.publish_birth()
        return {"republished": ["status", "meta", "config/reported", "alerts"]}

    def _command(self, msg: mqtt.MQTTMessage, name: str, fleet_wide: bool) -> None:
        reply = self.commands.handle(
            name, msg.payload, retained=msg.retain, fleet_wide=fleet_wide, now=datetime.now(UTC)
        )
        if reply is None:
            return
        topic = topics.reply(self.id, name)
        props: Any = msg.properties
        response = getattr(props, "ResponseTopic", None)
        if isinstance(response, str) and response.startswith(topics.reply_prefix(self.id)):
            topic = response if not set(response) & {"+", "#"} else topic
        out = None
        correlation = getattr(props, "CorrelationData", None)
        if correlation is not None:
            make: Any = Properties
            out = make(PacketTypes.PUBLISH)
            out.CorrelationData = correlation
        self.sim.answered += 1
        self.publish("res", topic, reply.payload(), properties=out)

    # -- paho callbacks ------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.sim.refused += 1
            return  # paho closes the connection; _on_disconnect retries
        self.connected = True
        self.attempt = 0
        self.subscribed = False
        self.birth = set()
        self.sim.connacks += 1
        self.sim.last_connack = time.monotonic()
        self.sent: dict[int, list[str]] = {}  # SUBSCRIBE mid -> its filters
        self.subscribe(self.filters())
        self.publish_birth()

    def subscribe(self, filters: list[str]) -> None:
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        self.sent[mid] = filters

    def filters(self) -> list[str]:
        """The device's subscriptions, as edge.mqtt.device makes them."""
        dev = self.id
        return [
            topics.commands(dev),
            topics.commands(topics.ALL),
            topics.ack(dev),
            topics.central_status(),
            topics.config_desired(dev),
            *(topics.fleet_push(kind) for kind in topics.PUSH_KINDS),
        ]

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        refused = [t for t, c in zip(self.sent.pop(mid, []), codes, strict=False) if c.is_failure]
        for topic in refused:  # counted by filter, the device id taken out
            self.sim.sub_refused += 1
            self.sim.refused_filters[topic.replace(self.id, "<id>")] += 1
        if refused:  # subscribed again after a backoff, as edge.mqtt.link does
            self.again = refused
            self.sim.timer(backoff(2, 1.0, 30.0, self.sim.rng), self.index, "subscribe")
        self.subscribed = True
        self._check_born()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        self.unpubacked.discard(mid)
        if self.birth:
            self.birth.discard(mid)
            self._check_born()

    def _check_born(self) -> None:
        if self.ready or not self.connected or not self.subscribed or self.birth:
            return
        self.ready = True
        self.sim.last_ready = time.monotonic()
        if self.cut:
            self.cut = False
            self.sim.last_back = self.sim.last_ready
        if not self.born:
            self.born = True
            self.sim.kiosk_born(self)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = topics.parse(msg.topic)
        kind = parsed.kind if parsed is not None else "other"
        self.sim.received[kind] += 1
        if parsed is None:
            return
        if parsed.kind == "cmd":
            self._command(msg, parsed.name, fleet_wide=parsed.device == topics.ALL)
        elif parsed.kind == "ack":
            now = time.monotonic()
            ack = parse_ack(bytes(msg.payload))
            for pid in ack.pids if ack is not None else ():
                sent = self.unacked.pop(pid, None)
                if pid in self.sim.burst:
                    self.sim.burst.discard(pid)
                    self.sim.burst_done = now  # the latest burst passage's ack
                if sent is not None:
                    self.sim.ack_latency.append(now - sent[0])
                    self.last_ack = _now()
        elif parsed.kind == "status" and parsed.device == topics.CENTRAL:
            self.central_online = parse_central(bytes(msg.payload)) is True

    def _on_disconnect(self, *_args: Any) -> None:
        """Lost, refused, or no CONNACK within the keepalive (paho gives up then)."""
        self.sim.lost += 1
        if self.born and self.connected:
            self.sim.disconnects += 1
        self.connected = self.ready = False
        if not self.sim.stopping:
            self.retry()


@dataclass(frozen=True)
class Fleet:
    """What the simulator is asked to run."""

    ports: tuple[int, ...]  # one broker, or the nodes of a cluster (kiosk i starts on i % n)
    devices: int
    telemetry_s: float
    passage_rate: float  # per device per minute
    seed: int
    protocol: str = "5"  # or "3.1.1" (persistent sessions, as the kiosk's)


class Simulator:
    """N virtual kiosks, one epoll selector, one thread; driven by the parent over a pipe."""

    def __init__(self, conn: Any, fleet: Fleet) -> None:
        self.conn = conn
        self.ports = fleet.ports
        self.protocol = fleet.protocol
        self.telemetry_s = fleet.telemetry_s
        rate = fleet.passage_rate
        self.passage_s = 60.0 / rate if rate > 0 else 0.0  # mean seconds between passages
        self.sel = selectors.DefaultSelector()
        self.sel.register(conn.fileno(), selectors.EVENT_READ, None)
        self.template = sample_message(1)
        self.published: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.ack_latency: list[float] = []
        self.burst: set[str] = set()  # pids of the --queued passages not yet acknowledged
        self.burst_done = 0.0  # when the last of them was acknowledged (monotonic)
        self.answered = self.connacks = self.refused = self.disconnects = self.errors = 0
        self.lost = self.sub_refused = 0
        self.refused_filters: Counter[str] = Counter()  # SUBACK failures by topic filter
        self.last_ready = 0.0  # when the last kiosk's birth was complete (monotonic)
        self.last_back = 0.0  # when the last kiosk cut off was back (its birth complete)
        self.rng = random.Random(fleet.seed)
        self.born = 0
        self.last_connack = 0.0
        self.timers: list[tuple[float, int, int, str]] = []  # (when, tie, kiosk, kind)
        self.tie = 0
        self.kiosks = [VirtualKiosk(self, i) for i in range(fleet.devices)]
        self.stopping = False

    # socket callbacks (paho -> selector)
    def socket_open(self, client: mqtt.Client, kiosk: VirtualKiosk, sock: Any) -> None:
        self.sel.register(sock, selectors.EVENT_READ, kiosk)

    def socket_close(self, _c: mqtt.Client, _k: VirtualKiosk, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)

    def want_write(self, _c: mqtt.Client, kiosk: VirtualKiosk, sock: Any) -> None:
        self.sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, kiosk)

    def written(self, _c: mqtt.Client, kiosk: VirtualKiosk, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):  # already closed
            self.sel.modify(sock, selectors.EVENT_READ, kiosk)

    def timer(self, delay: float, index: int, kind: str) -> None:
        self.tie += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.tie, index, kind))

    def kiosk_born(self, kiosk: VirtualKiosk) -> None:
        self.born += 1
        self.timer(self.rng.uniform(0, self.telemetry_s), kiosk.index, "telemetry")
        if self.passage_s:
            self.timer(self.rng.expovariate(1 / self.passage_s), kiosk.index, "passage")
        if self.born == len(self.kiosks):
            took = {"connack_s": self.last_connack - self.t0, "birth_s": time.monotonic() - self.t0}
            counts = {"refused": self.refused, "errors": self.errors, "lost": self.lost,
                      "sub_refused": self.sub_refused,
                      "refused_filters": dict(self.refused_filters)}  # fmt: skip
            self.conn.send(("connected", took | counts))

    def _due(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            _, _, index, kind = heapq.heappop(self.timers)
            kiosk = self.kiosks[index]
            if kind == "reconnect":
                kiosk.connect(first=False)
            elif kind == "subscribe":
                if kiosk.connected and kiosk.again:
                    kiosk.subscribe(kiosk.again)
                kiosk.again = []
            elif kind == "telemetry":
                if kiosk.connected:  # a live view: never queued
                    kiosk.publish_telemetry()
                self.timer(self.telemetry_s, index, kind)
            else:
                kiosk.publish_passage()
                self.timer(self.rng.expovariate(1 / self.passage_s), index, kind)

    def _control(self) -> None:
        what = self.conn.recv()
        if what == "stop":
            self.stopping = True
        elif isinstance(what, tuple) and what[0] == "burst":
            connected = [k for k in self.kiosks if k.connected] or self.kiosks
            for i in range(what[1]):
                connected[i % len(connected)].publish_passage(burst=True)
            self.conn.send("ok")
        elif isinstance(what, tuple) and what[0] == "cut":  # ("cut", node or None: all)
            for kiosk in self.kiosks:
                kiosk.cut = what[1] is None or (kiosk.connected and kiosk.node == what[1])
            self.conn.send(sum(k.cut for k in self.kiosks))
        elif what == "sessions":  # each kiosk's connection number (in its status)
            self.conn.send({k.id: k.session for k in self.kiosks})
        elif what == "stats":
            latency, self.ack_latency = self.ack_latency, []
            self.conn.send(
                {
                    "cpu_s": time.process_time(),
                    "published": dict(self.published),
                    "received": dict(self.received),
                    "answered": self.answered,
                    "disconnects": self.disconnects,
                    "lost": self.lost,
                    "outbox": sum(len(k.unacked) for k in self.kiosks),
                    "in_flight": sum(len(k.unpubacked) for k in self.kiosks),
                    "burst_left": len(self.burst),
                    "burst_done": self.burst_done,
                    "ack_latency": latency,
                    "ready": sum(k.ready for k in self.kiosks),
                    "last_ready": self.last_ready,
                    "cut": sum(k.cut for k in self.kiosks),
                    "last_back": self.last_back,
                    "sub_refused": self.sub_refused,
                    "per_node": Counter(k.node for k in self.kiosks if k.connected),
                }
            )

    def run(self) -> None:
        self.t0 = time.monotonic()
        waiting = deque(self.kiosks)
        next_misc = self.t0 + 1.0
        while not self.stopping:
            for _ in range(min(CONNECT_BATCH, len(waiting))):
                waiting.popleft().connect(first=True)
            now = time.monotonic()
            timeout = 0.0 if waiting else 0.2
            if self.timers:
                timeout = min(timeout, max(0.0, self.timers[0][0] - now))
            for key, events in self.sel.select(timeout):
                kiosk = key.data
                if kiosk is None:
                    self._control()
                    continue
                if events & selectors.EVENT_READ:
                    kiosk.client.loop_read()
                if events & selectors.EVENT_WRITE and kiosk.client.socket() is not None:
                    kiosk.client.loop_write()
            now = time.monotonic()
            self._due(now)
            if now >= next_misc:  # keepalive and ping timeouts
                for kiosk in self.kiosks:
                    kiosk.client.loop_misc()
                next_misc = now + 1.0


def simulate(conn: Any, fleet: Fleet) -> None:
    """The simulator process: the kiosks until the parent says stop."""
    logging.basicConfig(level=logging.ERROR)
    raise_open_files(fleet.devices + 100)
    Simulator(conn, fleet).run()


class Kiosks:
    """The simulator process as the parent sees it (this bench's and cluster_bench's)."""

    def __init__(self, fleet: Fleet) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.fleet = fleet
        self.pipe, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=simulate, args=(theirs, fleet), daemon=True)
        self.ids = {f"sim-{i + 1:04d}" for i in range(fleet.devices)}

    def connect(self, limit: float | None = None) -> dict[str, Any]:
        """Start them all at once; until the last birth: CONNACK and birth times, counts.
        TimeoutError after ``limit`` seconds (default: 60 + 1 s per 50 kiosks)."""
        self.proc.start()
        limit = limit or 60 + self.fleet.devices / 50
        if not self.pipe.poll(limit):
            raise TimeoutError(f"{self.fleet.devices} kiosks did not connect within {limit:g} s")
        _, connected = self.pipe.recv()
        return dict(connected)

    def ask(self, what: Any) -> Any:
        self.pipe.send(what)
        return self.pipe.recv()

    def stats(self) -> dict[str, Any]:
        got: dict[str, Any] = self.ask("stats")
        return got

    def sessions(self) -> dict[str, int]:
        """Each kiosk's current connection number (as its retained status says it)."""
        got: dict[str, int] = self.ask("sessions")
        return got

    def cut(self, node: int | None) -> int:
        """Mark the kiosks whose connection is about to be cut (those on ``node``, or all):
        ``stats()["cut"]`` counts those not yet back; how many were marked."""
        got: int = self.ask(("cut", node))
        return got

    def burst(self, count: int) -> None:
        """``count`` passages at once, spread over the connected kiosks."""
        self.ask(("burst", count))

    def stop(self) -> None:
        if self.proc.is_alive():
            self.pipe.send("stop")
            self.proc.join(15)
            if self.proc.is_alive():
                self.proc.kill()


# -- the broker, the ingest, the monitor (this process) ----------------------------


def raise_open_files(need: int) -> int:
    """Raise this process's open-file limit (inherited by the broker it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        except (ValueError, OSError):
            raise SystemExit(f"{need} open files needed; the hard limit is {hard}") from None
        return need
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard if hard != resource.RLIM_INFINITY else soft


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Broker(Mosquitto):
    """The tests' own mosquitto (tests/conftest.py), sized for a fleet: the settings
    below come after the tests' and override them."""

    SETTINGS = (
        "persistence true\n"
        "autosave_interval 10\nautosave_on_changes false\n"
        "max_queued_messages 1000000\nmax_queued_bytes 0\n"
        "persistent_client_expiration 14d\n"
        "sys_interval 1\n"
    )

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, extra=self.SETTINGS)  # it inherits the raised file limit

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def open_files_limit(self) -> str:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
        return "?"

    def stop(self, timeout: float = 30.0) -> None:  # ten thousand sessions to save
        super().stop(timeout)


class Monitor:
    """Reads mosquitto's $SYS counters (every second) and the ingest's status."""

    def __init__(self, port: int, protocol: str = "5") -> None:
        """``protocol`` "3.1.1": a broker without mosquitto's $SYS (a NATS cluster): only
        the ingest's status."""
        self.samples: dict[str, list[tuple[float, float]]] = {k: [] for k in SYS_COUNTERS}
        self.arrivals: list[float] = []  # every message this monitor got (sent by the broker)
        self.central: str | None = None
        self.changed = threading.Condition()
        v5 = protocol == "5"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-monitor",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)  # fmt: skip
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("$SYS/broker/#", 0)] * v5 + [(topics.central_status(), 0)])
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        with self.changed:
            self.arrivals.append(now)
            name = msg.topic.removeprefix("$SYS/broker/")
            if name in self.samples:
                with contextlib.suppress(ValueError):
                    self.samples[name].append((now, float(msg.payload)))
            elif msg.topic == topics.central_status():
                self.central = (json.loads(msg.payload or b"{}")).get("state")
            self.changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def fresh(self, name: str, after: float, timeout: float = 5.0) -> float:
        """The first value of ``name`` published after ``after`` (monotonic seconds)."""

        def got() -> list[float]:
            return [v for t, v in self.samples[name] if t > after]

        self.wait_for(lambda: bool(got()), timeout)
        return (got() or [self.latest(name) or 0.0])[0]

    def latest(self, name: str) -> float | None:
        got = self.samples[name]
        return got[-1][1] if got else None

    def rate(self, name: str, start: float, own: bool = False) -> float | None:
        """Per second from the last sample before ``start`` to the newest one (``own``:
        minus the messages this monitor received meanwhile)."""
        got = self.samples[name]
        before = [x for x in got if x[0] <= start]
        (t0, v0), (t1, v1) = (before[-1] if before else got[0]), got[-1]
        if t1 <= t0:
            return None
        mine = sum(1 for t in self.arrivals if t0 < t <= t1) if own else 0
        return (v1 - v0 - mine) / (t1 - t0)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_ingest(
    root: Path, port: int, monitor: Monitor, *, mqtt: str = "", ingest: str = "", more: str = ""
) -> subprocess.Popen[bytes]:
    """``checkpoint-edge ingest`` (SQLite in ``root``), once it says online; ``mqtt`` and
    ``ingest``: more lines for those sections, ``more``: more sections."""
    cfg = root / "ingest.toml"
    cfg.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n{mqtt}'
        f'[ingest]\ndatabase = "sqlite:///{root / "central.db"}"\n{ingest}'
        f'[log]\nlevel = "warning"\n{more}'
    )
    ingest = subprocess.Popen([sys.executable, "-m", "edge", "ingest", "-c", str(cfg)], cwd=ROOT)
    if not monitor.wait_for(lambda: monitor.central == "online", 30):
        ingest.kill()
        raise SystemExit("the ingest did not come online within 30 s")
    return ingest


# -- the measurements ----------------------------------------------------------------


def cli_status(port: int, live: bool) -> dict[str, Any]:
    """``checkpoint-edge fleet status --json`` as an operator runs it."""
    argv = [sys.executable, "-m", "edge", "fleet", "--host", "127.0.0.1", "--port", str(port),
            "--timeout", f"{STATUS_TIMEOUT_S:g}", "status", "--json"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    t = time.perf_counter()
    run = subprocess.run(
        [*argv, *([] if live else ["--no-live"])],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t
    if run.returncode != 0:
        raise SystemExit(f"fleet status failed ({run.returncode}):\n{run.stderr}")
    doc = json.loads(run.stdout)
    online = {r["device"] for r in doc["devices"] if r["state"] == "online"}
    return {"s": seconds, "devices": online, "no_reply": set(doc["no_reply"])}


def inproc_status(cfg: MqttConfig) -> dict[str, Any]:
    """The same through FleetClient: the snapshot, then every get-status reply."""
    t = time.perf_counter()
    client = FleetClient(cfg).connect(STATUS_TIMEOUT_S)
    snapshot = time.perf_counter() - t
    try:
        online = {d.id for d in client.devices.values() if d.state == "online"}
        t = time.perf_counter()
        cid = client.command(topics.ALL, "get-status", expires_s=STATUS_TIMEOUT_S)
        got = client.collect(cid, online, STATUS_TIMEOUT_S)
        live = time.perf_counter() - t
    finally:
        client.close()
    ok = {dev for dev, reply in got.items() if reply.get("status") == "ok"}
    return {"snapshot_s": snapshot, "live_s": live, "devices": online, "answered": ok}


class Run:
    """One fleet size: the broker, the ingest and the simulator, and what is measured."""

    def __init__(self, n: int, args: argparse.Namespace, root: Path) -> None:
        self.n = n
        self.args = args
        self.root = root
        self.broker = Broker(root / "broker").start()
        self.monitor = Monitor(self.broker.port)
        self.ingest: subprocess.Popen[bytes] | None = start_ingest(
            root, self.broker.port, self.monitor
        )
        self.kiosks = Kiosks(
            Fleet((self.broker.port,), n, args.telemetry_s, args.passage_rate, seed=n)
        )
        self.expected = self.kiosks.ids
        self.stats = self.kiosks.stats

    def broker_cpu(self) -> float:
        return proc_cpu_s(self.broker.pid)

    def connect(self) -> dict[str, Any]:
        """(a) every kiosk at once, until the last birth."""
        cpu = self.broker_cpu()
        try:
            connected = self.kiosks.connect()
        except TimeoutError as exc:
            raise SystemExit(str(exc)) from None
        return {**connected, "broker_cpu_s": self.broker_cpu() - cpu}

    def window(self) -> dict[str, Any]:
        """(c) the steady state: rates, CPU, memory, ack latency."""
        assert self.ingest is not None
        mon = self.monitor
        s0, t0 = self.stats(), time.monotonic()
        b0, i0 = self.broker_cpu(), proc_cpu_s(self.ingest.pid)
        time.sleep(self.args.window_s)
        s1, t1 = self.stats(), time.monotonic()
        b1, i1 = self.broker_cpu(), proc_cpu_s(self.ingest.pid)
        rated = [f"{a}messages/{b}" for a in ("", "publish/") for b in ("received", "sent")]
        mon.wait_for(lambda: all(mon.samples[k] and mon.samples[k][-1][0] > t1 for k in rated), 5)
        secs = t1 - t0
        latency = sorted(s1["ack_latency"])
        return {
            "s": secs,
            "publish_in": mon.rate("publish/messages/received", t0),
            "publish_out": mon.rate("publish/messages/sent", t0, own=True),
            "packets_in": mon.rate("messages/received", t0),
            "packets_out": mon.rate("messages/sent", t0, own=True),
            "dropped": mon.latest("publish/messages/dropped"),
            "sim_published": (sum(s1["published"].values()) - sum(s0["published"].values())) / secs,
            "broker_cpu_pct": 100 * (b1 - b0) / secs,
            "broker_rss_mb": proc_rss_mb(self.broker.pid),
            "broker_heap_mb": (mon.latest("heap/current") or 0) / 2**20,
            "sim_cpu_pct": 100 * (s1["cpu_s"] - s0["cpu_s"]) / secs,
            "ingest_cpu_pct": 100 * (i1 - i0) / secs,
            "passages": len(latency),
            "ack_p50_ms": 1000 * median(latency) if latency else None,
            "ack_p95_ms": 1000 * quantiles(latency, n=20)[-1] if len(latency) > 1 else None,
            "outbox": s1["outbox"],
            "clients": mon.latest("clients/connected"),
            "retained": mon.latest("retained messages/count"),
            "subscriptions": mon.latest("subscriptions/count"),
            "takeovers": s0["disconnects"],  # born kiosks disconnected during the storm
            "disconnects": s1["disconnects"] - s0["disconnects"],
        }

    def status(self) -> dict[str, Any]:
        """(b) fleet status: the CLI as a process, then FleetClient here."""
        cpu = self.broker_cpu()
        snap = cli_status(self.broker.port, live=False)
        full = cli_status(self.broker.port, live=True)
        inproc = inproc_status(MqttConfig(host="127.0.0.1", port=self.broker.port))
        return {
            "cli_no_live_s": snap["s"],
            "cli_s": full["s"],
            "cli_listed": len(full["devices"] & self.expected),
            "cli_answered": len((full["devices"] - full["no_reply"]) & self.expected),
            "cli_no_reply": sorted(full["no_reply"])[:10],
            "snapshot_s": inproc["snapshot_s"],
            "get_status_s": inproc["live_s"],
            "listed": len(inproc["devices"] & self.expected),
            "answered": len(inproc["answered"] & self.expected),
            "broker_cpu_s": self.broker_cpu() - cpu,
        }

    def queue(self, count: int) -> dict[str, Any]:
        """The ingest away: ``count`` passages queue in its session; the broker's memory
        for them; then the ingest back, until all of them are acknowledged."""
        assert self.ingest is not None
        mon = self.monitor
        self.ingest.terminate()  # its persistent session stays, and queues
        self.ingest.wait(30)
        self.ingest = None
        mon.wait_for(lambda: mon.central == "offline", 10)
        t = time.monotonic()
        heap0, rss0 = mon.fresh("heap/current", t), proc_rss_mb(self.broker.pid)
        stored0 = mon.fresh("store/messages/count", t)
        t = time.monotonic()
        self.kiosks.burst(count)
        while self.stats()["in_flight"]:
            time.sleep(0.2)
        burst_s = time.monotonic() - t
        t = time.monotonic()
        heap1, rss1 = mon.fresh("heap/current", t), proc_rss_mb(self.broker.pid)
        queued = mon.fresh("store/messages/count", t) - stored0
        t = time.monotonic()
        self.ingest = start_ingest(self.root, self.broker.port, self.monitor)
        left = self.stats()["burst_left"]
        while left and time.monotonic() - t < DRAIN_LIMIT_S:
            time.sleep(0.2)
            left = self.stats()["burst_left"]
        drain_s = time.monotonic() - t
        return {
            "passages": count,
            "queued": queued,
            "burst_per_s": count / burst_s,
            "heap_per_msg_b": (heap1 - heap0) * 1.0 / max(queued, 1),
            "rss_per_msg_b": (rss1 - rss0) * 2**20 / max(queued, 1),
            "broker_rss_mb": rss1,
            "dropped": mon.latest("publish/messages/dropped"),
            "drain_s": drain_s,
            "drain_per_s": (count - left) / drain_s,
            "left": left,  # still unacknowledged after DRAIN_LIMIT_S
        }

    def stop(self) -> None:
        self.kiosks.stop()
        if self.ingest is not None:
            self.ingest.terminate()
            self.ingest.wait(30)
        self.monitor.stop()
        self.broker.stop()


def run_fleet(n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Start the broker, the ingest and n kiosks; measure; stop them all."""
    run = Run(n, args, root)
    result: dict[str, Any] = {"devices": n, "broker_open_files": run.broker.open_files_limit()}
    try:
        result["connect"] = run.connect()
        time.sleep(min(5.0, args.window_s))  # telemetry and passages start at random phases
        result["window"] = run.window()
        result["status"] = run.status()
        if args.queued and n == max(args.sizes):
            result["queue"] = run.queue(args.queued)
    finally:
        run.stop()
    return result


# -- the report --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.machine(),
    )  # fmt: skip
    binary = shutil.which("mosquitto") or "mosquitto"
    version = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": (version.stdout.splitlines() or ["?"])[0].removeprefix("mosquitto version "),
    }


def _f(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report(doc: dict[str, Any]) -> None:
    m, s = doc["machine"], doc["settings"]
    print(
        f"fleet benchmark: virtual kiosks, telemetry every {s['telemetry_s']:g} s (QoS 0), "
        f"{s['passage_rate']:g} passages/min each (QoS 1, {s['passage_bytes']} bytes), "
        f"{s['window_s']:g} s window"
    )
    print(
        f"machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}, "
        f"paho-mqtt {m['paho_mqtt']}, mosquitto {m['mosquitto']}; "
        f"open files {doc['open_files']} (broker: {doc['results'][0]['broker_open_files']})"
    )
    print("\nconnect and fleet status (seconds)")
    print(f"{'devices':>7} {'connack':>8} {'birth':>7} {'CLI':>6} {'no-live':>8} "
          f"{'snapshot':>9} {'get-status':>11} {'listed':>7} {'answered':>9}")  # fmt: skip
    for r in doc["results"]:
        c, st = r["connect"], r["status"]
        answered = f"{min(st['answered'], st['cli_answered'])}/{r['devices']}"
        print(
            f"{r['devices']:>7} {c['connack_s']:>8.2f} {c['birth_s']:>7.2f} {st['cli_s']:>6.2f} "
            f"{st['cli_no_live_s']:>8.2f} {st['snapshot_s']:>9.3f} {st['get_status_s']:>11.3f} "
            f"{min(st['listed'], st['cli_listed']):>7} {answered:>9}"
        )
    print(
        "\nsteady state (PUBLISH msgs/s from $SYS/broker/publish/messages/*, "
        "the monitor's own $SYS traffic taken out)"
    )
    print(f"{'devices':>7} {'in/s':>7} {'out/s':>7} {'pkts in':>8} {'pkts out':>9} "
          f"{'broker CPU%':>11} {'RSS MB':>7} {'sim CPU%':>9} {'ingest CPU%':>11} "
          f"{'ack p50 ms':>10} {'p95 ms':>7} {'retained':>8}")  # fmt: skip
    for r in doc["results"]:
        w = r["window"]
        print(
            f"{r['devices']:>7} {_f(w['publish_in'], '.1f'):>7} {_f(w['publish_out'], '.1f'):>7} "
            f"{_f(w['packets_in'], '.1f'):>8} {_f(w['packets_out'], '.1f'):>9} "
            f"{w['broker_cpu_pct']:>11.1f} {w['broker_rss_mb']:>7.1f} {w['sim_cpu_pct']:>9.1f} "
            f"{w['ingest_cpu_pct']:>11.1f} {_f(w['ack_p50_ms'], '.1f'):>10} "
            f"{_f(w['ack_p95_ms'], '.1f'):>7} {_f(w['retained'], '.0f'):>8}"
        )
    for r in doc["results"]:
        c, w, st = r["connect"], r["window"], r["status"]
        print(
            f"  {r['devices']} devices: broker CPU {c['broker_cpu_s']:.2f} s for the connects "
            f"({c['lost']} attempts without CONNACK within the keepalive, retried; "
            f"{w['takeovers']} kiosks cut off by a stale attempt of their own), "
            f"{st['broker_cpu_s']:.2f} s for the three status runs; {w['passages']} passages "
            f"acked in the window, {w['outbox']} waiting at its end; dropped "
            f"{_f(w['dropped'], '.0f')}, disconnects in the window {w['disconnects']}"
        )
    for r in doc["results"]:
        q = r.get("queue")
        if q:
            print(
                f"\ningest away, {r['devices']} devices: {q['passages']} passages queued for its "
                f"session ({q['queued']:.0f} counted by the broker) at {q['burst_per_s']:.0f}/s; "
                f"broker memory per queued passage: heap {q['heap_per_msg_b']:.0f} B, "
                f"RSS {q['rss_per_msg_b']:.0f} B (RSS {q['broker_rss_mb']:.0f} MB); dropped "
                f"{_f(q['dropped'], '.0f')}; ingest back: all acknowledged in "
                f"{q['drain_s']:.1f} s ({q['drain_per_s']:.0f} passages/s)"
            )


def fleet_arguments(parser: argparse.ArgumentParser, devices: str, window_s: float) -> None:
    """The options of the fleet and its traffic (this bench's and cluster_bench's)."""
    parser.add_argument("--devices", default=devices, help="fleet sizes, comma-separated")
    parser.add_argument("--window-s", type=float, default=window_s, help="steady-state window")
    parser.add_argument("--telemetry-s", type=float, default=60.0, help="[fleet] telemetry_s")
    parser.add_argument("--passage-rate", type=float, default=2.0, help="per device per minute")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    fleet_arguments(parser, "100,1000", 30.0)
    parser.add_argument(
        "--queued",
        type=int,
        default=0,
        help="with the largest fleet: stop the ingest, queue this many passages, restart it",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args()
    sizes = args.sizes = [int(x) for x in args.devices.split(",") if x.strip()]
    logging.basicConfig(level=logging.WARNING)
    open_files = raise_open_files(max(sizes) + 200)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            results.append(run_fleet(n, args, Path(tmp) / f"n{n}"))
    size = len(json.dumps(sample_message(1), separators=(",", ":")))
    doc = {
        "machine": machine(),
        "open_files": open_files,
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("json", "sizes")},
            "passage_bytes": size,
        },
        "results": results,
    }
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        report(doc)
    bad = [
        r["devices"]
        for r in results
        if min(r["status"]["answered"], r["status"]["cli_answered"]) < r["devices"]
        or r["window"]["disconnects"]
    ]
    if bad:
        raise SystemExit(f"not every device answered, or kiosks were disconnected: N = {bad}")


if __name__ == "__main__":
    main()
