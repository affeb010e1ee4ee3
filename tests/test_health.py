"""Health against a fake of what it reads (:class:`~edge.service.health.Vitals`), with
no App; and the parts that read a running kiosk import without the shell that wires
them (no import loop back to ``edge.service.app``)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from edge.core.lane import Event, FaultCleared, FaultRaised, Lane, State
from edge.core.policy import BasicPolicy
from edge.service.health import Health, Vitals

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


class FakeKiosk:
    """The kiosk as Health sees it: each part's condition set by the test; what Health
    posts goes straight to a real lane, as the lane thread would take it."""

    def __init__(self) -> None:
        self.lane = Lane(
            BasicPolicy(), mode="officer", decision_timeout_s=20, open_s=5, failsafe_retry_s=10
        )
        self.lane.start(NOW)
        self.lane_alive = self.network_alive = self.connected = True
        self.store_faulted = False
        self.depth = 0
        self.silent_s = 0.0  # how long the open camera has delivered nothing
        self.posted: list[Event] = []
        self.fed = 0

    def post(self, event: Event) -> None:
        self.posted.append(event)
        self.lane.handle(event, NOW)

    def watchdog(self) -> bool:
        self.fed += 1
        return True

    def vitals(self, stall_s: float = 5.0) -> Vitals:
        return Vitals(
            lane=self.lane,
            lane_alive=lambda: self.lane_alive,
            network_alive=lambda: self.network_alive,
            connected=lambda: self.connected,
            store_faulted=lambda: self.store_faulted,
            outbox_depth=lambda: self.depth,
            camera_stalled=lambda stall_s: self.silent_s > stall_s,
            stall_s=stall_s,
            post=self.post,
            watchdog=self.watchdog,
        )


@pytest.fixture
def kiosk() -> FakeKiosk:
    return FakeKiosk()


def test_healthy_feeds_the_watchdog_and_describes_the_lane(kiosk: FakeKiosk) -> None:
    health = Health(kiosk.vitals())
    kiosk.depth = 3
    assert health.problems() == []
    health.feed_watchdog()
    assert kiosk.fed == 1
    assert health.describe() == (
        "lane ready (officer mode); 3 passage(s) awaiting the ingest; broker connected"
    )


@pytest.mark.parametrize(
    ("part", "problem"),
    [
        ("lane_alive", "lane thread dead"),
        ("network_alive", "MQTT network thread dead"),
    ],
)
def test_a_dead_thread_starves_the_watchdog(kiosk: FakeKiosk, part: str, problem: str) -> None:
    health = Health(kiosk.vitals())
    setattr(kiosk, part, False)
    assert health.problems() == [problem]
    health.feed_watchdog()
    health.feed_watchdog()  # (logged once)
    assert kiosk.fed == 0
    setattr(kiosk, part, True)
    health.feed_watchdog()
    assert kiosk.fed == 1


def test_every_problem_at_once(kiosk: FakeKiosk) -> None:
    health = Health(kiosk.vitals(stall_s=0.5))
    kiosk.lane_alive = kiosk.network_alive = False
    kiosk.store_faulted = True
    kiosk.silent_s = 1.0
    health.check_camera()
    assert health.problems() == [
        "lane thread dead",
        "MQTT network thread dead",
        "store not writable",
        "no camera frame for over 0.5 s",
    ]


def test_a_silent_camera_is_a_lane_fault_posted_once_and_cleared_once(kiosk: FakeKiosk) -> None:
    health = Health(kiosk.vitals(stall_s=2.0))
    health.check_camera()
    assert kiosk.posted == []
    kiosk.silent_s = 3.0
    health.check_camera()
    health.check_camera()  # still silent: no second fault
    assert kiosk.posted == [FaultRaised("camera", "no frame for 2 s")]
    assert kiosk.lane.state is State.FAILSAFE
    kiosk.connected = False
    assert health.describe() == (
        "lane failsafe (officer mode), faults: camera; "
        "0 passage(s) awaiting the ingest; broker unreachable"
    )
    kiosk.silent_s = 0.0
    health.check_camera()
    health.check_camera()
    assert kiosk.posted[1:] == [FaultCleared("camera")]
    assert health.problems() == []


def test_health_and_the_view_import_without_the_shell() -> None:
    """``app`` wires them; they know only their interfaces (no import loop)."""
    code = (
        "import sys, edge.service.health, edge.service.view\n"
        "sys.exit('edge.service.app' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
