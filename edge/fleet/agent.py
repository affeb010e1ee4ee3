"""The kiosk's fleet side: birth, telemetry, alerts, commands, config and pushes.

One thread (``fleet``) does all of it, so nothing here ever runs on the MQTT
network thread: :meth:`FleetAgent.handlers` is what the agent registers with
the device link, topic filter by filter, and each of those handlers only queues
the message, to be handled here; replies, telemetry and retained state are
published from here.

On every connect (the *birth*), the kiosk republishes its retained ``meta``,
``config/reported`` and open alerts, and clears any alert it had published
before that is no longer open (the names are kept in the fleet state file, so
this holds across restarts). ``rebirth`` does the same on demand.

Health checks (disk space, clock synchronisation, trust list age) run every
:data:`CHECK_S` seconds and raise or clear their alerts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edge.fleet.commands import Commands, Reply
from edge.fleet.remote import RemoteConfig
from edge.mqtt import topics
from edge.mqtt.client import Inbound
from edge.service.alerts import (
    CLOCK_UNSYNCHRONISED,
    CONFIG_REJECTED,
    DISK_LOW,
    RULES_ERROR,
    RULES_STALE,
    TRUST_ERROR,
    TRUST_STALE,
    Alert,
    Alerts,
)

log = logging.getLogger(__name__)

CHECK_S = 10.0
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")


class Transport(Protocol):
    """How the agent reaches the broker (the device link)."""

    @property
    def connected(self) -> bool: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> None: ...


class _Birth:
    pass


class _Stop:
    pass


def clock_synchronised() -> bool | None:
    """What the kernel says of the clock (adjtimex), or None where it cannot be asked."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        state = -1
    if state >= 0:
        return state != TIME_ERROR
    # adjtimex refused (a seccomp filter): systemd-timesyncd's flag file says it too
    return True if TIMESYNC_FLAG.exists() else None


def cpu_temperature() -> float | None:
    try:
        text = Path("/sys/class/thermal/thermal_zone0/temp").read_text(encoding="ascii")
        return round(int(text.strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


class FleetAgent(threading.Thread):
    """The fleet thread of one kiosk."""

    def __init__(
        self,
        device_id: str,
        remote: RemoteConfig,
        alerts: Alerts,
        commands: Commands,
        *,
        meta: Callable[[], Mapping[str, Any]],
        telemetry: Callable[[], Mapping[str, Any]],
        on_config: Callable[[str], None],
        on_trust: Callable[[], None],
        store_dir: Path,
        trust_age: Callable[[], datetime | None],
        trust_error: Callable[[], str | None],
        on_rules: Callable[[], None] = lambda: None,
        rules_age: Callable[[], datetime | None] = lambda: None,
        rules_error: Callable[[], str | None] = lambda: None,
    ) -> None:
        super().__init__(name="fleet", daemon=True)
        self.device_id = device_id
        self.remote = remote
        self.alerts = alerts
        self.commands = commands
        self.meta = meta
        self.telemetry = telemetry
        self.on_config = on_config
        self.on_trust = on_trust
        self.store_dir = store_dir
        self.trust_age = trust_age
        self.trust_error = trust_error
        self.on_rules = on_rules
        self.rules_age = rules_age
        self.rules_error = rules_error
        self.cfg = remote.effective.fleet
        self.transport: Transport | None = None
        self._queue: queue.Queue[Inbound | Alert | str | _Birth | _Stop] = queue.Queue()
        self._restart_pending = False
        alerts.add_listener(self._alert_changed)

    # -- any thread ------------------------------------------------------------

    def handlers(self) -> dict[str, Callable[[Inbound], None]]:
        """The topic filters this agent takes messages on, each with its handler, for the
        device link: its commands, the fleet-wide ones, its desired config, the pushes.
        Each only queues the message for this thread: the link calls them on its
        network thread."""
        own = (topics.commands(self.device_id), topics.config_desired(self.device_id))
        return dict.fromkeys((*own, *topics.fleet_wide()), self.post)

    def post(self, message: Inbound) -> None:
        self._queue.put(message)

    def connected(self) -> None:
        """The link is (re)connected: publish the birth (from this thread)."""
        self._queue.put(_Birth())

    def rebirth(self) -> None:
        self._queue.put(_Birth())

    def stop(self) -> None:
        self._queue.put(_Stop())

    def _alert_changed(self, name: str, alert: Alert | None) -> None:
        self._queue.put(alert if alert is not None else name)

    # -- the fleet thread ----------------------------------------------------------

    def run(self) -> None:
        next_telemetry = time.monotonic() + self.cfg.telemetry_s
        next_check = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_check:
                self._guarded(self.check_health)
                next_check = now + CHECK_S
            if now >= next_telemetry:
                self._guarded(self.publish_telemetry)
                next_telemetry = now + self.cfg.telemetry_s
            wait = max(0.0, min(next_check, next_telemetry) - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if isinstance(item, _Stop):
                return
            self._guarded(self._handle, item)

    def _guarded(self, work: Callable[..., None], *args: Any) -> None:
        try:
            work(*args)
        except Exception:
            log.exception("fleet: unexpected error (the fleet thread lives on)")

    def _handle(self, item: Inbound | Alert | str | _Birth) -> None:
        if isinstance(item, _Birth):
            self.publish_birth()
        elif isinstance(item, Alert):
            self._publish(
                topics.alert(self.device_id, item.name), _json(item.to_json()), retain=True
            )
            self._remember_alerts()
        elif isinstance(item, str):
            self._publish(topics.alert(self.device_id, item), b"", retain=True)
            self._remember_alerts()
        else:
            self._inbound(item)

    def _publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
    ) -> None:
        if self.transport is not None:
            self.transport.publish(topic, payload, qos, retain, correlation)

    def publish_birth(self) -> None:
        dev = self.device_id
        self._publish(topics.meta(dev), _json(dict(self.meta())), retain=True)
        self._publish(topics.config_reported(dev), _json(self.remote.reported()), retain=True)
        open_alerts = self.alerts.open()
        for alert in open_alerts:
            self._publish(topics.alert(dev, alert.name), _json(alert.to_json()), retain=True)
        names = {a.name for a in open_alerts}
        for stale in set(self.remote.published_alerts()) - names:
            self._publish(topics.alert(dev, stale), b"", retain=True)  # cleared while away
        self.remote.set_published_alerts(sorted(names))
        log.info("fleet: birth published (%d open alert(s))", len(open_alerts))

    def _remember_alerts(self) -> None:
        if self.transport is not None and self.transport.connected:
            self.remote.set_published_alerts(self.alerts.names())

    def publish_telemetry(self) -> None:
        """The live view, QoS 0, retained: the broker keeps the last one, so an operator
        sees when each kiosk was last heard from even while it is away."""
        if self.transport is None or not self.transport.connected:
            return  # telemetry is a live view: not stored, not queued
        payload = _json(dict(self.telemetry()))
        self._publish(topics.telemetry(self.device_id), payload, qos=0, retain=True)

    def check_health(self) -> None:
        cfg = self.cfg
        try:
            free_mb = shutil.disk_usage(self.store_dir).free / 1e6
        except OSError as exc:
            self.alerts.raise_(DISK_LOW, f"cannot read free space: {exc.strerror}")
        else:
            low = cfg.disk_low_mb > 0 and free_mb < cfg.disk_low_mb
            self.alerts.set(DISK_LOW, low, f"{free_mb:.0f} MB free at the store", "critical")
        if cfg.clock_check:
            synced = clock_synchronised()
            detail = "the kernel reports the clock unsynchronised: validity checks may be wrong"
            self.alerts.set(CLOCK_UNSYNCHRONISED, synced is False, detail)
        if cfg.trust_max_age_h > 0:
            newest = self.trust_age()
            age_h = None if newest is None else (datetime.now(UTC) - newest).total_seconds() / 3600
            stale = age_h is None or age_h > cfg.trust_max_age_h
            what = "no trust list" if age_h is None else f"newest trust list {age_h:.0f} h old"
            self.alerts.set(TRUST_STALE, stale, f"{what} (limit {cfg.trust_max_age_h:g} h)")
        error = self.trust_error()
        self.alerts.set(TRUST_ERROR, error is not None, error or "", "critical")
        if cfg.rules_max_age_h > 0:
            made = self.rules_age()
            age_h = None if made is None else (datetime.now(UTC) - made).total_seconds() / 3600
            stale = age_h is not None and age_h > cfg.rules_max_age_h
            what = f"the rules in use are {age_h or 0:.0f} h old"
            self.alerts.set(RULES_STALE, stale, f"{what} (limit {cfg.rules_max_age_h:g} h)")
        error = self.rules_error()
        self.alerts.set(RULES_ERROR, error is not None, error or "", "critical")

    # -- inbound -------------------------------------------------------------------

    def _inbound(self, msg: Inbound) -> None:
        parsed = topics.parse(msg.topic)
        if parsed is None:
            log.debug("fleet: message on %s ignored", msg.topic)
            return
        if parsed.kind == "cmd":
            self._command(msg, parsed.name, fleet_wide=parsed.device == topics.ALL)
        elif parsed.kind == "config" and parsed.name == "desired":
            self._desired(msg)
        elif parsed.kind in topics.PUSH_KINDS and parsed.device == topics.ALL:
            self._push(msg, parsed.kind)
        else:
            log.debug("fleet: message on %s ignored", msg.topic)

    def _command(self, msg: Inbound, name: str, fleet_wide: bool) -> None:
        reply = self.commands.handle(
            name, msg.payload, retained=msg.retained, fleet_wide=fleet_wide, now=datetime.now(UTC)
        )
        if reply is None:
            return
        self._reply(msg, reply)

    def _reply(self, msg: Inbound, reply: Reply) -> None:
        topic = topics.reply(self.device_id, reply.command)
        response = msg.response_topic
        if response:
            if response.startswith(topics.reply_prefix(self.device_id)) and not (
                set(response) & {"+", "#"}
            ):
                topic = response
            else:
                log.warning("fleet: response topic outside this device's namespace ignored")
        self._publish(topic, reply.payload(), correlation=msg.correlation)

    def _desired(self, msg: Inbound) -> None:
        offer = self.remote.offer_desired(msg.payload)
        self._after_offer("config", offer.state, offer.detail)
        if offer.changed:
            self.on_config(f"config version {self.remote.config_version}")

    def _push(self, msg: Inbound, kind: str) -> None:
        offer = self.remote.offer_push(kind, msg.payload)
        self._after_offer(kind, offer.state, offer.detail)
        if offer.changed:
            if kind == "trust":
                self.on_trust()
                self.check_health()  # the trust alerts follow at once
            elif kind == "rules":
                self.on_rules()
                self.check_health()
            else:
                self.on_config(f"policy push version {self.remote.policy_version}")

    def _after_offer(self, what: str, state: str, detail: str) -> None:
        if state == "unchanged":
            return
        self._publish(
            topics.config_reported(self.device_id), _json(self.remote.reported()), retain=True
        )
        if state == "rejected":
            self.alerts.raise_(CONFIG_REJECTED, f"{what} rejected: {detail}"[:500])
        elif what in ("config", "policy"):
            self.alerts.clear(CONFIG_REJECTED)


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), default=str).encode()
