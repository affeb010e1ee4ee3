"""The benchmark script keeps working (its numbers are read by people, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO


def test_verify_bench_runs_every_kind() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "verify_bench.py"), "--runs", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for kind in ("declaration ES256", "declaration EdDSA", "DCC ES256", "DCC PS256", "ID card"):
        assert kind in run.stdout


def test_decode_bench_runs_and_reports_both_decoders() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "decode_bench.py"),
            "--frames",
            "2",
            "--decisions",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines() if line}
    assert len(rows["zxing"]) == 3
    assert len(rows["pyzbar"]) == 3
    assert all(float(x) > 0 for x in rows["zxing"] + rows["pyzbar"])


def run_bench(*args: str, timeout: float = 240) -> str:
    run = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_outbox_bench_reports_every_case() -> None:
    out = run_bench(
        str(REPO / "bench" / "outbox_bench.py"), "--appends", "5", "--waiting", "300",
        "--archived", "200",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.split()[0].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("0", "0"), ("300", "0"), ("300", "0"), ("300", "200")]
    assert all(float(r[4]) > 0 for r in rows)  # bytes written per passage were counted
    assert "median with 300 waiting / median with none" in out


def test_drain_bench_drains_through_a_real_ingest() -> None:
    out = run_bench(
        str(REPO / "bench" / "drain_bench.py"), "--passages", "300", "--rounds", "1",
    )  # fmt: skip
    assert "ack=ingest" in out
    assert "drain / raw = " in out


def test_startup_bench_reaches_ready_and_reports_memory() -> None:
    import json

    out = run_bench(
        str(REPO / "bench" / "startup_bench.py"), "--runs", "1", "--settle-s", "0.5", "--json"
    )
    report = json.loads(out)
    (run,) = report["runs"]
    assert 0 < run["ready_s"] < 30
    assert run["peak_mb"] >= run["rss_ready_mb"] > 10


def test_fleet_bench_every_virtual_kiosk_appears_and_answers() -> None:
    out = run_bench(
        str(REPO / "bench" / "fleet_bench.py"), "--devices", "5", "--window-s", "1",
        "--telemetry-s", "1", "--passage-rate", "120", "--json", timeout=120,
    )  # fmt: skip
    [result] = json.loads(out)["results"]
    status, window = result["status"], result["window"]
    assert result["devices"] == 5
    assert status["listed"] == status["cli_listed"] == 5  # in the retained snapshot
    assert status["answered"] == status["cli_answered"] == 5  # get-status, ok
    assert window["disconnects"] == 0
    assert window["publish_in"] > 0  # the broker's counters were read


def test_rules_bench_judges_a_real_dcc_against_every_rule_set() -> None:
    out = run_bench(str(REPO / "bench" / "rules_bench.py"), "--rounds", "1", "--runs", "3")
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert int(rows["VN"][0]) == 5  # the vaccination's rules of Vietnam were all selected
    assert float(rows["VN"][1]) > 0
    assert float(rows["VN"][4]) > 0  # the ratio to the anchor in the same process
    assert "slowest country" in out
