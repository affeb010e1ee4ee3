"""The central ingest with ``[ingest] source = "nats"``, against a real 3-node NATS
JetStream cluster (``tests/nats_rig.py``): kiosks publish over the nodes' MQTT listeners
(MQTT 3.1.1), workers share one durable pull consumer of the passages' stream, store
each passage once, acknowledge it to JetStream after the database has it, and answer
the devices over MQTT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import paho.mqtt.client as mqtt
import pytest
from nats.js import api
from paho.mqtt.enums import CallbackAPIVersion

from edge import config as config_mod
from edge.central.db import PassageDB, Query, open_db
from edge.central.ingest import Ingest
from edge.central.nats_source import NatsPassages
from edge.central.source import SourceError
from edge.config import Config, IngestFile
from edge.errors import ConfigError
from edge.mqtt import topics

from .conftest import make_config, stop_loop, toml_text
from .nats_rig import NatsCluster, Node
from .test_e2e import Kiosk
from .test_ingest import (  # noqa: F401 - kiosks: a fixture
    FlakyDB,
    children,
    kiosks,
    postgres_url,
    rows,
    wave_through,
)

STREAM = "CP_PASSAGES"


def passage(device: str, seq: int) -> dict[str, Any]:
    """A passage as a kiosk sends it (no traveller: nothing personal)."""
    return {
        "v": 1, "pid": str(uuid.uuid4()), "seq": seq, "device": device, "site": "s",
        "ts": "2026-11-26T08:00:00.000Z", "decision": "approved", "decided_by": "officer",
        "reasons": [], "mode": "officer", "verdict": None, "credentials": [], "traveller": {},
    }  # fmt: skip


class Mqtt311:
    """A kiosk-like MQTT 3.1.1 client on one node's MQTT listener, recording what arrives
    on ``subscribe``: a persistent session (clean-session off) as a kiosk's, or a clean
    one (a watcher: nothing stays at the cluster after it)."""

    def __init__(
        self, node: Node, subscribe: list[str], client_id: str = "", persistent: bool = False
    ) -> None:
        self.port = node.mqtt_port
        self.filters = subscribe
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        if self.filters:
            client.subscribe([(f, 1) for f in self.filters])
        else:
            self._subscribed.set()

    def connect(self) -> Mqtt311:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(15), "no CONNACK/SUBACK from the node's MQTT listener"
        return self

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), "no PUBACK"

    def get(self, timeout: float = 15.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"nothing on {self.filters} within {timeout} s")

    def answers(self, pids: set[str], timeout: float = 30.0) -> tuple[set[str], list[Any]]:
        """The pids acknowledged on this client's ack topic, and the rejections, until
        every one of ``pids`` is acknowledged or rejected."""
        stored: set[str] = set()
        rejected: list[Any] = []
        deadline = time.monotonic() + timeout
        while not pids <= stored | {r["pid"] for r in rejected}:
            doc = json.loads(self.get(max(0.1, deadline - time.monotonic())).payload)
            stored |= set(doc["pids"])
            rejected += doc.get("rejected", [])
        return stored, rejected

    def disconnect(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


def lane(node: Node, device: str) -> Mqtt311:
    """A kiosk-like client of ``device`` on ``node``: its persistent session subscribed to
    its acks, connected."""
    return Mqtt311(node, [topics.ack(device)], device, persistent=True).connect()


def send(client: Mqtt311, device: str, seqs: range) -> list[dict[str, Any]]:
    """Publish passages ``seqs`` of ``device`` (QoS 1, each PUBACKed); what was sent."""
    sent = [passage(device, seq) for seq in seqs]
    for msg in sent:
        client.publish(topics.passage(device), json.dumps(msg).encode())
    return sent


def central_state(node: Node, timeout: float = 15.0) -> str:
    """The retained central status, as a client that connects now sees it."""
    watch = Mqtt311(node, [topics.central_status()]).connect()
    try:
        return str(json.loads(watch.get(timeout).payload)["state"])
    finally:
        watch.disconnect()


def worker_config(
    tmp_path: Path, cluster: NatsCluster, node: int, name: str = "ingest-1", **sections: Any
) -> IngestFile:
    """An ingest worker whose MQTT link goes to node ``node``, taking passages from the
    cluster's stream (servers: every node)."""
    data = worker_data(tmp_path, cluster, node, name, **sections)
    return config_mod.from_mapping_as(data, tmp_path, "test", IngestFile)


def worker_data(
    tmp_path: Path, cluster: NatsCluster, node: int, name: str, **sections: Any
) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": cluster.nodes[node].mqtt_port,
            "protocol": "3.1.1",
            "reconnect_min_s": 0.2,
            "reconnect_max_s": 1,
        },
        "ingest": {
            "database": f"sqlite:///{tmp_path / 'central.db'}",
            "source": "nats",
            "client_id": name,
        },
        "nats": {"servers": cluster.urls},
    }
    for section, values in sections.items():
        data[section].update(values)
    return data


def wait_online(watch: Mqtt311, worker: str, timeout: float = 30.0) -> None:
    """Until ``watch`` (subscribed to the central status before the worker started: the
    cluster's retained messages reach a new subscriber late, now and then) sees
    ``worker`` say online, which it does once its stream and consumer are there."""
    try:
        while True:
            doc = json.loads(watch.get(timeout).payload)
            if doc.get("worker") == worker and doc["state"] == "online":
                return
    finally:
        watch.disconnect()


def status_watch(node: Node) -> Mqtt311:
    return Mqtt311(node, [topics.central_status()]).connect()


def becomes(node: Node, state: str, timeout: float = 15.0) -> None:
    """Until a client that connects to ``node`` sees the retained central status
    ``state`` (retained messages reach the nodes of a NATS cluster one after another)."""
    until(lambda: central_state(node) == state, timeout, f"central status {state}")


@pytest.fixture
def workers(cluster: NatsCluster) -> Iterator[Callable[..., Ingest]]:
    """Ingest workers, started and online (``db``: stored in-process, into it)."""
    made: list[Ingest] = []

    def make(cfg: IngestFile, db: PassageDB | None = None) -> Ingest:
        ingest = Ingest(cfg, db)
        made.append(ingest)
        node = next(n for n in cluster.nodes if n.mqtt_port == cfg.mqtt.port)
        watch = status_watch(node)
        ingest.start()
        wait_online(watch, cfg.ingest.client_id)
        return ingest

    yield make
    for ingest in made:
        if ingest.link.alive:
            ingest.stop()


def stream_info(cluster: NatsCluster) -> tuple[int, int]:
    """(messages in the passages' stream, messages its consumer has handed out and not
    had acknowledged)."""

    async def ask() -> tuple[int, int]:
        client = await nats.connect(servers=cluster.urls, max_reconnect_attempts=2)
        try:
            js = client.jetstream()
            stream = await js.stream_info(STREAM)
            consumer = await js.consumer_info(STREAM, "ingest")
            return stream.state.messages, consumer.num_ack_pending
        finally:
            await client.close()

    return asyncio.run(ask())


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` (a database, the cluster) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def stored(tmp_path: Path) -> list[tuple[str, int]]:
    return rows(tmp_path / "central.db") if (tmp_path / "central.db").exists() else []


def kiosk_config(tmp_path: Path, node: Node, name: str) -> Config:
    """A real kiosk on ``node``'s MQTT listener (3.1.1), waiting for the ingest's acks."""
    (tmp_path / name / "frames").mkdir(parents=True, exist_ok=True)
    return make_config(
        tmp_path / name,
        device={"id": name},
        mqtt={"port": node.mqtt_port, "protocol": "3.1.1", "ack": "ingest", "ack_timeout_s": 20},
        lane={"mode": "officer", "open_s": 0.1},
    )


# -- tests ------------------------------------------------------------------------------


def test_two_workers_share_the_stream_and_every_device_gets_its_acks(
    tmp_path: Path,
    cluster: NatsCluster,
    workers: Callable[[IngestFile], Ingest],
    kiosks: Callable[[Config], Kiosk],  # noqa: F811 - the fixture imported above
) -> None:
    batch = {"batch_size": 20}
    one = workers(worker_config(tmp_path, cluster, 0, "ingest-1", ingest=batch))
    two = workers(worker_config(tmp_path, cluster, 1, "ingest-2", ingest=batch))
    kiosk = kiosks(kiosk_config(tmp_path, cluster.nodes[2], "lane-a")).start()
    # kiosk-like clients on two other nodes, many passages each
    lanes = {name: lane(cluster.nodes[n], name) for name, n in (("lane-b", 0), ("lane-c", 1))}
    sent = {name: {m["pid"] for m in send(c, name, range(1, 151))} for name, c in lanes.items()}
    wave_through(kiosk, 4)
    for name, client in lanes.items():
        acked, rejected = client.answers(sent[name])
        assert acked == sent[name]
        assert rejected == []
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 4, 30)
    # the outbox books the acks with its next batch
    until(lambda: kiosk.app.outbox.status().depth == 0, 10, "the kiosk's outbox empty")
    assert stored(tmp_path) == [
        *(("lane-a", s) for s in range(1, 5)),
        *((d, s) for d in ("lane-b", "lane-c") for s in range(1, 151)),
    ]
    assert one.stored > 0
    assert two.stored > 0  # both took a share of the one consumer
    assert one.stored + two.stored == 304  # each passage stored by one worker, once
    # work-queue retention: what the database has left the stream
    until(lambda: stream_info(cluster) == (0, 0), 10, "stream drained")
    for client in lanes.values():
        client.disconnect()


def test_a_hostile_message_is_rejected_kept_and_acknowledged(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[[IngestFile], Ingest]
) -> None:
    ingest = workers(worker_config(tmp_path, cluster, 0))
    lane_x = lane(cluster.nodes[1], "lane-x")
    lane_y = lane(cluster.nodes[2], "lane-y")
    good = passage("lane-x", 1)
    body = json.dumps(good).encode()
    lane_x.publish(topics.passage("lane-x"), body)
    lane_x.publish(topics.passage("lane-x"), body)  # sent again: the kiosk was not sure
    lane_x.publish(topics.passage("lane-x"), b"{not json")
    lane_x.publish(topics.passage("lane-x"), b"\xff\xfe")
    lane_y.publish(topics.passage("lane-y"), body)  # lane-y speaking for lane-x
    assert ingest.wait_until(lambda i: i.stored + i.duplicates + i.rejected == 5, 20)
    assert (ingest.stored, ingest.duplicates, ingest.rejected) == (1, 1, 3)
    assert lane_x.answers({good["pid"]}) == ({good["pid"]}, [])
    impostor = "device 'lane-x' published on the topic of 'lane-y'"
    assert lane_y.answers({good["pid"]}) == (set(), [{"pid": good["pid"], "reason": impostor}])
    with sqlite3.connect(tmp_path / "central.db") as db:
        reasons = sorted(r[0] for r in db.execute("SELECT reason FROM rejected"))
    assert reasons == [impostor, "not JSON", "not UTF-8"]
    assert stored(tmp_path) == [("lane-x", 1)]
    # kept in the database, so acknowledged to JetStream too: nothing comes again
    until(lambda: stream_info(cluster) == (0, 0), 10, "stream drained")
    lane_x.disconnect()
    lane_y.disconnect()


def test_the_central_status_follows_the_workers(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[[IngestFile], Ingest]
) -> None:
    one = workers(worker_config(tmp_path, cluster, 0, "ingest-1"))
    two = workers(worker_config(tmp_path, cluster, 1, "ingest-2"))
    assert central_state(cluster.nodes[2]) == "online"
    watch = Mqtt311(cluster.nodes[2], [topics.central_status()]).connect()
    watch.get()  # the retained one
    one.stop()  # says offline; the other sees it and says online again
    seen = []
    while ("ingest-2", "online") not in seen:
        doc = json.loads(watch.get().payload)
        seen.append((doc["worker"], doc["state"]))
    assert seen[0] == ("ingest-1", "offline")
    becomes(cluster.nodes[0], "online")
    two.stop()
    assert json.loads(watch.get().payload)["state"] == "offline"
    for node in cluster.nodes:
        becomes(node, "offline")
    watch.disconnect()


def test_a_worker_killed_mid_flow_loses_nothing(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[[IngestFile], Ingest]
) -> None:
    """Passages a worker fetched and never acknowledged (SIGKILLed while its database
    write waited for a lock) go to the other worker after ack_wait_s."""
    short = {"ack_wait_s": 2}
    config = tmp_path / "ingest-a.toml"
    config.write_text(toml_text(worker_data(tmp_path, cluster, 0, "ingest-a", nats=short)))
    watch = status_watch(cluster.nodes[0])
    proc = subprocess.Popen([sys.executable, "-m", "edge", "ingest", "-c", str(config)])
    try:
        wait_online(watch, "ingest-a")
        helpers = children(proc.pid)  # its writer process
        lock = sqlite3.connect(tmp_path / "central.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # its writes wait (5 s, then fail)
        kiosk = lane(cluster.nodes[2], "lane-k")
        sent = send(kiosk, "lane-k", range(1, 51))
        until(lambda: stream_info(cluster) == (50, 50), 10, "all 50 handed to worker a")
        proc.kill()
        proc.wait(10)
        # its writer process, orphaned, fails on the lock and ends (else it would store
        # the batch it holds once the lock is gone: stored once all the same, but counted
        # as a duplicate below)
        until(lambda: not [p for p in helpers if Path(f"/proc/{p}").exists()], 15, "writer gone")
        lock.rollback()
        lock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    other = workers(worker_config(tmp_path, cluster, 1, "ingest-b", nats=short))
    pids = {m["pid"] for m in sent}
    assert kiosk.answers(pids) == (pids, [])
    assert stored(tmp_path) == [("lane-k", s) for s in range(1, 51)]
    # every one stored by the other (at least once: nats-server 2.9.10 was seen to hand
    # a redelivered passage out twice; the second is a duplicate, stored once)
    assert other.stored == 50
    until(lambda: stream_info(cluster) == (0, 0), 10, "stream drained")
    kiosk.disconnect()


def test_a_worker_that_stops_gives_back_what_it_held_at_once(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[[IngestFile], Ingest]
) -> None:
    """A stopping worker naks what it fetched and has not stored: the next worker gets it
    at once, not after ack_wait_s (30 s here)."""
    first = workers(worker_config(tmp_path, cluster, 0, "ingest-1"))
    lock = sqlite3.connect(tmp_path / "central.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    kiosk = lane(cluster.nodes[2], "lane-s")
    sent = send(kiosk, "lane-s", range(1, 21))
    until(lambda: stream_info(cluster) == (20, 20), 10, "all 20 handed to the first worker")
    first.stop()  # its write fails on the lock: nothing stored, all given back
    assert first.stored == 0
    lock.rollback()
    lock.close()
    started = time.monotonic()
    second = workers(worker_config(tmp_path, cluster, 1, "ingest-2"))
    pids = {m["pid"] for m in sent}
    assert kiosk.answers(pids, timeout=20) == (pids, [])
    assert time.monotonic() - started < 20  # well before ack_wait_s
    assert (second.stored, second.duplicates) == (20, 0)
    kiosk.disconnect()


def test_a_database_failure_loses_nothing(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[..., Ingest]
) -> None:
    """Batches the database refused are nakked and come again: stored, acknowledged."""
    cfg = worker_config(tmp_path, cluster, 0)
    ingest = workers(cfg, FlakyDB(cfg.ingest.database, 2))
    kiosk = lane(cluster.nodes[1], "lane-d")
    sent = send(kiosk, "lane-d", range(1, 4))
    pids = {m["pid"] for m in sent}
    assert kiosk.answers(pids, timeout=40) == (pids, [])
    assert stored(tmp_path) == [("lane-d", 1), ("lane-d", 2), ("lane-d", 3)]
    assert ingest.stored == 3
    until(lambda: stream_info(cluster) == (0, 0), 10, "stream drained")
    kiosk.disconnect()


def test_stopping_a_worker_mid_flow_loses_nothing(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[[IngestFile], Ingest]
) -> None:
    batch = {"batch_size": 10}
    one = workers(worker_config(tmp_path, cluster, 0, "ingest-1", ingest=batch))
    workers(worker_config(tmp_path, cluster, 1, "ingest-2", ingest=batch))
    kiosk = lane(cluster.nodes[2], "lane-f")
    sent: list[dict[str, Any]] = []
    publisher = threading.Thread(target=lambda: sent.extend(send(kiosk, "lane-f", range(1, 401))))
    publisher.start()
    assert one.wait_until(lambda i: i.stored >= 20, 20)
    one.stop()  # while passages keep coming
    publisher.join(60)
    pids = {m["pid"] for m in sent}
    assert kiosk.answers(pids, timeout=25) == (pids, [])  # ack_wait_s is 30
    assert stored(tmp_path) == [("lane-f", s) for s in range(1, 401)]
    until(lambda: stream_info(cluster) == (0, 0), 10, "stream drained")
    kiosk.disconnect()


def test_a_worker_keeps_consuming_when_its_node_is_killed(
    tmp_path: Path,
    cluster: NatsCluster,
    workers: Callable[[IngestFile], Ingest],
    kiosks: Callable[[Config], Kiosk],  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The node the worker's NATS connection is on is SIGKILLed: it reconnects to another
    and goes on. (A passage published while the stream elects a new leader may be lost
    after the MQTT listener's PUBACK; the kiosk sends it again after ack_timeout_s.)"""
    caplog.set_level(logging.INFO, logger="edge.central.nats_source")
    servers = {"servers": [cluster.nodes[1].url, cluster.nodes[2].url]}
    ingest = workers(worker_config(tmp_path, cluster, 0, nats=servers))
    cfg = kiosk_config(tmp_path, cluster.nodes[0], "lane-n")
    kiosk = kiosks(replace(cfg, mqtt=replace(cfg.mqtt, ack_timeout_s=5))).start()
    wave_through(kiosk, 3)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 3, 30)
    # the node the worker's NATS connection is on (its MQTT link and the kiosk: node 0)
    home = next(
        i
        for i in (1, 2)
        if any(
            c.get("name") == "ingest-1"
            for c in (cluster.nodes[i].monitor("/connz") or {}).get("connections", [])
        )
    )
    cluster.kill(home)
    wave_through(kiosk, 3)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 6, 90)
    assert stored(tmp_path) == [("lane-n", s) for s in range(1, 7)]
    assert ingest.source.alive
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "edge.central.nats_source" and r.levelno == logging.WARNING
    ]
    assert 1 <= len(warnings) <= 3, warnings  # once per outage, not once per attempt


def test_a_connection_closed_for_good_is_replaced(
    tmp_path: Path,
    cluster: NatsCluster,
    workers: Callable[[IngestFile], Ingest],
    kiosks: Callable[[Config], Kiosk],  # noqa: F811 - the fixture imported above
) -> None:
    """nats-py gives a connection up for good on an -ERR it does not retry (an
    authorization violation, expired credentials): the consumer's thread ends, and the
    supervisor's restart (run() does it each second) takes passages again."""
    ingest = workers(worker_config(tmp_path, cluster, 0))
    kiosk = kiosks(kiosk_config(tmp_path, cluster.nodes[0], "lane-c")).start()
    wave_through(kiosk, 2)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 2, 30)
    source = ingest.source
    assert isinstance(source, NatsPassages)
    assert source.client is not None
    assert source._loop is not None
    # the server's -ERR, as nats-py reads it off the wire
    closing = source.client._process_err("'Authorization Violation'")
    asyncio.run_coroutine_threadsafe(closing, source._loop).result(10)
    until(lambda: not source.alive, 15, "the consumer's thread ended")
    source.restart()  # the supervisor's call
    wave_through(kiosk, 2)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 4, 60)
    assert stored(tmp_path) == [("lane-c", s) for s in range(1, 5)]


def test_a_worker_started_before_the_cluster_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.central.nats_source")
    cluster = NatsCluster(tmp_path / "nats")  # its ports chosen, not started yet
    ingest = Ingest(worker_config(tmp_path, cluster, 0))
    try:
        ingest.start()
        until(lambda: "trying again" in caplog.text, 15, "the outage logged")
        cluster.start()
        becomes(cluster.nodes[0], "online", 60)
        kiosk = lane(cluster.nodes[1], "lane-w")
        (msg,) = send(kiosk, "lane-w", range(1, 2))
        assert kiosk.answers({msg["pid"]}) == ({msg["pid"]}, [])
        kiosk.disconnect()
    finally:
        ingest.stop()
        cluster.stop()
    warnings = [
        r
        for r in caplog.records
        if r.name == "edge.central.nats_source" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 1  # the outage, once: not once per attempt


def test_a_stream_or_consumer_that_cannot_serve_stops_the_worker(
    tmp_path: Path, cluster: NatsCluster
) -> None:
    async def make(stream: list[str], push_consumer: bool) -> None:
        client = await nats.connect(servers=cluster.urls)
        try:
            js = client.jetstream()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(STREAM)
            await js.add_stream(api.StreamConfig(name=STREAM, subjects=stream, num_replicas=1))
            if push_consumer:
                await js.add_consumer(
                    STREAM,
                    api.ConsumerConfig(durable_name="ingest", deliver_subject="somewhere"),
                )
        finally:
            await client.close()

    asyncio.run(make(["other.>"], push_consumer=False))
    ingest = Ingest(worker_config(tmp_path, cluster, 0))
    assert ingest.run(threading.Event()) == 1  # not cured by waiting
    assert "does not capture cp.v1.*.passage (its subjects: other.>)" in str(ingest.source.failure)
    asyncio.run(make(["cp.>"], push_consumer=True))  # captures them, but a push consumer
    ingest = Ingest(worker_config(tmp_path, cluster, 0))
    assert ingest.run(threading.Event()) == 1
    assert "the consumer 'ingest' of 'CP_PASSAGES' is a push consumer" in str(ingest.source.failure)


def test_postgresql_store_from_the_stream(
    tmp_path: Path, cluster: NatsCluster, workers: Callable[[IngestFile], Ingest]
) -> None:
    url = postgres_url(f"ce_{uuid.uuid4().hex[:10]}")
    workers(worker_config(tmp_path, cluster, 0, ingest={"database": url}))
    kiosk = lane(cluster.nodes[1], "lane-p")
    sent = send(kiosk, "lane-p", range(1, 6))
    pids = {m["pid"] for m in sent}
    assert kiosk.answers(pids) == (pids, [])
    db = open_db(url)
    try:
        assert [m["seq"] for m in db.find(Query(device="lane-p"))] == [1, 2, 3, 4, 5]
    finally:
        db.close()
    kiosk.disconnect()


# -- configuration ---------------------------------------------------------------------


def problems(tmp_path: Path, **sections: dict[str, Any]) -> str:
    base: dict[str, dict[str, Any]] = {
        "mqtt": {"protocol": "3.1.1"},
        "ingest": {"source": "nats"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    with pytest.raises(ConfigError) as caught:
        config_mod.from_mapping_as(base, tmp_path, "ingest.toml", IngestFile)
    return str(caught.value)


def test_nats_config_errors_are_clear(tmp_path: Path) -> None:
    assert 'ingest.source: "nats" needs [mqtt] protocol = "3.1.1"' in problems(
        tmp_path, mqtt={"protocol": "5"}
    )
    assert "nats.servers: must name at least one server" in problems(tmp_path, nats={"servers": []})
    assert "nats.servers: server 2: must be nats://HOST[:PORT] or tls://HOST[:PORT] (got " in (
        problems(tmp_path, nats={"servers": ["nats://a:4222", "http://b:4222"]})
    )
    assert "nats.servers: server 1: not a server URL" in problems(
        tmp_path, nats={"servers": ["nats://a:99999"]}
    )
    token = problems(tmp_path, nats={"servers": ["nats://a:4222/?token=t0ken"]})
    assert "nothing after it (got nats://a:4222...)" in token
    assert "t0ken" not in token
    secret = problems(tmp_path, nats={"servers": ["nats://ingest:s3cret@a:4222"]})
    assert "must not hold credentials (use user and password_file, or creds_file)" in secret
    assert "s3cret" not in secret
    assert "nats.user: user and password_file must be given together" in problems(
        tmp_path, nats={"user": "ingest"}
    )
    assert "nats.stream: must be 1-64 of A-Z" in problems(tmp_path, nats={"stream": "cp.x"})
    assert "nats.replicas: must be 1 to 5" in problems(tmp_path, nats={"replicas": 7})
    assert "nats.tls: must be true" in problems(tmp_path, nats={"ca_file": str(Path(__file__))})
    # the default source needs none of it
    cfg = config_mod.from_mapping_as({}, tmp_path, "ingest.toml", IngestFile)
    assert (cfg.ingest.source, cfg.nats.servers) == ("mqtt", ("nats://localhost:4222",))


def test_the_ingest_command_refuses_nats_over_mqtt_5(tmp_path: Path) -> None:
    config = tmp_path / "ingest.toml"
    config.write_text('[ingest]\nsource = "nats"\n[nats]\nservers = ["nats://127.0.0.1:1"]\n')
    run = subprocess.run(
        [sys.executable, "-m", "edge", "ingest", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert 'ingest.source: "nats" needs [mqtt] protocol = "3.1.1"' in run.stderr
    assert "Traceback" not in run.stderr


def test_without_nats_py_the_ingest_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config_mod.from_mapping_as(
        {"mqtt": {"protocol": "3.1.1"}, "ingest": {"source": "nats"}},
        tmp_path,
        "ingest.toml",
        IngestFile,
    )
    monkeypatch.setitem(sys.modules, "nats", None)  # as on a kiosk's install: no nats-py
    for name in ("edge.central.nats_source", "edge.central.jetstream"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(SourceError, match=r"pip install 'checkpoint-edge\[nats\]'"):
        Ingest(cfg)
