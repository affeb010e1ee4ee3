"""Failures in the parts around the lane: drivers, disks, brokers, threads, timing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from gpiozero.exc import GPIOZeroError
from gpiozero.pins.mock import MockFactory

from edge import config as config_mod
from edge.config import Config
from edge.core.lane import CredentialScanned, OfficerApproved, RecordPassage, State
from edge.core.model import Credential
from edge.errors import ConfigError, StoreError
from edge.service.app import App
from edge.service.runner import LaneRunner
from edge.store import storage
from edge.store.outbox import Outbox

from .conftest import Mosquitto, Subscriber, WatchedPin, live_records, make_config
from .test_e2e import Kiosk
from .test_store import draft


class FlakyPin(WatchedPin):
    """A mock pin whose driver fails on demand, as a real relay driver can."""

    failing = False

    def _set_state(self, value: bool) -> None:
        if FlakyPin.failing:
            raise GPIOZeroError("relay driver error")
        super()._set_state(value)


@pytest.fixture
def quiet_frames(tmp_path: Path) -> str:
    (tmp_path / "frames").mkdir(exist_ok=True)
    return f"images:{tmp_path / 'frames'}"


def test_officer_press_at_the_last_moment_beats_the_timeout(
    tmp_path: Path, quiet_frames: str
) -> None:
    cfg = make_config(tmp_path, lane={"mode": "officer"}, camera={"source": quiet_frames})
    app = App(cfg, pin_factory=MockFactory())
    now = [1000.0]
    runner = LaneRunner(app.runner.lane, effects=app, monotonic=lambda: now[0])
    try:
        runner.post(CredentialScanned(Credential.from_raw("unrecognised", b"x")))
        runner.step(0)
        assert runner.state is State.AWAITING_DECISION
        now[0] += cfg.lane.decision_timeout_s + 1  # the decision timer is due...
        runner.post(OfficerApproved())  # ...but the officer's press was already queued
        runner.step(0)
        assert app.outbox.status().last_seq == 1
        record = live_records(cfg.store.dir).get(1)
        assert record is not None
        assert (record["msg"]["decision"], record["msg"]["decided_by"]) == ("approved", "officer")
        assert runner.state is State.OPEN
        assert app.panel.barrier_open
    finally:
        app.panel.close()
        app.outbox.stop()


def test_a_relay_driver_error_is_a_barrier_fault_that_clears_when_the_relay_works(
    tmp_path: Path, quiet_frames: str
) -> None:
    cfg = make_config(tmp_path, lane={"mode": "officer"}, camera={"source": quiet_frames})
    kiosk = Kiosk(cfg, MockFactory(pin_class=FlakyPin)).start()
    try:
        FlakyPin.failing = True
        kiosk.press(cfg.gpio.approve_pin)
        _, actions, state = kiosk.wait(lambda e, _a, _s: isinstance(e, OfficerApproved))
        assert state is State.FAILSAFE
        assert any(
            isinstance(a, RecordPassage) for a in actions
        )  # recorded before the relay failed
        assert kiosk.app.runner.is_alive()
        FlakyPin.failing = False
        assert kiosk.app.supervise()  # closes the barrier again, clears the fault
        kiosk.wait_state(State.READY)
        assert kiosk.relay.state is False
    finally:
        FlakyPin.failing = False
        kiosk.stop()


def test_acknowledged_passages_are_not_republished_while_the_store_cannot_record_them(
    tmp_path: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    quiet_frames: str,
) -> None:
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    cfg = make_config(tmp_path, mqtt={"port": broker.port}, camera={"source": quiet_frames})
    kiosk = Kiosk(cfg)
    outbox = kiosk.app.outbox.outbox  # the publisher's bookkeeping runs on the store thread
    real_acknowledge = outbox.acknowledge
    failures = [2]

    def disk_full(pids: Any, now: Any, rejected: Any = None) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise StoreError("cannot write store: No space left on device")
        return real_acknowledge(pids, now, rejected)

    outbox.acknowledge = disk_full  # type: ignore[method-assign]
    kiosk.start()
    try:
        kiosk.press(cfg.gpio.approve_pin)
        assert kiosk.app.publisher.wait_until(
            lambda p: p.published == 1 and failures == [0] and not kiosk.app.outbox.entries(), 20
        )
        kiosk.stop()
        seqs = [sub.get().json()["seq"]] + [m.json()["seq"] for m in sub.drain_until_marker()]
        assert seqs == [1]  # once, although the store failed twice to record it
    finally:
        kiosk.stop()


def test_a_dead_thread_makes_the_supervisor_restart_the_kiosk(
    tmp_path: Path, quiet_frames: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path, camera={"source": quiet_frames})
    kiosk = Kiosk(cfg).start()
    try:
        assert kiosk.app.supervise()
        kiosk.app.publisher.stop()
        kiosk.app.publisher.join(5)
        assert not kiosk.app.supervise()
        assert "publisher stopped unexpectedly" in caplog.text
    finally:
        kiosk.stop()


def test_an_unreachable_broker_is_logged_not_hidden(
    tmp_path: Path, quiet_frames: str, caplog: pytest.LogCaptureFixture
) -> None:
    said = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "cannot reach" in record.getMessage():
                said.set()

    handler = Watch()
    logging.getLogger("edge.mqtt.link").addHandler(handler)
    cfg: Config = make_config(tmp_path, camera={"source": quiet_frames})
    kiosk = Kiosk(cfg).start()
    try:
        assert said.wait(10)
    finally:
        logging.getLogger("edge.mqtt.link").removeHandler(handler)
        kiosk.stop()


@pytest.mark.parametrize("value", ["inf", "nan", "1e10", "-1"])
def test_durations_must_be_finite_and_bounded(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[device]\nid = "x"\n[lane]\nopen_s = {value}\n')
    with pytest.raises(ConfigError, match=r"lane\.open_s: must be greater than 0 and at most"):
        config_mod.load(path)


def test_a_rename_that_happened_keeps_its_seq_even_if_the_sync_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Outbox(tmp_path, "lane-1", "")

    def broken_sync(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage, "fsync_dir", broken_sync)
    with pytest.raises(StoreError, match="written but not synced"):
        box.append(draft())
    monkeypatch.undo()
    assert list(live_records(tmp_path)) == [1]
    assert box.append(draft()).seq == 2  # never the seq of a passage already on disk


def test_passages_of_a_former_device_id_are_kept_not_sent(
    tmp_path: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    quiet_frames: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The kiosk's id changed with passages waiting: the ingest would refuse them for
    ever (a device speaks only for itself), so they stay in the store, with an alert."""
    old = Outbox(tmp_path / "store", "lane-old", "test-site")
    old_pids = {old.append(draft()).pid for _ in range(2)}
    old.close()
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    cfg = make_config(tmp_path, mqtt={"port": broker.port}, camera={"source": quiet_frames})
    kiosk = Kiosk(cfg).start()
    try:
        assert "store_foreign: 2 passage(s) stored as lane-old" in caplog.text
        kiosk.press(cfg.gpio.approve_pin)  # a new passage, as lane-test
        assert kiosk.app.publisher.wait_until(lambda p: p.published == 1, 20)
        kiosk.stop()
        sent = [sub.get().json()] + [m.json() for m in sub.drain_until_marker()]
        assert [(m["device"], m["seq"]) for m in sent] == [("lane-test", 3)]
        kept = {r["msg"]["pid"] for r in live_records(tmp_path / "store").values()}
        assert kept == old_pids  # still there, for `checkpoint-edge outbox export`
    finally:
        kiosk.stop()
