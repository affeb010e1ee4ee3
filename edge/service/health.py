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
from typing import TYPE_CHECKING

from edge.core.lane import FaultCleared, FaultRaised

if TYPE_CHECKING:
    from edge.service.app import App

log = logging.getLogger("edge.service.app")


class Health:
    """Health checks of one :class:`~edge.service.app.App` (called from its main thread)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.camera_stalled = False
        self._unhealthy: list[str] = []

    def describe(self) -> str:
        """One line for ``systemctl status``: lane, mode, outbox, broker."""
        lane = self.app.runner.lane
        status = self.app.outbox.status()
        link = "broker connected" if self.app.link.connected else "broker unreachable"
        faults = f", faults: {', '.join(sorted(lane.faults))}" if lane.faults else ""
        return (
            f"lane {lane.state.value} ({lane.mode} mode){faults}; "
            f"{status.depth} passage(s) awaiting the ingest; {link}"
        )

    def problems(self) -> list[str]:
        """What is wrong now, for the watchdog (empty: healthy)."""
        problems = []
        if not self.app.runner.is_alive():
            problems.append("lane thread dead")
        if not self.app.link.link.alive:
            problems.append("MQTT network thread dead")
        if self.app._store_faulted.is_set():
            problems.append("store not writable")
        if self.camera_stalled:
            problems.append(f"no camera frame for over {self.app.cfg.camera.stall_s:g} s")
        return problems

    def feed_watchdog(self) -> None:
        problems = self.problems()
        if problems:
            if problems != self._unhealthy:
                log.error("edge: unhealthy, watchdog not fed: %s", "; ".join(problems))
            self._unhealthy = problems
            return
        self._unhealthy = []
        self.app.notifier.watchdog()

    def check_camera(self) -> None:
        """A camera that is open but delivers nothing (a hung driver) is a fault."""
        stalled = self.app.capture.stalled(self.app.cfg.camera.stall_s)
        if stalled and not self.camera_stalled:
            log.error("camera: no frame for over %g s", self.app.cfg.camera.stall_s)
            self.app.runner.post(
                FaultRaised("camera", f"no frame for {self.app.cfg.camera.stall_s:g} s")
            )
        elif self.camera_stalled and not stalled:
            log.info("camera: frames again")
            self.app.runner.post(FaultCleared("camera"))
        self.camera_stalled = stalled
