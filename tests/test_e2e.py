"""End to end in one process: QR image folder -> lane -> barrier -> store -> real broker."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from gpiozero.pins.mock import MockFactory

from edge import credtools
from edge.config import Config
from edge.core.lane import (
    Action,
    CredentialScanned,
    Event,
    FaultRaised,
    OfficerApproved,
    RecordPassage,
    State,
)
from edge.core.model import Credential, PassageDraft
from edge.devices.gpio import CHORD_S
from edge.scan import declaration
from edge.service.app import App
from edge.store import storage
from edge.store.outbox import Outbox

from .conftest import (
    REPO,
    Mosquitto,
    Subscriber,
    archived_messages,
    live_records,
    make_config,
    watched_factory,
    write_frame,
)
from .test_declaration import make_declaration

SCHEMA = json.loads((REPO / "docs" / "passage.schema.json").read_text())
PERSON = "Nguyen Van Minh, 012345678901, 01011990, 12 Ly Thuong Kiet, Ha Noi"
ID_CARD = "012345678901|123456789|Nguyen Van Minh|01011990|Nam|12 Ly Thuong Kiet, Ha Noi|15042021"


def assert_valid_passage(msg: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(msg)


class Kiosk:
    """An App running in this process on mock pins, with its lane events observable."""

    def __init__(self, cfg: Config, factory: MockFactory | None = None, **app: Any) -> None:
        self.cfg = cfg
        self.factory = factory or watched_factory()
        self.app = App(cfg, pin_factory=self.factory, **app)
        self.events: queue.Queue[tuple[Event, list[Action], State]] = queue.Queue()
        self.app.runner.add_listener(lambda e, a, s: self.events.put((e, a, s)))
        self.relay = self.factory.pin(cfg.gpio.barrier_pin)
        self.stopped = False

    def start(self) -> Kiosk:
        self.app.start()
        return self

    def wait(
        self, what: Callable[[Event, list[Action], State], bool], timeout: float = 10.0
    ) -> tuple[Event, list[Action], State]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"lane did not get there within {timeout} s")
            if what(*item):
                return item

    def wait_state(self, state: State, timeout: float = 10.0) -> None:
        self.wait(lambda _e, _a, s: s is state, timeout)

    def wait_recorded(self, timeout: float = 10.0) -> PassageDraft:
        _, actions, _ = self.wait(
            lambda _e, a, _s: any(isinstance(x, RecordPassage) for x in a), timeout
        )
        return next(x.draft for x in actions if isinstance(x, RecordPassage))

    def press(self, pin: int) -> None:
        self.factory.pin(pin).drive_low()
        self.factory.pin(pin).drive_high()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.app.stop()


@pytest.fixture
def kiosks() -> Iterator[Callable[[Config], Kiosk]]:
    made: list[Kiosk] = []

    def make(cfg: Config) -> Kiosk:
        k = Kiosk(cfg)
        made.append(k)
        return k

    yield make
    for k in made:
        k.stop()


def test_auto_mode_qr_to_broker(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    write_frame(frames_dir / "01.png", PERSON.encode())
    sub = subscriber_factory(broker.port, ["cp/v1/#"])
    cfg = make_config(tmp_path, mqtt={"port": broker.port}, lane={"mode": "auto"})
    kiosk = kiosks(cfg).start()

    status = sub.get(topic_suffix="/status")
    assert status.topic == "cp/v1/lane-test/status"
    assert status.json()["state"] == "online"

    msg = sub.get(topic_suffix="/passage")
    assert msg.topic == "cp/v1/lane-test/passage"
    passage = msg.json()
    assert_valid_passage(passage)
    assert passage["device"] == "lane-test"
    assert passage["site"] == "test-site"
    assert passage["seq"] == 1
    assert passage["decision"] == "denied"
    assert passage["decided_by"] == "policy"
    assert passage["reasons"] == ["unrecognised"]
    assert passage["mode"] == "auto"
    assert passage["verdict"] == "deny"
    assert passage["credentials"] == [
        {
            "kind": "unrecognised",
            "sha256": hashlib.sha256(PERSON.encode()).hexdigest(),
            "ref": None,
            "valid": False,
            "reasons": ["unrecognised"],
            "lookup": None,
        }
    ]
    assert passage["traveller"] == {}
    assert kiosk.app.publisher.wait_until(lambda p: p.published == 1, 5)
    kiosk.stop()
    assert kiosk.relay.states[-1].state is False
    assert len(kiosk.relay.states) == 1  # denied: the barrier never moved
    assert live_records(cfg.store.dir) == {}  # the broker took it: done (ack = "broker")
    assert archived_messages(cfg.store.dir) == [passage]
    rest = sub.drain_until_marker()
    assert [m.json()["state"] for m in rest if m.topic.endswith("/status")] == ["stopped"]
    assert not [m for m in rest if m.topic.endswith("/passage")]


def test_officer_mode_approval_opens_the_barrier_for_open_s(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    write_frame(frames_dir / "01.png", b"officer-please-look")
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    open_s = 1.0
    cfg = make_config(
        tmp_path, mqtt={"port": broker.port}, lane={"mode": "officer", "open_s": open_s}
    )
    kiosk = kiosks(cfg).start()
    kiosk.wait_state(State.AWAITING_DECISION)
    assert kiosk.relay.state is False
    kiosk.relay.clear_states()
    kiosk.press(cfg.gpio.approve_pin)
    assert kiosk.relay.wait_for(True)
    assert kiosk.relay.wait_for(False, timeout=open_s + 5)
    # the press counts once it is clearly not half of a two-button chord (CHORD_S); the
    # barrier stays open open_s. Whole threads run between these steps, so a loaded
    # machine may add a scheduler tick or two: allow 0.15 s, far below either interval.
    states = [(round(s.timestamp, 3), s.state) for s in kiosk.relay.states]
    assert [state for _, state in states] == [False, True, False], states
    assert states[1][0] == pytest.approx(CHORD_S, abs=0.15), states
    assert states[2][0] == pytest.approx(open_s, abs=0.15), states
    passage = sub.get().json()
    assert_valid_passage(passage)
    assert (passage["decision"], passage["decided_by"]) == ("approved", "officer")
    assert passage["reasons"] == ["unrecognised"]
    assert passage["mode"] == "officer"


def test_officer_mode_without_decision_is_denied_no_decision(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    write_frame(frames_dir / "01.png", b"nobody-decides")
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    cfg = make_config(
        tmp_path, mqtt={"port": broker.port}, lane={"mode": "officer", "decision_timeout_s": 0.5}
    )
    kiosk = kiosks(cfg).start()
    passage = sub.get().json()
    assert passage["decision"] == "denied"
    assert passage["reasons"] == ["unrecognised", "no_decision"]
    assert passage["decided_by"] == "policy"
    assert len(kiosk.relay.states) == 1


def test_broker_down_at_start_then_up_delivers_exactly_once(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    broker = Mosquitto(tmp_path / "broker", extra="persistence true\nautosave_interval 1")
    broker.start()
    # An ingest-like subscriber with a persistent session: whatever reaches the
    # broker while it is away is kept for it, so it cannot miss a passage.
    ingest = Subscriber(broker.port, ["cp/v1/+/passage"], client_id="ingest", persistent=True)
    ingest.connect().disconnect()
    broker.stop()

    write_frame(frames_dir / "01.png", b"while-the-broker-is-down")
    cfg = make_config(tmp_path, mqtt={"port": broker.port})
    kiosk = kiosks(cfg).start()
    draft = kiosk.wait_recorded()
    assert draft.decision == "denied"
    assert not kiosk.app.link.connected
    assert kiosk.app.outbox.status().stored == 1  # waiting in the outbox

    broker.start()
    try:
        assert kiosk.app.publisher.wait_until(lambda p: p.published == 1, 15)
        kiosk.stop()
        ingest.connect()
        first = ingest.get()
        assert first.json()["seq"] == 1
        assert ingest.drain_until_marker() == []  # once, not twice
    finally:
        ingest.disconnect()
        broker.stop()


def test_failed_puback_leaves_the_passage_stored(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite cp/v1/+/status\n")  # passages are not allowed
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}").start()
    try:
        write_frame(frames_dir / "01.png", b"refused-by-the-broker")
        cfg = make_config(tmp_path, mqtt={"port": broker.port})
        kiosk = kiosks(cfg).start()
        assert kiosk.app.publisher.wait_until(lambda p: p.refused >= 1, 10)
        assert kiosk.app.publisher.published == 0
        assert kiosk.app.outbox.status().stored == 1
        assert kiosk.app.outbox.status().sent == 0
    finally:
        broker.stop()


def test_non_qr_and_broken_images_are_skipped_and_nothing_is_lost(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_frame(frames_dir / "01-empty.png", None)
    (frames_dir / "02-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_frame(frames_dir / "03-code.png", b"after-the-bad-ones")
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    cfg = make_config(tmp_path, mqtt={"port": broker.port}, camera={"hold_s": 0.3, "gap_s": 0.2})
    kiosk = kiosks(cfg).start()
    passage = sub.get().json()
    assert passage["seq"] == 1
    assert passage["credentials"][0]["sha256"] == hashlib.sha256(b"after-the-bad-ones").hexdigest()
    assert "skipping 02-broken.png: not a readable image" in caplog.text
    assert kiosk.app.capture.finished.wait(10)
    assert kiosk.app.scanner.scans == 1


def test_missing_image_folder_goes_failsafe_and_still_delivers_stored_passages(
    tmp_path: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    cfg = make_config(
        tmp_path, mqtt={"port": broker.port}, camera={"source": f"images:{tmp_path / 'gone'}"}
    )
    earlier = Outbox(cfg.store.dir, cfg.device.id, cfg.device.site)
    stored = earlier.append(
        PassageDraft(datetime.now(UTC), "approved", "officer", ("no_credential",), (), "officer")
    )
    earlier.close()
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    kiosk = kiosks(cfg)
    kiosk.start()
    event, _, state = kiosk.wait(lambda e, _a, _s: isinstance(e, FaultRaised))
    assert event == FaultRaised("camera", f"image folder not found: {tmp_path / 'gone'}")
    assert state is State.FAILSAFE
    assert kiosk.factory.pin(cfg.gpio.red_led_pin).wait_for(True)
    assert sub.get().json()["pid"] == stored.pid
    # the officer cannot open the barrier while the lane is in failsafe
    kiosk.press(cfg.gpio.approve_pin)
    kiosk.wait(lambda e, _a, _s: isinstance(e, OfficerApproved))
    assert kiosk.relay.state is False


def test_store_failure_keeps_the_barrier_closed_until_the_store_recovers(
    tmp_path: Path, kiosks: Callable[[Config], Kiosk], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(tmp_path, camera={"source": f"images:{tmp_path / 'empty'}"})
    (tmp_path / "empty").mkdir()
    kiosk = kiosks(cfg).start()

    def disk_full(step: str) -> None:
        if step in ("temp-written", "record-half"):  # any write, replacing or appending
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage, "crash", disk_full)
    kiosk.press(cfg.gpio.approve_pin)  # the officer lets someone through without a code
    event, _, state = kiosk.wait(lambda e, _a, _s: isinstance(e, FaultRaised))
    assert event.name == "store"
    assert state is State.FAILSAFE
    assert [s.state for s in kiosk.relay.states] == [False]  # never opened
    monkeypatch.setattr(storage, "crash", storage._no_crash)
    kiosk.app.supervise()  # the periodic check finds the store writable again
    kiosk.wait_state(State.READY)
    kiosk.press(cfg.gpio.approve_pin)
    assert kiosk.wait_recorded().reasons == ("no_credential",)
    assert kiosk.relay.wait_for(True)
    assert kiosk.app.outbox.status().last_seq == 1


def test_internal_lane_error_is_failsafe(tmp_path: Path, kiosks: Callable[[Config], Kiosk]) -> None:
    cfg = make_config(tmp_path, lane={"mode": "officer"}, camera={"source": f"images:{tmp_path}"})
    kiosk = kiosks(cfg)

    class BrokenPolicy:
        def evaluate(self, credential: object) -> object:
            raise RuntimeError("bug")

    kiosk.app.runner.lane.policy = BrokenPolicy()  # type: ignore[assignment]
    kiosk.start()
    kiosk.app.runner.post(CredentialScanned(Credential.from_raw("unrecognised", b"x")))
    kiosk.wait_state(State.FAILSAFE)
    assert kiosk.relay.state is False
    assert kiosk.factory.pin(cfg.gpio.red_led_pin).wait_for(True)


def test_no_personal_data_in_logs_store_or_messages(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A well-formed ID card: the passage keeps only the configured field; logs keep none."""
    caplog.set_level(logging.DEBUG)
    write_frame(frames_dir / "01.png", ID_CARD.encode())
    write_frame(frames_dir / "02.png", PERSON.encode())
    sub = subscriber_factory(broker.port, ["cp/v1/#"])
    cfg = make_config(
        tmp_path,
        mqtt={"port": broker.port},
        lane={"mode": "officer"},
        passage={"fields": ["id_number"]},
        camera={"hold_s": 0.3, "gap_s": 0.3},
    )
    kiosk = kiosks(cfg).start()
    kiosk.wait_state(State.AWAITING_DECISION)  # an ID card alone: the officer must look
    kiosk.press(cfg.gpio.deny_pin)
    first = sub.get(topic_suffix="/passage").json()
    assert first["credentials"][0]["kind"] == "id_card"
    assert first["credentials"][0]["valid"] is True
    assert first["traveller"] == {"id_number": "012345678901"}
    kiosk.wait_state(State.AWAITING_DECISION)  # the free-text code, queued or next
    kiosk.press(cfg.gpio.deny_pin)
    second = sub.get(topic_suffix="/passage").json()
    assert second["traveller"] == {}
    kiosk.stop()
    logs = caplog.text
    stored = "".join(p.read_text() for p in cfg.store.dir.rglob("*.json*"))
    published = "".join(m.payload.decode() for m in sub.drain_until_marker())
    published += json.dumps([first, second])
    for secret in ("012345678901", "Nguyen", "Minh", "Ly Thuong Kiet", "01011990", "123456789"):
        assert secret not in logs
    for secret in ("Nguyen", "Minh", "Ly Thuong Kiet", "01011990", "123456789|"):
        assert secret not in stored
        assert secret not in published


def test_broker_going_away_mid_run_delays_but_loses_nothing_and_keeps_order(
    tmp_path: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    broker = Mosquitto(tmp_path / "broker", extra="persistence true").start()
    ingest = Subscriber(broker.port, ["cp/v1/+/passage"], client_id="ingest", persistent=True)
    ingest.connect().disconnect()
    (tmp_path / "frames").mkdir()
    cfg = make_config(tmp_path, mqtt={"port": broker.port}, lane={"open_s": 0.1})
    kiosk = kiosks(cfg).start()
    try:
        assert kiosk.app.publisher.wait_until(lambda p: bool(p.link and p.link.connected), 10)
        broker.stop()
        for _ in range(3):  # three travellers waved through while the broker is away
            kiosk.press(cfg.gpio.approve_pin)
            kiosk.wait_recorded()
            kiosk.wait_state(State.READY)
        assert kiosk.app.outbox.status().stored == 3
        broker.start()
        assert kiosk.app.publisher.wait_until(lambda p: p.published == 3, 20)
        kiosk.stop()
        ingest.connect()
        seqs = [ingest.get().json()["seq"] for _ in range(3)]
        assert seqs == [1, 2, 3]
        assert ingest.drain_until_marker() == []
    finally:
        ingest.disconnect()
        broker.stop()


def test_auto_mode_approves_a_valid_declaration_and_denies_an_expired_one(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    made = credtools.keys_new("VN-HN", "ES256", tmp_path / "keys")
    key, kid = credtools.load_private_key(Path(made["private_key"]))
    now = datetime.now(UTC)
    valid = make_declaration(now=now)
    expired = make_declaration(now - timedelta(hours=30), declaration_id="OLD0-0000-0001")
    expired = replace(expired, expires_at=now - timedelta(hours=2))
    write_frame(frames_dir / "01-valid.png", declaration.issue(valid, key, kid).encode())
    write_frame(frames_dir / "02-expired.png", declaration.issue(expired, key, kid).encode())
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    open_s = 1.0
    cfg = make_config(
        tmp_path,
        mqtt={"port": broker.port},
        lane={"mode": "auto", "open_s": open_s},
        trust={"files": [made["trust_list"]]},
        camera={"hold_s": 0.5, "gap_s": 0.5},
    )
    kiosk = kiosks(cfg).start()
    approved = sub.get().json()
    assert_valid_passage(approved)
    assert (approved["decision"], approved["decided_by"], approved["verdict"]) == (
        "approved",
        "policy",
        "approve",
    )
    assert approved["credentials"][0]["kind"] == "declaration"
    assert approved["credentials"][0]["valid"] is True
    assert approved["traveller"] == {
        "declaration_id": "ABCD-EFGH-JKLM",
        "id_number": "079190012345",
        "name": valid.name,
        "origin": {"province": "79", "district": "760", "text": valid.origin.text},
        "destination": {"province": "01", "district": "001", "text": valid.destination.text},
        "plate": "51H-123.45",
    }
    assert kiosk.relay.wait_for(True)
    assert kiosk.relay.wait_for(False, timeout=open_s + 5)
    denied = sub.get().json()
    assert_valid_passage(denied)
    assert (denied["decision"], denied["reasons"], denied["verdict"]) == (
        "denied",
        ["expired"],
        "deny",
    )
    assert denied["credentials"][0]["reasons"] == ["expired"]
    assert denied["traveller"]["declaration_id"] == "OLD0-0000-0001"  # signed, so still recorded
    kiosk.stop()
    assert [s.state for s in kiosk.relay.states] == [False, True, False]  # opened once only


def test_both_buttons_held_toggle_surge_with_an_alert_and_the_loop_closes_early(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    cfg = make_config(
        tmp_path,
        lane={"mode": "officer", "open_s": 30},
        gpio={"surge_hold_s": 0.3, "loop_pin": 24},
    )
    kiosk = kiosks(cfg).start()
    approve, deny = kiosk.factory.pin(cfg.gpio.approve_pin), kiosk.factory.pin(cfg.gpio.deny_pin)
    approve.drive_low()
    deny.drive_low()
    kiosk.wait_state(State.SURGE)
    approve.drive_high()
    deny.drive_high()
    assert kiosk.app.runner.lane.mode == "surge"
    assert kiosk.relay.wait_for(True)
    assert "surge-mode" in kiosk.app.alerts.names()
    (surge,) = [a for a in kiosk.app.alerts.open() if a.name == "surge-mode"]
    assert "both buttons held" in surge.detail
    approve.drive_low()
    deny.drive_low()
    kiosk.wait_state(State.READY)  # held again: back to the configured mode
    approve.drive_high()
    deny.drive_high()
    assert kiosk.relay.wait_for(False)
    assert "surge-mode" not in kiosk.app.alerts.names()
    # an officer's approval opens for open_s = 30 s; the vehicle loop closes it as soon
    # as the vehicle has passed
    kiosk.press(cfg.gpio.approve_pin)
    kiosk.wait_state(State.OPEN)
    loop = kiosk.factory.pin(24)
    loop.drive_low()
    loop.drive_high()
    kiosk.wait_state(State.READY, timeout=5)
    assert kiosk.relay.wait_for(False)
