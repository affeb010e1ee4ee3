"""The rules a kiosk applies: loaded from files (the bundled Vietnamese rules by
default), replaced by a signed fleet push, and asked about each DCC shown.

:class:`RuleBook` is one loaded rule set and the country of arrival: pure, its
:meth:`RuleBook.judge` selects the rules as the EU verifier does and runs them.
:class:`RulesHolder` keeps the book in use (swapped whole, so the lane's thread
always reads a complete one) and the last load error.

A pushed rule set is a JSON bundle::

    {"format": "checkpoint-edge-rules", "rules": [<rule.json>...], "valueSets": {...}}
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from edge.config.judging import RulesConfig
from edge.rules.rules import (
    MAX_RULE_BYTES,
    MAX_RULES,
    OF_ENTRY,
    Result,
    RuleError,
    RuleSet,
    external,
    parse_rule,
    read_json,
    rule_folders,
    run,
)

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "checkpoint-edge-rules"
MAX_BUNDLE = 4 * 1024 * 1024
PUSHED = "a fleet push"
JUDGE_BUDGET_S = 1.0  # all the rules for one DCC (each has its own 0.25 s as well)
CERTIFICATE_TYPES = ("Vaccination", "Test", "Recovery")


def bundled_rules() -> Path:
    """The rules of Vietnam shipped with the package (``edge/rules/vn``)."""
    return Path(str(resources.files("edge.rules") / "vn"))


def from_bundle(doc: Any) -> RuleSet:
    """A pushed rule set; RuleError naming every rule that cannot be used."""
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise RuleError("rule bundle", [f'must be {{"format": "{BUNDLE_FORMAT}", "rules": [...]}}'])
    rules, problems = [], []
    found = doc.get("rules")
    if not isinstance(found, list) or not found or len(found) > MAX_RULES:
        raise RuleError("rule bundle", [f"rules: a list of 1-{MAX_RULES} rules"])
    for i, item in enumerate(found):
        try:
            if len(json.dumps(item)) > MAX_RULE_BYTES:
                raise RuleError(f"rules[{i}]", [f"larger than {MAX_RULE_BYTES // 1024} KiB"])
            rules.append(parse_rule(item, f"rules[{i}]"))
        except RuleError as exc:
            problems.append(str(exc))
    if problems:
        raise RuleError("rule bundle", problems)
    return RuleSet.of(rules, doc.get("valueSets", {}))


def bundle(paths: Sequence[Path], value_sets: Path | None = None) -> dict[str, Any]:
    """The bundle of the rule folders under ``paths`` (and their value sets: the file
    given, or a ``valueSets.json`` beside the rules), checked as a kiosk will."""
    rules = [read_json(folder / "rule.json") for p in paths for folder in rule_folders(p)]
    if value_sets is None:
        beside = [p / "valueSets.json" for p in paths if (p / "valueSets.json").is_file()]
        value_sets = beside[0] if beside else None
    sets = read_json(value_sets, MAX_BUNDLE) if value_sets is not None else {}
    doc = {"format": BUNDLE_FORMAT, "rules": rules, "valueSets": sets}
    from_bundle(doc)  # RuleError: what no kiosk could use is never pushed
    return doc


@dataclass(frozen=True)
class RuleBook:
    """One rule set, applied by a verifier in ``country``; ``source`` says where from,
    ``made`` when (a push's issue time, the files' newest change; None: bundled)."""

    rules: RuleSet
    country: str
    source: str
    made: datetime | None = None
    broken: bool = False  # enabled, but no rule set could be loaded: no DCC can pass

    def judge(
        self,
        entry: str,
        issuer: str,
        payload: Mapping[str, Any],
        when: datetime,
        *,
        iat: datetime | None = None,
        exp: datetime | None = None,
    ) -> list[Result]:
        """Every selected rule's outcome for a DCC with an entry of kind ``entry``
        (v, t or r) from ``issuer``, verified at ``when``."""
        certificate_type = OF_ENTRY.get(entry, "")
        selected = self.rules.select(self.country, issuer, certificate_type, when)
        data = external(when, self.rules.value_sets, self.country, iat, exp)
        deadline = time.monotonic() + JUDGE_BUDGET_S
        results = []
        for rule in selected:
            if time.monotonic() > deadline:  # hostile or broken rules: never a pass
                results.append(Result(rule, "error", "the rule set took too long"))
            else:
                results.append(run(rule, payload, data))
        return results

    def describe(self, identifier: str, when: datetime | None = None) -> Mapping[str, str]:
        """The descriptions (by language) of the rule with ``identifier``: of the version
        a DCC is judged by at ``when`` (now), else of its highest version."""
        when = when or datetime.now(UTC)
        found = [r for r in self.rules.rules if r.identifier == identifier]
        valid = [r for r in found if r.valid_at(when)] or found
        return max(valid, key=lambda r: r.version).descriptions if valid else {}

    def gaps(self) -> list[str]:
        """The certificate types no Acceptance rule of the country of arrival judges
        (whatever its validity): a DCC of such a type is referred, never approved."""
        judged = {
            r.certificate_type
            for r in self.rules.rules
            if r.type == "Acceptance" and r.country == self.country
        }
        return [t for t in CERTIFICATE_TYPES if t not in judged]


class RulesHolder:
    """The book in use; replaced whole when files are reloaded or a push arrives."""

    def __init__(self, cfg: RulesConfig, pushed: Path | None = None) -> None:
        self.cfg = cfg
        self.pushed = pushed
        self._lock = threading.Lock()
        self.book: RuleBook | None = None
        self.last_error = ""

    def current(self) -> RuleBook | None:
        """The book to apply now: None when rules are off; a broken one when none could
        be loaded (every DCC then goes to the officer: never approved unjudged)."""
        if not self.cfg.enabled:
            return None
        return self.book or RuleBook(RuleSet(), self.cfg.country, "nothing", broken=True)

    def reload(self, pushed_issued: datetime | None = None) -> None:
        """Load the push if there is one, else the files. A push that no longer loads
        (a damaged file) falls back to the files, with the error kept for the
        rules-error alert; when nothing loads the last good book stays (RuleError)."""
        with self._lock:
            try:
                book, problem = self._load(pushed_issued)
            except RuleError as exc:
                self.last_error = str(exc)[:500]
                log.error("rules: %s; the last good rules stay", self.last_error)  # noqa: TRY400
                raise
            held = self.book
            if problem and held is not None and held.source == PUSHED:
                book = held  # the push in use stays until a good one replaces it
            gaps = book.gaps()
            if gaps:
                problem = "; ".join(
                    [*filter(None, [problem]),
                     f"no rule of {book.country} judges {', '.join(gaps)}: those DCCs are "
                     "referred"]
                )  # fmt: skip
            self.book, self.last_error = book, problem[:500]
            if problem:
                log.error("rules: %s; using %s", problem, book.source)
            log.info(
                "rules: %d from %s, country of arrival %s",
                len(book.rules.rules),
                book.source,
                book.country,
            )

    def _load(self, pushed_issued: datetime | None) -> tuple[RuleBook, str]:
        cfg = self.cfg
        problem = ""
        if self.pushed is not None and self.pushed.is_file():
            try:
                rules = from_bundle(read_json(self.pushed, MAX_BUNDLE))
                return RuleBook(rules, cfg.country, PUSHED, pushed_issued), ""
            except RuleError as exc:
                problem = f"the pushed rules cannot be used: {exc}"
        if cfg.files:
            rules = RuleSet.load(cfg.files, cfg.value_sets)
            book = RuleBook(rules, cfg.country, "the configured files", _newest(cfg.files))
            return book, problem
        bundled = bundled_rules()
        sets = cfg.value_sets or bundled / "valueSets.json"
        rules = RuleSet.load([bundled], sets)
        return RuleBook(rules, cfg.country, "the bundled rules of VN"), problem

    def describe(self, identifier: str) -> Mapping[str, str]:
        book = self.book
        return book.describe(identifier) if book is not None else {}


def _newest(paths: Sequence[Path]) -> datetime | None:
    times = []
    for path in paths:
        for item in [path, *path.rglob("*.json")] if path.is_dir() else [path]:
            try:
                times.append(item.stat().st_mtime)
            except OSError:
                continue
    return datetime.fromtimestamp(max(times), UTC) if times else None
