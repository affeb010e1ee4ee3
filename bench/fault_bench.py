"""Fault scenarios of tests/test_faults.py with the counts of issue 4, and their figures.

The suite runs 10 broker kills and 20 kiosk kills to stay within minutes;
this runs the same tests with 100 broker kills (SIGKILL, restart) and 200
kiosk kills (SIGKILL of the daemon at random points), each checked the same
way at the ingest (every passage stored exactly once, seq 1..N per device,
outboxes empty, the barrier never opened before the store had the passage),
and prints what each run reports: passages, duplicates the ingest removed,
wall time.

Run: ``.venv/bin/python bench/fault_bench.py [--broker-restarts N] [--kiosk-kills N]
[--seed S]`` (about 15 minutes with the defaults on a 2-core machine)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-restarts", type=int, default=100)
    parser.add_argument("--kiosk-kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261126, help="for the random moments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        env = {
            **os.environ,
            "CHECKPOINT_EDGE_FAULT_BROKER_RESTARTS": str(args.broker_restarts),
            "CHECKPOINT_EDGE_FAULT_KIOSK_KILLS": str(args.kiosk_kills),
            "CHECKPOINT_EDGE_FAULT_SEED": str(args.seed),
            "CHECKPOINT_EDGE_FAULT_REPORT": str(report),
        }
        tests = [
            "tests/test_faults.py::test_broker_killed_and_restarted_repeatedly",
            "tests/test_faults.py::test_kiosk_killed_repeatedly",
        ]
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=ROOT,
            env=env,
            check=False,
        )
        rows = (
            [json.loads(line) for line in report.read_text().splitlines()]
            if report.exists()
            else []
        )
    print(f"fault benchmark (seed {args.seed}): each run checked at the ingest")
    print(f"{'scenario':<16} {'faults':>6} {'passages':>9} {'dup. removed':>13} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['test']:<16} {row['faults']:>6} {row['passages']:>9}"
            f" {row['duplicates_removed']!s:>13} {row['seconds']:>8}"
        )
    if run.returncode != 0 or len(rows) != len(tests):
        raise SystemExit(f"a fault run failed (pytest exit {run.returncode}): see above")


if __name__ == "__main__":
    main()
