"""The kiosk's health: what the systemd watchdog is fed on, and the status line.

Healthy means: the lane thread is alive, the MQTT network thread is alive, the
store is writable, and an open camera delivers frames. A camera that is open
but silent for ``[camera] stall_s`` (a hung driver) is also a lane fault: the
lane goes to failsafe with the camera-down alert until frames come again.
While anything is wrong the watchdog is not fed, so systemd restarts the
service after ``WatchdogSec``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge.core.lane import Event, FaultCleared, FaultRaised, Lane

log = logging.getLogger("edge.service.app")


@dataclass(frozen=True)
class Vitals:
    """What :class:`Health` reads of the running kiosk and the two things it does to it
    (post to the lane, feed the watchdog), built once by the shell
    (:class:`~edge.service.app.App`). Each callable is asked at every check."""

    lane: Lane  # read only (state, mode, faults): the lane thread alone changes it
    lane_alive: Callable[[], bool]  # the lane thread
    network_alive: Callable[[], bool]  # the MQTT network thread
    connected: Callable[[], bool]  # to the broker
    store_faulted: Callable[[], bool]  # a passage write failed, no probe has succeeded since
    outbox_depth: Callable[[], int]  # passages awaiting the ingest
    camera_stalled: Callable[[float], bool]  # an open camera silent for that many seconds
    stall_s: float  # [camera] stall_s
    post: Callable[[Event], None]  # to the lane thread
    watchdog: Callable[[], bool]  # WATCHDOG=1 to systemd (False: not sent)


class Health:
    """Health checks of one running kiosk (called from its main thread)."""

    def __init__(self, vitals: Vitals) -> None:
        self.vitals = vitals
        self.camera_stalled = False
        self._unhealthy: list[str] = []

    def describe(self) -> str:
        """One line for ``systemctl status``: lane, mode, outbox, broker."""
        lane = self.vitals.lane
        link = "broker connected" if self.vitals.connected() else "broker unreachable"
        faults = f", faults: {', '.join(sorted(lane.faults))}" if lane.faults else ""
        return (
            f"lane {lane.state.value} ({lane.mode} mode){faults}; "
            f"{self.vitals.outbox_depth()} passage(s) awaiting the ingest; {link}"
        )

    def problems(self) -> list[str]:
        """What is wrong now, for the watchdog (empty: healthy)."""
        problems = []
        if not self.vitals.lane_alive():
            problems.append("lane thread dead")
        if not self.vitals.network_alive():
            problems.append("MQTT network thread dead")
        if self.vitals.store_faulted():
            problems.append("store not writable")
        if self.camera_stalled:
            problems.append(f"no camera frame for over {self.vitals.stall_s:g} s")
        return problems

    def feed_watchdog(self) -> None:
        problems = self.problems()
        if problems:
            if problems != self._unhealthy:
                log.error("edge: unhealthy, watchdog not fed: %s", "; ".join(problems))
            self._unhealthy = problems
            return
        self._unhealthy = []
        self.vitals.watchdog()

    def check_camera(self) -> None:
        """A camera that is open but delivers nothing (a hung driver) is a fault."""
        stall_s = self.vitals.stall_s
        stalled = self.vitals.camera_stalled(stall_s)
        if stalled and not self.camera_stalled:
            log.error("camera: no frame for over %g s", stall_s)
            self.vitals.post(FaultRaised("camera", f"no frame for {stall_s:g} s"))
        elif self.camera_stalled and not stalled:
            log.info("camera: frames again")
            self.vitals.post(FaultCleared("camera"))
        self.camera_stalled = stalled
