"""The credential tools as a user runs them: keys new, issue, verify."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DCC_VECTORS, write_frame

DECLARATION_TOML = """\
[person]
name = "Nguyễn Thị Minh Khai"
id_number = "079190012345"
birth_date = "1990-01-31"
sex = "F"
phone = "+84901234567"

[trip]
origin = { province = "79", district = "760", text = "Số 12 Lê Lợi, Phường Bến Nghé, Quận 1" }
destination = "01/001/Số 45 Lý Thường Kiệt, Hoàn Kiếm"
plate = "51H-123.45"
transport = "car"
purpose = "Thăm gia đình"

[health]
vaccine_doses = 2
"""


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def issuer(tmp_path: Path) -> dict[str, Path]:
    run = cli("keys", "new", "--issuer", "VN-HN", "--alg", "EdDSA", "--out", tmp_path / "keys")
    assert run.returncode == 0, run.stderr
    files = {p.name.split(".", 1)[1]: p for p in (tmp_path / "keys").iterdir()}
    assert set(files) == {"key.pem", "pub.pem", "trust.json"}
    assert stat.S_IMODE(os.stat(files["key.pem"]).st_mode) == 0o600
    kid = json.loads(files["trust.json"].read_text())["issuers"][0]["kid"]
    assert kid in run.stdout
    assert files["key.pem"].name.startswith("VN-HN-" + base64.b64decode(kid).hex())
    return files


def test_issue_verify_round_trip(tmp_path: Path, issuer: dict[str, Path]) -> None:
    decl = tmp_path / "decl.toml"
    decl.write_text(DECLARATION_TOML)
    png, svg = tmp_path / "d.png", tmp_path / "d.svg"
    run = cli(
        "issue",
        "--key",
        issuer["key.pem"],
        "--issuer",
        "VN-HN",
        "--in",
        decl,
        "--png",
        png,
        "--svg",
        svg,
    )
    assert run.returncode == 0, run.stderr
    payload = run.stdout.strip()
    assert payload.startswith("MD1:")
    assert "QR version" in run.stderr
    assert png.stat().st_size > 0
    assert svg.read_text().lstrip().startswith("<?xml")

    ok = cli("verify", "--image", png, "--trust", issuer["trust.json"], "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["kind"] == "declaration"
    assert report["valid"] is True
    assert report["reasons"] == []
    assert report["payload_sha256"] == hashlib.sha256(payload.encode()).hexdigest()
    assert report["stages"]["picture_decode"] is True
    assert all(report["stages"].values())
    assert "claims" not in report  # personal data only with --show
    assert "Minh Khai" not in ok.stdout

    shown = cli("verify", "--text", payload, "--trust", issuer["pub.pem"], "--json", "--show")
    assert json.loads(shown.stdout)["claims"]["name"] == "Nguyễn Thị Minh Khai"

    late = cli(
        "verify", "--text", payload, "--trust", issuer["trust.json"], "--at", "2099-01-01T00:00:00Z"
    )
    assert late.returncode == 1
    assert "reasons: expired" in late.stdout
    assert "validity FAILED" in late.stdout

    untrusted = cli("verify", "--text", payload, "--json")
    assert untrusted.returncode == 1
    assert json.loads(untrusted.stdout)["reasons"] == ["unknown_kid"]


def test_issue_from_flags_only(tmp_path: Path, issuer: dict[str, Path]) -> None:
    run = cli(
        "issue", "--key", issuer["key.pem"], "--issuer", "VN-HN",
        "--name", "Lê Văn An", "--id-number", "001190000001", "--birth-date", "1990-02-03",
        "--origin", "01", "--destination", "79/760", "--transport", "motorbike",
        "--id", "TEST-0001", "--valid-hours", "24",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    check = cli(
        "verify", "--text", run.stdout.strip(), "--trust", issuer["trust.json"], "--json", "--show"
    )
    claims = json.loads(check.stdout)["claims"]
    assert claims["declaration_id"] == "TEST-0001"
    assert claims["destination"] == {"province": "79", "district": "760", "text": ""}


TRIP = ["--name", "A", "--origin", "01", "--destination", "01"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*TRIP, "--id-number", "12", "--birth-date", "1990-01-01"], "ID number"),
        ([*TRIP, "--id-number", "001190000001"], "missing 'birth_date'"),
        ([*TRIP, "--id-number", "001190000001", "--birth-date", "31/01/1990"], "isoformat"),
    ],
)
def test_issue_refuses_bad_input_naming_the_field(
    issuer: dict[str, Path], args: list[str], message: str
) -> None:
    run = cli("issue", "--key", issuer["key.pem"], "--issuer", "VN-HN", *args)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_verify_image_without_a_code(tmp_path: Path) -> None:
    image = write_frame(tmp_path / "empty.png", None)
    run = cli("verify", "--image", image, "--json")
    assert run.returncode == 1
    report = json.loads(run.stdout)
    assert report["payload_sha256"] is None
    assert report["stages"] == {"picture_decode": False}


def test_verify_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    run = cli("verify", "--text", "x", "--trust", bad)
    assert run.returncode == 2
    assert "not valid JSON" in run.stderr
    assert cli("verify").returncode == 2  # neither --image nor --text
    assert cli("verify", "--text", "x", "--at", "yesterday").returncode == 2


def test_verify_a_dcc_vector_with_its_certificate_and_clock(tmp_path: Path) -> None:
    path = DCC_VECTORS / "common" / "CO3.json"
    case = json.loads(path.read_text())
    cert = tmp_path / "signer.der"
    cert.write_bytes(base64.b64decode(case["TESTCTX"]["CERTIFICATE"]))
    at = case["TESTCTX"]["VALIDATIONCLOCK"]
    run = cli("verify", "--text", case["PREFIX"], "--trust", cert, "--at", at, "--json")
    assert run.returncode == 0, run.stdout
    report = json.loads(run.stdout)
    assert (report["kind"], report["valid"]) == ("dcc", True)
    assert report["stages"]["key_usage"] is True
