"""Coverage-guided fuzzing of business rules (CertLogic) with atheris.

    .venv/bin/python fuzz/fuzz_rules.py -max_total_time=600 [corpus_dir]

The input is JSON (anything else is skipped); its first byte chooses what it is:
- a CertLogic expression, validated, compiled and evaluated on a real DCC's data;
- data (a DCC payload) judged by every bundled rule of Vietnam;
- a rule document (``rule.json``), checked, parsed and run on a real DCC's data;
- a pushed rule bundle, loaded as a kiosk loads one.
Only RuleError and CertLogicError may come out: anything else is a bug.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import atheris

with atheris.instrument_imports():
    from edge.rules import certlogic
    from edge.rules.book import bundled_rules, from_bundle
    from edge.rules.certlogic import CertLogicError, Limits
    from edge.rules.rules import RuleError, RuleSet, external, parse_rule, run
    from edge.scan.testkit import dcc_claims

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
RULES = RuleSet.load([bundled_rules()], bundled_rules() / "valueSets.json")
PAYLOAD: dict[str, Any] = {"ver": "1.3.0", "nam": {"fn": "Nguyen", "gn": "Van Binh"},
                           "dob": "1990-08-15", "v": [dcc_claims()[-260][1]["v"][0]]}  # fmt: skip
EXTERNAL = external(NOW, RULES.value_sets, "VN")
LIMITS = Limits(max_seconds=1.0)


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: nothing a rule author or a push could send
    try:
        if mode == 0:
            certlogic.evaluate(doc, {"payload": PAYLOAD, "external": EXTERNAL}, LIMITS)
        elif mode == 1:
            for rule in RULES.rules:
                run(rule, doc, EXTERNAL)
        elif mode == 2:
            run(parse_rule(doc), PAYLOAD, EXTERNAL)
        else:
            from_bundle(doc)
    except (RuleError, CertLogicError):
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
