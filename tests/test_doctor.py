"""``checkpoint-edge doctor``: every check passes on a sound kiosk, and each broken part
fails its own line, with the reason, and the exit code."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from edge import cli
from edge.cli import simulation_config_path
from edge.pki import ca as pki

from .conftest import Mosquitto, free_port, toml_text, write_frame
from .pki_helpers import Broker

SAMPLE_TRUST = simulation_config_path().parent.parent / "samples" / "demo-trust.json"


def kiosk_file(tmp_path: Path, port: int, **sections: dict[str, Any]) -> Path:
    frames = tmp_path / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    write_frame(frames / "01.png", None)
    trust = shutil.copy(SAMPLE_TRUST, tmp_path / "trust.json")
    now = time.time()  # the doctor ages trust files by their mtime: on the test's clock
    os.utime(trust, (now, now))
    data: dict[str, dict[str, Any]] = {
        "device": {"id": "lane-doc", "site": "test"},
        "camera": {"source": "images:frames"},
        "gpio": {"pin_factory": "mock"},
        "mqtt": {"host": "127.0.0.1", "port": port},
        "store": {"dir": "store"},
        "trust": {"files": ["trust.json"]},
        "fleet": {"clock_check": False, "disk_low_mb": 1},
        "kiosk": {"listen": ""},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp_path / "config.toml"
    path.write_text(toml_text(data))
    return path


def doctor(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = cli.main(["doctor", "-c", str(path)])
    lines = capsys.readouterr().out.splitlines()[1:-1]
    return code, {line.split()[1]: line for line in lines}


def test_a_sound_kiosk_passes(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checks = doctor(kiosk_file(tmp_path, broker.port), capsys)
    assert code == 0, checks
    assert set(checks) == {
        "camera",
        "pins",
        "tls",
        "broker",
        "clock",
        "disk",
        "store",
        "trust",
        "fleet",
        "voice",
    }
    assert checks["camera"].startswith("OK")
    assert "a 1280x720 frame" in checks["camera"]
    assert checks["broker"].startswith("OK")
    assert checks["clock"].startswith("SKIP")
    assert checks["trust"].startswith("OK")
    assert checks["fleet"].startswith("WARN")  # no fleet keys: a warning, not a failure
    assert checks["voice"].startswith("SKIP")  # the screen is off


def test_the_screens_voices_and_packs(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    from .test_voice import write_pack

    screen = {"listen": "127.0.0.1:0", "voices": str(tmp_path / "voices")}
    code, checks = doctor(kiosk_file(tmp_path, broker.port, kiosk=screen), capsys)
    assert code == 0  # a silent screen is a warning: the lane still works
    assert checks["voice"].startswith("WARN")
    assert "no Vietnamese voice" in checks["voice"]
    assert "checkpoint-edge lang voices --out" in checks["voice"]

    made = write_pack(tmp_path / "voices" / "vi", "vi", {"ready": 1.0, "denied": 1.0})
    (made / "catalogue.json").unlink()  # a made voice: no catalogue of its own
    pack = write_pack(tmp_path / "packs" / "hmn", "hmn", {"denied": 1.0})
    screen["packs"] = str(tmp_path / "packs")
    code, checks = doctor(kiosk_file(tmp_path, broker.port, kiosk=screen), capsys)
    assert checks["voice"].startswith("OK")
    assert "hmn 1/60, vi 2/60" in checks["voice"]

    (pack / "ready.wav").write_text("not a sound")
    code, checks = doctor(kiosk_file(tmp_path, broker.port, kiosk=screen), capsys)
    assert checks["voice"].startswith("WARN")
    assert "hmn: ready: ready.wav: not a WAV file" in checks["voice"]
    assert f"(checkpoint-edge lang check {tmp_path / 'packs'})" in checks["voice"]


def test_each_broken_part_fails_its_own_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kiosk_file(
        tmp_path,
        free_port(),  # nothing listens
        camera={"source": "images:nowhere"},
        fleet={"clock_check": False, "disk_low_mb": 999_999},
    )
    (tmp_path / "trust.json").write_text("{not json")
    outbox = tmp_path / "store" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "seg-0000000001.log").write_bytes(b"\x00garbage")  # bit rot
    code, checks = doctor(path, capsys)
    assert code == 1
    assert checks["camera"].startswith("FAIL")
    assert "image folder not found" in checks["camera"]
    assert checks["broker"].startswith("FAIL")
    assert "cannot reach 127.0.0.1" in checks["broker"]
    assert checks["disk"].startswith("FAIL")
    assert checks["store"].startswith("FAIL")
    assert "seg-0000000001.log" in checks["store"]
    assert checks["trust"].startswith("FAIL")
    assert checks["pins"].startswith("OK")  # the rest still ran


@pytest.fixture(scope="module")
def fleet_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init(d)
    pki.issue(d, "device", "lane-doc")
    pki.issue(d, "device", "lane-soon", days=10)
    pki.issue(d, "device", "lane-other")
    (d / pki.ACL).write_text(pki.acl_text(d))
    return d


def tls_file(tmp_path: Path, port: int, d: Path, device: str, cert: str) -> Path:
    return kiosk_file(
        tmp_path,
        port,
        device={"id": device},
        mqtt={
            "tls": True,
            "ca_file": str(d / "ca.pem"),
            "cert_file": str(d / f"{cert}.pem"),
            "key_file": str(d / f"{cert}.key"),
        },
        fleet={"clock_check": False, "disk_low_mb": 1, "keys": [str(d / "fleet-signing.pub.pem")]},
    )


def test_tls_files_and_the_handshake_with_the_fleet_broker(
    tmp_path: Path, fleet_pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Broker.deployed(fleet_pki, tmp_path / "broker").start()
    try:
        good = tls_file(tmp_path / "good", broker.port, fleet_pki, "lane-doc", "lane-doc")
        code, checks = doctor(good, capsys)
        assert code == 0, checks
        assert "certificate lane-doc valid for" in checks["tls"]
        assert checks["broker"].startswith("OK")
        assert "TLS" in checks["broker"]
        assert checks["fleet"].startswith("OK")

        soon = tls_file(tmp_path / "soon", broker.port, fleet_pki, "lane-soon", "lane-soon")
        code, checks = doctor(soon, capsys)
        assert code == 0
        assert checks["tls"].startswith("WARN")

        wrong = tls_file(tmp_path / "wrong", broker.port, fleet_pki, "lane-doc", "lane-other")
        code, checks = doctor(wrong, capsys)
        assert code == 1
        assert "is not the device id 'lane-doc'" in checks["tls"]

        stranger = tmp_path / "stranger"
        pki.init(stranger)  # another CA: the broker refuses its certificates
        pki.issue(stranger, "device", "lane-doc")
        other = tls_file(tmp_path / "other", broker.port, stranger, "lane-doc", "lane-doc")
        code, checks = doctor(other, capsys)
        assert code == 1
        assert checks["broker"].startswith("FAIL")
        assert "TLS handshake failed" in checks["broker"]
    finally:
        broker.stop()


def test_an_invalid_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(json.dumps({"x": 1}))
    assert cli.main(["doctor", "-c", str(path)]) == 2


def test_a_running_kiosk_keeps_its_camera_and_pins(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.store.outbox import Outbox

    path = kiosk_file(tmp_path, broker.port)
    running = Outbox(tmp_path / "store", "lane-doc", "test", ())  # holds the store's lock
    try:
        code, checks = doctor(path, capsys)
    finally:
        running.close()
    assert code == 0
    for name in ("camera", "pins"):
        assert checks[name].startswith("SKIP")
        assert "held by the running kiosk" in checks[name]
    code, checks = doctor(path, capsys)  # stopped: checked again
    assert checks["camera"].startswith("OK")
