"""Config loading: strict, typed, every problem named by its key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge import config as config_mod
from edge.cli import main, simulation_config_path
from edge.errors import ConfigError
from edge.scan import registry

from .conftest import REPO, toml_text

MINIMAL = '[device]\nid = "lane-1"\n'


def load_text(tmp_path: Path, text: str) -> config_mod.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return config_mod.load(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return info.value.problems


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert cfg.device.id == "lane-1"
    assert cfg.camera.source.kind == "picamera2"
    assert cfg.scan.decoder == "auto"
    assert cfg.gpio.pin_factory == "lgpio"
    assert cfg.lane.mode == "officer"
    assert cfg.mqtt.port == 1883
    assert cfg.store.dir == Path("/var/lib/checkpoint-edge")


def test_device_id_is_a_whole_topic_level(tmp_path: Path) -> None:
    for bad in ("lane 1", "lane/1", "lane-1\n", "Lane-1", "lane+1", "-lane"):
        found = problems(tmp_path, f"[device]\nid = {json.dumps(bad)}\n")
        assert found[0].startswith("device.id: must be 1-63 characters"), bad


def test_device_id_is_required(tmp_path: Path) -> None:
    assert problems(tmp_path, "[device]\nsite = 'x'\n") == ["device.id: required"]


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    text = toml_text(
        {
            "device": {"id": "Lane 1!"},
            "camera": {"source": "webcam", "fps": 0, "colour": True},
            "scan": {"decoder": "magic"},
            "gpio": {"approve_pin": 99, "barrier_active_high": "yes"},
            "lane": {"mode": "party", "open_s": "five"},
            "mqtt": {"port": 70000},
            "extra": {"a": 1},
        }
    )
    found = problems(tmp_path, text)
    keys = {p.split(":")[0] for p in found}
    assert keys == {
        "device.id",
        "camera.source",
        "camera.fps",
        "camera.colour",
        "scan.decoder",
        "gpio.approve_pin",
        "gpio.barrier_active_high",
        "lane.mode",
        "lane.open_s",
        "mqtt.port",
        "extra",
    }
    assert any("unknown key" in p for p in found if p.startswith("camera.colour"))
    assert any("officer, auto, surge" in p for p in found if p.startswith("lane.mode"))


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL + "[lane]\nopen_s = true\n") == [
        "lane.open_s: must be a number (got True)"
    ]


def test_camera_sources_parse_and_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL + '[camera]\nsource = "images:frames"\n')
    assert cfg.camera.source.kind == "images"
    assert cfg.camera.source.path == tmp_path / "frames"
    cfg = load_text(tmp_path, MINIMAL + '[camera]\nsource = "v4l2:2"\n')
    assert (cfg.camera.source.kind, cfg.camera.source.index) == ("v4l2", 2)
    cfg = load_text(tmp_path, MINIMAL + '[camera]\nsource = "video:/x/y.mp4"\n')
    assert cfg.camera.source.path == Path("/x/y.mp4")
    cfg = load_text(tmp_path, MINIMAL + '[store]\ndir = "data"\n')
    assert cfg.store.dir == tmp_path / "data"


def test_pins_must_differ(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "[gpio]\nbuzzer_pin = 17\n")
    assert found == ["gpio.buzzer_pin: pin 17 is already used by gpio.barrier_pin"]


def test_tls_files_must_exist_and_pair(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[mqtt]\ntls = true\nca_file = "nope.pem"\n')
    assert found == [f"mqtt.ca_file: file not found: {tmp_path / 'nope.pem'}"]
    (tmp_path / "c.pem").write_text("x")
    found = problems(tmp_path, MINIMAL + '[mqtt]\ntls = true\ncert_file = "c.pem"\n')
    assert found == ["mqtt.cert_file: cert_file and key_file must be given together"]


def test_not_toml_and_unreadable_files(tmp_path: Path) -> None:
    assert problems(tmp_path, "[device\nid=")[0].startswith("not valid TOML")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        config_mod.load(tmp_path / "missing.toml")


def test_builtin_simulation_config_is_valid() -> None:
    cfg = config_mod.load(simulation_config_path())
    assert cfg.gpio.pin_factory == "mock"
    assert cfg.camera.source.kind == "images"
    assert cfg.camera.source.path is not None
    assert sorted(p.name for p in cfg.camera.source.path.glob("*.png"))


def test_check_config_exit_codes_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + "[lane]\nmode = 'party'\nopen_s = -1\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "lane.mode" in err
    assert "lane.open_s" in err
    assert "2 problem(s)" in err


def test_check_config_as_a_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[device]\nid = 'x'\n[mqtt]\nport = 'a'\n")
    run = subprocess.run(
        [sys.executable, "-m", "edge", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "mqtt.port: must be an integer" in run.stderr
    assert "Traceback" not in run.stderr


def test_every_key_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    for key, default, _ in config_mod.describe_keys():
        section, name = key.split(".")
        assert re.search(rf"^## \[{section}\]", doc, re.M), f"section [{section}] not documented"
        assert re.search(rf"^\| `{name}` \| `{re.escape(default)}`", doc, re.M), (
            f"{key} (default {default}) not documented"
        )


def test_every_ingest_key_is_documented() -> None:
    doc = (REPO / "docs" / "central.md").read_text()
    keys = [
        k
        for k in config_mod.describe_keys(config_mod.IngestFile)
        if k[0].startswith(("ingest.", "nats."))
    ]
    assert keys
    for key, default, description in keys:
        row = f"| `{key.split('.')[1]}` | `{default}` | {description} |"
        assert row in doc, f"{key} (default {default}) not documented as it is in the code"


def test_the_documented_ingest_example_is_valid(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "central.md").read_text()
    example = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert example is not None
    for name in ("ca.crt", "ingest-1.crt", "ingest-1.key"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")  # only their presence counts
    path = tmp_path / "ingest.toml"
    path.write_text(example.group(1))
    cfg = config_mod.load_as(path, config_mod.IngestFile)
    assert cfg.ingest.database.startswith("postgresql://")
    assert (cfg.ingest.client_id, cfg.ingest.group, cfg.mqtt.tls) == ("ingest-1", "ingest", True)


def test_the_documented_nats_ingest_example_is_valid(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "central.md").read_text()
    example = next(
        block for block in re.findall(r"```toml\n(.*?)```", doc, re.S) if 'source = "nats"' in block
    )
    for name in ("ca.crt", "ingest-1.crt", "ingest-1.key", "ingest.creds"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")  # only their presence counts
    path = tmp_path / "ingest.toml"
    path.write_text(example)
    cfg = config_mod.load_as(path, config_mod.IngestFile)
    assert (cfg.ingest.source, cfg.mqtt.protocol, len(cfg.nats.servers)) == ("nats", "3.1.1", 3)
    assert cfg.nats.creds_file == tmp_path / "ingest.creds"


def test_secrets_can_come_from_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    data = {"device": {"id": "lane-1"}, "mqtt": {"password_file": "credential:mqtt-password"}}
    with pytest.raises(ConfigError) as caught:
        config_mod.from_mapping(data, base_dir=tmp_path)
    assert "mqtt.password_file: credential:mqtt-password: no systemd credentials here" in str(
        caught.value
    )
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(ConfigError, match="not among the service's credentials"):
        config_mod.from_mapping(data, base_dir=tmp_path)
    (creds / "mqtt-password").write_text("s3cret\n")
    cfg = config_mod.from_mapping(data, base_dir=tmp_path)
    assert cfg.mqtt.password_file == creds / "mqtt-password"
    bad = {"device": {"id": "lane-1"}, "mqtt": {"password_file": "credential:../x"}}
    with pytest.raises(ConfigError, match="not a credential name"):
        config_mod.from_mapping(bad, base_dir=tmp_path)


def test_the_allowed_formats_and_fields_are_documented() -> None:
    """[policy] accept and [passage] fields take what the format table offers: the
    docs name every one."""
    doc = (REPO / "docs" / "configuration.md").read_text()
    accept = next(line for line in doc.splitlines() if line.startswith("| `accept` |"))
    fields = next(line for line in doc.splitlines() if line.startswith("| `fields` |"))
    for kind in registry.AUTHORISING:
        assert f"`{kind}`" in accept, kind
    for name in registry.TRAVELLER_FIELDS:
        assert f"`{name}`" in fields, name
