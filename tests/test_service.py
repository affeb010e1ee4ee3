"""The kiosk as a systemd service: the unit file, the notify protocol, the watchdog,
and a clean SIGTERM. The service manager is played by a datagram socket the test
opens (NOTIFY_SOCKET), exactly as systemd hands it to the daemon."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.config import Config
from edge.core.lane import CloseBarrier, FaultRaised, State
from edge.service.notify import Notifier

from . import test_e2e
from .conftest import (
    REPO,
    Daemon,
    Mosquitto,
    Subscriber,
    archived_messages,
    live_records,
    make_config,
    toml_text,
    write_frame,
)
from .test_e2e import PERSON, Kiosk

UNIT = REPO / "systemd" / "checkpoint-edge.service"
kiosks = test_e2e.kiosks  # the fixture


class ServiceManager:
    """The notify socket's other end: what systemd would receive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[dict[str, str]] = []

    def next(self, timeout: float = 10.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            pytest.fail(f"no notify message within {timeout} s; got {self.received}")
        msg = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append(msg)
        return msg

    def wait_for(self, key: str, timeout: float = 15.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.01, deadline - time.monotonic()))
            if key in msg:
                return msg

    def pending(self) -> list[dict[str, str]]:
        """What has arrived without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                data = self.sock.recv(4096)
                out.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ServiceManager]:
    m = ServiceManager(tmp_path / "notify.sock")
    yield m
    m.close()


# -- the unit ------------------------------------------------------------------------


def unit_for_verify(tmp_path: Path) -> Path:
    """The unit with only its program path pointed at an executable that exists here
    (systemd-analyze verify checks that ExecStart= is executable)."""
    program = tmp_path / "bin" / "checkpoint-edge"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    text = UNIT.read_text().replace("/opt/checkpoint-edge/venv/bin/checkpoint-edge", str(program))
    unit = tmp_path / "checkpoint-edge.service"
    unit.write_text(text)
    return unit


def test_the_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = unit_for_verify(tmp_path)
    run = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == "", run.stderr  # unknown keys are only warnings: none allowed
    broken = unit.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    unit.write_text(broken)
    run = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert "Unknown key" in run.stderr  # the check above can fail


def test_the_unit_is_hardened_but_sees_gpio_and_camera(tmp_path: Path) -> None:
    text = UNIT.read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["User"] == "checkpoint-edge"
    assert set(settings["SupplementaryGroups"].split()) == {"gpio", "video"}
    assert settings["StateDirectory"] == "checkpoint-edge"
    assert settings["ConfigurationDirectory"] == "checkpoint-edge"
    assert settings["LoadCredential"].startswith("mqtt-key:")
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["Restart"] == "always"
    assert "PrivateDevices" not in settings  # it would hide /dev/gpiochip* and the camera
    if shutil.which("systemd-analyze") is None:
        return
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit_for_verify(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", run.stdout + run.stderr)
    assert found, run.stdout + run.stderr
    assert float(found.group(1)) <= 3.0  # systemd calls up to 3.9 "OK"


# -- the notify protocol ------------------------------------------------------------------


def test_notifier_speaks_to_a_path_and_an_abstract_socket(manager: ServiceManager) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(manager.path)})
    assert n.ready("lane ready\nsecond line")
    assert manager.next() == {"READY": "1", "STATUS": "lane ready second line"}
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"checkpoint-edge-test-{os.getpid()}"
    abstract.bind("\0" + name)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        abstract.settimeout(5)
        assert abstract.recv(100) == b"WATCHDOG=1"
    finally:
        abstract.close()


def test_notifier_without_systemd_does_nothing_and_reads_the_watchdog_interval() -> None:
    quiet = Notifier({})
    assert not quiet.enabled
    assert quiet.ready("x") is False
    assert quiet.watchdog_s is None
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent/sock", "WATCHDOG_USEC": "3000000"})
    assert n.watchdog_s == 3.0
    assert n.watchdog() is False  # unreachable: logged once, never raised
    other_pid = Notifier({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_s is None  # the watchdog is another process's


def daemon_config(tmp_path: Path, port: int, **sections: dict[str, Any]) -> Path:
    (tmp_path / "frames").mkdir(exist_ok=True)
    data: dict[str, dict[str, Any]] = {
        "device": {"id": "lane-svc", "site": "test"},
        "camera": {"source": "images:frames", "fps": 10, "hold_s": 30},
        "gpio": {"pin_factory": "mock"},
        "lane": {"mode": "officer", "decision_timeout_s": 60},
        "mqtt": {"host": "127.0.0.1", "port": port, "ack": "broker"},
        "store": {"dir": "store"},
        "fleet": {"clock_check": False},
        "kiosk": {"listen": ""},  # no screen on a fixed port (tests that want one say so)
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    config = tmp_path / "config.toml"
    config.write_text(toml_text(data))
    return config


def test_the_daemon_notifies_ready_status_watchdog_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    broker: Mosquitto,
    manager: ServiceManager,
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    sub = subscriber_factory(broker.port, ["cp/v1/lane-svc/#"])
    config = daemon_config(tmp_path, broker.port)
    write_frame(tmp_path / "frames" / "01.png", PERSON.encode())  # the officer must decide
    env = {"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "1000000"}
    daemon = Daemon(config, env=env)
    try:
        ready = manager.wait_for("READY")
        assert "lane" in ready["STATUS"]
        manager.wait_for("WATCHDOG")  # fed every half interval while healthy
        manager.wait_for("WATCHDOG")
        daemon.wait_for("scanned")  # a traveller is being decided
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        stopping = manager.wait_for("STOPPING")
        assert "stopping" in stopping["STATUS"]
        assert daemon.proc.wait(10) == 0
        assert time.monotonic() - started < 5, "SIGTERM took too long"
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
    # the passage in progress was recorded (denied, shutdown), published, and "stopped"
    held = [r["msg"] for r in live_records(tmp_path / "store").values()]
    (only,) = held + archived_messages(tmp_path / "store")  # (archived once the broker took it)
    assert only["decision"] == "denied"
    assert "shutdown" in only["reasons"]
    passage = sub.get(topic_suffix="/passage").json()
    assert (passage["seq"], passage["reasons"][-1]) == (1, "shutdown")
    retained = subscriber_factory(broker.port, ["cp/v1/lane-svc/status"])
    assert retained.get().json()["state"] == "stopped"


class StallingSource:
    """A camera that delivers a few frames, then hangs in read() like a stuck driver.

    (Hardware is absent here: this fake lives behind the FrameSource interface.)"""

    description = "stalling test camera"
    fps = 20.0
    self_paced = False

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.release = threading.Event()

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        if self.frames > 0:
            self.frames -= 1
            return np.full((120, 160), 128, np.uint8)
        self.release.wait()  # hung until the test lets go
        self.release.clear()
        self.frames = 3
        return np.full((120, 160), 128, np.uint8)

    def close(self) -> None:
        self.release.set()


def test_a_stalled_camera_is_a_fault_and_starves_the_watchdog(
    tmp_path: Path, manager: ServiceManager
) -> None:
    cfg = make_config(tmp_path, camera={"stall_s": 0.5})
    source = StallingSource(frames=3)
    notifier = Notifier({"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "2000000"})
    kiosk = Kiosk(cfg, source=source, notifier=notifier)
    kiosk.start()
    try:
        app = kiosk.app
        app.health.feed_watchdog()
        assert manager.next() == {"WATCHDOG": "1"}  # healthy: fed
        assert app.capture.stalled(0.5, now=time.monotonic() + 10)  # it hangs in read()
        app.health.camera_stalled = False
        app.capture.last_frame_at = time.monotonic() - 5  # 5 s without a frame
        app.health.check_camera()
        event, actions, state = kiosk.wait(lambda e, _a, _s: isinstance(e, FaultRaised))
        assert event == FaultRaised("camera", "no frame for 0.5 s")
        assert state is State.FAILSAFE
        assert CloseBarrier() in actions
        assert app.health.problems() == ["no camera frame for over 0.5 s"]
        app.health.feed_watchdog()
        assert manager.pending() == []  # unhealthy: not fed
        source.release.set()  # the driver comes back: frames again
        app.capture.last_frame_at = time.monotonic()
        app.health.check_camera()
        kiosk.wait_state(State.READY)
        assert app.health.problems() == []
    finally:
        kiosk.stop()


@pytest.mark.parametrize("mode", ["officer", "surge"])
def test_stop_records_the_traveller_being_decided_and_closes_the_barrier(
    tmp_path: Path, frames_dir: Path, kiosks: Callable[[Config], Kiosk], mode: str
) -> None:
    write_frame(frames_dir / "01.png", PERSON.encode())
    cfg = make_config(tmp_path, lane={"mode": mode, "decision_timeout_s": 60})
    kiosk = kiosks(cfg).start()
    if mode == "officer":
        kiosk.wait_state(State.AWAITING_DECISION)
    else:
        assert kiosk.relay.wait_for(True)  # surge: held open
    kiosk.stop()
    assert kiosk.relay.state is False
    records = live_records(cfg.store.dir)
    if mode == "officer":
        (only,) = records.values()
        assert "shutdown" in only["msg"]["reasons"]
