"""The daemon as a process: crashes, signals, bad start-up input."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge.cli import simulation_config_path

from .conftest import (
    Daemon,
    Mosquitto,
    Subscriber,
    free_port,
    live_records,
    toml_text,
    write_frame,
)


def write_config(tmp_path: Path, port: int, **overrides: dict[str, Any]) -> Path:
    data: dict[str, dict[str, Any]] = {
        "device": {"id": "lane-proc", "site": "test"},
        "camera": {"source": "images:frames", "fps": 20, "hold_s": 0.5, "gap_s": 0.5},
        "gpio": {"pin_factory": "mock"},
        "lane": {"mode": "auto"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 1,
            "ack": "broker",
        },
        "store": {"dir": "store"},
        "kiosk": {"listen": ""},  # no screen on a fixed port (tests that want one say so)
    }
    for name, values in overrides.items():
        data.setdefault(name, {}).update(values)
    path = tmp_path / "config.toml"
    path.write_text(toml_text(data))
    return path


def test_sigkill_between_store_and_publish_loses_nothing(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_frame(frames / "01.png", b"killed-before-publishing")
    port = free_port()  # nothing listens here yet: the passage cannot be published
    config = write_config(tmp_path, port)

    first = Daemon(config)
    daemons.append(first)
    first.wait_for("passage seq=1 stored")
    first.kill()
    stored = live_records(tmp_path / "store")
    assert list(stored) == [1]
    assert stored[1]["state"] == "stored"
    pid = stored[1]["msg"]["pid"]

    broker = Mosquitto(tmp_path / "broker", port=port).start()
    sub = Subscriber(port, ["cp/v1/lane-proc/#"]).connect()
    try:
        second = Daemon(config)  # the same image scans again: a second passage
        daemons.append(second)
        passages = []
        while len(passages) < 2:
            msg = sub.get(timeout=20)
            if msg.topic.endswith("/passage"):
                passages.append(msg.json())
        assert passages[0]["pid"] == pid
        assert passages[0]["seq"] == 1
        assert passages[1]["seq"] == 2  # seq survived the crash and did not repeat
        assert passages[1]["pid"] != pid
        assert second.terminate() == 0
        rest = sub.drain_until_marker()
        assert [m.json()["state"] for m in rest if m.topic.endswith("/status")] == ["stopped"]
        assert not [m for m in rest if m.topic.endswith("/passage")]
    finally:
        sub.disconnect()
        broker.stop()


def test_sigterm_stops_cleanly_and_a_kill_leaves_the_will(
    tmp_path: Path, broker: Mosquitto, daemons: list[Daemon]
) -> None:
    (tmp_path / "frames").mkdir()
    config = write_config(tmp_path, broker.port)
    sub = Subscriber(broker.port, ["cp/v1/lane-proc/status"]).connect()
    try:
        d = Daemon(config)
        daemons.append(d)
        assert sub.get().json()["state"] == "online"
        assert d.terminate() == 0
        assert sub.get().json()["state"] == "stopped"
        d.wait_for("edge: stopped")

        d = Daemon(config)
        daemons.append(d)
        assert sub.get().json()["state"] == "online"
        d.kill()
        assert sub.get().json()["state"] == "offline"  # the will
    finally:
        sub.disconnect()


def test_broken_config_is_a_clear_message_not_a_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1883, lane={"mode": "party"}, gpio={"barrier_pin": 99})
    run = subprocess.run(
        [sys.executable, "-m", "edge", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    assert "lane.mode: must be one of officer, auto, surge, closed (got 'party')" in run.stderr
    assert "gpio.barrier_pin: must be a BCM GPIO number 0-27 (got 99)" in run.stderr
    assert "Traceback" not in run.stderr


def test_unreadable_image_folder_keeps_the_daemon_up(tmp_path: Path, daemons: list[Daemon]) -> None:
    config = write_config(tmp_path, free_port(), camera={"source": "images:missing"})
    d = Daemon(config)
    daemons.append(d)
    line = d.wait_for("image folder not found")
    assert str(tmp_path / "missing") in line
    d.wait_for("failsafe")
    assert d.proc.poll() is None
    assert d.terminate() == 0
    assert "Traceback" not in "\n".join(d.log)


def test_a_damaged_store_file_is_quarantined_and_the_kiosk_starts(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    (tmp_path / "frames").mkdir()
    segments = tmp_path / "store" / "outbox"
    segments.mkdir(parents=True)
    (segments / "seg-00000000.log").write_bytes(b"\x00garbage")  # bit rot
    config = write_config(tmp_path, free_port())
    d = Daemon(config)
    daemons.append(d)
    d.wait_for("store_corrupt: seg-00000000.log damaged, moved aside")
    d.wait_for("camera: images:")  # it runs on
    assert d.terminate() == 0
    (kept,) = (segments / "quarantine").iterdir()
    assert kept.read_bytes() == b"\x00garbage"  # evidence kept, never deleted
    assert "Traceback" not in "\n".join(d.log)


def test_officer_keys_on_a_terminal(tmp_path: Path, daemons: list[Daemon]) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    write_frame(frames / "01.png", b"officer-at-the-keyboard")
    config = write_config(
        tmp_path, free_port(), lane={"mode": "officer", "open_s": 0.5}, camera={"hold_s": 1.0}
    )
    master, slave = pty.openpty()  # the daemon's stdin is a terminal
    try:
        d = Daemon(config, stdin=slave)
        daemons.append(d)
        d.wait_for("keys: a = approve, d = deny, v = vehicle group, s = surge, q = quit")
        d.wait_for("policy deny unrecognised")
        os.write(master, b"a")
        d.wait_for("approved by officer")
        d.wait_for("barrier: open")
        d.wait_for("barrier: closed")
        os.write(master, b"q")
        assert d.proc.wait(15) == 0
    finally:
        os.close(master)
        os.close(slave)


def test_builtin_simulation_samples_with_officer_keys(
    tmp_path: Path, broker: Mosquitto, daemons: list[Daemon]
) -> None:
    """The README's simulation: the sample traveller shows her declaration and ID card,
    the officer approves with 'a'; then 's' switches to surge mode."""
    builtin = simulation_config_path()
    samples = (builtin.parent / ".." / "samples").resolve()
    text = builtin.read_text()
    text = text.replace('"images:../samples"', f'"images:{samples}"')
    text = text.replace('"../samples/demo-trust.json"', f'"{samples / "demo-trust.json"}"')
    pin = samples / "demo-officer-pin.txt"
    text = text.replace('"../samples/demo-officer-pin.txt"', f'"{pin}"')
    text = text.replace('"127.0.0.1:8080"', '"127.0.0.1:0"')  # the screen on any free port
    text = text.replace('"~/.local/state/checkpoint-edge/simulation"', f'"{tmp_path / "store"}"')
    text = text.replace("port = 1883", f"port = {broker.port}")
    config = tmp_path / "simulation.toml"
    config.write_text(text)
    sub = Subscriber(broker.port, ["cp/v1/sim-lane-1/passage"]).connect()
    master, slave = pty.openpty()
    try:
        d = Daemon(config, stdin=slave)
        daemons.append(d)
        d.wait_for("scanned declaration")
        d.wait_for("added id_card")
        os.write(master, b"a")
        d.wait_for("approved by officer")
        passage = sub.get(timeout=20).json()
        assert passage["decision"] == "approved"
        assert passage["verdict"] == "approve"
        assert [c["kind"] for c in passage["credentials"]] == ["declaration", "id_card"]
        assert passage["traveller"]["name"] == "Trần Thị Mẫu"
        assert passage["traveller"]["declaration_id"] == "DEMO-0001-VALID"
        os.write(master, b"s")
        d.wait_for("mode officer -> surge by officer")
        os.write(master, b"q")
        assert d.proc.wait(15) == 0
        log = "\n".join(d.log)
        assert "Trần" not in log
        assert "001190099999" not in log
    finally:
        sub.disconnect()
        os.close(master)
        os.close(slave)
