"""The MQTT link: jittered reconnection, and recovery of a dead network thread."""

from __future__ import annotations

import logging
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.mqtt.client import LinkOptions
from edge.mqtt.link import MqttLink, backoff

from .conftest import Mosquitto, free_port, make_config
from .test_e2e import Kiosk


def test_backoff_is_jittered_and_bounded() -> None:
    for attempt in range(12):
        waits = [backoff(attempt, 1.0, 30.0, random.Random(seed)) for seed in range(200)]
        cap = min(30.0, 2.0**attempt)
        assert all(0.0 <= w <= cap for w in waits)
        assert statistics.pstdev(waits) > cap / 8  # spread over the range, not in step
    assert backoff(1000, 1.0, 30.0, random.Random(1)) <= 30.0  # no overflow


def test_a_fleet_does_not_reconnect_in_step_after_a_broker_restart(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    cfg = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=0.5, reconnect_max_s=2)
    connected_at: dict[str, list[float]] = {}
    ready = threading.Condition()

    def on_connected(name: str) -> Callable[[], None]:
        def record() -> None:
            with ready:
                connected_at.setdefault(name, []).append(time.monotonic())
                ready.notify_all()

        return record

    names = [f"lane-{n}" for n in range(8)]
    links = [
        MqttLink(cfg, LinkOptions(client_id=n), on_connected=on_connected(n), rng=random.Random(i))
        for i, n in enumerate(names)
    ]
    try:
        for link in links:
            link.start()
        with ready:
            assert ready.wait_for(lambda: len(connected_at) == len(names), 10)
        broker.stop()
        broker.start()
        with ready:
            assert ready.wait_for(lambda: all(len(connected_at[n]) == 2 for n in names), 20), (
                "not every link came back"
            )
        again = sorted(connected_at[n][1] for n in names)
        assert again[-1] - again[0] > 0.3  # spread out, not a thundering herd
    finally:
        for link in links:
            link.stop()
        broker.stop()


# the injected bug does end the thread: that is what the supervisor must notice
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_is_restarted_by_the_supervisor(
    tmp_path: Path, broker: Mosquitto
) -> None:
    (tmp_path / "frames").mkdir()
    kiosk = Kiosk(make_config(tmp_path, mqtt={"port": broker.port})).start()
    link = kiosk.app.link.link
    try:
        assert kiosk.app.publisher.wait_until(lambda p: link.connected, 10)
        real_loop = link._client.loop
        died = threading.Event()

        def broken_loop(timeout: float = 1.0) -> object:
            died.set()
            raise RuntimeError("network thread bug")

        link._client.loop = broken_loop  # type: ignore[method-assign]
        assert died.wait(10)
        link._thread.join(5)  # type: ignore[union-attr]
        assert not link.alive
        link._client.loop = real_loop  # type: ignore[method-assign]
        assert kiosk.app.supervise()  # notices, restarts
        assert link.alive
        kiosk.press(kiosk.cfg.gpio.approve_pin)
        assert kiosk.app.publisher.wait_until(lambda p: p.published == 1, 15)
    finally:
        kiosk.stop()


def test_the_mqtt_package_does_not_import_the_fleet() -> None:
    """fleet/ builds on mqtt/, never the other way: the device link dispatches to the
    handlers registered with it. A fresh interpreter, so nothing imported before counts."""
    code = (
        "import sys, edge.mqtt.link, edge.mqtt.device\n"
        "print(sorted(m for m in sys.modules if m == 'edge.fleet' or m.startswith('edge.fleet.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_open_says_at_once_why_there_is_no_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the operator's tool connects with: an error at once, never a retry, and the
    link stopped; the reason is the caller's to tell (no warning logged besides)."""
    nobody = MqttConfig(host="127.0.0.1", port=free_port())
    why = MqttLink(nobody, LinkOptions(client_id="op-test")).open(5)
    assert why is not None
    assert why.startswith(f"cannot reach the broker at 127.0.0.1:{nobody.port}: ")

    broker = Mosquitto(tmp_path / "broker", extra="allow_anonymous false").start()
    try:
        cfg = MqttConfig(host="127.0.0.1", port=broker.port)
        link = MqttLink(cfg, LinkOptions(client_id="op-test"))
        why = link.open(10)
        assert why is not None
        assert why.startswith(f"the broker at 127.0.0.1:{broker.port} refused the connection: ")
        assert not link.alive
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    finally:
        broker.stop()


def test_a_refused_subscription_is_said_and_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A NATS node refuses a SUBSCRIBE (SUBACK 0x80) while its JetStream is busy or electing
    # leaders; here its permissions refuse one filter, for good.
    from .nats_rig import NatsCluster

    cluster = NatsCluster(
        tmp_path / "nats",
        extra=(
            'authorization { users: [ { user: anon, password: "not-used", permissions: '
            '{ subscribe: { deny: ["cp.v1.lane-b.ack"] } } } ] }\nno_auth_user: anon'
        ),
    ).start()
    port = cluster.nodes[0].mqtt_port
    cfg = MqttConfig(
        host="127.0.0.1", port=port, protocol="3.1.1", reconnect_min_s=0.1, reconnect_max_s=0.2
    )
    operator = MqttLink(cfg, LinkOptions(client_id="op"))
    link = MqttLink(cfg, LinkOptions(client_id="lane-b", subscriptions=[("cp/v1/lane-b/ack", 1)]))
    try:
        assert operator.open(10) is None
        # the operator's tool is told at once, every time (its SUBACK may be read before
        # subscribe() has noted what it sent)
        for _ in range(10):
            assert operator.subscribe([("cp/v1/lane-b/ack", 1)], 0.5) == (
                "the broker refused cp/v1/lane-b/ack"
            )
        assert operator.subscribe([("cp/v1/lane-b/status", 1)], 10) is None
        # the kiosk's link says so and subscribes again, and again, until it is taken (said
        # at the first refusal and every tenth: the second line is the tenth refusal)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edge.mqtt.link"):
            link.start()
            deadline = time.monotonic() + 20
            while caplog.text.count("refused cp/v1/lane-b/ack") < 2:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)  # the warnings come from the network thread
        assert link.connects == 1  # subscribed again on the same connection
    finally:
        operator.stop()
        link.stop()
        cluster.stop()
