"""The shell: wires config, adapters and the lane together and runs the threads.

Threads, each with one job::

    camera ──frames──► LatestFrame ──► scanner ──CredentialScanned──┐
    buttons / keys ──OfficerApproved/Denied─────────────────────────┤
    camera faults ──FaultRaised/Cleared─────────────────────────────┤
                                                                    ▼
                                      lane (LaneRunner) ──record──► Outbox
                                            │ barrier, LEDs            │ wake
                                            ▼                          ▼
                                          Panel           publisher ──► MqttLink ──► broker

The main thread starts everything, then supervises (store health) until told
to stop.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from gpiozero.pins.mock import MockFactory

from edge.config import Config
from edge.core.events import Pattern, Screen
from edge.core.lane import (
    CredentialScanned,
    FaultCleared,
    FaultRaised,
    Lane,
    LookupAnswered,
    OfficerApproved,
    OfficerDenied,
    OpenVehicle,
    SetMode,
    SetPlate,
    Shutdown,
    State,
    VehiclePassed,
)
from edge.core.model import Credential, Passage, PassageDraft
from edge.core.policy import RulePolicy
from edge.devices.camera import CaptureThread, FrameSource, make_source
from edge.devices.frames import LatestFrame
from edge.devices.gpio import Panel, make_pin_factory
from edge.errors import EdgeError, TrustError
from edge.fleet import handlers
from edge.fleet.agent import FleetAgent, clock_synchronised
from edge.fleet.remote import RemoteConfig, pushed_rules_file
from edge.kiosk.screen import ScreenModel
from edge.kiosk.server import KioskServer
from edge.mqtt.device import DeviceLink
from edge.mqtt.publisher import Publisher
from edge.rules.book import RulesHolder
from edge.rules.rules import RuleError
from edge.scan.credentials import Verifier
from edge.scan.decoder import Decoder, make_decoder
from edge.scan.lookup import LookupService
from edge.scan.scanner import ScanThread
from edge.scan.trust import TrustHolder
from edge.service import logbuffer
from edge.service.alerts import STORE_CORRUPT, STORE_FOREIGN, Alerts
from edge.service.health import Health, Vitals
from edge.service.notify import Notifier
from edge.service.runner import LaneRunner
from edge.service.view import KioskParts, KioskView
from edge.store.outbox import Outbox
from edge.store.retention import Retention
from edge.store.thread import StoreThread

log = logging.getLogger(__name__)

STORE_PROBE_S = 5.0
# paho keeps [mqtt] inflight messages awaiting PUBACK; the publisher hands it ten
# times that, so that paho refills the window itself (no thread hop per PUBACK).
QUEUED_PER_INFLIGHT = 10
RESTART = 3  # run()'s code when a new config must be applied: the caller builds a new App
STATUS_EVERY_S = 10.0  # how often systemctl status's line is refreshed


class App:
    """One lane kiosk. ``start`` it, ``stop`` it; or ``run`` until an event is set."""

    def __init__(
        self,
        cfg: Config,
        *,
        remote: RemoteConfig | None = None,
        pin_factory: Any = None,
        source: FrameSource | None = None,
        decoder: Decoder | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.cfg = cfg
        self.started = time.monotonic()  # for uptime
        self.logs = logbuffer.install()
        self.alerts = Alerts()
        self._restart = threading.Event()
        self._restart_reason = ""
        self._store_faulted = threading.Event()
        self.notifier = notifier or Notifier()
        self._barrier_faulted = threading.Event()
        self._stopping = False
        box = Outbox(
            cfg.store.dir,
            cfg.device.id,
            cfg.device.site,
            cfg.passage.fields,
            segment_size=cfg.store.segment_size,
            retention_days=cfg.store.retention_days,
        )
        for alert in box.alerts:
            log.critical("edge: %s", alert)
            name = STORE_FOREIGN if alert.kind == "store_foreign" else STORE_CORRUPT
            self.alerts.raise_(name, alert.detail, "critical")
        self.outbox = StoreThread(box)
        self.outbox.start()
        clock_check = cfg.fleet.clock_check
        self.retention = Retention(
            self.outbox.purge,
            self.alerts,
            clock=lambda: datetime.now(UTC),
            synchronised=lambda: clock_synchronised() if clock_check else None,
        )
        try:
            self.remote = remote or RemoteConfig.from_config(cfg)
            self._build(pin_factory, source, decoder)
        except BaseException:
            self.outbox.stop()
            raise

    def _build(self, pin_factory: Any, source: FrameSource | None, decoder: Decoder | None) -> None:
        cfg = self.cfg
        self.decoder = decoder or make_decoder(cfg.scan.decoder)
        self.source = source or make_source(cfg.camera)
        self.pin_factory = pin_factory or make_pin_factory(cfg.gpio.pin_factory)
        self.trust = TrustHolder(self.remote.trust_files())
        with contextlib.suppress(TrustError):  # logged; the kiosk runs on and trusts nothing
            self.trust.reload()
        self.verifier = Verifier(lambda: self.trust.store, skew_s=cfg.policy.clock_skew_s)
        self.rules = RulesHolder(cfg.rules, pushed_rules_file(cfg.store.dir))
        self.reload_rules()
        lane = Lane(
            RulePolicy(cfg.policy, rules=self.rules.current),
            mode=cfg.lane.mode,
            decision_timeout_s=cfg.lane.decision_timeout_s,
            open_s=cfg.lane.open_s,
            failsafe_retry_s=cfg.lane.failsafe_retry_s,
            replay_window_s=cfg.policy.replay_window_s,
            group_s=cfg.lane.group_s,
        )
        if cfg.policy.replay_window_s:
            since = datetime.now(UTC) - timedelta(seconds=cfg.policy.replay_window_s)
            for ref, ts in self.outbox.approved_since(since):
                lane.remember(ref, ts)
        self.runner = LaneRunner(lane, effects=self)
        self.view = view = KioskView(self._view_parts(lane))
        self.runner.add_listener(view.lane_event)  # first: its alerts go out with the event
        self.panel = Panel(
            cfg.gpio,
            self.pin_factory,
            on_approve=lambda: self.runner.post(OfficerApproved()),
            on_deny=lambda: self.runner.post(OfficerDenied()),
            on_both_held=lambda: self.toggle_surge(by="officer (both buttons held)"),
            on_vehicle_passed=lambda: self.runner.post(VehiclePassed()),
            on_position=view.barrier_position,
        )
        self.slot = LatestFrame()
        self.capture = CaptureThread(
            self.source,
            self.slot,
            on_fault=lambda reason: self.runner.post(FaultRaised("camera", reason)),
            on_ok=lambda: self.runner.post(FaultCleared("camera")),
        )
        # an unsigned code goes to the lane at once: with a cached answer, or pending
        self.lookups = LookupService(
            cfg.lookup, post=lambda sha256, found: self.runner.post(LookupAnswered(sha256, found))
        )
        self.scanner = ScanThread(
            self.slot,
            self.decoder,
            cfg.scan.leave_s,
            on_scan=self._on_scan,
            read=self.verifier.read,
        )
        self.publisher = Publisher(
            self.outbox,
            cfg.device.id,
            window=cfg.mqtt.inflight * QUEUED_PER_INFLIGHT,
            ack_mode=cfg.mqtt.ack,
            ack_timeout_s=cfg.mqtt.ack_timeout_s,
            on_rejected=view.passages_rejected,
        )
        self.agent = FleetAgent(
            cfg.device.id,
            self.remote,
            self.alerts,
            handlers.build(view, self.remote.replies, self.remote),
            meta=view.meta,
            telemetry=view.telemetry,
            on_config=self.request_restart,
            on_trust=view.pushed_trust,
            store_dir=cfg.store.dir,
            trust_age=view.trust_age,
            trust_error=lambda: self.trust.last_error,
            on_rules=self.reload_rules,
            rules_age=lambda: self.rules.book.made if self.rules.book else None,
            rules_error=lambda: self.rules.last_error or None,
        )
        # the screen's one way in from the lane; the status beside it, it pulls itself
        self.screen = ScreenModel(status=view.screen_status, rules=self.rules.describe)
        self.runner.add_listener(lambda e, a, st: self.screen.lane_event(e, a, st, lane))
        self.kiosk: KioskServer | None = None
        if cfg.kiosk.listen:
            try:
                self.kiosk = KioskServer(
                    cfg.kiosk,
                    self.screen,
                    on_approve=lambda: self.runner.post(OfficerApproved()),
                    on_deny=lambda: self.runner.post(OfficerDenied()),
                    on_vehicle=self.vehicle,
                    on_plate=self.plate,
                    on_pin_alarm=view.pin_alarm,
                )
            except OSError as exc:  # the lane works without its screen: buttons, LEDs
                log.error(  # noqa: TRY400 - a reason, not a bug
                    "kiosk: cannot serve the screen on %s: %s; running without it",
                    cfg.kiosk.listen,
                    exc.strerror or exc,
                )
        self.link = DeviceLink(
            cfg.mqtt,
            cfg.device.id,
            self.publisher,
            handlers=self.agent.handlers(),
            on_connected=self.agent.connected,
            session=self.remote.next_session,
        )
        self.agent.transport = self.link
        self.health = Health(
            Vitals(
                lane=lane,
                lane_alive=self.runner.is_alive,
                network_alive=lambda: self.link.alive,
                connected=lambda: self.link.connected,
                store_faulted=self._store_faulted.is_set,
                outbox_depth=lambda: self.outbox.status().depth,
                camera_stalled=self.capture.stalled,
                stall_s=cfg.camera.stall_s,
                post=self.runner.post,
                watchdog=self.notifier.watchdog,
            )
        )

    def _view_parts(self, lane: Lane) -> KioskParts:
        """What the view reads and does; the parts built after it are read when asked."""
        return KioskParts(
            cfg=self.cfg,
            started=self.started,
            camera=self.source.description,
            decoder=self.decoder.name,
            lane=lane,
            lane_call=self.runner.call,
            alerts=self.alerts,
            remote=self.remote,
            trust=self.trust,
            outbox=self.outbox.status,
            barrier_open=lambda: self.panel.barrier_open,
            connected=lambda: self.link.connected,
            session=lambda: self.link.session,
            publish_retained=lambda topic, payload: self.link.publish(topic, payload, retain=True),
            agent_rebirth=lambda: self.agent.rebirth(),  # noqa: PLW0108 - built after the view
            central_online=lambda: self.publisher.central_online,
            backlog=lambda: self.publisher.backlog,
            frames=lambda: (self.capture.frames, self.scanner.frames, self.slot.dropped),
            scanning=lambda: (self.scanner.scans, self.scanner.median_decode_ms()),
            lookups=lambda: (self.lookups.asked, self.lookups.unavailable),
            log_lines=self.logs.lines,
        )

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        # what is built by now (modules, the outbox's index) lives as long as this App:
        # out of the cyclic collector's scans (a tenth of a drain's CPU); stop() unfreezes
        gc.freeze()
        status = self.outbox.status()
        log.info(
            "edge: device %s, lane %s mode, camera %s, decoder %s, store %s "
            "(%d awaiting the ingest, last seq %d)",
            self.cfg.device.id,
            self.cfg.lane.mode,
            self.source.description,
            self.decoder.name,
            self.cfg.store.dir,
            status.depth,
            status.last_seq,
        )
        self.runner.start()
        self.publisher.start()
        self.agent.start()
        if self.kiosk is not None:
            self.kiosk.start()
        self.link.start()
        self.lookups.start()
        self.scanner.start()
        self.capture.start()

    def run(self, stop: threading.Event) -> int:
        """Start, supervise until ``stop`` is set, then stop cleanly; the exit code."""
        self.start()
        self.notifier.ready(self.health.describe())
        code = 0
        next_check = next_ping = next_status = time.monotonic()
        ping_every = (self.notifier.watchdog_s or 0) / 2
        try:
            while not stop.wait(0.2):
                # an officer deciding is not interrupted: the decision timeout bounds the wait
                if self._restart.is_set() and self.runner.state is not State.AWAITING_DECISION:
                    log.info("edge: restarting to apply %s", self._restart_reason)
                    code = RESTART
                    break
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 1.0
                    if not self.supervise():
                        code = 1
                        break
                if ping_every and now >= next_ping:
                    next_ping = now + ping_every
                    self.health.feed_watchdog()
                if now >= next_status:
                    next_status = now + STATUS_EVERY_S
                    self.notifier.status(self.health.describe())
        finally:
            if code == RESTART:
                self.notifier.send(reloading=1, status=f"applying {self._restart_reason}")
            else:
                self.notifier.stopping("stopping: finishing the passage in progress")
            self.stop()
        return code

    def request_restart(self, reason: str) -> None:
        """Stop and come back with the new config (any thread); see :data:`RESTART`."""
        self._restart_reason = reason
        self._restart.set()

    @property
    def store_faulted(self) -> bool:
        """The last write of a passage failed and no probe has succeeded since."""
        return self._store_faulted.is_set()

    def supervise(self) -> bool:
        """Periodic health work on the main thread; False when the kiosk must restart."""
        if self._store_faulted.is_set():
            try:
                self.outbox.check_writable()
            except (EdgeError, OSError) as exc:
                log.debug("edge: store still failing: %s", exc)
            else:
                self._store_faulted.clear()
                self.runner.post(FaultCleared("store"))
        if self._barrier_faulted.is_set():
            try:
                self.panel.close_barrier()  # failsafe: closed is the only state to restore
            except Exception as exc:  # noqa: BLE001 - any driver error: keep trying
                log.debug("edge: barrier still failing: %s", exc)
            else:
                log.info("barrier: closing works again")
                self._barrier_faulted.clear()
                self.runner.post(FaultCleared("barrier"))
        if self._stopping:
            return True
        self.health.check_camera()
        if self.kiosk is not None:
            self.kiosk.tick()
        if not self.link.alive:
            self.link.restart()  # the network thread is replaceable; the rest is not
        threads = (self.runner, self.publisher, self.scanner, self.outbox, self.agent)
        dead = [t.name for t in threads if not t.is_alive()]
        if dead:
            log.critical("edge: thread(s) %s stopped unexpectedly; restarting", ", ".join(dead))
            return False
        self.retention.tick()
        return True

    def stop(self, flush_s: float = 3.0) -> None:
        """Stop scanning, finish the passage in progress, close the barrier, flush, disconnect."""
        log.info("edge: stopping")
        self._stopping = True
        self.capture.stop()
        self.scanner.stop()
        if self.runner.is_alive():
            try:  # a traveller being decided is recorded (denied, shutdown); barrier closed
                self.runner.call(Shutdown(), timeout=3.0)
            except (TimeoutError, RuntimeError) as exc:
                log.error("edge: the lane did not finish: %s", exc)  # noqa: TRY400
        for thread in (self.capture, self.scanner):
            if thread.is_alive():
                thread.join(timeout=2.0)
        if self.runner.is_alive():
            self.runner.stop()
            self.runner.join(timeout=3.0)
        self.panel.close_barrier()
        if self.link.connected and self.publisher.is_alive():
            self.publisher.wake()
            if not self.publisher.wait_idle(flush_s):
                log.warning("edge: unsent passages stay in the outbox for the next start")
        self.publisher.stop()
        if self.publisher.is_alive():
            self.publisher.join(timeout=2.0)
        self.link.stop_commands()  # no new command; those already here are answered
        self.agent.stop()
        if self.agent.is_alive():
            self.agent.join(timeout=2.0)
        self.link.stop()
        self.lookups.stop()
        if self.kiosk is not None:
            self.kiosk.stop()
        self.panel.close()
        self.outbox.stop()
        gc.unfreeze()  # what start() froze may be collected again (a restart: a new App)
        log.info("edge: stopped")

    # -- officer input from a keyboard (simulation) -----------------------

    def press(self, button: str) -> None:
        """Press and release an officer button: through the mock pin when simulated."""
        pin_no = self.cfg.gpio.approve_pin if button == "approve" else self.cfg.gpio.deny_pin
        if isinstance(self.pin_factory, MockFactory):
            pin = self.pin_factory.pin(pin_no)
            pin.drive_low()
            pin.drive_high()
        else:
            self.runner.post(OfficerApproved() if button == "approve" else OfficerDenied())

    def _on_scan(self, credential: Credential) -> None:
        """A code read: to the lane first, then its online question (if any) goes out, so
        its answer always finds it there."""
        prepared, send = self.lookups.prepare(credential)
        self.runner.post(CredentialScanned(prepared))
        send()

    def reload_rules(self) -> None:
        """Load the rules in use again (a push arrived, or at start); a rule set that
        cannot be used is logged and raises the rules-error alert, the last good stays."""
        with contextlib.suppress(RuleError):
            self.rules.reload(self.remote.rules_issued)

    def vehicle(self, kind: str, plate: str = "") -> None:
        """The officer opens a vehicle group (from the screen, or ``v`` on the
        simulation's keyboard); the lane refuses it unless it is ready."""
        self.runner.post(OpenVehicle(kind, plate, "officer"))

    def plate(self, plate: str) -> None:
        """The officer types the plate of the vehicle being decided."""
        self.runner.post(SetPlate(plate))

    def toggle_surge(self, by: str) -> None:
        """Surge mode on, or back to the configured mode (officer's local override)."""
        lane = self.runner.lane
        back = self.cfg.lane.mode if self.cfg.lane.mode != "surge" else "officer"
        self.runner.post(SetMode(back if lane.mode == "surge" else "surge", by=by))

    # -- Effects for the lane runner --------------------------------------

    def record(self, draft: PassageDraft) -> Passage:
        try:
            passage = self.outbox.append(draft)
        except (EdgeError, OSError):
            self._store_faulted.set()
            raise
        log.info("passage seq=%d stored: %s by %s", passage.seq, draft.decision, draft.decided_by)
        self.publisher.stored(passage.seq)
        return passage

    def set_barrier(self, open_: bool, hold: bool = False) -> None:
        try:
            if open_:
                self.panel.open_barrier(hold)
                log.info("barrier: open")
            elif self.panel.barrier_open:
                self.panel.close_barrier()
                log.info("barrier: closed")
        except Exception:
            self._barrier_faulted.set()
            raise

    def signal(self, pattern: Pattern) -> None:
        self.panel.signal(pattern)

    def show(self, screen: Screen, reasons: tuple[str, ...]) -> None:
        log.debug("screen: %s %s", screen, ",".join(reasons))
