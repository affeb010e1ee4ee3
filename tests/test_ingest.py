"""The central ingest with a real broker and real devices: stored once, acknowledged."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import config as config_mod
from edge.central.db import Checked, DatabaseError, PassageDB, Query, Stored, open_db
from edge.central.ingest import Ingest
from edge.config import Config, IngestFile
from edge.core.lane import State
from edge.mqtt import topics

from .conftest import Mosquitto, Subscriber, archived_messages, make_config, stop_loop
from .test_e2e import Kiosk

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def ingest_config(tmp_path: Path, port: int, **ingest: Any) -> IngestFile:
    data: dict[str, Any] = {
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1},
        "ingest": {"database": f"sqlite:///{tmp_path / 'central.db'}", **ingest},
    }
    return config_mod._from_mapping(data, tmp_path, "test", IngestFile)


def device(tmp_path: Path, port: int, name: str = "lane-a") -> Config:
    """A kiosk that waits for the ingest's acknowledgements (no camera frames)."""
    (tmp_path / name / "frames").mkdir(parents=True, exist_ok=True)
    return make_config(
        tmp_path / name,
        device={"id": name},
        mqtt={"port": port, "ack": "ingest", "ack_timeout_s": 5},
        lane={"mode": "officer", "open_s": 0.1},
    )


@pytest.fixture
def ingests() -> Iterator[Callable[..., Ingest]]:
    """Ingest workers, started; each returns once its subscription is in place (its
    'online' status, published after subscribing, has reached a subscriber)."""
    made: list[Ingest] = []

    def make(cfg: IngestFile, db: PassageDB | None = None, start: bool = True) -> Ingest:
        ingest = Ingest(cfg, db)
        made.append(ingest)
        if start:
            watch = Subscriber(cfg.mqtt.port, [topics.central_status()]).connect()
            ingest.start()
            while True:
                msg = watch.get(timeout=15)
                doc = json.loads(msg.payload)
                if doc.get("worker") == cfg.ingest.client_id and doc["state"] == "online":
                    break
            watch.disconnect()
        return ingest

    yield make
    for ingest in made:
        if ingest.link.alive:
            ingest.stop()


@pytest.fixture
def kiosks() -> Iterator[Callable[[Config], Kiosk]]:
    made: list[Kiosk] = []

    def make(cfg: Config) -> Kiosk:
        kiosk = Kiosk(cfg)
        made.append(kiosk)
        return kiosk

    yield make
    for kiosk in made:
        kiosk.stop()


def wave_through(kiosk: Kiosk, n: int) -> None:
    """The officer lets ``n`` travellers through without a code: n passages."""
    for _ in range(n):
        kiosk.press(kiosk.cfg.gpio.approve_pin)
        kiosk.wait_recorded()
        kiosk.wait_state(State.READY)


def rows(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT device, seq FROM passages ORDER BY device, seq").fetchall()


def test_passages_are_stored_once_and_acknowledged(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    ingest = ingests(ingest_config(tmp_path, broker.port))
    status = Subscriber(broker.port, [topics.central_status()]).connect()
    assert json.loads(status.get().payload)["state"] == "online"  # retained
    kiosk = kiosks(device(tmp_path, broker.port)).start()
    wave_through(kiosk, 5)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 5, 20)
    assert rows(tmp_path / "central.db") == [("lane-a", s) for s in range(1, 6)]
    assert kiosk.app.outbox.status().depth == 0
    assert [m["seq"] for m in archived_messages(kiosk.cfg.store.dir)] == [1, 2, 3, 4, 5]
    ingest.stop()
    assert json.loads(status.get().payload)["state"] == "offline"
    status.disconnect()


def test_duplicates_and_strangers(
    tmp_path: Path, broker: Mosquitto, ingests: Callable[..., Ingest]
) -> None:
    ingest = ingests(ingest_config(tmp_path, broker.port))
    acks = Subscriber(broker.port, ["cp/v1/+/ack"]).connect()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    passage = {
        "v": 1, "pid": str(uuid.uuid4()), "seq": 1, "device": "lane-x", "site": "s",
        "ts": "2026-11-26T08:00:00.000Z", "decision": "approved", "decided_by": "officer",
        "reasons": [], "mode": "officer", "verdict": None, "credentials": [], "traveller": {},
    }  # fmt: skip
    body = json.dumps(passage).encode()
    for payload, topic in (
        (body, "cp/v1/lane-x/passage"),
        (body, "cp/v1/lane-x/passage"),  # sent again: the device was not sure
        (b"{not json", "cp/v1/lane-x/passage"),
        (body, "cp/v1/lane-y/passage"),  # lane-y speaking for lane-x
    ):
        pub.publish(topic, payload, qos=1).wait_for_publish(5)
    assert ingest.wait_until(lambda i: i.stored + i.duplicates + i.rejected == 4, 10)
    assert (ingest.stored, ingest.duplicates, ingest.rejected) == (1, 1, 2)
    assert json.loads(acks.get().payload) == {"pids": [passage["pid"]]}
    with sqlite3.connect(tmp_path / "central.db") as db:
        reasons = [r[0] for r in db.execute("SELECT reason FROM rejected ORDER BY id")]
    assert reasons == ["not JSON", "device 'lane-x' published on the topic of 'lane-y'"]
    stop_loop(pub)
    pub.disconnect()
    acks.disconnect()


def test_the_broker_keeps_passages_for_an_absent_ingest(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    first = ingests(ingest_config(tmp_path, broker.port))
    first.stop()  # its persistent session stays at the broker
    kiosk = kiosks(device(tmp_path, broker.port)).start()
    wave_through(kiosk, 3)  # fresh passages go out at once, ingest or not
    assert kiosk.app.publisher.wait_until(lambda p: p.published == 3, 10)
    assert kiosk.app.outbox.status().depth == 3  # not acknowledged: nobody has stored them
    ingests(ingest_config(tmp_path, broker.port))
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 3, 20)
    assert rows(tmp_path / "central.db") == [("lane-a", 1), ("lane-a", 2), ("lane-a", 3)]


def test_backlog_waits_for_the_ingest_to_be_online(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    cfg = device(tmp_path, broker.port)
    # passages stored while no broker was reachable are backlog at the next start
    offline_cfg = make_config(
        tmp_path / "lane-a", device={"id": "lane-a"}, mqtt={"port": 1, "ack": "ingest"}
    )
    early = Kiosk(offline_cfg).start()
    wave_through(early, 4)
    early.stop()
    passages = Subscriber(broker.port, ["cp/v1/+/passage"]).connect()
    offline = kiosks(cfg).start()
    wave_through(offline, 1)  # fresh: goes out although the ingest is away
    first = passages.get().json()
    assert first["seq"] == 5
    assert offline.app.publisher.backlog == 5
    ingests(ingest_config(tmp_path, broker.port))
    assert offline.app.publisher.wait_until(lambda p: p.acknowledged == 5, 20)
    seqs = sorted(m.json()["seq"] for m in passages.drain_until_marker())
    assert seqs[:4] == [1, 2, 3, 4]  # the backlog, only once the ingest said online
    passages.disconnect()


def test_workers_share_the_load_without_double_rows(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    workers = [
        ingests(ingest_config(tmp_path, broker.port, client_id=f"ingest-{n}")) for n in (1, 2)
    ]
    lanes = [kiosks(device(tmp_path, broker.port, name)).start() for name in ("lane-a", "lane-b")]
    for lane in lanes:
        wave_through(lane, 6)
    for lane in lanes:
        assert lane.app.publisher.wait_until(lambda p: p.acknowledged == 6, 30)
    stored = rows(tmp_path / "central.db")
    assert stored == [(d, s) for d in ("lane-a", "lane-b") for s in range(1, 7)]
    assert all(w.stored > 0 for w in workers)  # both took a share
    assert sum(w.stored for w in workers) == 12


class FlakyDB:
    """The real SQLite store, failing its first ``n`` writes (a database restart)."""

    def __init__(self, url: str, n: int) -> None:
        self.db = open_db(url)
        self.failures = n

    def store(self, messages: Any) -> Stored:
        if self.failures:
            self.failures -= 1
            raise DatabaseError("database is restarting")
        return self.db.store(messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_database_failure_loses_nothing(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    cfg = ingest_config(tmp_path, broker.port)
    ingests(cfg, FlakyDB(cfg.ingest.database, 2))
    kiosk = kiosks(device(tmp_path, broker.port)).start()
    wave_through(kiosk, 3)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 3, 30)
    assert rows(tmp_path / "central.db") == [("lane-a", 1), ("lane-a", 2), ("lane-a", 3)]


def postgres_url(schema: str) -> str:
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        with psycopg.connect(POSTGRES, connect_timeout=3) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {POSTGRES} does not answer: {exc}")
    return f"{POSTGRES}?options=-csearch_path%3D{schema}"


def test_postgresql_store(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    url = postgres_url(f"ce_{uuid.uuid4().hex[:10]}")
    ingests(ingest_config(tmp_path, broker.port, database=url))
    kiosk = kiosks(device(tmp_path, broker.port)).start()
    wave_through(kiosk, 3)
    assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 3, 20)
    db = open_db(url)
    try:
        found = db.find(Query(device="lane-a"))
        assert [m["seq"] for m in found] == [1, 2, 3]
        again = db.store([Checked.of(m) for m in found])
        assert (again.new, again.duplicates) == (0, 3)  # idempotent
    finally:
        db.close()
    reader = open_db(url, readonly=True)  # as trace opens it
    try:
        assert [m["seq"] for m in reader.find(Query(device="lane-a"))] == [1, 2, 3]
        with pytest.raises(DatabaseError, match="read-only"):
            reader.store([Checked.of(dict(found[0], pid=str(uuid.uuid4()), seq=99))])
    finally:
        reader.close()


def test_postgresql_trace_refuses_a_database_without_passages() -> None:
    url = postgres_url(f"ce_{uuid.uuid4().hex[:10]}")
    with pytest.raises(DatabaseError, match="not a passage database"):
        open_db(url, readonly=True)


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_the_ingest_command_stores_and_stops_with_its_writer(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """``checkpoint-edge ingest`` as a service runs it: a writer process of its own, a
    passage stored and acknowledged, SIGTERM ends both."""
    config = tmp_path / "ingest.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        f'[ingest]\ndatabase = "sqlite:///{tmp_path / "central.db"}"\n'
    )
    status = Subscriber(broker.port, [topics.central_status()]).connect()
    proc = subprocess.Popen([sys.executable, "-m", "edge", "ingest", "-c", str(config)])
    try:
        while json.loads(status.get(timeout=30).payload)["state"] != "online":
            pass
        # the writer (multiprocessing's resource tracker, also a child, ends by itself)
        writers = {p for p in children(proc.pid) if b"spawn_main" in cmdline(p)}
        assert len(writers) == 1, "no writer process"
        acks = Subscriber(broker.port, ["cp/v1/+/ack"]).connect()
        passage = {
            "v": 1, "pid": str(uuid.uuid4()), "seq": 1, "device": "lane-x", "site": "s",
            "ts": "2026-11-26T08:00:00.000Z", "decision": "approved", "decided_by": "officer",
            "reasons": [], "mode": "officer", "verdict": None, "credentials": [], "traveller": {},
        }  # fmt: skip
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish("cp/v1/lane-x/passage", json.dumps(passage), qos=1).wait_for_publish(5)
        assert json.loads(acks.get(timeout=15).payload) == {"pids": [passage["pid"]]}
        stop_loop(pub)
        pub.disconnect()
        acks.disconnect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not [pid for pid in writers if Path(f"/proc/{pid}").exists()]
    finally:
        if proc.poll() is None:
            proc.kill()
        status.disconnect()
    assert rows(tmp_path / "central.db") == [("lane-x", 1)]
