"""``checkpoint-edge rules``: what a rules author runs.

- ``rules test PATH...``: every test case of every rule (``<RuleId>/rule.json``
  with ``<RuleId>/tests/*.json``; PATH is a rule folder or a folder of them, the
  gateway's ``<CC>/`` layout), one JSON line per case, then a summary line;
  exit 0 only when every case passes.
- ``rules check FILE...``: a rule's schema and CertLogic well-formedness (FILE a
  ``rule.json``, a rule folder, or a folder of them).
- ``rules eval --rule FILE --dcc (--text T | --image I)``: one rule on one
  certificate (its signature is not checked: an author's tool).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from edge.errors import CredentialRejected
from edge.rules.rules import (
    OF_ENTRY,
    Result,
    RuleError,
    check_rule,
    external,
    parse_rule,
    read_json,
    rule_folders,
    run,
)
from edge.scan import dcc
from edge.scan.envelope import CWT_EXP, CWT_IAT, timestamp
from edge.textout import terminal_json


def register(sub: Any, timestamp: Any) -> None:
    rules = sub.add_parser("rules", help="business rules (CertLogic): test, check, evaluate")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    test = rules_sub.add_parser("test", help="run the test cases of rule folders")
    test.add_argument("paths", nargs="+", type=Path, help="a rule folder, or a folder of them")
    check = rules_sub.add_parser("check", help="check rule files: schema and CertLogic")
    check.add_argument("files", nargs="+", type=Path, help="rule.json files or rule folders")
    ev = rules_sub.add_parser("eval", help="evaluate one rule on one DCC")
    ev.add_argument("--rule", type=Path, required=True, help="rule.json or its folder")
    ev.add_argument("--dcc", action="store_true", help="the certificate is an EU DCC (HC1:)")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the DCC's QR text (HC1:...)")
    source.add_argument("--image", type=Path, help="an image holding the DCC's QR code")
    ev.add_argument("--at", type=timestamp, help="validation time (default: now)")
    ev.add_argument("--country", default="", help="country of arrival (default: the rule's)")
    ev.add_argument("--value-sets", type=Path, help="value sets JSON (external.valueSets)")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # (read now: a test's capture replaces it)
    if args.rules_command == "test":
        return run_tests(args.paths, out)
    if args.rules_command == "check":
        return check_files(args.files, out)
    return evaluate_one(args, out)


def _line(out: TextIO, doc: dict[str, Any]) -> None:
    out.write(terminal_json(doc) + "\n")  # an error may quote the certificate


def _rule_file(path: Path) -> Path:
    return path / "rule.json" if path.is_dir() else path


def run_tests(paths: list[Path], out: TextIO) -> int:
    """Every case of every rule under ``paths``; 0 when all pass."""
    cases = passed = rules = broken = 0
    for path in paths:
        try:
            folders = rule_folders(path)
        except RuleError as exc:
            _line(out, {"rule": None, "test": str(path), "error": str(exc), "pass": False})
            broken += 1
            continue
        for folder in folders:
            try:
                rule = parse_rule(read_json(folder / "rule.json"), folder.name)
            except RuleError as exc:
                _line(out, {"rule": folder.name, "test": str(folder / "rule.json"),
                            "error": str(exc), "pass": False})  # fmt: skip
                broken += 1
                continue
            rules += 1
            for test in sorted((folder / "tests").glob("*.json")):
                cases += 1
                ok = _test_case(rule, test, out)
                passed += ok
    failed = cases - passed
    summary = {"rules": rules, "cases": cases, "passed": passed, "failed": failed}
    _line(out, {"summary": {**summary, "broken": broken}})
    return 0 if failed == 0 and broken == 0 else 1


def _test_case(rule: Any, test: Path, out: TextIO) -> bool:
    line: dict[str, Any] = {"rule": rule.identifier, "test": str(test)}
    try:
        case = read_json(test, 4 * 1024 * 1024)
    except RuleError as exc:
        _line(out, {**line, "expected": None, "result": None, "error": str(exc), "pass": False})
        return False
    if (
        not isinstance(case, dict)
        or "payload" not in case
        or not isinstance(case.get("expected"), bool)
    ):
        _line(out, {**line, "expected": None, "result": None, "pass": False,
                    "error": "a test case needs a payload and a true/false expected"})  # fmt: skip
        return False
    ext = case.get("external", {})
    result = run(rule, case["payload"], ext if isinstance(ext, dict) else {})
    value = {"passed": True, "failed": False}.get(result.outcome)
    line["expected"], line["result"] = case["expected"], value
    line["pass"] = value == case["expected"]
    if result.outcome == "error":
        line["error"] = result.detail
    _line(out, line)
    return bool(line["pass"])


def check_files(files: list[Path], out: TextIO) -> int:
    """Each rule file's problems (or OK); 0 when every one is usable."""
    bad = 0
    targets: list[Path] = []
    for path in files:
        try:
            targets += [f / "rule.json" for f in rule_folders(path)] if path.is_dir() else [path]
        except RuleError as exc:
            out.write(f"{path}: {'; '.join(exc.problems)}\n")
            bad += 1
    for target in targets:
        try:
            problems = check_rule(read_json(target))
        except RuleError as exc:
            problems = exc.problems
        if problems:
            bad += 1
            for problem in problems:
                out.write(f"{target}: {problem}\n")
        else:
            out.write(f"{target}: OK\n")
    return 1 if bad else 0


def evaluate_one(args: argparse.Namespace, out: TextIO) -> int:
    """One rule on one DCC, as a verifier would run it at ``--at``."""
    from edge import credtools  # noqa: PLC0415 - the image decoder: only here

    given = credtools.payload_text(args.text).decode() if args.text is not None else ""
    try:
        rule = parse_rule(read_json(_rule_file(args.rule)), str(args.rule))
        if args.image:
            codes = credtools.decode_image(args.image)
            if not codes:
                raise credtools.UsageError(f"{args.image}: no QR code found")
            text = codes[0].decode("utf-8", "replace")
        else:
            text = given
        claims, payload = dcc.decode_payload(text)
        value_sets = read_json(args.value_sets, 4 * 1024 * 1024) if args.value_sets else {}
        if not isinstance(value_sets, dict):
            raise RuleError(str(args.value_sets), ["value sets: a JSON object of named lists"])
    except RuleError as exc:
        raise credtools.UsageError(str(exc)) from exc
    except CredentialRejected as exc:
        raise credtools.UsageError(f"not a DCC: {exc}") from exc
    when = args.at or datetime.now(UTC)
    kinds = [k for k in OF_ENTRY if k in payload]
    result: Result = run(
        rule,
        payload,
        external(
            when,
            value_sets,
            args.country or rule.country,
            iat=timestamp(claims, CWT_IAT),
            exp=timestamp(claims, CWT_EXP),
        ),
    )
    doc: dict[str, Any] = {
        "rule": rule.identifier,
        "certificate_type": OF_ENTRY[kinds[0]] if len(kinds) == 1 else None,
        "applies": rule.certificate_type in ("General", *(OF_ENTRY[k] for k in kinds)),
        "outcome": result.outcome,
        "result": {"passed": True, "failed": False}.get(result.outcome),
        "signature_verified": False,
    }
    if result.detail:
        doc["error"] = result.detail
    _line(out, doc)
    return 0 if result.outcome == "passed" else 1
