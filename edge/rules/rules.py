"""Business rules as the EU gateway ships them, and how a verifier applies them.

A rule is a ``rule.json``: ``Identifier`` (``VR-VN-0001``: kind, country,
number), ``Type`` (``Acceptance`` by the country of arrival, ``Invalidation``
by the issuing country), ``Country``, ``Version`` (semantic), ``SchemaVersion``,
``Engine`` (``CERTLOGIC``), ``EngineVersion``, ``CertificateType``
(``General``, ``Vaccination``, ``Test``, ``Recovery``), ``Description`` (one
text per language), ``ValidFrom``/``ValidTo``, ``AffectedFields`` and the
``Logic`` in CertLogic. :func:`check_rule` lists every problem with one;
:func:`parse_rule` makes a :class:`Rule` (its logic compiled once).

Selection is the EU verifier's (:meth:`RuleSet.select`): the acceptance rules
of the country of arrival and the invalidation rules of the issuing country,
for the certificate's type (and ``General``), valid at the verification time,
the highest version of each identifier. Each is evaluated on
``{"payload": <the DCC payload>, "external": {"validationClock", "valueSets",
"countryCode", "exp", "iat"}}``: ``true`` passes, ``false`` fails, anything else
(or a CertLogic error) is an error: never a pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from edge.core.times import TimeZoneMissing, parse_iso
from edge.errors import EdgeError, InputError
from edge.files import read_limited
from edge.rules import certlogic
from edge.rules.certlogic import CertLogicError, Compiled

IDENTIFIER = re.compile(r"(GR|VR|TR|RR|IR)-[A-Z]{2}-[0-9]{4}")
VERSION = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})")
COUNTRY = re.compile(r"[A-Z]{2}")
TYPES = ("Acceptance", "Invalidation")
CERTIFICATE_TYPES = ("General", "Vaccination", "Test", "Recovery")
# the DCC's entry kind -> its certificate type
OF_ENTRY = {"v": "Vaccination", "t": "Test", "r": "Recovery"}
REQUIRED = (
    "Identifier", "Type", "Country", "Version", "SchemaVersion", "Engine", "EngineVersion",
    "CertificateType", "Description", "ValidFrom", "ValidTo", "AffectedFields", "Logic",
)  # fmt: skip
MAX_RULE_BYTES = 256 * 1024
MAX_RULES = 1000

Outcome = Literal["passed", "failed", "error"]


class RuleError(EdgeError, ValueError):
    """A rule (or rule set) that cannot be used; ``problems`` says every reason."""

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        self.where = where
        self.problems = list(problems)
        super().__init__(f"{where}: " + "; ".join(self.problems[:5]))


@dataclass(frozen=True)
class Rule:
    identifier: str
    type: str
    country: str
    version: tuple[int, int, int]
    certificate_type: str
    descriptions: Mapping[str, str]
    valid_from: datetime
    valid_to: datetime
    affected_fields: tuple[str, ...]
    logic: Compiled = field(repr=False)
    source: Mapping[str, Any] = field(repr=False, compare=False)

    def description(self, language: str) -> str:
        """Its text in ``language``, else English, else any."""
        for lang in (language, "en"):
            if lang in self.descriptions:
                return self.descriptions[lang]
        return next(iter(self.descriptions.values()), self.identifier)

    def valid_at(self, when: datetime) -> bool:
        return self.valid_from <= when < self.valid_to


@dataclass(frozen=True)
class Result:
    """One rule's outcome for one certificate; ``detail`` says why it is an error."""

    rule: Rule
    outcome: Outcome
    detail: str = ""


def _timestamp(value: Any, key: str, problems: list[str]) -> datetime | None:
    if not isinstance(value, str):
        problems.append(f"{key}: must be an ISO 8601 date-time")
        return None
    try:
        return parse_iso(value)
    except TimeZoneMissing:
        problems.append(f"{key}: needs a time zone")
    except ValueError:
        problems.append(f"{key}: not an ISO 8601 date-time: {value[:40]}")
    return None


def _descriptions(value: Any, problems: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if not isinstance(value, list) or not value:
        problems.append("Description: must be a non-empty list of {lang, desc}")
        return found
    for item in value:
        lang = item.get("lang") if isinstance(item, dict) else None
        desc = item.get("desc") if isinstance(item, dict) else None
        if not isinstance(lang, str) or not isinstance(desc, str) or not desc.strip():
            problems.append("Description: every item needs a lang and a non-empty desc")
            continue
        found[lang] = desc[:2000]
    if found and "en" not in found:
        problems.append("Description: an English (en) text is required")
    return found


def data_paths(expr: Any) -> set[str]:
    """Every ``var`` path the logic reads."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if key == "var" and isinstance(value, str):
                    found.add(value)
                else:
                    stack.append(value)
    return found


def check_rule(doc: Any) -> list[str]:  # noqa: PLR0912 - one check per field
    """Every problem with a rule document (empty: it can be used)."""
    if not isinstance(doc, dict):
        return ["a rule is a JSON object"]
    problems = [f"{key}: missing" for key in REQUIRED if key not in doc]
    if problems:
        return problems
    ident = doc["Identifier"]
    if not isinstance(ident, str) or not IDENTIFIER.fullmatch(ident):
        problems.append("Identifier: must be like VR-VN-0001 (GR, VR, TR, RR or IR)")
    if doc["Type"] not in TYPES:
        problems.append(f"Type: one of {', '.join(TYPES)}")
    if not isinstance(doc["Country"], str) or not COUNTRY.fullmatch(doc["Country"]):
        problems.append("Country: an ISO 3166-1 alpha-2 code, upper case")
    elif isinstance(ident, str) and IDENTIFIER.fullmatch(ident) and ident[3:5] != doc["Country"]:
        problems.append("Identifier: its country part must be the rule's Country")
    if not isinstance(doc["Version"], str) or not VERSION.fullmatch(doc["Version"]):
        problems.append("Version: a semantic version, like 1.0.0")
    if doc["Engine"] != "CERTLOGIC":
        problems.append("Engine: must be CERTLOGIC")
    if doc["CertificateType"] not in CERTIFICATE_TYPES:
        problems.append(f"CertificateType: one of {', '.join(CERTIFICATE_TYPES)}")
    _descriptions(doc["Description"], problems)
    start = _timestamp(doc["ValidFrom"], "ValidFrom", problems)
    end = _timestamp(doc["ValidTo"], "ValidTo", problems)
    if start is not None and end is not None and not start < end:
        problems.append("ValidTo: must be after ValidFrom")
    fields = doc["AffectedFields"]
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        problems.append("AffectedFields: a list of payload paths")
        fields = []
    issues = certlogic.validate(doc["Logic"])
    problems += [f"Logic: {issue.message}" for issue in issues[:20]]
    if not issues:
        # (paths outside payload and external are reduce's lambda variables)
        read = {p.removeprefix("payload.") for p in data_paths(doc["Logic"])}
        read = {p for p in read if p and not p.startswith(("external", "payload", "accumulator",
                                                           "current", "data"))}  # fmt: skip
        missing = sorted(p for p in read if not _covered(p, fields))
        if missing:
            problems.append("AffectedFields: the logic reads " + ", ".join(missing[:10]))
    return problems


def _covered(path: str, fields: list[str]) -> bool:
    """``path`` is one of ``fields``, inside one, or holds one."""
    return any(path == f or path.startswith(f + ".") or f.startswith(path + ".") for f in fields)


def parse_rule(doc: Any, where: str = "rule") -> Rule:
    """A rule document as a :class:`Rule`, its logic compiled; RuleError otherwise."""
    problems = check_rule(doc)
    if problems:
        raise RuleError(where, problems)
    version = VERSION.fullmatch(doc["Version"])
    assert version is not None
    start = _timestamp(doc["ValidFrom"], "ValidFrom", problems)
    end = _timestamp(doc["ValidTo"], "ValidTo", problems)
    assert start is not None
    assert end is not None
    try:
        logic = certlogic.compile_expression(doc["Logic"])
    except CertLogicError as exc:
        raise RuleError(where, [f"Logic: {exc}"]) from exc
    return Rule(
        identifier=doc["Identifier"],
        type=doc["Type"],
        country=doc["Country"],
        version=(int(version[1]), int(version[2]), int(version[3])),
        certificate_type=doc["CertificateType"],
        descriptions=_descriptions(doc["Description"], []),
        valid_from=start,
        valid_to=end,
        affected_fields=tuple(doc["AffectedFields"]),
        logic=logic,
        source=doc,
    )


def read_json(path: Path, limit: int = MAX_RULE_BYTES) -> Any:
    """A JSON file, bounded in size; RuleError with the reason when it is not one."""
    try:
        data = read_limited(path, limit, "JSON file")
    except InputError as exc:
        raise RuleError(str(path), [exc.reason]) from exc
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RuleError(str(path), [f"not JSON: {exc}"]) from exc


def rule_folders(path: Path) -> list[Path]:
    """The rule folders under ``path``: itself if it holds a ``rule.json``, else its
    sub-folders that do (the gateway's ``<CC>/<RuleId>/rule.json`` layout)."""
    if (path / "rule.json").is_file():
        return [path]
    if not path.is_dir():
        raise RuleError(str(path), ["not a rule folder (no rule.json) nor a folder of them"])
    return sorted(p for p in path.iterdir() if (p / "rule.json").is_file())


@dataclass(frozen=True)
class RuleSet:
    """Rules and the value sets they refer to (``external.valueSets``)."""

    rules: tuple[Rule, ...] = ()
    value_sets: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, paths: Iterable[Path], value_sets: Path | None = None) -> RuleSet:
        """Every rule under ``paths`` (rule folders, folders of them); RuleError naming
        each rule that cannot be used."""
        rules: list[Rule] = []
        problems: list[str] = []
        for path in paths:
            for folder in rule_folders(path):
                try:
                    rules.append(parse_rule(read_json(folder / "rule.json"), folder.name))
                except RuleError as exc:
                    problems.append(str(exc))
        if problems:
            raise RuleError("rules", problems)
        sets = read_json(value_sets, 4 * MAX_RULE_BYTES) if value_sets is not None else {}
        return cls.of(rules, sets)

    @classmethod
    def of(cls, rules: Sequence[Rule], value_sets: Any) -> RuleSet:
        if len(rules) > MAX_RULES:
            raise RuleError("rules", [f"more than {MAX_RULES} rules"])
        if not isinstance(value_sets, dict):
            raise RuleError("value sets", ["must be a JSON object of named lists"])
        return cls(tuple(rules), value_sets)

    def select(
        self, arrival: str, issuer: str, certificate_type: str, when: datetime
    ) -> list[Rule]:
        """The rules a verifier in ``arrival`` applies to a certificate of ``issuer``
        of ``certificate_type`` at ``when``: the highest valid version of each."""
        best: dict[str, Rule] = {}
        for rule in self.rules:
            country = arrival if rule.type == "Acceptance" else issuer
            if rule.country != country or not rule.valid_at(when):
                continue
            if rule.certificate_type not in ("General", certificate_type):
                continue
            held = best.get(rule.identifier)
            if held is None or rule.version > held.version:
                best[rule.identifier] = rule
        return sorted(best.values(), key=lambda r: r.identifier)


def external(
    when: datetime,
    value_sets: Mapping[str, Any],
    country: str,
    iat: datetime | None = None,
    exp: datetime | None = None,
) -> dict[str, Any]:
    """The ``external`` part of the data a rule sees."""
    doc: dict[str, Any] = {
        "validationClock": _iso(when),
        "valueSets": value_sets,
        "countryCode": country,
    }
    if iat is not None:
        doc["iat"] = _iso(iat)
    if exp is not None:
        doc["exp"] = _iso(exp)
    return doc


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run(rule: Rule, payload: Any, external_data: Mapping[str, Any]) -> Result:
    """One rule on one certificate: passed only on ``true``."""
    try:
        value = rule.logic.evaluate({"payload": payload, "external": external_data})
    except CertLogicError as exc:
        return Result(rule, "error", str(exc)[:200])
    if value is True:
        return Result(rule, "passed")
    if value is False:
        return Result(rule, "failed")
    return Result(rule, "error", "the logic did not give true or false")
