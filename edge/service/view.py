"""What the daemon's shell shows of a running kiosk: meta, status and telemetry for
the fleet, the :class:`~edge.fleet.handlers.Kiosk` operations, the status beside the
lane on the officer's screen, and the alerts raised on behalf of the lane, the
barrier, the publisher (passages refused) and the screen (wrong PINs).

It reads the kiosk through :class:`KioskParts`, built once by the shell
(:class:`~edge.service.app.App`), never the shell itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge import __version__
from edge.config import Config
from edge.core.lane import (
    Action,
    Event,
    FaultCleared,
    FaultRaised,
    Lane,
    OperatorOpen,
    RecordPassage,
    SetMode,
    State,
)
from edge.core.model import iso_utc
from edge.core.times import parse_iso
from edge.errors import TrustError
from edge.fleet.agent import cpu_temperature
from edge.fleet.remote import RemoteConfig
from edge.mqtt import topics
from edge.mqtt.device import status_payload
from edge.scan.trust import TrustHolder
from edge.service.alerts import (
    BARRIER_POSITION,
    FAULT_ALERTS,
    PASSAGE_REJECTED,
    PIN_FAILURES,
    SURGE_MODE,
    Alerts,
)
from edge.service.runner import Outcome
from edge.store.outbox import OutboxStatus

log = logging.getLogger("edge.service.app")


@dataclass(frozen=True)
class KioskParts:
    """What :class:`KioskView` reads of the running kiosk and acts on (alerts, the lane
    through its thread, the trust store, the fleet agent). Values and objects are the
    kiosk's for its life; each callable is asked when needed, on the caller's thread."""

    cfg: Config
    started: float  # time.monotonic() when the kiosk was built, for the uptime
    camera: str  # the frame source's description
    decoder: str  # the decoder's name
    lane: Lane  # read only (state, mode, faults): the lane thread alone changes it
    lane_call: Callable[[SetMode | OperatorOpen, float], Outcome]  # post, await the outcome
    alerts: Alerts
    remote: RemoteConfig  # the config layers' versions, pushed trust
    trust: TrustHolder
    outbox: Callable[[], OutboxStatus]
    barrier_open: Callable[[], bool]
    connected: Callable[[], bool]  # to the broker
    session: Callable[[], int]  # the MQTT connection's session number
    publish_retained: Callable[[str, bytes], None]  # QoS 1, retained
    agent_rebirth: Callable[[], None]  # the fleet agent's meta, config/reported, alerts
    central_online: Callable[[], bool | None]  # the ingest's retained status (None: unseen)
    backlog: Callable[[], int]  # passages the publisher has not yet had acknowledged
    frames: Callable[[], tuple[int, int, int]]  # captured, decoded, dropped: since start
    scanning: Callable[[], tuple[int, float | None]]  # codes read since start, median decode ms
    lookups: Callable[[], tuple[int, int]]  # online questions asked, answers unavailable
    log_lines: Callable[[int, int], list[str]]  # (count, level): masked recent lines


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
    """The fleet's, the screen's and the alerts' window on one running kiosk."""

    def __init__(
        self, parts: KioskParts, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.parts = parts
        self.monotonic = monotonic
        self.counts = {"approved": 0, "denied": 0}  # passages recorded since start
        self._frames_seen = FrameCounts(monotonic(), 0, 0, 0)

    def lane_call(self, event: SetMode | OperatorOpen, timeout: float) -> Outcome:
        return self.parts.lane_call(event, timeout)

    def uptime_s(self) -> float:
        return time.monotonic() - self.parts.started

    def log_lines(self, count: int, level: int) -> list[str]:
        return self.parts.log_lines(count, level)

    def rebirth(self) -> None:
        status = status_payload("online", self.parts.session())
        self.parts.publish_retained(topics.status(self.parts.cfg.device.id), status)
        self.parts.agent_rebirth()

    def reload_trust(self) -> str:
        trust = self.parts.trust
        trust.paths = self.parts.remote.trust_files()
        return trust.reload().describe()

    def pushed_trust(self) -> None:
        with contextlib.suppress(TrustError):  # logged; the last good store stays
            self.reload_trust()

    def trust_age(self) -> datetime | None:
        """When the newest trust source was made: a push's issue time, or a file's mtime."""
        issued = self.parts.remote.trust_issued
        times = [issued] if issued else []
        for path in self.parts.cfg.trust.files:
            with contextlib.suppress(OSError):
                times.append(datetime.fromtimestamp(os.stat(path).st_mtime, UTC))
        return max(times, default=None)

    def meta(self) -> Mapping[str, Any]:
        p = self.parts
        return {
            "version": __version__,
            "device": p.cfg.device.id,
            "site": p.cfg.device.site,
            "camera": p.camera,
            "decoder": p.decoder,
            "mode": p.cfg.lane.mode,
            "ack": p.cfg.mqtt.ack,
            "config_version": p.remote.config_version,
            "policy_version": p.remote.policy_version,
            "trust_version": p.remote.trust_version,
            "session": p.session(),
        }

    def status_data(self) -> Mapping[str, Any]:
        p = self.parts
        status = p.outbox()
        return {
            "state": p.lane.state.value,
            "mode": p.lane.mode,
            "faults": sorted(p.lane.faults),
            "barrier_open": p.barrier_open(),
            "connected": p.connected(),
            "central_online": p.central_online(),
            "outbox": {
                "depth": status.depth,
                "stored": status.stored,
                "sent": status.sent,
                "oldest": status.oldest,
                "oldest_age_s": _age_s(status.oldest),
                "last_seq": status.last_seq,
                "last_ack": status.last_ack,
            },
            "alerts": p.alerts.names(),
            "trust": p.trust.store.describe(),
            "config_version": p.remote.config_version,
            "session": p.session(),
            "uptime_s": round(self.uptime_s(), 1),
            "version": __version__,
        }

    def frame_counts(self) -> FrameCounts:
        return FrameCounts(self.monotonic(), *self.parts.frames())

    def telemetry(self) -> Mapping[str, Any]:
        p = self.parts
        status = p.outbox()
        frames, before = self.frame_counts(), self._frames_seen
        self._frames_seen = frames
        camera_fps, decoded_fps = frames.rates(before)
        scans, decode_ms = p.scanning()
        try:
            free_mb: float | None = round(shutil.disk_usage(p.cfg.store.dir).free / 1e6, 1)
        except OSError:
            free_mb = None
        asked, unavailable = p.lookups()
        return {
            "ts": iso_utc(datetime.now(UTC)),
            "session": p.session(),
            "state": p.lane.state.value,
            "mode": p.lane.mode,
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
            "scans": scans,
            "approved": self.counts["approved"],
            "denied": self.counts["denied"],
            "disk_free_mb": free_mb,
            "cpu_temp_c": cpu_temperature(),
            "uptime_s": round(self.uptime_s(), 1),
            "alerts": len(p.alerts.names()),
            # the online lookup ([lookup]): questions asked, answers unavailable in time
            "lookups": asked,
            "lookups_unavailable": unavailable,
        }

    def screen_status(self) -> dict[str, Any]:
        """What the officer's screen shows beside the lane: connectivity, outbox, alerts."""
        p = self.parts
        return {
            "connected": p.connected(),
            "central_online": p.central_online(),
            "outbox_depth": p.backlog(),
            "alerts": p.alerts.names(),
        }

    def lane_event(self, event: Event, actions: list[Action], _state: State) -> None:
        """On the lane thread: counts for telemetry, faults as alerts."""
        alerts = self.parts.alerts
        for action in actions:
            if isinstance(action, RecordPassage):
                self.counts[action.draft.decision] += 1
        surge = self.parts.lane.mode == "surge"
        if surge != (SURGE_MODE in alerts.names()):
            self._surge_alert(surge, event)
        if isinstance(event, FaultRaised) and event.name in FAULT_ALERTS:
            alerts.raise_(FAULT_ALERTS[event.name], event.reason, "critical")
        elif isinstance(event, FaultCleared) and event.name in FAULT_ALERTS:
            alerts.clear(FAULT_ALERTS[event.name])

    def _surge_alert(self, surge: bool, event: Event) -> None:
        """Surge mode (the barrier held open) is always visible to operators."""
        by = event.by if isinstance(event, SetMode) else "configuration"
        if surge:
            self.parts.alerts.raise_(
                SURGE_MODE, f"the barrier is held open: surge mode, set by {by}"
            )
        else:
            self.parts.alerts.clear(SURGE_MODE)

    def barrier_position(self, ok: bool, detail: str) -> None:
        """From the position switch: the barrier did (not) reach the commanded position."""
        if ok:
            self.parts.alerts.clear(BARRIER_POSITION)
        else:
            log.error("barrier: %s", detail)
            self.parts.alerts.raise_(BARRIER_POSITION, detail, "critical")

    def passages_rejected(self, count: int, reason: str) -> None:
        """The ingest refused passages: they are in the archive, marked; someone must look.
        Open until the kiosk restarts (the archive keeps them whatever happens)."""
        self.parts.alerts.raise_(
            PASSAGE_REJECTED,
            f"{count} passage(s) refused by the central ingest, kept in the archive "
            f"(outbox export --archive); last reason: {reason}",
            "critical",
        )

    def pin_alarm(self, detail: str) -> None:
        """Repeated wrong officer PINs on the screen (``""``: no longer)."""
        self.parts.alerts.set(PIN_FAILURES, bool(detail), detail)


def _age_s(ts: str | None) -> float | None:
    if ts is None:
        return None
    try:
        then = parse_iso(ts, naive="keep", z_as_offset=False)
        return round((datetime.now(UTC) - then).total_seconds(), 1)
    except ValueError:
        return None
