"""Parts of the broker security tests: the deploy config made runnable, TLS clients.

The broker is the real ``mosquitto`` running ``deploy/mosquitto/checkpoint-edge.conf``
with only its paths, listener and (as root) user changed; clients are real
paho-mqtt 2.x MQTT v5 clients with the certificates ``edge.pki.ca`` issued.
"""

from __future__ import annotations

import getpass
import os
import queue
import signal
import ssl
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.pki import cli as pki_cli

from .conftest import REPO, Received, free_port, mosquitto_binary, stop_loop

DEPLOY = REPO / "deploy" / "mosquitto"
INSTALLED = "/etc/mosquitto/checkpoint-edge/"
TIMEOUT = 10.0


def run(*argv: str | Path) -> int:
    """``checkpoint-edge pki ARGV...``, its exit code."""
    return pki_cli.cli([str(a) for a in argv])


def example_fleet(directory: Path) -> Path:
    """A PKI made with the CLI: kiosks lane-a and lane-b, ingest-1 and op-admin."""
    assert run("init", "--dir", directory) == 0
    for device in ("lane-a", "lane-b"):
        assert run("device", device, "--dir", directory) == 0
    assert run("ingest", "1", "--dir", directory) == 0
    assert run("operator", "admin", "--dir", directory) == 0
    return directory


# What lane-a tries in tests/test_broker_security.py (mosquitto) and
# tests/test_nats_security.py (NATS): the same cases on both brokers.
OWN_TOPICS = [
    f"cp/v1/lane-a/{leaf}"
    for leaf in (
        "status",
        "meta",
        "passage",
        "telemetry",
        "alert/camera",
        "res/ping",
        "config/reported",
    )
]
FORGED_BY_LANE_A = [
    "cp/v1/lane-b/passage",
    "cp/v1/lane-b/status",
    "cp/v1/lane-b/cmd/open",
    "cp/v1/lane-b/config/desired",
    "cp/v1/lane-b/ack",
    "cp/v1/$all/cmd/reboot",
    "cp/v1/$all/trust",
    "cp/v1/$all/policy",
    "cp/v1/$central/status",
    "cp/v1/lane-a/cmd/open",  # not even to itself: commands come from operators
    "cp/v1/lane-a/config/desired",
    "cp/v1/lane-a/ack",
]
LANE_A_READS = [
    "cp/v1/lane-a/cmd/+",
    "cp/v1/lane-a/config/desired",
    "cp/v1/lane-a/ack",
    "cp/v1/$all/cmd/+",
    "cp/v1/$all/trust",
    "cp/v1/$all/policy",
    "cp/v1/$central/status",
]
TO_LANE_A_FROM_OPERATOR = [
    "cp/v1/lane-a/cmd/open",
    "cp/v1/lane-a/config/desired",
    "cp/v1/$all/cmd/ping",
    "cp/v1/$all/trust",
    "cp/v1/$all/policy",
]

# MQTT v5 reason codes the tests expect (PUBACK, SUBACK).
SUCCESS = 0x00
GRANTED_QOS1 = 0x01
NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87


def runnable_config(deploy: str, pki_dir: Path, port: int, workdir: Path) -> str:
    """``deploy`` with only its certificate folder, listener, persistence folder, user changed."""

    def change(line: str) -> str:
        if line.startswith("#"):
            return line
        if line == "listener 8883":
            return f"listener {port} 127.0.0.1"
        if line.startswith("persistence_location "):
            return f"persistence_location {workdir}/"
        return line.replace(INSTALLED, f"{pki_dir}/")

    lines = [change(line) for line in deploy.splitlines()]
    if os.geteuid() == 0:
        # as root mosquitto would switch to its own user, who cannot read the test's files
        lines.append(f"user {getpass.getuser()}")
    return "\n".join(lines) + "\n"


class Broker:
    """mosquitto on a config file of the test's own, its log lines awaitable."""

    def __init__(self, conf: Path, port: int) -> None:
        self.conf = conf
        self.port = port
        self.log: list[str] = []
        self._changed = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    @classmethod
    def deployed(cls, pki_dir: Path, workdir: Path) -> Broker:
        """The deploy configuration, with the certificates, CRL and ACL of ``pki_dir``."""
        port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "mosquitto.conf"
        deploy = (DEPLOY / "checkpoint-edge.conf").read_text()
        conf.write_text(runnable_config(deploy, pki_dir, port, workdir))
        return cls(conf, port)

    def start(self) -> Broker:
        mark = self.mark()
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        self.wait_log(" running", mark)
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._changed:
                self.log.append(line.rstrip())
                self._changed.notify_all()
        with self._changed:
            self.log.append("<exited>")
            self._changed.notify_all()

    def mark(self) -> int:
        """A position in the log: ``wait_log`` looks only at lines after it."""
        with self._changed:
            return len(self.log)

    def wait_log(self, text: str, mark: int = 0, timeout: float = TIMEOUT) -> str:
        def found() -> str | None:
            return next(
                (line for line in self.log[mark:] if text in line or line == "<exited>"), None
            )

        with self._changed:
            line = self._changed.wait_for(found, timeout)
        if line is None or (line == "<exited>" and text != "<exited>"):
            pytest.fail(f"mosquitto: no log line with {text!r}:\n" + "\n".join(self.log))
        return line

    def reload(self) -> None:
        """SIGHUP, and wait until mosquitto has taken it (it is single-threaded:
        a connection made after the log line is handled after the reload)."""
        assert self.proc is not None
        mark = self.mark()
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log("Reloading config.", mark)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class TlsClient:
    """A paho-mqtt client over TLS that records what the broker says to it.

    MQTT v5, or 3.1.1 with ``v311`` (NATS; ``clean``: the clean-session flag).
    """

    def __init__(
        self,
        port: int,
        ca: Path,
        cert: Path | None,
        key: Path | None,
        client_id: str = "",
        *,
        v311: bool = False,
        clean: bool = True,
    ) -> None:
        self.port = port
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        # every connection a test makes is explicit: a client that reconnected
        # by itself could take a session back, or hide a refusal
        if v311:
            self.client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=clean,
                reconnect_on_failure=False,
            )
        else:
            self.client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv5,
                reconnect_on_failure=False,
            )
        self.client.tls_set(
            ca_certs=str(ca),
            certfile=str(cert) if cert else None,
            keyfile=str(key) if key else None,
        )
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.disconnects: queue.Queue[ReasonCode] = queue.Queue()
        self._answered = threading.Event()
        self._acks: dict[int, list[ReasonCode]] = {}
        self._acked = threading.Condition()
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish

    @classmethod
    def account(
        cls, port: int, pki_dir: Path, name: str, client_id: str = "", **kw: bool
    ) -> TlsClient:
        """A client with the certificate ``edge.pki.ca`` issued to account ``name``."""
        return cls(
            port,
            pki_dir / "ca.pem",
            pki_dir / f"{name}.pem",
            pki_dir / f"{name}.key",
            client_id or name,
            **kw,
        )

    # -- paho callbacks (network thread) -------------------------------------

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self._answered.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.disconnects.put(rc)
        self._answered.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        with self._acked:
            self._acks[mid] = list(rcs)
            self._acked.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self._acked:
            self._acks[mid] = [rc]
            self._acked.notify_all()

    def _ack(self, mid: int) -> list[ReasonCode]:
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, TIMEOUT):
                pytest.fail(f"{self.client_id}: no acknowledgement of message {mid}")
            return self._acks.pop(mid)

    # -- what the tests do ------------------------------------------------------

    def try_connect(self) -> str:
        """``"connected"``, or why the broker refused: the TLS handshake or the connection."""
        try:
            self.client.connect("127.0.0.1", self.port)
        except (ssl.SSLError, OSError) as exc:
            return f"refused in the TLS handshake: {exc}"
        self.client.loop_start()
        assert self._answered.wait(TIMEOUT), f"{self.client_id}: neither CONNACK nor disconnect"
        if self.connack is not None and not self.connack.is_failure:
            return "connected"
        stop_loop(self.client)
        return f"refused: connack {self.connack}, disconnects {list(self.disconnects.queue)}"

    def connect(self) -> TlsClient:
        outcome = self.try_connect()
        assert outcome == "connected", f"{self.client_id}: {outcome}"
        return self

    def subscribe(self, *filters: str) -> list[int]:
        """Subscribe (QoS 1) and return the SUBACK reason code of each filter."""
        _rc, mid = self.client.subscribe([(f, 1) for f in filters])
        assert mid is not None
        return [rc.value for rc in self._ack(mid)]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._ack(info.mid)[0].value

    def drain(self, marker_from: TlsClient, marker_topic: str) -> list[Received]:
        """Every message still on its way here, proven complete by a marker sent after them.

        ``marker_from`` publishes to ``marker_topic``, which this client reads;
        the broker delivers to a client in order, so whatever was routed here
        before has arrived when the marker does. Markers themselves are dropped.
        """
        payload = f"marker-{uuid.uuid4().hex}".encode()
        assert marker_from.publish(marker_topic, payload) == SUCCESS
        rest: list[Received] = []
        while True:
            try:
                msg = self.messages.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"{self.client_id}: the marker on {marker_topic} did not arrive")
            if msg.payload == payload:
                return rest
            if not msg.payload.startswith(b"marker-"):
                rest.append(msg)

    def disconnect(self) -> None:
        if self.client.is_connected():
            self.client.disconnect()
        stop_loop(self.client)
