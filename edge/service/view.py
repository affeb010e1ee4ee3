"""What the fleet side sees of a running kiosk: meta, status, telemetry, and the
:class:`~edge.fleet.handlers.Kiosk` operations, read from the shell's parts."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.core.lane import (
    Action,
    Event,
    FaultCleared,
    FaultRaised,
    OperatorOpen,
    RecordPassage,
    SetMode,
    State,
)
from edge.core.model import iso_utc
from edge.errors import TrustError
from edge.fleet.agent import cpu_temperature
from edge.mqtt import topics
from edge.mqtt.device import status_payload
from edge.service.alerts import BARRIER_POSITION, FAULT_ALERTS, SURGE_MODE
from edge.service.runner import Outcome

if TYPE_CHECKING:
    from edge.service.app import App

log = logging.getLogger("edge.service.app")


@dataclass(frozen=True)
class FrameCounts:
    """The frame counters at one moment (``t``: monotonic seconds): captured by the
    camera thread, decoded by the scanner, dropped (replaced in the one-frame slot
    before the scanner took them: the decoder is slower than the camera)."""

    t: float
    captured: int
    decoded: int
    dropped: int

    def rates(self, before: FrameCounts) -> tuple[float, float]:
        """(camera fps, decoded fps) between ``before`` and this moment."""
        span = self.t - before.t
        if span <= 0:
            return 0.0, 0.0
        return (self.captured - before.captured) / span, (self.decoded - before.decoded) / span


class KioskView:
    """The fleet's window on one :class:`~edge.service.app.App`."""

    def __init__(self, app: App, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.monotonic = monotonic
        self._frames_seen = FrameCounts(monotonic(), 0, 0, 0)

    def lane_call(self, event: SetMode | OperatorOpen, timeout: float) -> Outcome:
        return self.app.runner.call(event, timeout)

    def uptime_s(self) -> float:
        return time.monotonic() - self.app.started

    def log_lines(self, count: int, level: int) -> list[str]:
        return self.app.logs.lines(count, level)

    def rebirth(self) -> None:
        self.app.link.link.publish(
            topics.status(self.app.cfg.device.id),
            status_payload("online", self.app.link.session),
            retain=True,
        )
        self.app.agent.rebirth()

    def reload_trust(self) -> str:
        self.app.trust.paths = self.app.remote.trust_files()
        return self.app.trust.reload().describe()

    def pushed_trust(self) -> None:
        with contextlib.suppress(TrustError):  # logged; the last good store stays
            self.reload_trust()

    def trust_age(self) -> datetime | None:
        """When the newest trust source was made: a push's issue time, or a file's mtime."""
        times = [self.app.remote.trust_issued] if self.app.remote.trust_issued else []
        for path in self.app.cfg.trust.files:
            with contextlib.suppress(OSError):
                times.append(datetime.fromtimestamp(os.stat(path).st_mtime, UTC))
        return max(times, default=None)

    def meta(self) -> Mapping[str, Any]:
        cfg = self.app.cfg
        return {
            "version": __version__,
            "device": cfg.device.id,
            "site": cfg.device.site,
            "camera": self.app.source.description,
            "decoder": self.app.decoder.name,
            "mode": cfg.lane.mode,
            "ack": cfg.mqtt.ack,
            "config_version": self.app.remote.config_version,
            "policy_version": self.app.remote.policy_version,
            "trust_version": self.app.remote.trust_version,
            "session": self.app.link.session,
        }

    def status_data(self) -> Mapping[str, Any]:
        lane = self.app.runner.lane
        status = self.app.outbox.status()
        return {
            "state": lane.state.value,
            "mode": lane.mode,
            "faults": sorted(lane.faults),
            "barrier_open": self.app.panel.barrier_open,
            "connected": self.app.link.connected,
            "central_online": self.app.publisher.central_online,
            "outbox": {
                "depth": status.depth,
                "stored": status.stored,
                "sent": status.sent,
                "oldest": status.oldest,
                "oldest_age_s": _age_s(status.oldest),
                "last_seq": status.last_seq,
                "last_ack": status.last_ack,
            },
            "alerts": self.app.alerts.names(),
            "trust": self.app.trust.store.describe(),
            "config_version": self.app.remote.config_version,
            "session": self.app.link.session,
            "uptime_s": round(self.uptime_s(), 1),
            "version": __version__,
        }

    def frame_counts(self) -> FrameCounts:
        return FrameCounts(
            self.monotonic(),
            self.app.capture.frames,
            self.app.scanner.frames,
            self.app.slot.dropped,
        )

    def telemetry(self) -> Mapping[str, Any]:
        status = self.app.outbox.status()
        frames, before = self.frame_counts(), self._frames_seen
        self._frames_seen = frames
        camera_fps, decoded_fps = frames.rates(before)
        decode_ms = self.app.scanner.median_decode_ms()
        try:
            free_mb: float | None = round(shutil.disk_usage(self.app.cfg.store.dir).free / 1e6, 1)
        except OSError:
            free_mb = None
        return {
            "ts": iso_utc(datetime.now(UTC)),
            "session": self.app.link.session,
            "state": self.app.runner.lane.state.value,
            "mode": self.app.runner.lane.mode,
            "outbox_depth": status.depth,
            "oldest_unacked_s": _age_s(status.oldest),
            # since the last telemetry: frames from the camera, frames decoded; "fps" is
            # camera_fps under its first name, for consumers that read it
            "camera_fps": round(camera_fps, 1),
            "decoded_fps": round(decoded_fps, 1),
            "fps": round(camera_fps, 1),
            "decode_ms": None if decode_ms is None else round(decode_ms, 2),
            # since start: frames replaced before the scanner took them
            "frames_dropped": frames.dropped,
            "scans": self.app.scanner.scans,
            "approved": self.app.counts["approved"],
            "denied": self.app.counts["denied"],
            "disk_free_mb": free_mb,
            "cpu_temp_c": cpu_temperature(),
            "uptime_s": round(self.uptime_s(), 1),
            "alerts": len(self.app.alerts.names()),
            # the online lookup ([lookup]): questions asked, answers unavailable in time
            "lookups": self.app.lookups.asked,
            "lookups_unavailable": self.app.lookups.unavailable,
        }

    def screen_status(self) -> dict[str, Any]:
        """What the officer's screen shows beside the lane: connectivity, outbox, alerts."""
        return {
            "connected": self.app.link.connected,
            "central_online": self.app.publisher.central_online,
            "outbox_depth": self.app.publisher.backlog,
            "alerts": self.app.alerts.names(),
        }

    def lane_event(self, event: Event, actions: list[Action], _state: State) -> None:
        """On the lane thread: counts for telemetry, faults as alerts."""
        for action in actions:
            if isinstance(action, RecordPassage):
                self.app.counts[action.draft.decision] += 1
        surge = self.app.runner.lane.mode == "surge"
        if surge != (SURGE_MODE in self.app.alerts.names()):
            self._surge_alert(surge, event)
        if isinstance(event, FaultRaised) and event.name in FAULT_ALERTS:
            self.app.alerts.raise_(FAULT_ALERTS[event.name], event.reason, "critical")
        elif isinstance(event, FaultCleared) and event.name in FAULT_ALERTS:
            self.app.alerts.clear(FAULT_ALERTS[event.name])

    def _surge_alert(self, surge: bool, event: Event) -> None:
        """Surge mode (the barrier held open) is always visible to operators."""
        by = event.by if isinstance(event, SetMode) else "configuration"
        if surge:
            self.app.alerts.raise_(SURGE_MODE, f"the barrier is held open: surge mode, set by {by}")
        else:
            self.app.alerts.clear(SURGE_MODE)

    def barrier_position(self, ok: bool, detail: str) -> None:
        """From the position switch: the barrier did (not) reach the commanded position."""
        if ok:
            self.app.alerts.clear(BARRIER_POSITION)
        else:
            log.error("barrier: %s", detail)
            self.app.alerts.raise_(BARRIER_POSITION, detail, "critical")


def _age_s(ts: str | None) -> float | None:
    if ts is None:
        return None
    try:
        return round((datetime.now(UTC) - datetime.fromisoformat(ts)).total_seconds(), 1)
    except ValueError:
        return None
