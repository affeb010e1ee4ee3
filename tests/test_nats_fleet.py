"""The fleet on a NATS JetStream cluster: kiosks and operators in MQTT 3.1.1.

A real 3-node cluster (tests/nats_rig.py). Kiosks run in this process on mock
pins, each connected to a different node with the others in ``[mqtt] servers``;
the operator's tool (``checkpoint-edge fleet --protocol 3.1.1``) connects to a
third node. Replies come back on ``res/<command>`` (3.1.1 has no response topic)
and are matched by their id. A node SIGKILLed sends its kiosk to another node.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edge import cli
from edge.config import Config, MqttConfig
from edge.core.lane import State
from edge.fleet.operator import FleetClient
from edge.mqtt import topics

from . import test_e2e
from .conftest import make_config, write_frame
from .nats_rig import NatsCluster
from .test_e2e import ID_CARD, Kiosk
from .test_fleet import online, wait, watch_one

kiosks = test_e2e.kiosks  # the fixture: kiosks in this process on mock pins


def node_addresses(cluster: NatsCluster, first: int) -> tuple[int, list[str]]:
    """The MQTT port of node ``first`` and the others' ``host:port`` (for ``servers``)."""
    ports = [n.mqtt_port for n in cluster.nodes]
    others = [f"127.0.0.1:{p}" for i, p in enumerate(ports) if i != first]
    return ports[first], others


def kiosk_config(tmp_path: Path, cluster: NatsCluster, device: str, node: int) -> Config:
    port, others = node_addresses(cluster, node)
    frames = tmp_path / device / "frames"
    frames.mkdir(parents=True)
    return make_config(
        tmp_path / device,
        device={"id": device, "site": "cluster-site"},
        camera={"source": f"images:{frames}", "fps": 20, "hold_s": 1.0},
        mqtt={
            "port": port,
            "servers": others,
            "protocol": "3.1.1",
            "ack": "ingest",
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0,
        },
        lane={"mode": "officer", "decision_timeout_s": 120, "open_s": 0.5},
        fleet={"clock_check": False, "trust_max_age_h": 0, "disk_low_mb": 0},
        passage={"fields": ["name", "id_number"]},
    )


def operator_config(cluster: NatsCluster, node: int) -> MqttConfig:
    port, others = node_addresses(cluster, node)
    return MqttConfig(host="127.0.0.1", port=port, servers=tuple(others), protocol="3.1.1")


def test_status_send_config_and_watch_across_the_cluster(
    tmp_path: Path,
    cluster: NatsCluster,
    kiosks: Callable[[Config], Kiosk],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg_a = kiosk_config(tmp_path, cluster, "lane-a", 0)
    write_frame(tmp_path / "lane-a" / "frames" / "01.png", ID_CARD.encode())  # the officer decides
    a = kiosks(cfg_a).start()
    kiosks(kiosk_config(tmp_path, cluster, "lane-b", 1)).start()
    op = FleetClient(operator_config(cluster, 2)).connect()
    try:
        wait(op, lambda: online(op, "lane-a") and online(op, "lane-b"), "both online", 20)
        # a command to a kiosk on another node: the reply on res/ping, matched by id
        cid = op.command("lane-a", "ping")
        got = op.reply(cid, 10)
        assert got is not None, "no reply to ping over the cluster"
        device, reply = got
        assert (device, reply["id"], reply["status"]) == ("lane-a", cid, "ok")
    finally:
        op.close()

    where = ["--host", "127.0.0.1", "--port", str(cluster.nodes[2].mqtt_port)]
    fleet = ["fleet", *where, "--protocol", "3.1.1"]
    assert cli.main([*fleet, "status", "--json"]) == 0
    rows = {r["device"]: r for r in json.loads(capsys.readouterr().out)["devices"]}
    assert set(rows) == {"lane-a", "lane-b"}
    assert all(r["state"] == "online" and r["mode"] == "officer" for r in rows.values())
    assert cli.main([*fleet, "send", "lane-b", "set-mode", "mode=auto"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["mode"] == "auto"
    assert cli.main([*fleet, "send", "--all", "ping"]) == 0
    answered = {json.loads(line)["device"] for line in capsys.readouterr().out.splitlines()}
    assert answered == {"lane-a", "lane-b"}

    # a desired config, retained on the cluster: the kiosk on node 0 takes it (an
    # in-process kiosk does not restart itself: it reports version 1 and asks to restart)
    op = FleetClient(operator_config(cluster, 2)).connect()
    try:
        desired = {"version": 1, "config": {"lane": {"mode": "surge"}}}
        op.publish_retained(topics.config_desired("lane-a"), json.dumps(desired).encode())
        wait(op, lambda: op.devices["lane-a"].reported.get("version") == 1, "version 1 taken")
        assert a.app.remote.effective.lane.mode == "surge"
        assert a.app._restart.is_set()
        # the ingest's status (no ingest here): kiosks send passages while it is online
        op.publish_retained(topics.central_status(), b'{"state":"online"}')
    finally:
        op.close()

    # watch, as an operator runs it, sees the passage the officer decides on node 0's kiosk

    def deny() -> None:
        a.wait_state(State.AWAITING_DECISION)
        a.press(a.cfg.gpio.deny_pin)

    out = watch_one(fleet, deny)
    assert "lane-a passage" in out
    assert "012345678901" not in out
    a.stop()


def test_a_kiosk_whose_node_is_killed_moves_to_another_node(
    tmp_path: Path, cluster: NatsCluster, kiosks: Callable[[Config], Kiosk]
) -> None:
    kiosk = kiosks(kiosk_config(tmp_path, cluster, "lane-a", 0)).start()
    op = FleetClient(operator_config(cluster, 2)).connect()
    try:
        wait(op, lambda: online(op, "lane-a", 1), "online on node 0, session 1", 20)
        cluster.kill(0)
        # [mqtt] servers: the next attempt goes to another node (the first attempts may be
        # refused while the cluster elects new leaders for the streams node 0 led: each
        # attempt has a session number of its own); a later session says online
        wait(op, lambda: online(op, "lane-a") and session(op) > 1, "online on another node", 30)
        assert kiosk.app.link.link.server != f"127.0.0.1:{cluster.nodes[0].mqtt_port}"
        # the first command after a node's loss may wait while the cluster elects new
        # leaders for the session streams that node led, and a reply sent while the
        # operator's own subscription was being refused is lost (MQTT keeps none for a
        # clean session): the operator sends again, as `fleet send` would be run again
        # (the same id is answered from memory, never run twice)
        cid, got = op.command("lane-a", "ping", expires_s=120), None
        for _ in range(12):
            got = op.reply(cid, 5)
            if got is not None:
                break
            op.command("lane-a", "ping", expires_s=120, command_id=cid)
        assert got is not None, "no reply to ping on the kiosk's new node"
        assert got[1]["status"] == "ok"
        now = session(op)
    finally:
        op.close()
    # an operator connecting now (to a surviving node) sees the kiosk's retained state
    # (while the cluster still recovers from the loss, a node may refuse the operator's
    # QoS 1 subscription for a while: the link subscribes again until its timeout)
    late = FleetClient(operator_config(cluster, 1)).connect(timeout=60)
    try:
        wait(late, lambda: online(late, "lane-a", now), "the retained state on node 1")
    finally:
        late.close()


def session(op: FleetClient, device: str = "lane-a") -> int:
    return int(op.devices[device].status.get("session", 0))
