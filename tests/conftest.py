"""Shared test parts: a real mosquitto per test, a real MQTT subscriber, QR frames.

Nothing here is a mock of something a user meets: the broker is the
``mosquitto`` binary on a free loopback port, QR codes are rendered images,
GPIO is gpiozero's own MockFactory, stores are real files.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import segno
from gpiozero.pins.mock import MockFactory, MockPin
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import config as config_mod
from edge.config import Config

SHARED_TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
REPO = Path(__file__).resolve().parents[1]
# The EU DCC test vectors, copied with their licence (tests/data/dcc/README.md).
DCC_VECTORS = REPO / "tests" / "data" / "dcc"


# -- QR frames ---------------------------------------------------------------


def render_qr(payload: str | bytes, scale: int = 6) -> np.ndarray:
    """A QR code as a grayscale image (black modules on white, quiet zone included)."""
    qr = segno.make_qr(payload, error="m")
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=4)
    image = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None
    return image


def qr_frame(
    payload: str | bytes | None, size: tuple[int, int] = (720, 1280), scale: int = 6
) -> np.ndarray:
    """A camera-sized gray frame, with the code near the middle (or none)."""
    frame = np.full(size, 150, np.uint8)
    if payload is not None:
        code = render_qr(payload, scale)
        h, w = code.shape
        top, left = (size[0] - h) // 2, (size[1] - w) // 2
        frame[top : top + h, left : left + w] = code
    return frame


def write_frame(path: Path, payload: str | bytes | None) -> Path:
    assert cv2.imwrite(str(path), qr_frame(payload))
    return path


# -- GPIO --------------------------------------------------------------------


class WatchedPin(MockPin):
    """gpiozero's MockPin that lets a test wait for a state instead of sleeping."""

    def __init__(self, factory: Any, info: Any) -> None:
        self._changed = threading.Condition()
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        with self._changed:
            changed: bool = super()._change_state(value)
            self._changed.notify_all()
        return changed

    def wait_for(self, state: bool, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.state == state, timeout)


def watched_factory() -> MockFactory:
    return MockFactory(pin_class=WatchedPin)


# -- config ------------------------------------------------------------------


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A simulation config in ``tmp_path`` with the given sections merged in."""
    data: dict[str, dict[str, Any]] = {
        "device": {"id": "lane-test", "site": "test-site"},
        "camera": {"source": f"images:{tmp_path / 'frames'}", "fps": 20, "hold_s": 1.0},
        "gpio": {"pin_factory": "mock"},
        "lane": {"mode": "auto", "open_s": 1.0, "decision_timeout_s": 5},
        # the broker's PUBACK ends delivery unless a test brings an ingest
        "mqtt": {
            "host": "127.0.0.1",
            "port": 1,
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 2,
            "ack": "broker",
        },
        "store": {"dir": str(tmp_path / "store")},
        "kiosk": {"listen": ""},  # tests that look at the screen turn it on (port 0)
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_mod.from_mapping(data, base_dir=tmp_path)


def toml_text(data: dict[str, dict[str, Any]]) -> str:
    """Enough TOML for test configs (tables of strings, numbers, booleans)."""
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


# -- mosquitto ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("mosquitto is not installed: run tools/test (it installs it with apt-get)")
    return found


class Mosquitto:
    """A mosquitto broker of the test's own, on 127.0.0.1:``port``; ``extra`` settings
    come last and override those above."""

    def __init__(self, workdir: Path, port: int | None = None, extra: str = "") -> None:
        self.workdir = workdir
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # as root, mosquitto would switch to its own user, which cannot
            # write the test's directory
            f"user {getpass.getuser()}\n"
            f"persistence_location {workdir}/\n"
            "log_dest stderr\n"
            # sized for an ingest that may be away (docs/architecture.md, broker facts)
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{extra}\n"
        )
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def start(self) -> Mosquitto:
        proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stderr is not None
        ready = threading.Event()

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log.append(line.rstrip())
                if " running" in line:
                    ready.set()
            ready.set()  # exited

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(10) or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("mosquitto did not start:\n" + "\n".join(self.log))
        self.proc = proc
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: no chance to save anything not yet on disk."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    """A 3-node NATS JetStream cluster with an MQTT listener per node (tests/nats_rig.py)."""
    from .nats_rig import NatsCluster  # the rig imports this module

    nodes = NatsCluster(tmp_path / "nats").start()
    yield nodes
    nodes.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


def stop_loop(client: mqtt.Client) -> None:
    """``loop_stop`` after a disconnect: paho 2.x's network thread may end, and clear the
    thread ``loop_stop`` checked, between that check and its join (AttributeError on
    None): then the thread has ended already, which is what was wanted."""
    with contextlib.suppress(AttributeError):
        client.loop_stop()


class Subscriber:
    """A real MQTT v5 client that records what arrives, for assertions."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        self.port = port
        self.topics = topics
        self.messages: queue.Queue[Received] = queue.Queue()
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        self.persistent = persistent
        self._subscribed = threading.Event()
        self.client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )

        def on_connect(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if not rc.is_failure:
                c.subscribe([(t, 1) for t in self.topics])

        def on_subscribe(*_args: Any) -> None:
            self._subscribed.set()

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            self.messages.put(Received(msg.topic, msg.payload, bool(msg.retain)))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        return client

    def connect(self) -> Subscriber:
        props = None
        if self.persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 600
        self._subscribed.clear()
        self.client.connect(
            "127.0.0.1", self.port, clean_start=not self.persistent, properties=props
        )
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"
        return self

    def disconnect(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)

    def get(self, timeout: float = 10.0, topic_suffix: str = "") -> Received:
        """The next message (whose topic ends with ``topic_suffix``), or fail."""
        while True:
            try:
                msg = self.messages.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(
                    f"no message{' on *' + topic_suffix if topic_suffix else ''} within {timeout} s"
                )
            if msg.topic.endswith(topic_suffix):
                return msg

    def drain_until_marker(self, timeout: float = 10.0) -> list[Received]:
        """Every message still on its way, proven complete by a marker sent after them."""
        marker = f"test/marker/{uuid.uuid4().hex}"
        self.client.subscribe(marker, qos=1)
        rest: list[Received] = []
        self.client.publish(marker, b"end", qos=1).wait_for_publish(timeout)
        while True:
            msg = self.get(timeout)
            if msg.topic == marker:
                return rest
            rest.append(msg)


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, topics: list[str], **kw: Any) -> Subscriber:
        sub = Subscriber(port, topics, **kw).connect()
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.disconnect()


# -- shared conformance material ---------------------------------------------


@pytest.fixture
def shared_testdata() -> Path:
    if not SHARED_TESTDATA.is_dir():
        pytest.skip(f"shared test data not present at {SHARED_TESTDATA}")
    return SHARED_TESTDATA


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    return d


def env_without_proxy() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


# -- reading a device's store from outside (as the outbox command does) --------


def live_records(store_dir: Path) -> dict[int, dict[str, Any]]:
    """Every passage still in the outbox segments: seq -> {"msg", "state"}."""
    from edge.store.snapshot import snapshot

    return snapshot(store_dir).live


def archived_messages(store_dir: Path) -> list[dict[str, Any]]:
    from edge.store.records import read_archive

    out: list[dict[str, Any]] = []
    for day in sorted((store_dir / "archive").glob("*.jsonl")):
        out += read_archive(day)
    return out


# -- the daemon as a process -----------------------------------------------------


class Daemon:
    """``python -m edge run -c FILE`` with its log lines readable as they come."""

    def __init__(
        self, config: Path, stdin: int = subprocess.DEVNULL, env: dict[str, str] | None = None
    ) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "-c", str(config)],
            env={**os.environ, **(env or {})},
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())
            self.lines.put(line.rstrip())
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        """The first log line holding ``text``, within ``timeout`` seconds in all (a
        daemon that keeps logging other lines does not keep the test waiting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(
                    f"no log line with {text!r} within {timeout} s:\n" + "\n".join(self.log)
                )
            if line is None:
                pytest.fail(f"daemon exited before {text!r}:\n" + "\n".join(self.log))
            if text in line:
                return line

    def next_line(self, timeout: float = 15.0) -> str | None:
        """The next log line (None once the daemon has exited)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no log line within {timeout} s:\n" + "\n".join(self.log))

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    running: list[Daemon] = []
    yield running
    for d in running:
        if d.proc.poll() is None:
            d.kill()
