"""The centre on a 3-node NATS JetStream cluster, with nodes SIGKILLed.

Three kiosks (the real App in this process, on mock pins), each connected to a
different node with the other two in ``[mqtt] servers``; two ingest workers with
``[ingest] source = "nats"`` sharing one durable consumer of the replicated
passage stream. One node is SIGKILLed while passages flow, and (once it is back)
another, the stream's leader, while the kiosks' backlog drains. Every passage must
be in the database exactly once: for each kiosk the seqs 1..N, each with the pid
the kiosk recorded for it, and every kiosk's outbox emptied by the ingest's acks.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import config as config_mod
from edge.central.ingest import Ingest
from edge.config import Config, IngestFile

from .conftest import archived_messages, make_config
from .nats_rig import NatsCluster
from .test_e2e import Kiosk
from .test_ingest import wave_through

LANES = ("lane-a", "lane-b", "lane-c")
STREAM = "CP_PASSAGES"


@pytest.fixture
def running() -> Iterator[list[Any]]:
    """Kiosks and ingest workers to stop at the end, whatever happened."""
    made: list[Any] = []
    yield made
    for thing in reversed(made):
        thing.stop()


def mqtt_section(cluster: NatsCluster, node: int) -> dict[str, Any]:
    ports = [n.mqtt_port for n in cluster.nodes]
    return {
        "host": "127.0.0.1",
        "port": ports[node],
        "servers": [f"127.0.0.1:{p}" for i, p in enumerate(ports) if i != node],
        "protocol": "3.1.1",
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
    }


def worker_config(tmp_path: Path, cluster: NatsCluster, n: int) -> IngestFile:
    data: dict[str, Any] = {
        "mqtt": mqtt_section(cluster, n % 3),
        "ingest": {
            "database": f"sqlite:///{tmp_path / 'central.db'}",
            "client_id": f"ingest-{n}",
            "source": "nats",
            "batch_size": 20,
        },
        "nats": {"servers": cluster.urls, "stream": STREAM, "ack_wait_s": 3},
    }
    return config_mod._from_mapping(data, tmp_path, "test", IngestFile)


def kiosk_config(tmp_path: Path, cluster: NatsCluster, name: str, node: int) -> Config:
    (tmp_path / name / "frames").mkdir(parents=True)
    return make_config(
        tmp_path / name,
        device={"id": name},
        mqtt={**mqtt_section(cluster, node), "ack": "ingest", "ack_timeout_s": 5},
        lane={"mode": "officer", "open_s": 0.05},
    )


def stored(tmp_path: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(tmp_path / "central.db") as db:
        return db.execute("SELECT device, seq, pid FROM passages ORDER BY device, seq").fetchall()


def recorded(kiosk: Kiosk) -> list[tuple[str, int, str]]:
    """What the kiosk recorded and the ingest acknowledged (its archive), by seq."""
    return sorted(
        (kiosk.cfg.device.id, m["seq"], m["pid"]) for m in archived_messages(kiosk.cfg.store.dir)
    )


def flow(kiosks: list[Kiosk], n: int) -> list[threading.Thread]:
    """Each kiosk's officer waves ``n`` travellers through, all kiosks at once."""
    threads = [threading.Thread(target=wave_through, args=(k, n), daemon=True) for k in kiosks]
    for t in threads:
        t.start()
    return threads


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.05):  # polled: the condition spans several processes
                pytest.fail(f"not within {timeout} s: {what}")
    finally:
        deadline.cancel()


def test_every_passage_once_while_nodes_are_killed(
    tmp_path: Path, cluster: NatsCluster, running: list[Any]
) -> None:
    workers = [Ingest(worker_config(tmp_path, cluster, n)) for n in (1, 2)]
    for w in workers:
        running.append(w)
        w.start()
    kiosks = []
    for node, name in enumerate(LANES):
        kiosk = Kiosk(kiosk_config(tmp_path, cluster, name, node))
        running.append(kiosk)
        kiosks.append(kiosk.start())

    # 1. node 0 (kiosk lane-a's) SIGKILLed while passages flow
    per_kiosk = 30
    threads = flow(kiosks, per_kiosk)
    until(lambda: sum(w.stored for w in workers) >= 15, 60, "passages flowing")
    cluster.kill(0)
    for t in threads:
        t.join(120)
    for k in kiosks:
        assert k.app.publisher.wait_until(lambda p: p.acknowledged == per_kiosk, 120), (
            f"{k.cfg.device.id}: {k.app.publisher.acknowledged} of {per_kiosk} acknowledged"
        )
    cluster.restart(0)

    # 2. the ingest away, a backlog builds in the kiosks; it comes back, and the stream's
    # leader is SIGKILLed while the backlog drains
    for w in workers:
        w.stop()
    running.clear()
    running.extend(kiosks)
    backlog = 25
    for t in flow(kiosks, backlog):
        t.join(120)
    total = per_kiosk + backlog
    workers = [Ingest(worker_config(tmp_path, cluster, n)) for n in (3, 4)]
    for w in workers:
        running.append(w)
        w.start()
    until(lambda: sum(w.stored for w in workers) >= 10, 60, "the backlog draining")
    leader = cluster.stream_leader(STREAM)
    assert leader is not None
    cluster.kill(leader)
    for k in kiosks:
        assert k.app.publisher.wait_until(lambda p: p.acknowledged == total, 120), (
            f"{k.cfg.device.id}: {k.app.publisher.acknowledged} of {total} acknowledged"
        )

    # the store books acknowledgements with its next batch: the outbox empties just after
    until(lambda: all(k.app.outbox.status().depth == 0 for k in kiosks), 30, "outboxes empty")
    rows = stored(tmp_path)
    expected = [row for k in kiosks for row in recorded(k)]
    assert [(d, s) for d, s, _ in expected] == [(d, s) for d in LANES for s in range(1, total + 1)]
    assert rows == expected  # exactly once, every seq, each with the pid the kiosk recorded
