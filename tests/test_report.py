"""``checkpoint-edge report``: a day's figures per checkpoint in CSV, JSON and PDF, equal
to the summary of the same local day, with hostile site names made harmless in each
format, and clear refusals."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from edge import cli
from edge.central.contract import Checked
from edge.central.db import open_db
from edge.central.summary import summary

from .test_ingest_hostile import passage
from .test_summary import varied

DAY = date(2026, 11, 27)
VN = timezone(timedelta(hours=7))
FORMULA = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def database(tmp_path: Path) -> str:
    """Passages of two days stored by the ingest's own database layer, a checkpoint with
    a formula for a name among them."""
    url = f"sqlite:///{tmp_path / 'central.db'}"
    msgs = varied(random.Random(5), 400)
    msgs += [
        passage("lane-9", seq, site=FORMULA, ts=f"2026-11-27T0{seq}:00:00.000Z", decision="denied",
                reasons=["expired"])
        for seq in range(1, 4)
    ]  # fmt: skip
    db = open_db(url)
    db.store([Checked(m, json.dumps(m)) for m in msgs])
    db.close()
    return url


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_day_per_checkpoint_as_csv_and_json_equals_the_summary(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = open_db(database, readonly=True)
    try:
        start = datetime(2026, 11, 27, tzinfo=VN)
        want = summary(db, start, start + timedelta(days=1))
    finally:
        db.close()

    code, out, _ = run(capsys, "--database", database, "--day", "2026-11-27", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["day"], doc["tz"]) == ("2026-11-27", "Asia/Ho_Chi_Minh")
    assert (doc["from"], doc["to"]) == ("2026-11-26T17:00:00.000Z", "2026-11-27T17:00:00.000Z")
    got = {
        s["site"]: {k: v for k, v in s.items() if k not in ("site", "reasons")}
        for s in doc["sites"]
    }
    assert got == want["by_site"]
    assert doc["total"]["passages"] == want["passages"]
    assert doc["total"]["reasons"] == want["by_reason"]
    assert [s["passages"] for s in doc["sites"]] == sorted(
        (s["passages"] for s in doc["sites"]), reverse=True
    )

    code, out, _ = run(capsys, "--database", database, "--day", "2026-11-27")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[-1]["site"] == "TOTAL"
    assert int(rows[-1]["passages"]) == want["passages"]
    assert sum(int(r["denied"]) for r in rows[:-1]) == want["denied"]
    evil = [r for r in rows if "HYPERLINK" in r["site"]]
    assert evil[0]["site"] == "'" + FORMULA  # shown as text by a spreadsheet, never run
    assert evil[0]["top_reasons"] == "expired 3"
    assert {r["day"] for r in rows} == {"2026-11-27"}


def test_the_pdf_prints_the_table_with_vietnamese_names(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "day.pdf"
    code, _, err = run(
        capsys, "--database", database, "--day", "2026-11-27", "--format", "pdf", "-o", str(out)
    )
    assert code == 0, err
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    text = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "Checkpoints, 2026-11-27 (Asia/Ho_Chi_Minh)" in text
    assert "Chốt Dầu Giây" in text
    assert "TOTAL" in text
    assert "Passages" in text
    assert "Turned" in text


def test_an_empty_day_a_bad_zone_and_a_missing_database(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--database", database, "--day", "2020-01-01", "--format", "json")
    assert code == 0
    assert json.loads(out)["sites"] == []
    code, _, err = run(capsys, "--database", database, "--day", "2026-11-27", "--tz", "Mars/Base")
    assert code == 2
    assert "unknown time zone 'Mars/Base'" in err
    code, _, err = run(
        capsys, "--database", f"sqlite:///{tmp_path / 'none.db'}", "--day", "2026-11-27"
    )
    assert code == 1
    assert "does not exist" in err
    old = tmp_path / "old.db"  # a database no ingest of this version has opened
    with sqlite3.connect(old) as conn:
        conn.execute("CREATE TABLE passages (pid TEXT)")
    code, _, err = run(capsys, "--database", f"sqlite:///{old}", "--day", "2026-11-27")
    assert code == 1
    assert "no roll-ups yet" in err


def test_another_zone_counts_another_day(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--database", database, "--day", "2026-11-27", "--tz", "UTC", "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert (doc["from"], doc["to"]) == ("2026-11-27T00:00:00.000Z", "2026-11-28T00:00:00.000Z")
    db = open_db(database, readonly=True)
    try:
        start = datetime(2026, 11, 27, tzinfo=UTC)
        assert doc["total"]["passages"] == summary(db, start, start + timedelta(days=1))["passages"]
    finally:
        db.close()


def test_days_and_zones_it_cannot_count_and_a_file_it_cannot_write(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for day in ("9999-12-31", "0001-01-01"):
        code, _, err = run(capsys, "--database", database, "--day", day)
        assert code == 2, err
        assert f"--day {day}: " in err
    code, _, err = run(
        capsys, "--database", database, "--day", "2026-11-27", "--tz", "Asia/Kolkata"
    )
    assert code == 2
    assert "not a whole number of hours from UTC" in err
    code, _, err = run(
        capsys, "--database", database, "--day", "2026-11-27", "-o", str(tmp_path / "no" / "x.csv")
    )
    assert code == 1
    assert "No such file or directory" in err
    for day in ("20261127", "2026-W48-4"):
        with pytest.raises(SystemExit):
            cli.main(["report", "--database", database, "--day", day])
        assert "not a day as YYYY-MM-DD" in capsys.readouterr().err
