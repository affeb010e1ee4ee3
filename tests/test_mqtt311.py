"""``[mqtt] protocol = "3.1.1"`` on mosquitto: what v5 gave, done another way.

A kiosk as a process (``python -m edge run``) and the operator's client, both in
MQTT 3.1.1: a command's reply on ``res/<command>`` matched by its id, a
persistent session that keeps a command sent while the kiosk was killed, and
the ingest (3.1.1 too) acknowledging its passages. Plus the config's checks.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from edge.central.ingest import Ingest
from edge.config import IngestConfig, IngestFile, MqttConfig
from edge.config.delivery import split_address
from edge.errors import ConfigError
from edge.fleet.operator import FleetClient
from edge.mqtt import topics

from .conftest import Daemon, Mosquitto, Subscriber, make_config, toml_text, write_frame
from .test_e2e import PERSON
from .test_fleet import online, wait
from .test_ingest import rows


def kiosk_file(tmp_path: Path, port: int) -> Path:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_frame(frames / "01.png", PERSON.encode())  # auto mode: one passage
    data: dict[str, dict[str, Any]] = {
        "device": {"id": "lane-311", "site": "test"},
        "camera": {"source": "images:frames", "fps": 10},
        "gpio": {"pin_factory": "mock"},
        "lane": {"mode": "auto"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "protocol": "3.1.1",
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        "store": {"dir": "store"},
        "fleet": {"clock_check": False, "telemetry_s": 3600},
        "kiosk": {"listen": ""},
    }
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data))
    return config


def test_replies_persistent_session_and_ingest_acks_in_3_1_1(
    tmp_path: Path,
    broker: Mosquitto,
    subscriber_factory: Any,
    daemons: list[Daemon],
) -> None:
    raw: Subscriber = subscriber_factory(broker.port, [topics.replies("lane-311")])
    ingest = Ingest(
        IngestFile(
            mqtt=MqttConfig(host="127.0.0.1", port=broker.port, protocol="3.1.1"),
            ingest=IngestConfig(database=f"sqlite:///{tmp_path / 'central.db'}", group=""),
        )
    )
    ingest.start()
    op = FleetClient(MqttConfig(host="127.0.0.1", port=broker.port, protocol="3.1.1")).connect()
    try:
        daemons.append(Daemon(kiosk_file(tmp_path, broker.port)))
        wait(op, lambda: online(op, "lane-311", 1), "online, session 1", 20)
        # the passage reached the ingest over 3.1.1 and its ack came back to the kiosk
        assert ingest.wait_until(lambda i: i.stored == 1, 20)
        deadline = time.monotonic() + 10
        while (depth := outbox_depth(op)) and time.monotonic() < deadline:
            pass  # each get-status is a round trip to the kiosk
        assert depth == 0, "the ingest's acknowledgement did not empty the outbox"

        # no response topic in 3.1.1: the reply is on res/<command>, matched by the id
        cid = op.command("lane-311", "ping")
        got = op.reply(cid, 10)
        assert got is not None
        assert got[1]["id"] == cid
        reply = raw.get(topic_suffix="/res/ping")
        assert reply.topic == topics.reply("lane-311", "ping")
        assert reply.json()["id"] == cid

        # a persistent session: a command sent while the kiosk is dead is kept for it
        daemons[0].kill()
        wait(op, lambda: op.devices["lane-311"].state == "offline", "the will")
        cid = op.command("lane-311", "ping", expires_s=120)
        daemons.append(Daemon(kiosk_file_again(tmp_path)))
        got = op.reply(cid, 20)
        assert got is not None, "the command queued in the kiosk's session was not answered"
        assert got[1]["status"] == "ok"
    finally:
        op.close()
        ingest.stop()
    assert rows(tmp_path / "central.db") == [("lane-311", 1)]


def outbox_depth(op: FleetClient) -> int:
    return int(op.send("lane-311", "get-status")["data"]["outbox"]["depth"])


def kiosk_file_again(tmp_path: Path) -> Path:
    """The same kiosk's config (its frames already read: no new passage)."""
    config = tmp_path / "config.toml"
    assert config.exists()
    (tmp_path / "frames" / "01.png").unlink()
    return config


def test_the_config_names_what_3_1_1_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        make_config(tmp_path, mqtt={"protocol": "3.1.1", "ack": "broker"})
    assert 'mqtt.ack: "broker" needs protocol "5"' in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        make_config(tmp_path, mqtt={"protocol": "4"})
    assert "mqtt.protocol: must be one of 5, 3.1.1 (got '4')" in str(bad.value)
    with pytest.raises(ConfigError) as bad:
        make_config(tmp_path, mqtt={"servers": ["node-2:1883", "node-3", "[::1]:x", "a b:1"]})
    assert "mqtt.servers: 'node-3' is not host:port" in str(bad.value)
    cfg = make_config(tmp_path, mqtt={"servers": ["node-2:1883", "[::1]:1884"]})
    assert cfg.mqtt.servers == ("node-2:1883", "[::1]:1884")
    assert split_address("[::1]:1884") == ("::1", 1884)
