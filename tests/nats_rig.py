"""A NATS JetStream cluster of the test's own: N ``nats-server`` nodes on loopback.

Each node has its own free ports (clients, routes, MQTT, HTTP monitoring) and its
own JetStream store under the test's directory; the nodes route to each other.
:meth:`NatsCluster.start` returns once every node answers ``/healthz`` and the
JetStream meta group has a leader (awaited by polling the nodes' monitoring
endpoints, never by sleeping a fixed time) and every node's MQTT listener has
taken a connection (the first one creates the cluster's ``$MQTT_*`` streams,
which takes seconds on a fresh cluster). A node can be SIGKILLed and started
again on the same ports and store. ``extra`` settings (TLS, authorization) go into
every node's configuration; ``mqtt_extra`` into its ``mqtt {}`` block. Or
``render(node, nodes)`` writes each node's whole configuration instead (the
deployed one, with the node's ports: ``tests/test_nats_security.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from .conftest import free_port

# What a node logs once it has handled a SIGHUP, one way or the other.
RELOADED = ("Reloaded server configuration", "Failed to reload server configuration")


def nats_binary() -> str:
    found = shutil.which("nats-server") or shutil.which(
        "nats-server", path="/usr/sbin:/usr/local/sbin:/usr/bin"
    )
    if not found:
        pytest.fail("nats-server is not installed: run tools/test (it installs it with apt-get)")
    return found


@dataclass
class Node:
    name: str
    client_port: int
    route_port: int
    mqtt_port: int
    http_port: int
    store: Path
    conf: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def monitor(self, path: str) -> dict[str, object] | None:
        """A monitoring endpoint's JSON, or None while the node does not answer."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}{path}", timeout=2
            ) as answer:
                doc = json.loads(answer.read())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None


@dataclass
class NatsCluster:
    workdir: Path
    size: int = 3
    extra: str = ""
    mqtt_extra: str = ""
    name: str = "cp-test"
    render: Callable[[Node, list[Node]], str] | None = None
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for i in range(1, self.size + 1):
            node_dir = self.workdir / f"n{i}"
            node_dir.mkdir(exist_ok=True)
            self.nodes.append(
                Node(
                    name=f"n{i}",
                    client_port=0,
                    route_port=0,
                    mqtt_port=0,
                    http_port=0,
                    store=node_dir / "js",
                    conf=node_dir / "nats.conf",
                    log=node_dir / "nats.log",
                )
            )
        self._configure()

    def _configure(self) -> None:
        """Free ports for every node, and each node's configuration for them."""
        for node in self.nodes:
            node.client_port, node.route_port = free_port(), free_port()
            node.mqtt_port, node.http_port = free_port(), free_port()
        if self.render is not None:
            for node in self.nodes:
                node.conf.write_text(self.render(node, self.nodes))
            return
        routes = ", ".join(f"nats-route://127.0.0.1:{n.route_port}" for n in self.nodes)
        for node in self.nodes:
            node.conf.write_text(
                f"server_name: {node.name}\n"
                f"listen: 127.0.0.1:{node.client_port}\n"
                f"http: 127.0.0.1:{node.http_port}\n"
                f"jetstream {{ store_dir: {json.dumps(str(node.store))}, "
                "max_mem: 64M, max_file: 2G }\n"
                f"cluster {{ name: {self.name}, listen: 127.0.0.1:{node.route_port}, "
                f"routes: [{routes}] }}\n"
                f"mqtt {{ listen: 127.0.0.1:{node.mqtt_port}\n{self.mqtt_extra}\n}}\n"
                f"{self.extra}\n"
            )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def probed(self) -> bool:
        """Whether start and restart wait for an MQTT connection: only with the rig's own
        plain listener (a rendered configuration wants TLS and certificates the probe has
        not; its tests connect with their own)."""
        return self.render is None

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Start every node; a port taken meanwhile by another process (free_port() only
        found it free a moment ago) means new ports and another try."""
        for attempt in range(3):
            for node in self.nodes:
                self._spawn(node)
            try:
                self.wait_ready(timeout)
                break
            except RuntimeError:
                if attempt == 2 or "address already in use" not in self.logs():
                    raise
                self.stop()
                for node in self.nodes:
                    node.log.write_text("")
                    shutil.rmtree(node.store, ignore_errors=True)
                self._configure()
        if self.probed:
            for node in self.nodes:
                self.wait_mqtt(node, timeout)
        return self

    def wait_mqtt(self, node: Node, timeout: float = 60.0) -> None:
        """Until ``node`` answers an MQTT 3.1.1 CONNECT with success."""
        deadline = time.monotonic() + timeout
        why = "not tried"
        while time.monotonic() < deadline:
            why = _mqtt_probe(node.mqtt_port, min(10.0, deadline - time.monotonic()))
            if why is None:
                return
        raise RuntimeError(f"{node.name}: MQTT not ready within {timeout:g} s: {why}")

    def _spawn(self, node: Node) -> None:
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [nats_binary(), "-c", str(node.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Every live node healthy, and a JetStream meta leader they agree on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.alive]
            dead = [n.name for n in self.nodes if n.proc is not None and not n.alive]
            if dead:
                raise RuntimeError(f"nats-server {dead} exited:\n{self.logs()}")
            if self._ready(live):
                return
            time.sleep(0.1)  # polling the nodes' monitoring endpoints
        raise RuntimeError(f"NATS cluster not ready within {timeout:g} s:\n{self.logs()}")

    def _ready(self, live: list[Node]) -> bool:
        leaders = set()
        for node in live:
            health = node.monitor("/healthz")
            jsz = node.monitor("/jsz")
            if not health or health.get("status") != "ok" or not jsz:
                return False
            meta = jsz.get("meta_cluster")
            leader = meta.get("leader") if isinstance(meta, dict) else None
            if not leader:
                return False
            leaders.add(leader)
        return len(leaders) == 1 and bool(live)

    def stream_leader(self, stream: str) -> int | None:
        """The index of the node leading ``stream`` (as a live node reports it), or None."""
        for node in self.nodes:
            if not node.alive:
                continue
            doc = node.monitor("/jsz?accounts=true&streams=true")
            for account in (doc or {}).get("account_details", None) or []:  # type: ignore[union-attr]
                for detail in account.get("stream_detail", None) or []:
                    if detail.get("name") == stream:
                        leader = (detail.get("cluster") or {}).get("leader")
                        names = [n.name for n in self.nodes]
                        return names.index(leader) if leader in names else None
        return None

    def kill(self, index: int) -> Node:
        """SIGKILL node ``index``: nothing it has not written survives."""
        node = self.nodes[index]
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait(10)
        return node

    def restart(self, index: int, timeout: float = 60.0) -> None:
        """Start node ``index`` again on its ports and store; wait for the cluster."""
        self._spawn(self.nodes[index])
        self.wait_ready(timeout)
        if self.probed:
            self.wait_mqtt(self.nodes[index], timeout)

    def reload(self) -> list[str]:
        """SIGHUP every live node; each node's log line saying whether it took the change."""
        marks = {node.name: node.log.stat().st_size for node in self.nodes if node.alive}
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.send_signal(signal.SIGHUP)
        return [
            self.wait_log(node, RELOADED, marks[node.name]) for node in self.nodes if node.alive
        ]

    def rolling_restart(self, timeout: float = 60.0) -> None:
        """Stop and start each node in turn, the cluster ready again before the next."""
        for index, node in enumerate(self.nodes):
            if node.proc is not None:
                node.proc.terminate()
                node.proc.wait(timeout)
            self.restart(index, timeout)

    def wait_log(
        self, node: Node, texts: tuple[str, ...], start: int = 0, timeout: float = 10.0
    ) -> str:
        """The first line of ``node``'s log after byte ``start`` that holds one of ``texts``."""
        pattern = re.compile("|".join(re.escape(text) for text in texts))
        return self.wait_match(node, pattern, start, timeout).string

    def wait_match(
        self, node: Node, pattern: re.Pattern[str], start: int = 0, timeout: float = 10.0
    ) -> re.Match[str]:
        """The first match of ``pattern`` in a line of ``node``'s log after byte ``start``."""
        deadline = time.monotonic() + timeout
        while True:
            with node.log.open("rb") as log:
                log.seek(start)
                for line in log.read().decode(errors="replace").splitlines():
                    found = pattern.search(line)
                    if found:
                        return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{node.name}: no log line matching {pattern.pattern!r}:\n{self.logs()}"
                )
            time.sleep(0.05)  # polling the log file for a line the server writes

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(10)

    def logs(self, lines: int = 30) -> str:
        out = []
        for node in self.nodes:
            text = node.log.read_text(errors="replace") if node.log.exists() else ""
            out.append(f"--- {node.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(out)


def _mqtt_probe(port: int, timeout: float) -> str | None:
    """Connect a clean 3.1.1 client, wait for the CONNACK, disconnect: None on success."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    answer: list[str] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.append(str(reason))
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError as exc:
        time.sleep(0.1)  # the node is not listening yet: poll again shortly
        return str(exc)
    deadline = time.monotonic() + timeout
    while not answer and time.monotonic() < deadline:
        if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
            break
    client.disconnect()
    client.loop(timeout=0.1)
    if answer == ["Success"]:
        return None
    return answer[0] if answer else "no CONNACK"
