"""The kiosk's fleet side against a real mosquitto, driven by the operator's own client.

Status with session counters and the will, birth (meta, config/reported,
alerts), telemetry, commands and their rules, desired config, signed pushes,
and the ``checkpoint-edge fleet`` command line.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge import cli
from edge.config import Config, MqttConfig
from edge.core.lane import State
from edge.core.model import iso_utc
from edge.credtools import keys_new
from edge.fleet.operator import FleetClient
from edge.mqtt import topics

from . import test_e2e
from .conftest import (
    Daemon,
    Mosquitto,
    Subscriber,
    env_without_proxy,
    make_config,
    stop_loop,
    toml_text,
    write_frame,
)
from .test_e2e import ID_CARD, PERSON, Kiosk

DEVICE = "lane-test"
kiosks = test_e2e.kiosks  # the fixture: kiosks in this process on mock pins


@pytest.fixture
def operator(broker: Mosquitto) -> Iterator[Callable[[], FleetClient]]:
    made: list[FleetClient] = []

    def connect() -> FleetClient:
        client = FleetClient(MqttConfig(host="127.0.0.1", port=broker.port)).connect()
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def fleet_config(
    tmp_path: Path, port: int, camera: bool = True, **sections: dict[str, Any]
) -> Config:
    if camera:
        (tmp_path / "frames").mkdir(exist_ok=True)
    base: dict[str, dict[str, Any]] = {
        "mqtt": {"port": port},
        "lane": {"mode": "officer", "open_s": 0.5},
        "fleet": {"clock_check": False, "trust_max_age_h": 0, "disk_low_mb": 0},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return make_config(tmp_path, **base)


def daemon_config(tmp_path: Path, port: int, **fleet: Any) -> Path:
    """A config file for ``python -m edge run``: device lane-proc, officer mode."""
    (tmp_path / "frames").mkdir()
    data: dict[str, dict[str, Any]] = {
        "device": {"id": "lane-proc", "site": "test"},
        "camera": {"source": "images:frames", "fps": 10},
        "gpio": {"pin_factory": "mock"},
        "lane": {"mode": "officer"},
        "mqtt": {"host": "127.0.0.1", "port": port, "ack": "broker"},
        "store": {"dir": "store"},
        "fleet": {"clock_check": False, **fleet},
        "kiosk": {"listen": ""},  # no screen on a fixed port
    }
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data))
    return config


def online(op: FleetClient, device: str = DEVICE, session: int | None = None) -> bool:
    view = op.devices.get(device)
    return (
        view is not None
        and view.state == "online"
        and (session is None or view.status.get("session") == session)
        and bool(view.meta)
        and bool(view.reported)
    )


def wait(op: FleetClient, predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    assert op.wait_for(predicate, timeout), f"not seen within {timeout} s: {what}"


class RawClient:
    """A bare paho v5 client: publishes exactly what a test says, records properties."""

    def __init__(self, port: int, topics_: list[str]) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"raw-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, m: self.messages.put(m)
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if topics_:
            self.client.subscribe([(t, 1) for t in topics_])
            assert subscribed.wait(10)

    def publish(self, topic: str, doc: Any, retain: bool = False, **props: Any) -> None:
        properties = None
        if props:
            properties = Properties(PacketTypes.PUBLISH)
            for key, value in props.items():
                setattr(properties, key, value)
        payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.client.publish(
            topic, payload, qos=1, retain=retain, properties=properties
        ).wait_for_publish(10)

    def get(self, timeout: float = 10) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no message within {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


def command_doc(
    cid: str, args: dict[str, Any] | None = None, expires_s: float = 60
) -> dict[str, Any]:
    expires = iso_utc(datetime.now(UTC) + timedelta(seconds=expires_s))
    return {"id": cid, "expires": expires, "args": args or {}}


# -- status, will, birth ---------------------------------------------


def test_birth_publishes_status_meta_and_config_with_one_session_number(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    cfg = fleet_config(tmp_path, broker.port)
    kiosk = kiosks(cfg).start()
    op = operator()
    wait(op, lambda: online(op, session=1), "online, session 1")
    view = op.devices[DEVICE]
    assert view.meta["device"] == DEVICE
    assert view.meta["site"] == "test-site"
    assert view.meta["session"] == 1
    assert view.meta["config_version"] == 0
    assert view.reported["version"] == 0
    kiosk.stop()
    wait(op, lambda: op.devices[DEVICE].state == "stopped", "stopped")
    assert op.devices[DEVICE].status["session"] == 1
    kiosks(cfg).start()  # the same store: the counter goes on
    wait(op, lambda: online(op, session=2), "online, session 2")


def test_the_will_says_offline_with_the_session_it_belongs_to(
    tmp_path: Path, broker: Mosquitto, operator: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = daemon_config(tmp_path, broker.port, telemetry_s=1)
    op = operator()
    daemon = Daemon(config)
    try:
        wait(op, lambda: online(op, "lane-proc", 1), "daemon online")
        started = op.devices["lane-proc"].status["ts"]
        wait(op, lambda: op.devices["lane-proc"].telemetry.get("ts", "") > started, "telemetry")
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(10)
        # the broker sees the socket close and publishes the will
        wait(op, lambda: op.devices["lane-proc"].state == "offline", "the will")
        assert op.devices["lane-proc"].status["session"] == 1
        last_telemetry = op.devices["lane-proc"].telemetry["ts"]

        # an operator who comes later: LAST SEEN is the last telemetry (kept by the
        # broker), not the start of the session the will belongs to
        port = ["--host", "127.0.0.1", "--port", str(broker.port)]
        assert cli.main(["fleet", *port, "status", "--json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)["devices"]
        assert row["state"] == "offline"
        assert row["last_seen"] == last_telemetry > started
        daemon = Daemon(config)
        wait(op, lambda: online(op, "lane-proc", 2), "online again, session 2")
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.terminate()
            daemon.proc.wait(10)


# -- commands ---------------------------------------------


def test_ping_status_and_logs(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    kiosks(fleet_config(tmp_path, broker.port)).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    assert op.send(DEVICE, "ping")["status"] == "ok"
    status = op.send(DEVICE, "get-status")
    assert status["status"] == "ok"
    data = status["data"]
    assert data["mode"] == "officer"
    assert data["state"] == "ready"
    assert data["outbox"]["depth"] == 0
    assert data["connected"] is True
    logging.getLogger("edge.test").warning("a line that names 079203001234")
    logs = op.send(DEVICE, "get-logs", {"lines": 50, "level": "warning"})
    assert logs["status"] == "ok"
    assert any("a line that names <number>" in line for line in logs["data"]["lines"])
    assert not any("079203001234" in line for line in logs["data"]["lines"])
    bad = op.send(DEVICE, "get-logs", {"lines": 100000})
    assert bad["status"] == "rejected"
    assert "args.lines" in bad["error"]


def test_set_mode_and_open_barrier_act_through_the_lane(
    tmp_path: Path,
    broker: Mosquitto,
    kiosks: Callable[[Config], Kiosk],
    operator: Any,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    sub = subscriber_factory(broker.port, [topics.passage(DEVICE)])
    kiosk = kiosks(fleet_config(tmp_path, broker.port)).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    reply = op.send(DEVICE, "set-mode", {"mode": "closed"})
    assert reply["status"] == "ok"
    assert reply["data"]["mode"] == "closed"
    assert kiosk.app.runner.lane.mode == "closed"
    refused = op.send(DEVICE, "set-mode", {"mode": "party"})
    assert refused["status"] == "rejected"

    cid = op.command(DEVICE, "open-barrier", command_id="open-1")
    first = op.reply(cid, 10)
    assert first is not None
    assert first[1]["status"] == "ok"
    assert kiosk.relay.wait_for(True), "the relay did not open"
    passage = sub.get().json()
    assert passage["decided_by"] == "operator"
    assert passage["reasons"] == ["operator_open"]
    assert passage["credentials"] == []
    assert kiosk.relay.wait_for(False), "the relay did not close after open_s"
    # the same id again: the answer from memory, no second opening
    op.command(DEVICE, "open-barrier", command_id="open-1")
    again = op.reply("open-1", 10)
    assert again is not None
    assert again[1] == first[1]
    assert sub.drain_until_marker() == []


def test_open_barrier_is_refused_while_a_traveller_is_decided(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    kiosks: Callable[[Config], Kiosk],
    operator: Any,
) -> None:
    write_frame(frames_dir / "01.png", PERSON.encode())
    kiosk = kiosks(fleet_config(tmp_path, broker.port)).start()
    kiosk.wait_state(State.AWAITING_DECISION)
    op = operator()
    wait(op, lambda: online(op), "online")
    reply = op.send(DEVICE, "open-barrier")
    assert reply["status"] == "rejected"
    assert "awaiting_decision" in reply["error"]
    assert kiosk.relay.state is False


def test_expired_retained_unknown_and_fleet_wide_hardware_commands_do_nothing(
    tmp_path: Path,
    broker: Mosquitto,
    kiosks: Callable[[Config], Kiosk],
    operator: Any,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    raw = RawClient(broker.port, [])
    # a retained command waits at the broker for the kiosk's subscription
    raw.publish(topics.command(DEVICE, "open-barrier"), command_doc("stale-1"), retain=True)
    replies = subscriber_factory(broker.port, [f"cp/v1/{DEVICE}/res/#"])
    passages = subscriber_factory(broker.port, [topics.passage(DEVICE)])
    kiosk = kiosks(fleet_config(tmp_path, broker.port)).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    pong = op.send(DEVICE, "ping")  # the kiosk has handled its subscriptions by now
    assert pong["status"] == "ok"
    cid = op.command(DEVICE, "open-barrier", expires_s=-1)
    got = op.reply(cid, 10)
    assert got is not None
    assert got[1]["status"] == "expired"
    unknown = op.send(DEVICE, "self-destruct")
    assert unknown["status"] == "rejected"
    cid = op.command(topics.ALL, "open-barrier")
    fleet = op.collect(cid, {DEVICE}, 10)
    assert fleet[DEVICE]["status"] == "rejected"
    raw.publish(topics.command(DEVICE, "ping"), b"{not json")
    malformed = json.loads(replies.get(topic_suffix="/res/ping").payload)
    while malformed.get("id") is not None:  # skip the replies to the pings above
        malformed = json.loads(replies.get(topic_suffix="/res/ping").payload)
    assert malformed["status"] == "rejected"
    assert malformed["error"] == "not JSON"
    seen = [json.loads(m.payload) for m in replies.drain_until_marker()]
    assert all(r.get("id") != "stale-1" for r in seen), "the retained command was answered"
    assert passages.drain_until_marker() == []
    assert kiosk.relay.state is False
    raw.close()


def test_replies_honour_response_topics_only_inside_the_device_namespace(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    kiosks(fleet_config(tmp_path, broker.port)).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    raw = RawClient(broker.port, ["cp/v1/#"])
    inside = f"{topics.reply(DEVICE, 'ping')}/desk-7"
    raw.publish(
        topics.command(DEVICE, "ping"),
        command_doc("in-1"),
        ResponseTopic=inside,
        CorrelationData=b"c-in",
    )
    outside = "cp/v1/other-lane/res/ping"
    raw.publish(
        topics.command(DEVICE, "ping"),
        command_doc("out-1"),
        ResponseTopic=outside,
        CorrelationData=b"c-out",
    )
    got: dict[str, mqtt.MQTTMessage] = {}
    while len(got) < 2:
        msg = raw.get()
        if "/res/" in msg.topic:
            got[json.loads(msg.payload)["id"]] = msg
    assert got["in-1"].topic == inside
    assert got["in-1"].properties.CorrelationData == b"c-in"
    assert got["out-1"].topic == topics.reply(DEVICE, "ping")
    assert got["out-1"].properties.CorrelationData == b"c-out"
    raw.close()


# -- telemetry and alerts ---------------------------------------------


def test_telemetry_arrives_every_period(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    kiosks: Callable[[Config], Kiosk],
    operator: Any,
) -> None:
    write_frame(frames_dir / "01.png", PERSON.encode())
    kiosk = kiosks(fleet_config(tmp_path, broker.port, fleet={"telemetry_s": 1})).start()
    kiosk.wait_state(State.AWAITING_DECISION)
    kiosk.press(kiosk.cfg.gpio.deny_pin)
    op = operator()
    wait(
        op,
        lambda: (
            op.devices.get(DEVICE) is not None and op.devices[DEVICE].telemetry.get("denied") == 1
        ),
        "telemetry after a denial",
    )
    tele = op.devices[DEVICE].telemetry
    for key in (
        "outbox_depth",
        "oldest_unacked_s",
        "fps",
        "camera_fps",
        "decoded_fps",
        "frames_dropped",
        "decode_ms",
        "scans",
        "approved",
        "denied",
        "disk_free_mb",
        "cpu_temp_c",
        "uptime_s",
        "session",
    ):
        assert key in tele, key
    assert tele["scans"] >= 1
    assert tele["fps"] == tele["camera_fps"] > 0
    assert tele["decoded_fps"] > 0
    assert tele["disk_free_mb"] > 0


def test_camera_down_is_an_alert_raised_then_cleared(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    # no frames folder: the camera cannot open
    kiosks(fleet_config(tmp_path, broker.port, camera=False)).start()
    op = operator()
    wait(op, lambda: "camera-down" in getattr(op.devices.get(DEVICE), "alerts", {}), "camera-down")
    alert = op.devices[DEVICE].alerts["camera-down"]
    assert alert["severity"] == "critical"
    (tmp_path / "frames").mkdir()
    write_frame(tmp_path / "frames" / "empty.png", None)  # frames again
    wait(op, lambda: "camera-down" not in op.devices[DEVICE].alerts, "camera-down cleared", 20)


def test_alerts_cleared_while_away_are_cleared_at_birth(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    cfg = fleet_config(tmp_path, broker.port, fleet={"disk_low_mb": 1e6})  # always "low"
    kiosk = kiosks(cfg).start()
    op = operator()
    wait(op, lambda: "disk-low" in getattr(op.devices.get(DEVICE), "alerts", {}), "disk-low")
    kiosk.app.link.link.stop()  # gone without a word: the retained alert stays at the broker
    kiosk.stop()
    kiosks(fleet_config(tmp_path, broker.port)).start()  # plenty of room now
    wait(op, lambda: online(op, session=2), "online again")
    wait(op, lambda: "disk-low" not in op.devices[DEVICE].alerts, "disk-low cleared at birth")


# -- desired config and pushes ---------------------------------------------


def test_desired_config_applied_when_newer_and_valid_rejected_otherwise(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    kiosk = kiosks(fleet_config(tmp_path, broker.port)).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    raw = RawClient(broker.port, [])
    raw.publish(
        topics.config_desired(DEVICE),
        {"version": 1, "config": {"lane": {"mode": "bogus"}}},
        retain=True,
    )
    wait(
        op,
        lambda: (
            op.devices[DEVICE].reported.get("last", {}).get("desired", {}).get("state")
            == "rejected"
        ),
        "rejected",
    )
    last = op.devices[DEVICE].reported["last"]["desired"]
    assert "lane.mode: must be one of" in last["detail"]
    assert op.devices[DEVICE].reported["version"] == 0
    wait(op, lambda: "config-rejected" in op.devices[DEVICE].alerts, "config-rejected alert")
    assert not kiosk.app._restart.is_set()
    raw.publish(
        topics.config_desired(DEVICE),
        {"version": 2, "config": {"lane": {"mode": "auto"}}},
        retain=True,
    )
    wait(op, lambda: op.devices[DEVICE].reported.get("version") == 2, "version 2 applied")
    assert kiosk.app._restart.is_set(), "the kiosk must restart to apply the new config"
    assert kiosk.app.remote.effective.lane.mode == "auto"
    wait(op, lambda: "config-rejected" not in op.devices[DEVICE].alerts, "alert cleared")
    raw.close()


def test_a_daemon_restarts_itself_into_the_desired_config(
    tmp_path: Path, broker: Mosquitto, operator: Any
) -> None:
    config = daemon_config(tmp_path, broker.port)
    op = operator()
    daemon = Daemon(config)
    try:
        wait(op, lambda: online(op, "lane-proc", 1), "daemon online")
        desired = tmp_path / "desired.toml"
        desired.write_text('[lane]\nmode = "closed"\n')
        code = cli.main(
            [
                "fleet",
                "--host",
                "127.0.0.1",
                "--port",
                str(broker.port),
                "config",
                "lane-proc",
                str(desired),
            ]
        )
        assert code == 0
        wait(
            op,
            lambda: (
                online(op, "lane-proc", 2)
                and op.devices["lane-proc"].meta.get("config_version") == 1
            ),
            "back with config 1",
        )
        assert op.send("lane-proc", "get-status")["data"]["mode"] == "closed"
        daemon.proc.terminate()
        assert daemon.proc.wait(15) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()


def write_fleet_key(tmp_path: Path) -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate()
    priv = tmp_path / "fleet.key"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub = tmp_path / "fleet.pub.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


def test_signed_trust_push_is_applied_and_a_forged_one_refused(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    priv, pub = write_fleet_key(tmp_path)
    kiosk = kiosks(fleet_config(tmp_path, broker.port, fleet={"keys": [str(pub)]})).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    issuer = keys_new("pushed-issuer", "ES256", tmp_path / "issuer")
    before = kiosk.app.trust.store.describe()
    port = ["--host", "127.0.0.1", "--port", str(broker.port)]
    (tmp_path / "other").mkdir()
    forger, _ = write_fleet_key(tmp_path / "other")
    code = cli.main(
        [
            "fleet",
            *port,
            "trust",
            "push",
            issuer["trust_list"],
            "--key",
            str(forger),
            "--version",
            "5",
        ]
    )
    assert code == 0  # published: the kiosk is who refuses it
    wait(
        op,
        lambda: (
            op.devices[DEVICE].reported.get("last", {}).get("trust", {}).get("state") == "rejected"
        ),
        "forged push refused",
    )
    assert "bad_signature" in op.devices[DEVICE].reported["last"]["trust"]["detail"]
    assert kiosk.app.trust.store.describe() == before
    code = cli.main(
        [
            "fleet",
            *port,
            "trust",
            "push",
            issuer["trust_list"],
            "--key",
            str(priv),
            "--version",
            "6",
        ]
    )
    assert code == 0
    wait(op, lambda: op.devices[DEVICE].reported.get("trust_version") == 6, "trust 6 applied")
    assert kiosk.app.trust.store.describe() != before
    assert op.send(DEVICE, "reload-trust")["status"] == "ok"


def test_rules_pushed_fleet_wide_replace_stale_or_broken_local_rules(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    from edge.rules.book import bundled_rules

    priv, pub = write_fleet_key(tmp_path)
    local = tmp_path / "local-rules"
    shutil.copytree(bundled_rules() / "VR-VN-0002", local / "VR-VN-0002")
    old = (datetime.now(UTC) - timedelta(hours=3)).timestamp()
    for path in [local, *local.rglob("*")]:
        os.utime(path, (old, old))
    fleet = {"keys": [str(pub)], "rules_max_age_h": 2}
    kiosk = kiosks(
        fleet_config(tmp_path, broker.port, fleet=fleet, rules={"files": [str(local)]})
    ).start()
    op = operator()
    wait(op, lambda: "rules-stale" in getattr(op.devices.get(DEVICE), "alerts", {}), "stale")
    assert "3 h old (limit 2 h)" in op.devices[DEVICE].alerts["rules-stale"]["detail"]
    port = ["--host", "127.0.0.1", "--port", str(broker.port)]
    (tmp_path / "other").mkdir()
    forger, _ = write_fleet_key(tmp_path / "other")
    push = ["fleet", *port, "rules", "push", str(bundled_rules())]
    assert cli.main([*push, "--key", str(forger), "--version", "5"]) == 0
    wait(
        op,
        lambda: (
            op.devices[DEVICE].reported.get("last", {}).get("rules", {}).get("state") == "rejected"
        ),
        "forged rules refused",
    )
    assert kiosk.app.rules.book is not None
    assert kiosk.app.rules.book.source == "the configured files"
    assert cli.main([*push, "--key", str(priv), "--version", "6"]) == 0
    wait(op, lambda: op.devices[DEVICE].reported.get("rules_version") == 6, "rules 6 applied")
    assert kiosk.app.rules.book.source == "a fleet push"
    assert len(kiosk.app.rules.book.rules.rules) == 11
    wait(op, lambda: "rules-stale" not in op.devices[DEVICE].alerts, "stale cleared")
    # what no kiosk could use is refused by the command line itself
    broken = tmp_path / "broken"
    shutil.copytree(bundled_rules() / "TR-VN-0001", broken / "TR-VN-0001")
    (broken / "TR-VN-0001" / "rule.json").write_text('{"Identifier": 1}')
    assert cli.main(["fleet", *port, "rules", "push", str(broken), "--key", str(priv)]) == 2


def test_local_rules_that_cannot_load_raise_rules_error_and_no_dcc_passes_unjudged(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    from edge.rules.book import bundled_rules

    local = tmp_path / "local-rules"
    shutil.copytree(bundled_rules() / "VR-VN-0002", local / "VR-VN-0002")
    (local / "VR-VN-0002" / "rule.json").write_text("{broken")
    kiosk = kiosks(fleet_config(tmp_path, broker.port, rules={"files": [str(local)]})).start()
    op = operator()
    wait(op, lambda: "rules-error" in getattr(op.devices.get(DEVICE), "alerts", {}), "error")
    alert = op.devices[DEVICE].alerts["rules-error"]
    assert alert["severity"] == "critical"
    assert "not JSON" in alert["detail"]
    book = kiosk.app.rules.current()
    assert book is not None
    assert book.broken


# -- the operator's command line ---------------------------------------------


def test_fleet_status_send_and_watch_from_the_command_line(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    kiosks: Callable[[Config], Kiosk],
    operator: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_frame(frames_dir / "01.png", ID_CARD.encode())  # an ID card alone: the officer decides
    cfg = fleet_config(
        tmp_path,
        broker.port,
        passage={"fields": ["name", "id_number"]},
        lane={"decision_timeout_s": 120},
    )
    kiosk = kiosks(cfg).start()
    kiosk.wait_state(State.AWAITING_DECISION)
    op = operator()
    wait(op, lambda: online(op), "online")
    port = ["--host", "127.0.0.1", "--port", str(broker.port)]
    assert cli.main(["fleet", *port, "status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["devices"]
    (row,) = rows
    assert row["device"] == DEVICE
    assert row["state"] == "online"
    assert row["mode"] == "officer"
    assert row["outbox_depth"] == 0
    assert cli.main(["fleet", *port, "status"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["DEVICE", "STATE"]
    assert DEVICE in table
    assert cli.main(["fleet", *port, "send", DEVICE, "set-mode", "mode=auto"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["mode"] == "auto"
    assert cli.main(["fleet", *port, "--timeout", "1", "send", "ghost-lane", "ping"]) == 1
    assert "ghost-lane: no reply to ping within 1 s" in capsys.readouterr().err
    assert cli.main(["fleet", *port, "send", "--all", "ping"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["device"] == DEVICE

    # watch, as an operator runs it: a passage, masked
    out = watch_one(["fleet", *port], lambda: kiosk.press(kiosk.cfg.gpio.deny_pin))
    assert f"{DEVICE} passage" in out
    assert "Nguyen" not in out
    assert "012345678901" not in out
    assert "*********901" in out
    assert "N. V. M." in out
    kiosk.stop()


def watch_one(fleet: list[str], act: Callable[[], object], timeout: float = 30) -> str:
    """``python -m edge <fleet> watch --count 1``: once it has subscribed, ``act()``; its
    output."""
    watch = subprocess.Popen(
        [sys.executable, "-m", "edge", *fleet, "watch", "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_without_proxy(),
    )
    try:
        assert watch.stderr is not None
        assert "watching passages and alerts" in watch.stderr.readline()  # subscribed
        act()
        out, _ = watch.communicate(timeout=timeout)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0
    return out


def test_fleet_errors_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from .conftest import free_port

    code = cli.main(["fleet", "--host", "127.0.0.1", "--port", str(free_port()), "status"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach the broker" in err
    assert "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code = cli.main(["fleet", "trust", "push", str(bad), "--key", str(bad)])
    assert code == 2
    assert "checkpoint-edge fleet trust:" in capsys.readouterr().err


def test_operator_client_subscribes_again_after_losing_its_connection(
    tmp_path: Path, broker: Mosquitto, kiosks: Callable[[Config], Kiosk], operator: Any
) -> None:
    op = operator()
    # another connection with the operator's client id takes its session over
    taken = threading.Event()
    thief = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=op.client_id,
        protocol=mqtt.MQTTv5,
    )
    thief.on_connect = lambda *_a: taken.set()
    thief.connect("127.0.0.1", broker.port)
    thief.loop_start()
    assert taken.wait(10)
    thief.disconnect()
    stop_loop(thief)
    # paho reconnects the operator by itself; what it hears next proves it subscribed again
    kiosks(fleet_config(tmp_path, broker.port)).start()
    wait(op, lambda: online(op), "a kiosk coming online after the reconnect", 20)


def test_rebirth_republishes_what_was_lost_and_policy_pushes_restart_into_the_new_policy(
    tmp_path: Path,
    broker: Mosquitto,
    kiosks: Callable[[Config], Kiosk],
    operator: Any,
) -> None:
    priv, pub = write_fleet_key(tmp_path)
    kiosk = kiosks(fleet_config(tmp_path, broker.port, fleet={"keys": [str(pub)]})).start()
    op = operator()
    wait(op, lambda: online(op), "online")
    raw = RawClient(broker.port, [])
    raw.publish(topics.meta(DEVICE), b"", retain=True)  # the broker lost the retained meta
    raw.close()
    other = operator()
    assert other.devices[DEVICE].meta == {}  # a new operator sees no meta
    assert other.send(DEVICE, "rebirth")["status"] == "ok"
    wait(other, lambda: bool(other.devices[DEVICE].meta), "meta again after rebirth")

    policy = tmp_path / "policy.toml"
    policy.write_text("[policy]\nmax_declaration_age_h = 12\n")
    port = ["--host", "127.0.0.1", "--port", str(broker.port)]
    cmd = ["fleet", *port, "policy", "push", str(policy), "--key", str(priv), "--version", "3"]
    assert cli.main(cmd) == 0
    wait(op, lambda: op.devices[DEVICE].reported.get("policy_version") == 3, "policy 3")
    assert kiosk.app._restart.is_set()
    assert kiosk.app.remote.effective.policy.max_declaration_age_h == 12
    policy.write_text("[policy]\nmax_declaration_age_h = -5\n")
    bad = ["fleet", *port, "policy", "push", str(policy), "--key", str(priv)]
    assert cli.main(bad) == 2  # checked before it is signed: nothing published


def test_one_device_reporting_nonsense_does_not_break_the_fleet_table(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = RawClient(broker.port, [])
    raw.publish(topics.status("odd-lane"), {"state": "online\x1b[2J", "ts": 5}, retain=True)
    raw.publish(topics.meta("odd-lane"), {"version": {"x": 1}, "site": "a\x07b"}, retain=True)
    raw.publish(topics.telemetry("odd-lane"), {"oldest_unacked_s": "x", "outbox_depth": "9"})
    raw.publish(topics.status("good-lane"), {"state": "stopped", "session": 3}, retain=True)
    raw.close()
    port = ["--host", "127.0.0.1", "--port", str(broker.port)]
    assert cli.main(["fleet", *port, "--timeout", "1", "status"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "odd-lane" in out
    assert "good-lane" in out


def test_a_hostile_device_puts_no_escape_on_the_operators_terminal(
    broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    """fleet status and fleet watch, run as an operator runs them, against a device that
    publishes terminal escapes, C1 controls and bidi marks in everything it sends."""
    evil = "\x1b]0;pwned\x07\x9b2J\u202eevil\x7f"
    raw = RawClient(broker.port, [])
    raw.publish(topics.status("odd-lane"), {"state": "online", "session": 1}, retain=True)
    raw.publish(topics.meta("odd-lane"), {"version": evil, "mode": "auto\u2066"}, retain=True)
    port = ["--host", "127.0.0.1", "--port", str(broker.port)]
    assert cli.main(["fleet", *port, "--timeout", "1", "status", "--no-live"]) == 0
    table = capsys.readouterr().out
    assert [ch for ch in table if not ch.isprintable() and ch != "\n"] == []
    assert "\\x9b2J" in table  # shown, visibly
    assert cli.main(["fleet", *port, "--timeout", "1", "status", "--no-live", "--json"]) == 0
    as_json = capsys.readouterr().out
    assert [ch for ch in as_json if not ch.isprintable() and ch != "\n"] == []
    assert json.loads(as_json)["devices"][0]["device"] == "odd-lane"

    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    watch = subprocess.Popen(
        [sys.executable, "-m", "edge", "fleet", *port, "watch", "--show-personal", "--count", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env,
    )
    passage = {"seq": 1, "traveller": {"name": evil, "origin": {"province": "\u2028"}}}
    alert = {"severity": "critical", "detail": evil + "\ud800"}
    try:
        assert watch.stderr is not None
        assert "watching passages and alerts" in watch.stderr.readline()  # subscribed
        raw.publish(topics.passage("odd-lane"), passage)
        raw.publish(topics.alert("odd-lane", "camera-down"), alert)
        out, _ = watch.communicate(timeout=20)
    finally:
        if watch.poll() is None:
            watch.kill()
        raw.close()
    assert watch.returncode == 0
    assert [ch for ch in out if not ch.isprintable() and ch != "\n"] == []
    shown = dict(line.split(": ", 1) for line in out.splitlines())
    assert json.loads(shown["odd-lane passage"]) == passage  # escaped, not changed
    assert json.loads(shown["odd-lane alert camera-down"]) == alert
