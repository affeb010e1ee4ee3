"""``checkpoint-edge report``: a day's figures per checkpoint, as a control room sends them
up the chain (in 2021: vehicles checked, people turned back, per city, every day).

One row per checkpoint (``site``) and a total: passages, approved, denied (turned
back), vehicles and the people in them, passages let through in surge mode, and
the commonest reasons for turning people back. The day is a calendar day in the
province's time zone (``--tz``, default Asia/Ho_Chi_Minh), counted from the
hourly roll-ups (rollup.py), so the figures are those of ``/api/summary`` for the
same range. Counts only: no personal data.

Formats: ``csv`` (one row per checkpoint, then ``TOTAL``; every cell made safe
for a spreadsheet by :mod:`edge.textout`), ``json`` (one document), ``pdf`` (an
A4 page with the same table, in DejaVu Sans so that Vietnamese names print;
needs ``fpdf2``: ``pip install 'checkpoint-edge[pdf]'``, and Debian's
``fonts-dejavu-core``). Site names and reason codes came from devices: the CSV
neutralises formulas and escapes, the JSON escapes controls, the PDF prints
them as text.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.central.contract import DatabaseError, PassageDB
from edge.central.rollup import COUNTS
from edge.central.summary import RangeError, whole_hours
from edge.core.model import iso_utc
from edge.errors import ConfigError
from edge.textout import csv_cell, terminal_json

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
TOP_REASONS = 3
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
PDF_SITE_CHARS = 60  # a longer site name is cut on the page (the CSV and JSON keep it whole)


class ReportError(Exception):
    """The report cannot be made (the message says why and what to do)."""


@dataclass
class Row:
    site: str
    counts: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)

    def doc(self) -> dict[str, Any]:
        return {
            "site": self.site,
            **{name: int(self.counts[name]) for name in COUNTS},
            "reasons": dict(self.reasons.most_common()),
        }

    def top(self) -> str:
        return ", ".join(f"{r} {n}" for r, n in self.reasons.most_common(TOP_REASONS))


@dataclass
class Daily:
    day: date
    tz: str
    start: datetime
    end: datetime
    sites: list[Row]
    total: Row

    def doc(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "tz": self.tz,
            "from": iso_utc(self.start),
            "to": iso_utc(self.end),
            "sites": [r.doc() for r in self.sites],
            "total": self.total.doc(),
        }


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ReportError(f"unknown time zone {name!r} (an IANA name: Asia/Ho_Chi_Minh)") from exc


def daily(db: PassageDB, day: date, tz: str = DEFAULT_TZ) -> Daily:
    """The figures of ``day`` (a calendar day in ``tz``) per checkpoint."""
    local = zone(tz)
    try:
        midnight = datetime.combine(day, time(0), local)
        start, end = whole_hours(
            midnight, datetime.combine(day + timedelta(days=1), time(0), local)
        )
    except (OverflowError, RangeError) as exc:
        raise ReportError(f"--day {day}: {exc}") from exc
    if start != midnight or end - start != timedelta(days=1):
        # a zone not on a whole-hour offset: days would overlap in the hourly roll-ups
        raise ReportError(
            f"{tz} is not a whole number of hours from UTC on {day}: the figures are counted "
            "by the hour (UTC); use --tz UTC or a whole-hour zone"
        )
    rows = db.hourly(start.strftime("%Y-%m-%dT%H"), end.strftime("%Y-%m-%dT%H"))
    sites: dict[str, Row] = defaultdict(lambda: Row(""))
    total = Row("TOTAL")
    for _hour, site, counts in rows.counted():
        sites[site].counts.update(counts)
        total.counts.update(counts)
    for site, reason, count in rows.reasons:
        sites[site].reasons[str(reason)] += int(count)
        total.reasons[str(reason)] += int(count)
    for name, row in sites.items():
        row.site = name
    ordered = sorted(sites.values(), key=lambda r: (-r.counts["passages"], r.site))
    return Daily(day, tz, start, end, ordered, total)


HEADER = ("site", *COUNTS, "top_reasons")


def to_csv(report: Daily) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("day", *HEADER))
    for row in [*report.sites, report.total]:
        cells = [row.site, *(int(row.counts[n]) for n in COUNTS), row.top()]
        writer.writerow([report.day.isoformat(), *(csv_cell(c) for c in cells)])
    return out.getvalue()


def to_json(report: Daily) -> str:
    return terminal_json(report.doc()) + "\n"


def font_file(name: str = "DejaVuSans.ttf") -> Path:
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise ReportError(f"the PDF needs the font {name}: apt-get install fonts-dejavu-core")


def to_pdf(report: Daily) -> bytes:
    try:
        from fpdf import FPDF  # noqa: PLC0415 - optional: only PDF reports need it
    except ImportError as exc:
        raise ReportError("the PDF needs fpdf2: pip install 'checkpoint-edge[pdf]'") from exc
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_font("DejaVu", "", str(font_file()))
    pdf.add_font("DejaVu", "B", str(font_file("DejaVuSans-Bold.ttf")))
    pdf.set_title(f"Checkpoints {report.day.isoformat()}")
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 14)
    pdf.cell(
        0, 8, f"Checkpoints, {report.day.isoformat()} ({report.tz})", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("DejaVu", "", 9)
    pdf.cell(
        0,
        6,
        f"Counted from {iso_utc(report.start)} to {iso_utc(report.end)} (UTC)",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(2)
    labels = (
        "Checkpoint",
        "Passages",
        "Approved",
        "Turned back",
        "Vehicles",
        "People in them",
        "Surge",
        "Commonest reasons",
    )
    with pdf.table(
        col_widths=(60, 20, 20, 22, 18, 22, 16, 90), text_align=("LEFT", *["RIGHT"] * 6, "LEFT")
    ) as table:
        head = table.row()
        for label in labels:
            head.cell(label)
        for row in [*report.sites, report.total]:
            line = table.row()
            name = _printable(row.site)
            line.cell(name if len(name) <= PDF_SITE_CHARS else name[: PDF_SITE_CHARS - 1] + "…")
            for n in COUNTS:
                line.cell(str(int(row.counts[n])))
            line.cell(_printable(row.top()))
    return bytes(pdf.output())


def _printable(text: str) -> str:
    """Text as the page can print it: controls and marks shown as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _day(text: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"not a day as YYYY-MM-DD: {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a day: {text!r}: {exc}") from exc


def register(sub: Any) -> None:
    report = sub.add_parser("report", help="a day's figures per checkpoint: csv, json or pdf")
    report.add_argument(
        "--database",
        help="sqlite:///PATH or postgresql:// URL (default: the local ingest's database)",
    )
    report.add_argument("--day", required=True, type=_day, help="YYYY-MM-DD")
    report.add_argument("--format", choices=["csv", "json", "pdf"], default="csv")
    report.add_argument("--tz", default=DEFAULT_TZ, help=f"the day's time zone ({DEFAULT_TZ})")
    report.add_argument("-o", "--out", type=Path, help="write here (a PDF needs it unless piped)")


def main(args: argparse.Namespace) -> int:
    try:
        data = _made(args)
    except (ConfigError, ReportError) as exc:
        print(f"checkpoint-edge report: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(f"checkpoint-edge report: {exc}", file=sys.stderr)
        return 1
    if args.out is not None:
        try:
            args.out.write_bytes(data)
        except OSError as exc:
            print(f"checkpoint-edge report: {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    elif args.format == "pdf" and sys.stdout.isatty():
        print("checkpoint-edge report: a PDF is not for a terminal: -o FILE", file=sys.stderr)
        return 2
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _made(args: argparse.Namespace) -> bytes:
    """The report's bytes (ConfigError, ReportError, DatabaseError)."""
    from edge.central.db import open_db  # noqa: PLC0415 - the kiosk's command line stays light

    database = args.database
    if database is None:
        from edge import config as config_mod  # noqa: PLC0415
        from edge.cli import local_ingest_config_path  # noqa: PLC0415 - no cycle at load

        database = config_mod.load_as(
            local_ingest_config_path(), config_mod.IngestFile
        ).ingest.database
    db = open_db(database, readonly=True)
    try:
        made = daily(db, args.day, args.tz)
        if args.format == "pdf":
            return to_pdf(made)
        return (to_csv(made) if args.format == "csv" else to_json(made)).encode()
    finally:
        db.close()
