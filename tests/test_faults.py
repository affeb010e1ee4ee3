"""Nothing lost: kiosks, a broker and an ingest under faults, checked at the ingest.

Each test runs a real mosquitto (with persistence), a real ingest (SQLite) and
kiosks producing passages continuously, injects its fault, lets everything
drain, and then checks:

- at the ingest, every passage the kiosks produced is stored exactly once, and
  each kiosk's ``seq`` runs 1..N without gaps;
- each kiosk's outbox is empty (everything acknowledged) and its store opens;
- for kiosks in this process, the barrier never opened for an approval that
  was not already on disk (a relay pin that checks the store when it closes
  the circuit).

Counts are kept small enough for the suite to stay within minutes;
``bench/fault_bench.py`` runs the same scenarios with higher counts (set
through the environment below) and prints the figures each test reports.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge import config as config_mod
from edge import credtools
from edge.central.ingest import Ingest
from edge.config import Config, IngestFile
from edge.core.lane import DecisionTimedOut, FaultRaised
from edge.mqtt import topics
from edge.scan import declaration
from edge.store import storage
from edge.store.snapshot import snapshot

from .conftest import Daemon, Mosquitto, Subscriber, WatchedPin, toml_text, write_frame
from .test_declaration import make_declaration
from .test_e2e import Kiosk

RNG = random.Random(int(os.environ.get("CHECKPOINT_EDGE_FAULT_SEED", "20261126")))
BROKER_RESTARTS = int(os.environ.get("CHECKPOINT_EDGE_FAULT_BROKER_RESTARTS", "10"))
KIOSK_KILLS = int(os.environ.get("CHECKPOINT_EDGE_FAULT_KIOSK_KILLS", "20"))
REPORT = os.environ.get("CHECKPOINT_EDGE_FAULT_REPORT")  # a JSON-lines file for bench/


def report(test: str, fleet: Fleet, counts: dict[str, int], started: float, **more: int) -> None:
    """Figures of a fault run, for bench/fault_bench.py (nothing without REPORT)."""
    if REPORT is None:
        return
    ingest = fleet.ingest
    figures = {
        "test": test,
        "seconds": round(time.monotonic() - started, 1),
        "passages": sum(counts.values()),
        "devices": len(counts),
        "duplicates_removed": ingest.duplicates if ingest is not None else None,
        **more,
    }
    with open(REPORT, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(figures) + "\n")


# -- the fleet ------------------------------------------------------------------


@dataclass
class Fleet:
    root: Path
    broker: Mosquitto
    ingest: Ingest | None = None
    kiosks: list[Kiosk] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.root / "central.db"

    def start_ingest(self) -> Ingest:
        data: dict[str, Any] = {
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.broker.port,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1,
            },
            "ingest": {"database": f"sqlite:///{self.db}"},
        }
        cfg = config_mod._from_mapping(data, self.root, "test", IngestFile)
        watch = Subscriber(self.broker.port, [topics.central_status()]).connect()
        self.ingest = Ingest(cfg)
        self.ingest.start()
        while json.loads(watch.get(timeout=20).payload).get("state") != "online":
            pass
        watch.disconnect()
        return self.ingest

    def stop_ingest(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
            self.ingest = None

    def device_config(self, name: str, approving: bool) -> dict[str, dict[str, Any]]:
        """A kiosk producing a passage about three times a second, with no one at it."""
        home = self.root / name
        frames = home / "frames"
        frames.mkdir(parents=True, exist_ok=True)
        data: dict[str, dict[str, Any]] = {
            "device": {"id": name, "site": "fault-test"},
            "camera": {
                "source": f"images:{frames}",
                "fps": 20,
                "hold_s": 0.15,
                "gap_s": 0.2,
                "loop": True,
            },
            "scan": {"leave_s": 0.1},
            "gpio": {"pin_factory": "mock"},
            "lane": {"mode": "auto", "open_s": 0.05},
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.broker.port,
                "ack": "ingest",
                "ack_timeout_s": 3,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 1,
            },
            "store": {"dir": str(home / "store"), "segment_size": 20},
            "policy": {"replay_window_s": 0},
            "kiosk": {"listen": ""},  # no screen: several kiosks, none on a fixed port
        }
        if approving:  # a valid declaration in view, again and again: the barrier opens
            made = credtools.keys_new("VN-HN", "ES256", home / "keys")
            key, kid = credtools.load_private_key(Path(made["private_key"]))
            decl = make_declaration(now=datetime.now(UTC))
            write_frame(frames / "a.png", declaration.issue(decl, key, kid).encode())
            data["trust"] = {"files": [made["trust_list"]]}
        else:  # two codes nobody recognises: denied passages, no barrier
            write_frame(frames / "a.png", f"{name} A".encode())
            write_frame(frames / "b.png", f"{name} B".encode())
        return data

    def add_kiosk(self, name: str) -> Kiosk:
        data = self.device_config(name, approving=True)
        cfg = config_mod.from_mapping(data, self.root / name)
        kiosk = Kiosk(cfg, MockFactory(pin_class=audit_pins(cfg, self.violations)))
        self.kiosks.append(kiosk)
        return kiosk.start()

    def add_daemon(self, name: str, env: dict[str, str] | None = None) -> Path:
        path = self.root / name / "config.toml"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(toml_text(self.device_config(name, approving=False)))
        self.daemons.append(Daemon(path, env=env))
        return path

    def drain(self, timeout: float = 90) -> None:
        """Stop producing, and let every outbox empty into the ingest."""
        for kiosk in self.kiosks:
            kiosk.app.capture.stop()
            kiosk.app.scanner.stop()
        for kiosk in self.kiosks:
            kiosk.app.capture.join(10)
            kiosk.app.scanner.join(10)
            # The lane has handled the last code scanned (and stored its passage) once it
            # answers an event posted after it (a stale timer: changes nothing). Only
            # then is an empty backlog final.
            kiosk.app.runner.call(DecisionTimedOut(token=-1), timeout=10)
            assert kiosk.app.publisher.wait_until(lambda p: p.backlog == 0, timeout), (
                kiosk.cfg.device.id
            )
            kiosk.stop()
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                if not any("edge: checkpoint-edge" in line for line in daemon.log):
                    daemon.wait_for("edge: checkpoint-edge")  # SIGTERM is handled from here
                assert daemon.terminate() == 0
        for config in {d.config for d in self.daemons}:
            store = self.root / config.parent.name / "store"
            if not snapshot(store).live:
                continue
            quiet = config.with_name("drain.toml")
            empty = config.parent / "empty"
            empty.mkdir(exist_ok=True)
            quiet.write_text(config.read_text().replace(str(config.parent / "frames"), str(empty)))
            drainer = Daemon(quiet)
            self.daemons.append(drainer)
            drainer.wait_for("outbox empty", timeout)
            assert drainer.terminate() == 0

    def check(self) -> dict[str, int]:
        """Every produced passage at the ingest exactly once, seq 1..N; outboxes empty."""
        assert self.violations == []
        with sqlite3.connect(self.db) as db:
            stored = db.execute(
                "SELECT device, seq, pid FROM passages ORDER BY device, seq"
            ).fetchall()
        counts: dict[str, int] = {}
        names = {k.cfg.device.id for k in self.kiosks} | {
            d.config.parent.name for d in self.daemons
        }
        for name in sorted(names):
            snap = snapshot(self.root / name / "store")
            assert snap.live == {}, f"{name}: {len(snap.live)} passage(s) never acknowledged"
            produced = {m["pid"]: m["seq"] for m in snap.archived}
            at_ingest = [(seq, pid) for device, seq, pid in stored if device == name]
            assert [s for s, _ in at_ingest] == list(range(1, snap.last_seq + 1)), name
            assert {pid: seq for seq, pid in at_ingest} == produced, name
            counts[name] = snap.last_seq
        assert sum(counts.values()) == len(stored)  # no row from nowhere
        return counts

    def close(self) -> None:
        for kiosk in self.kiosks:
            kiosk.stop()
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.kill()
        self.stop_ingest()
        self.broker.stop()


def audit_pins(cfg: Config, violations: list[str]) -> type[WatchedPin]:
    """Mock pins whose barrier relay checks, as it closes, that every approval so far
    (this opening's included) is on disk."""
    store = cfg.store.dir
    barrier = f"GPIO{cfg.gpio.barrier_pin}"
    active = cfg.gpio.barrier_active_high

    class Audit(WatchedPin):
        openings = 0

        def _change_state(self, value: bool) -> bool:
            if self.info.name == barrier and value == active and self.state != active:
                Audit.openings += 1
                snap = snapshot(store)
                on_disk = sum(
                    1
                    for m in [*snap.archived, *(d["msg"] for d in snap.live.values())]
                    if m.get("decision") == "approved"
                )
                if on_disk < Audit.openings:
                    violations.append(
                        f"{cfg.device.id}: opening {Audit.openings}, {on_disk} on disk"
                    )
            return super()._change_state(value)

    return Audit


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    broker = Mosquitto(tmp_path / "broker", extra="persistence true\nautosave_interval 1").start()
    f = Fleet(tmp_path, broker)
    f.start_ingest()
    yield f
    f.close()


def produced_at_least(fleet: Fleet, n: int) -> Callable[[], None]:
    def wait() -> None:
        for kiosk in fleet.kiosks:
            outbox = kiosk.app.outbox
            kiosk.wait(lambda _e, _a, _s, box=outbox: box.last_seq >= n, timeout=60)

    return wait


# -- the faults ---------------------------------------------------------------


def test_broker_killed_and_restarted_repeatedly(fleet: Fleet) -> None:
    started = time.monotonic()
    for name in ("lane-a", "lane-b"):
        fleet.add_kiosk(name)
    target = 0
    for _ in range(BROKER_RESTARTS):
        target += RNG.randint(1, 3)  # a random moment: one to three passages later
        produced_at_least(fleet, target)()
        fleet.broker.kill()
        fleet.broker.start()
    counts_before = {k.cfg.device.id: k.app.outbox.last_seq for k in fleet.kiosks}
    fleet.drain()
    counts = fleet.check()
    assert all(counts[d] >= counts_before[d] >= BROKER_RESTARTS for d in counts)
    report("broker restarts", fleet, counts, started, faults=BROKER_RESTARTS)


def test_kiosk_killed_repeatedly(fleet: Fleet) -> None:
    started = time.monotonic()
    config = fleet.add_daemon("lane-k")
    seen = 0
    for _ in range(KIOSK_KILLS):
        daemon = fleet.daemons[-1]
        daemon.wait_for(f"passage seq={seen + 1} stored", 30)  # it made at least one more
        for _ in range(RNG.randint(0, 5)):  # then a random moment: a few events later
            daemon.next_line(10)
        daemon.kill()
        seen = snapshot(config.parent / "store").last_seq
        fleet.add_daemon("lane-k")
    fleet.drain()
    counts = fleet.check()
    assert counts["lane-k"] >= KIOSK_KILLS
    report("kiosk kills", fleet, counts, started, faults=KIOSK_KILLS)


@pytest.mark.parametrize("step", storage.STEPS)
def test_power_cut_at_every_step_of_a_write(fleet: Fleet, step: str) -> None:
    """The kiosk process ends at the n-th time a write reaches ``step``, as at a power cut."""
    config = fleet.add_daemon("lane-p", env={storage.CRASH_ENV: f"{step}:3"})
    assert fleet.daemons[-1].proc.wait(60) == 137  # cut
    restarted = Daemon(config)
    fleet.daemons.append(restarted)
    restarted.wait_for("edge: device lane-p")  # the store opens
    restarted.wait_for("passage seq=", 30)  # and takes new passages
    fleet.drain()
    fleet.check()


def test_ingest_away_for_a_while(fleet: Fleet) -> None:
    for name in ("lane-a", "lane-b"):
        fleet.add_kiosk(name)
    produced_at_least(fleet, 3)()
    fleet.stop_ingest()
    away_from = {k.cfg.device.id: k.app.outbox.last_seq for k in fleet.kiosks}
    produced_at_least(fleet, max(away_from.values()) + 6)()  # produced while it is away
    assert all(k.app.outbox.status().depth > 0 for k in fleet.kiosks)
    fleet.start_ingest()
    fleet.drain()
    fleet.check()


def test_disk_full_while_writing(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    kiosk = fleet.add_kiosk("lane-d")
    produced_at_least(fleet, 3)()
    full = threading.Event()
    full.set()

    def disk_full(step: str) -> None:
        if step in ("temp-written", "record-half") and full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")

    storage.crash = disk_full  # every write fails, whichever thread makes it
    try:
        event, _, _ = kiosk.wait(lambda e, _a, _s: isinstance(e, FaultRaised), timeout=30)
        assert event.name == "store"
        for _ in range(3):
            kiosk.app.supervise()  # each probe of the full disk fails
        assert kiosk.app.store_faulted
        full.clear()
    finally:
        storage.crash = storage._no_crash
    kiosk.app.supervise()  # the disk has room again: the fault clears
    before = kiosk.app.outbox.last_seq
    produced_at_least(fleet, before + 3)()  # it works again
    assert "No space left on device" in caplog.text
    fleet.drain()
    fleet.check()
