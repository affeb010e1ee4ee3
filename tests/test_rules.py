"""Business rules as the EU gateway ships them: the author's command line, selection,
Vietnam's bundled rules, and what they do to a traveller's DCC at the kiosk.

The EU business rules and their test cases are read from
``../shared/testdata/business-rules`` (skipped cleanly when absent); Vietnam's rules
are the package's own (``edge/rules/vn``). DCCs are signed by the test kit, so every
certificate here is read, verified and judged by the same code as at a checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge import cli
from edge.config import Config, PolicyConfig
from edge.config.judging import RulesConfig
from edge.core.lane import State
from edge.core.model import Credential
from edge.core.policy import RulePolicy
from edge.kiosk import render
from edge.kiosk import server as server_mod
from edge.rules import certlogic
from edge.rules.book import RuleBook, RulesHolder, bundle, bundled_rules, from_bundle
from edge.rules.certlogic import LimitExceeded
from edge.rules.rules import RuleError, RuleSet, parse_rule, read_json
from edge.scan import cbor
from edge.scan.credentials import Verifier
from edge.scan.testkit import NOW, VACCINATION, certificate, dcc_claims, sign_dcc
from edge.scan.trust import DccSigner, TrustStore, kid_of_certificate

from . import test_e2e
from .conftest import make_config, write_frame
from .test_e2e import Kiosk

kiosks = test_e2e.kiosks  # the fixture: kiosks in this process on mock pins

VN = bundled_rules()
SOURCE = ("128/NQ-CP", "4800/QĐ-BYT", "5772/QĐ-BYT")


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def copy_rule(tmp_path: Path, identifier: str) -> Path:
    """A VN rule folder (rule.json and its tests) to change in a test."""
    folder = tmp_path / "rules" / identifier
    shutil.copytree(VN / identifier, folder)
    return folder


def edit_rule(folder: Path, **changes: Any) -> dict[str, Any]:
    doc = json.loads((folder / "rule.json").read_text(encoding="utf-8"))
    doc.update(changes)
    (folder / "rule.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return doc


class Signer:
    """A DCC signer the kiosk trusts."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        # valid whatever the test's clock (NOW, or the real one for a running kiosk)
        self.cert = certificate(
            self.key, datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
        )
        self.kid = kid_of_certificate(self.cert)
        self.trust = TrustStore(dcc_signers={self.kid: (DccSigner(self.kid, self.cert),)})

    def sign(self, entry: dict[str, Any] | None = None, **kw: Any) -> str:
        return sign_dcc(dcc_claims(entry, **kw), self.key, self.kid)

    def read(self, text: str, when: datetime = NOW) -> Credential:
        return Verifier(lambda: self.trust, clock=lambda: when).read(text.encode())

    def pem(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


def vaccination(**changes: Any) -> dict[str, Any]:
    return {**VACCINATION, **changes}


def lab_test(kind: str, sampled: datetime, result: str = "260415000") -> dict[str, Any]:
    return {"tg": "840539006", "tt": kind, "sc": sampled.isoformat().replace("+00:00", "Z"),
            "tr": result, "co": "VN", "is": "MoH", "ci": "URN:UVCI:01:VN:T1"}  # fmt: skip


PCR, RAT = "LP6464-4", "LP217198-3"


# -- the author's command line -------------------------------------------------------------


def test_every_eu_business_rule_case_passes(
    shared_testdata: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    countries = sorted(
        p for p in (shared_testdata / "business-rules").iterdir() if p.is_dir() and len(p.name) == 2
    )
    assert len(countries) >= 4
    code = cli.main(["rules", "test", *map(str, countries)])
    found = lines(capsys.readouterr().out)
    summary = found[-1]["summary"]
    cases = found[:-1]
    failing = [c for c in cases if not c["pass"]]
    assert failing == []
    assert code == 0
    assert summary == {
        "rules": summary["rules"],
        "cases": len(cases),
        "passed": len(cases),
        "failed": 0,
        "broken": 0,
    }
    assert len(cases) >= 500
    assert {"rule", "test", "expected", "result", "pass"} <= set(cases[0])
    assert {c["expected"] for c in cases} == {True, False}  # both kinds are really run


def test_rules_test_reports_failures_errors_and_broken_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = copy_rule(tmp_path, "VR-VN-0002")
    case = good / "tests" / "test001.json"
    doc = json.loads(case.read_text(encoding="utf-8"))
    doc["expected"] = not doc["expected"]
    case.write_text(json.dumps(doc), encoding="utf-8")
    erroring = copy_rule(tmp_path, "VR-VN-0003")
    for test in (erroring / "tests").glob("*.json"):
        doc = json.loads(test.read_text(encoding="utf-8"))
        doc["payload"]["v"][0]["dt"] = "not a date"
        test.write_text(json.dumps(doc), encoding="utf-8")
    broken = copy_rule(tmp_path, "TR-VN-0001")
    edit_rule(broken, Logic={"merge": [1]})
    code = cli.main(["rules", "test", str(tmp_path / "rules"), str(tmp_path / "nowhere")])
    found = lines(capsys.readouterr().out)
    assert code == 1
    by_test = {Path(c["test"]).name: c for c in found if c.get("rule") == "VR-VN-0002"}
    assert by_test["test001.json"]["pass"] is False
    assert by_test["test001.json"]["result"] == (not by_test["test001.json"]["expected"])
    errors = [c for c in found if c.get("rule") == "VR-VN-0003"]
    assert errors
    assert all(c["result"] is None and "date" in c["error"] for c in errors)
    (bad,) = [c for c in found if c.get("rule") == "TR-VN-0001"]
    assert 'unrecognised operator: "merge"' in bad["error"]
    nowhere = next(c for c in found if "nowhere" in str(c.get("test")))
    assert "not a rule folder" in nowhere["error"]
    assert found[-1]["summary"]["broken"] == 2


def test_rules_check_names_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["rules", "check", str(VN)]) == 0
    out = capsys.readouterr().out
    assert out.count(": OK") == len([p for p in VN.iterdir() if p.is_dir()])
    folder = copy_rule(tmp_path, "VR-VN-0003")
    edit_rule(
        folder,
        Identifier="VR-VN-3",
        Version="1.0",
        CertificateType="Vax",
        Description=[{"lang": "vi", "desc": "x"}],
        AffectedFields=[],
    )
    assert cli.main(["rules", "check", str(folder)]) == 1
    out = capsys.readouterr().out
    for problem in [
        "Identifier: must be like VR-VN-0001",
        "Version: a semantic version",
        "CertificateType: one of General, Vaccination, Test, Recovery",
        "Description: an English (en) text is required",
        "AffectedFields: the logic reads v.0, v.0.dt",
    ]:
        assert problem in out
    edit_rule(folder, Identifier="VR-VN-0003", Logic={"if": [True, 1]})
    assert cli.main(["rules", "check", str(folder / "rule.json")]) == 1
    assert "Logic:" in capsys.readouterr().out
    (tmp_path / "junk.json").write_text("{nope")
    assert cli.main(["rules", "check", str(tmp_path / "junk.json")]) == 1
    assert "not JSON" in capsys.readouterr().out


def test_rules_eval_on_a_dcc_text_and_image(
    tmp_path: Path, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ["--at", NOW.isoformat()]
    fresh = signer.sign(vaccination(dt=(NOW - timedelta(days=3)).date().isoformat()))
    rule = str(VN / "VR-VN-0003")
    assert cli.main(["rules", "eval", "--rule", rule, "--dcc", "--text", fresh, *at]) == 1
    (doc,) = lines(capsys.readouterr().out)
    assert doc == {
        "rule": "VR-VN-0003",
        "certificate_type": "Vaccination",
        "applies": True,
        "outcome": "failed",
        "result": False,
        "signature_verified": False,
    }
    image = write_frame(tmp_path / "dcc.png", signer.sign(vaccination()))
    assert cli.main(["rules", "eval", "--rule", rule, "--dcc", "--image", str(image), *at]) == 0
    assert lines(capsys.readouterr().out)[0]["result"] is True
    sets = str(VN / "valueSets.json")
    test_rule = str(VN / "TR-VN-0001")
    ok = ["rules", "eval", "--rule", test_rule, "--dcc", "--text", fresh, "--value-sets", sets]
    assert cli.main([*ok, *at]) == 0  # a test rule on a vaccination: true, and says so
    assert lines(capsys.readouterr().out)[0]["applies"] is False
    assert cli.main(["rules", "eval", "--rule", rule, "--dcc", "--text", "HC1:nope", *at]) == 2
    assert "not a DCC" in capsys.readouterr().err
    junk = tmp_path / "sets.json"
    junk.write_text("[1]")
    bad_sets = ["--value-sets", str(junk)]
    assert cli.main(["rules", "eval", "--rule", rule, "--dcc", "--text", fresh, *bad_sets]) == 2
    assert "value sets" in capsys.readouterr().err


# -- selection as the EU verifier does it -----------------------------------------------------


def rule_doc(identifier: str, **changes: Any) -> dict[str, Any]:
    doc = read_json(VN / "GR-VN-0002" / "rule.json")
    country = identifier[3:5]
    doc.update(Identifier=identifier, Country=country, Logic=True, AffectedFields=[])
    doc.update(changes)
    return dict(doc)


def test_selection_by_country_type_validity_and_version() -> None:
    docs = [
        rule_doc("VR-VN-0001", CertificateType="Vaccination"),
        rule_doc("VR-VN-0001", CertificateType="Vaccination", Version="1.10.0"),
        rule_doc("VR-VN-0001", CertificateType="Vaccination", Version="1.2.0"),
        rule_doc("TR-VN-0001", CertificateType="Test"),
        rule_doc("GR-VN-0001", CertificateType="General"),
        rule_doc("GR-DE-0001", CertificateType="General"),  # another arrival country
        rule_doc("IR-DE-0001", Type="Invalidation", CertificateType="General"),
        rule_doc("IR-FR-0001", Type="Invalidation", CertificateType="General"),
        rule_doc(
            "VR-VN-0002",
            CertificateType="Vaccination",
            ValidFrom="2027-01-01T00:00:00Z",  # not yet
        ),
        rule_doc(
            "VR-VN-0003",
            CertificateType="Vaccination",
            ValidTo="2026-11-26T07:59:59Z",  # no longer
        ),
    ]
    rules = RuleSet.of([parse_rule(d) for d in docs], {})
    chosen = rules.select("VN", "DE", "Vaccination", NOW)
    assert [(r.identifier, r.version) for r in chosen] == [
        ("GR-VN-0001", (1, 0, 0)),
        ("IR-DE-0001", (1, 0, 0)),  # the issuer's invalidation rules apply everywhere
        ("VR-VN-0001", (1, 10, 0)),  # the highest version, compared as numbers
    ]
    assert [r.identifier for r in rules.select("VN", "VN", "Test", NOW)] == [
        "GR-VN-0001",
        "TR-VN-0001",
    ]
    assert "VR-VN-0002" in [
        r.identifier
        for r in rules.select("VN", "VN", "Vaccination", datetime(2027, 1, 1, tzinfo=UTC))
    ]


# -- Vietnam's rules -----------------------------------------------------------------------


def test_vietnams_rules_pass_their_own_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "test", str(VN)]) == 0
    summary = lines(capsys.readouterr().out)[-1]["summary"]
    assert summary["rules"] == 11
    assert summary["cases"] >= 30


def test_every_vietnamese_rule_cites_its_source_in_both_languages() -> None:
    rules = RuleSet.load([VN], VN / "valueSets.json").rules
    assert {r.certificate_type for r in rules} == {"General", "Vaccination", "Test", "Recovery"}
    for rule in rules:
        assert set(rule.descriptions) == {"vi", "en"}, rule.identifier
        for text in rule.descriptions.values():
            assert any(source in text for source in SOURCE), (rule.identifier, text)


def vn_policy(**cfg: Any) -> RulePolicy:
    holder = RulesHolder(RulesConfig())
    holder.reload()
    return RulePolicy(PolicyConfig(**{"accept": ("dcc",), **cfg}), rules=holder.current)


def judged(policy: RulePolicy, credential: Credential, when: datetime = NOW) -> tuple[str, ...]:
    verdict = policy.evaluate([credential], when)
    return (verdict.outcome, *verdict.reasons)


@pytest.mark.parametrize(
    ("claims", "at", "reasons"),
    [
        ({"entry": vaccination()}, NOW, ()),
        ({"entry": vaccination(mp="EU/1/21/1618")}, NOW, ("rule_failed:VR-VN-0001",)),
        ({"entry": vaccination(dn=1)}, NOW, ("rule_failed:VR-VN-0002",)),
        (
            {"entry": vaccination(dt=(NOW - timedelta(days=13)).date().isoformat())},
            NOW,
            ("rule_failed:VR-VN-0003",),
        ),
        (
            {"entry": vaccination(dt=(NOW - timedelta(days=14)).date().isoformat())},
            NOW,
            (),
        ),
        (  # a vaccine passport issued 12 months and a day ago
            {"entry": vaccination(), "iat": NOW - timedelta(days=366), "exp": NOW + timedelta(1)},
            NOW,
            ("rule_failed:GR-VN-0001",),
        ),
        ({"entry": lab_test(PCR, NOW - timedelta(hours=71)), "kind": "t"}, NOW, ()),
        (
            {"entry": lab_test(PCR, NOW - timedelta(hours=73)), "kind": "t"},
            NOW,
            ("rule_failed:TR-VN-0003",),
        ),
        ({"entry": lab_test(RAT, NOW - timedelta(hours=23)), "kind": "t"}, NOW, ()),
        (
            {"entry": lab_test(RAT, NOW - timedelta(hours=25)), "kind": "t"},
            NOW,
            ("rule_failed:TR-VN-0004",),
        ),
        (
            {"entry": lab_test(PCR, NOW - timedelta(hours=5), "260373001"), "kind": "t"},
            NOW,
            ("rule_failed:TR-VN-0002",),
        ),
    ],
)
def test_vietnams_rules_judge_real_signed_dccs(
    signer: Signer, claims: dict[str, Any], at: datetime, reasons: tuple[str, ...]
) -> None:
    credential = signer.read(signer.sign(**claims), at)
    assert credential.valid, credential.reasons
    expected = ("deny", *reasons) if reasons else ("approve",)
    assert judged(vn_policy(), credential, at) == expected


def test_recovery_counts_180_days_from_the_first_positive_test(signer: Signer) -> None:
    def recovery(days_ago: int) -> Credential:
        first = (NOW - timedelta(days=days_ago)).date()
        entry = {"tg": "840539006", "fr": first.isoformat(),
                 "df": (first + timedelta(days=11)).isoformat(),
                 "du": (first + timedelta(days=180)).isoformat(),
                 "co": "VN", "is": "MoH", "ci": "URN:UVCI:01:VN:R1"}  # fmt: skip
        return signer.read(signer.sign(entry, kind="r"))

    assert judged(vn_policy(), recovery(170)) == ("approve",)
    assert judged(vn_policy(), recovery(181)) == (
        "deny",
        "rule_failed:RR-VN-0001",
        "rule_failed:RR-VN-0002",  # and its own valid-until (first positive + 180 days)
    )

    def dated(first: str, valid_from: str, valid_until: str) -> Credential:
        entry = {"tg": "840539006", "fr": first, "df": valid_from, "du": valid_until,
                 "co": "VN", "is": "MoH", "ci": "URN:UVCI:01:VN:R2"}  # fmt: skip
        return signer.read(signer.sign(entry, kind="r"))

    tomorrow = (NOW + timedelta(days=1)).date().isoformat()
    assert judged(vn_policy(), dated(tomorrow, tomorrow, "2027-05-01")) == (
        "deny",
        "rule_failed:RR-VN-0001",
        "rule_failed:RR-VN-0002",
    )
    lapsed = dated("2026-10-01", "2026-10-12", "2026-11-20")  # its valid-until has passed
    assert judged(vn_policy(), lapsed) == ("deny", "rule_failed:RR-VN-0002")


def test_a_dcc_listing_every_dose_is_judged_on_the_entry_the_officer_sees(
    signer: Signer,
) -> None:
    claims = dcc_claims()
    first, last = vaccination(dn=1, sd=2), vaccination(dn=2, sd=2)
    claims[-260][1]["v"] = [first, last]
    credential = signer.read(sign_dcc(claims, signer.key, signer.kid))
    assert credential.claims.payload["v"] == [last]  # type: ignore[union-attr]
    assert judged(vn_policy(), credential) == ("approve",)
    claims[-260][1]["v"] = [last, vaccination(dn=1, sd=2, mp="EU/1/21/1618")]
    newest_first = signer.read(sign_dcc(claims, signer.key, signer.kid))
    assert judged(vn_policy(), newest_first) == (
        "deny",
        "rule_failed:VR-VN-0001",
        "rule_failed:VR-VN-0002",
    )


def test_no_rule_for_the_certificate_never_approves(tmp_path: Path, signer: Signer) -> None:
    good = signer.read(signer.sign(vaccination()))
    elsewhere = RulesHolder(RulesConfig(country="TH"))  # the bundled rules are Vietnam's
    elsewhere.reload()
    assert "no rule of TH judges Vaccination, Test, Recovery" in elsewhere.last_error
    policy = RulePolicy(PolicyConfig(accept=("dcc",)), rules=elsewhere.current)
    assert judged(policy, good) == ("refer", "rules_unavailable")
    # rules of Vietnam not yet in force: no rule judges the certificate
    folder = copy_rule(tmp_path, "VR-VN-0002")
    edit_rule(folder, ValidFrom="2027-01-01T00:00:00Z")
    later = RulesHolder(RulesConfig(files=(tmp_path / "rules",)))
    later.reload()
    assert "Test, Recovery" in later.last_error
    policy = RulePolicy(PolicyConfig(accept=("dcc",)), rules=later.current)
    assert judged(policy, good) == ("refer", "rules_unavailable")
    assert judged(policy, good, datetime(2027, 1, 2, tzinfo=UTC))[0] == "approve"


def test_a_rule_can_neither_outlast_its_budget_nor_raise_anything_else() -> None:
    items = list(range(10_000))
    hostile = {"reduce": [{"var": "items"}, [*range(20_000)], 0]}  # a huge literal per fold
    data = {"items": items}
    started = time.monotonic()
    with pytest.raises(LimitExceeded):
        certlogic.evaluate(hostile, data)
    assert time.monotonic() - started < 2.0
    assert certlogic.evaluate({"var": "a." + "9" * 5000}, {"a": [1]}) is None  # no ValueError
    assert certlogic.evaluate({"var": "a.0000000001"}, {"a": [1, 2]}) is None
    doc = rule_doc("VR-VN-0001", Version="1." + "9" * 5000 + ".0")
    with pytest.raises(RuleError, match="semantic version"):
        parse_rule(doc)
    bundle_doc = {"format": "checkpoint-edge-rules", "rules": [doc], "valueSets": {}}
    with pytest.raises(RuleError):
        from_bundle(bundle_doc)
    big = rule_doc("VR-VN-0001", Logic={"in": [{"var": "payload.v.0.mp"}, ["x" * 100] * 3000]},
                   AffectedFields=["v.0.mp"])  # fmt: skip
    with pytest.raises(RuleError, match="larger than 256 KiB"):
        from_bundle({**bundle_doc, "rules": [big]})


def test_a_slow_rule_set_errs_as_a_whole_and_refers(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.rules import book as book_mod

    holder = RulesHolder(RulesConfig())
    holder.reload()
    book = holder.current()
    assert book is not None
    monkeypatch.setattr(book_mod, "JUDGE_BUDGET_S", -1.0)  # already spent
    results = book.judge("v", "VN", {"v": [VACCINATION]}, NOW, iat=NOW)
    assert results
    assert {r.outcome for r in results} == {"error"}


def test_the_screen_reads_the_version_in_force() -> None:
    old = parse_rule(rule_doc("VR-VN-0001", Description=[{"lang": "en", "desc": "old"}]))
    new = parse_rule(
        rule_doc("VR-VN-0001", Version="1.1.0", Description=[{"lang": "en", "desc": "new"}])
    )
    future = parse_rule(
        rule_doc("VR-VN-0001", Version="2.0.0", ValidFrom="2099-01-01T00:00:00Z",
                 Description=[{"lang": "en", "desc": "future"}])
    )  # fmt: skip
    book = RuleBook(RuleSet.of([new, future, old], {}), "VN", "test")
    assert book.describe("VR-VN-0001", NOW) == {"en": "new"}
    assert book.describe("VR-VN-0009", NOW) == {}


def test_a_rule_that_cannot_run_refers_never_approves(tmp_path: Path, signer: Signer) -> None:
    folder = copy_rule(tmp_path, "VR-VN-0003")
    edit_rule(folder, Logic={"after": [{"var": "payload.v.0.ma"}, {"var": "payload.v.0.dt"}]})
    holder = RulesHolder(RulesConfig(files=(tmp_path / "rules",)))
    holder.reload()
    policy = RulePolicy(PolicyConfig(accept=("dcc",)), rules=holder.current)
    credential = signer.read(signer.sign(vaccination()))
    assert judged(policy, credential) == ("refer", "rule_error:VR-VN-0003")
    failing = signer.read(signer.sign(vaccination(dt=NOW.date().isoformat())))
    assert judged(policy, failing)[0] == "refer"  # an error is never outweighed by a pass


def test_rules_off_broken_or_not_accepted(tmp_path: Path, signer: Signer) -> None:
    one_dose = signer.read(signer.sign(vaccination(dn=1)))
    off = RulesHolder(RulesConfig(enabled=False))
    fixed = RulePolicy(PolicyConfig(accept=("dcc",)), rules=off.current)
    assert judged(fixed, one_dose) == ("deny", "vaccination_incomplete")  # the [policy] keys
    folder = copy_rule(tmp_path, "VR-VN-0002")
    edit_rule(folder, Logic={"nope": []})
    broken = RulesHolder(RulesConfig(files=(tmp_path / "rules",)))
    with pytest.raises(RuleError, match="nope"):
        broken.reload()
    assert "nope" in broken.last_error
    nothing = RulePolicy(PolicyConfig(accept=("dcc",)), rules=broken.current)
    good = signer.read(signer.sign(vaccination()))
    assert judged(nothing, good) == ("refer", "rules_unavailable")
    # not accepted alone: the officer still sees which rule failed
    assert judged(vn_policy(accept=()), one_dose) == ("refer", "rule_failed:VR-VN-0002")


def test_a_damaged_push_stays_in_use_or_falls_back_to_the_files_and_says_so(tmp_path: Path) -> None:
    pushed = tmp_path / "rules-push.json"
    holder = RulesHolder(RulesConfig(), pushed)
    pushed.write_text(json.dumps(bundle([VN])), encoding="utf-8")
    holder.reload(NOW)
    assert holder.book is not None
    assert (holder.book.source, holder.book.made, holder.last_error) == ("a fleet push", NOW, "")
    pushed.write_text('{"format": "checkpoint-edge-rules", "rules": [}', encoding="utf-8")
    holder.reload(NOW)
    assert holder.book.source == "a fleet push"  # the push in use stays, in memory
    assert "pushed rules cannot be used" in holder.last_error
    fresh = RulesHolder(RulesConfig(), pushed)  # after a restart: the files take over
    fresh.reload(NOW)
    assert fresh.book is not None
    assert fresh.book.source == "the bundled rules of VN"
    assert "pushed rules cannot be used" in fresh.last_error


def test_bundles_refuse_what_no_kiosk_could_use(tmp_path: Path) -> None:
    doc = bundle([VN])
    assert len(from_bundle(doc).rules) == 11
    assert from_bundle(doc).value_sets == read_json(VN / "valueSets.json")
    for bad, problem in [
        ({**doc, "format": "x"}, "format"),
        ({**doc, "rules": []}, "a list of 1-"),
        ({**doc, "rules": [{**doc["rules"][0], "Logic": {"var": 1}}]}, "rules[0]"),
        ({**doc, "valueSets": [1]}, "value sets"),
    ]:
        with pytest.raises(RuleError) as caught:
            from_bundle(bad)
        assert problem in str(caught.value)


# -- what the officer and the traveller see ------------------------------------------------------


def test_the_screen_shows_a_failed_rules_description_in_its_language(
    tmp_path: Path, signer: Signer, kiosks: Callable[[Config], Kiosk]
) -> None:
    now = datetime.now(UTC)
    text = signer.sign(vaccination(dn=1), iat=now - timedelta(days=10), exp=now + timedelta(30))
    (tmp_path / "frames").mkdir()
    write_frame(tmp_path / "frames" / "01.png", text)
    cfg = make_config(
        tmp_path,
        lane={"mode": "officer"},
        policy={"accept": ["dcc"]},
        trust={"files": [str(signer.pem(tmp_path / "signer.pem"))]},
        kiosk={"listen": ""},
    )
    kiosk = kiosks(cfg).start()
    kiosk.wait_state(State.AWAITING_DECISION)
    view = kiosk.app.screen.snapshot(officer=True)
    assert view["officer"]["recommendation"] == "deny"
    assert view["officer"]["policy_reasons"] == ["rule_failed:VR-VN-0002"]
    described = view["rules"]["VR-VN-0002"]
    assert "128/NQ-CP" in described["vi"]
    assert "Fully vaccinated" in described["en"]
    catalogues = server_mod.catalogues(None)
    state = {**view, "screen": "denied", "reasons": ["rule_failed:VR-VN-0002"]}
    state.pop("officer")
    template = render.traveller_template()
    vi_page = render.traveller_page(template, state, catalogues, "vi")
    assert f"<li>{described['vi']}</li>" in vi_page
    en_page = render.traveller_page(template, state, catalogues, "en")
    assert f"<li>{described['en']}</li>" in en_page
    unknown = render.traveller_page(
        template, {**state, "rules": {}, "reasons": ["rule_error:VR-VN-0009"]}, catalogues, "vi"
    )
    assert f"<li>{catalogues['vi']['messages']['reason.rule_error']}</li>" in unknown


def test_a_rule_book_is_pure_and_reports_every_selected_rule(signer: Signer) -> None:
    holder = RulesHolder(RulesConfig())
    holder.reload()
    book = holder.current()
    assert isinstance(book, RuleBook)
    claims = signer.read(signer.sign(vaccination())).claims
    results = book.judge("v", "VN", claims.payload, NOW, iat=NOW - timedelta(days=1))  # type: ignore[union-attr]
    assert {r.rule.identifier for r in results} == {
        "GR-VN-0001", "GR-VN-0002", "VR-VN-0001", "VR-VN-0002", "VR-VN-0003",
    }  # fmt: skip
    assert {r.outcome for r in results} == {"passed"}
    elsewhere = replace(book, country="DE")
    assert elsewhere.judge("v", "VN", claims.payload, NOW) == []  # type: ignore[union-attr]


def test_rules_read_the_dcc_as_the_json_it_stands_for(signer: Signer) -> None:
    claims = dcc_claims()
    hcert = claims[-260][1]
    hcert["dob"] = cbor.Tag(1004, "1990-08-15")  # a full-date tag: its text
    hcert["extra"] = {"bytes": b"\x00\x01", 7: "integer key", "when": cbor.Tag(1, 1_700_000_000)}
    credential = signer.read(sign_dcc(claims, signer.key, signer.kid))
    assert credential.valid, credential.reasons
    payload = credential.claims.payload  # type: ignore[union-attr]
    assert payload["dob"] == "1990-08-15"
    assert payload["extra"] == {"bytes": None, "when": "2023-11-14T22:13:20Z"}
    assert payload["v"][0]["dn"] == 2
    json.dumps(payload)  # plain JSON data, nothing else
