"""edge.textout: hostile text made safe for spreadsheets, terminals and JSON readers,
and the tools on the device that print a code's text through it."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge import credtools
from edge.core.model import Credential, PassageDraft
from edge.rules import cli as rules_cli
from edge.store import tool as outbox_tool
from edge.store.outbox import Outbox
from edge.textout import csv_cell, terminal_json, terminal_text

from .test_declaration import make_declaration

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

# what a traveller's code or a hostile device may carry
HOSTILE = [
    '=HYPERLINK("http://x")',
    "+cmd|' /C calc'!A0",
    "-1+1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "\x1b[2J",
    "\x1b[31mred",
    "\x1b]0;title\x07",
    "\x9b2J",  # CSI as one C1 character
    "\x7f\x08\x00",
    "\u202eevil",  # right-to-left override
    "a\u2066b\u2069c",  # an isolate
    "\u200bzero\u200dwidth\ufeff",
    "line\u2028para\u2029",
    "\ud800",  # a lone surrogate: cannot even be encoded
    "\U000e0041tag",
    "\uff1dSUM(1)",  # fullwidth =
]


def unsafe_in(text: str, keep: str = "") -> list[str]:
    """Characters of ``text`` that could act on a terminal (or hide, or reorder)."""
    bad = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    return [ch for ch in text if ch not in keep and unicodedata.category(ch) in bad]


@pytest.mark.parametrize("value", HOSTILE)
def test_terminal_text_leaves_nothing_a_terminal_would_act_on(value: str) -> None:
    shown = terminal_text(value)
    assert unsafe_in(shown) == []
    assert shown.isprintable()
    shown.encode("utf-8")  # no lone surrogate left to fail the write


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x9b", "\\x9b"),
        ("\u202eevil", "\\u202eevil"),
        ("\ud800", "\\ud800"),
        ("a\u2028b", "a\\u2028b"),
        ("\U000e0041", "\\U000e0041"),
        ("a\nb\tc", "a\\x0ab\\x09c"),
        ("C:\\x1b", "C:\\\\x1b"),  # a typed backslash is doubled: never taken for an escape
        ("Nguyễn Văn Minh 51H-123.45", "Nguyễn Văn Minh 51H-123.45"),  # text stays as it is
        ('=HYPERLINK("http://x")', '=HYPERLINK("http://x")'),  # harmless on a terminal
        (42, "42"),
    ],
)
def test_terminal_text_escapes_visibly(value: Any, shown: str) -> None:
    assert terminal_text(value) == shown


def test_terminal_text_over_every_code_point() -> None:
    everything = "".join(map(chr, range(0x110000)))
    assert unsafe_in(terminal_text(everything)) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_csv_cells_never_start_a_formula(value: str) -> None:
    cell = csv_cell(value)
    assert cell.lstrip()[:1] not in set("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
    assert unsafe_in(cell) == []
    out = io.StringIO()
    csv.writer(out).writerow([cell, "x"])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == [cell, "x"]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd", "'+cmd"),
        ("-1+1", "'-1+1"),  # strings are not sniffed for numbers
        ("-12345", "'-12345"),  # an id or a plate starting with '-' is text
        ("@SUM", "'@SUM"),
        ("  =1+1", "'  =1+1"),  # blanks first do not hide it
        ("\uff0bcmd", "'\uff0bcmd"),
        ("\ufe63cmd", "'\ufe63cmd"),  # small hyphen-minus
        ("\t=1+1", "\\x09=1+1"),  # the tab is shown, not kept: no formula either
        ("\x1b[31mred", "\\x1b[31mred"),
        ("51H-123.45", "51H-123.45"),
        ("Nguyễn Văn Minh", "Nguyễn Văn Minh"),
        ("", ""),
        (-5, "-5"),  # an actual number is data
        (1.5, "1.5"),
        (True, "True"),
    ],
)
def test_csv_cell(value: Any, cell: str) -> None:
    assert csv_cell(value) == cell


@pytest.mark.parametrize("value", HOSTILE)
def test_terminal_json_reads_back_the_same_and_is_safe(value: str) -> None:
    doc = {"name": value, "nested": [value, {value: 1}], "n": -1}
    for indent in (None, 1):
        text = terminal_json(doc, indent=indent)
        assert json.loads(text) == doc
        assert unsafe_in(text, keep="\n") == []
        text.encode("utf-8")


def test_terminal_json_keeps_text_readable() -> None:
    doc = {"name": "Nguyễn Văn Minh", "plate": "51H-123.45"}
    assert terminal_json(doc) == '{"name": "Nguyễn Văn Minh", "plate": "51H-123.45"}'
    assert terminal_json({"n": "\x7f\x9b\u202e"}) == '{"n": "\\u007f\\u009b\\u202e"}'
    assert terminal_json({"n": "\U000e0041"}) == '{"n": "\\udb40\\udc41"}'


# -- the device's own tools -----------------------------------------------------------


def test_outbox_export_is_safe_in_a_spreadsheet_and_on_a_terminal(tmp_path: Path) -> None:
    """``outbox export``: a signed declaration's text (its issuer may be careless, or a
    key stolen) reaches the audit CSV as text, and the JSON lines escaped."""
    name, plate = '=HYPERLINK("http://x")', "-1+1\x1b[2J"
    claims = make_declaration(NOW, name=name, plate=plate)
    box = Outbox(tmp_path, "lane-1", "site-a", fields=("name", "id_number", "plate"))
    cred = Credential.from_raw("declaration", b"decl", valid=True, claims=claims)
    box.append(PassageDraft(NOW, "approved", "policy", (), (cred,), "auto", "approve"))
    box.close()

    out = io.StringIO()
    assert outbox_tool.export(tmp_path, "csv", out=out) == 1
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["name"] == "'" + name
    assert row["plate"] == "'-1+1 [2J"  # the escape was cleaned when the passage was built
    assert "\x1b" not in out.getvalue()

    out = io.StringIO()
    outbox_tool.export(tmp_path, "jsonl", out=out)
    assert "\x1b" not in out.getvalue()
    traveller = json.loads(out.getvalue())["traveller"]
    assert (traveller["name"], traveller["plate"]) == (name, "-1+1 [2J")  # what was kept


def test_verify_shows_a_codes_claims_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "kind": "declaration",
        "valid": False,
        "stages": {},
        "reasons": ["bad_signature"],
        "payload_sha256": "00",
        "claims": {"name": "\x9b2J\u202eevil\x7f"},
    }
    credtools.print_report(report, show=True, as_json=False)
    credtools.print_report(report, show=True, as_json=True)
    out = capsys.readouterr().out
    assert unsafe_in(out, keep="\n") == []
    assert json.loads(out.splitlines()[-1])["claims"] == report["claims"]


def test_rule_results_quote_a_certificate_escaped() -> None:
    out = io.StringIO()
    rules_cli._line(out, {"rule": "VR-VN-0000", "error": "unknown field \x1b[2J\u202e"})
    assert unsafe_in(out.getvalue(), keep="\n") == []
    assert json.loads(out.getvalue())["error"] == "unknown field \x1b[2J\u202e"
