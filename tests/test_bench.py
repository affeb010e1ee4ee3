"""The benchmark script keeps working (its numbers are read by people, not asserted)."""

from __future__ import annotations

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
