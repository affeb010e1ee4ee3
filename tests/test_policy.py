"""The policy's rules over what a traveller shows, one rule at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.config import PolicyConfig
from edge.core.model import Credential
from edge.core.policy import BasicPolicy, RulePolicy
from edge.scan.dcc import Dcc
from edge.scan.declaration import Place
from edge.scan.idcard import IdCard

from .test_declaration import make_declaration

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def decl(**changes: Any) -> Credential:
    return Credential.from_raw(
        "declaration", b"decl", valid=True, claims=make_declaration(**changes)
    )


def card(number: str = "079190012345", old: str = "") -> Credential:
    holder = make_declaration()
    claims = IdCard(number, old, holder.name, holder.birth_date, "F", "", NOW.date(), 7)
    return Credential.from_raw("id_card", b"card" + number.encode(), valid=True, claims=claims)


def dcc(**fields: Any) -> Credential:
    holder = make_declaration()
    base: dict[str, Any] = {
        "issuer": "VN",
        "issued_at": NOW - timedelta(days=30),
        "expires_at": NOW + timedelta(days=300),
        "type": "v",
        "certificate_id": "URN:UVCI:01:VN:1",
        # the DCC's own spelling: family name apart, maybe without accents
        "name": "Hoang Thi Thu Nguyet Phuong Thao TON NU",
        "birth_date": holder.birth_date.isoformat()[:7],
        "dose": 2,
        "doses": 2,
    }
    base.update(fields)
    return Credential.from_raw("dcc", b"dcc", valid=True, claims=Dcc(**base))


def policy(**cfg: Any) -> RulePolicy:
    return RulePolicy(PolicyConfig(**cfg))


def outcome(p: RulePolicy, *creds: Credential, replayed: tuple[str, ...] = ()) -> tuple[str, ...]:
    v = p.evaluate(list(creds), NOW, replayed)
    return (v.outcome, *v.reasons)


def test_a_valid_declaration_is_approved() -> None:
    assert outcome(policy(), decl()) == ("approve",)


def test_invalid_and_unrecognised_codes_deny_with_their_reasons() -> None:
    expired = Credential.from_raw("declaration", b"x", reasons=("expired",))
    assert outcome(policy(), expired) == ("deny", "expired")
    assert outcome(policy(), Credential.from_raw("unrecognised", b"?")) == ("deny", "unrecognised")
    assert outcome(policy(), decl(), expired) == ("deny", "expired")


def test_replayed_is_denied() -> None:
    d = decl()
    assert d.ref is not None
    assert outcome(policy(), d, replayed=(d.ref,)) == ("deny", "replayed")
    assert outcome(policy(), d, replayed=(d.sha256,)) == ("approve",)  # bytes are not identity


@pytest.mark.parametrize(
    ("cfg", "changes", "reason"),
    [
        ({"issuers": ("VN-SG",)}, {}, "issuer_not_accepted"),
        ({"accept": ("dcc",)}, {}, "format_not_accepted"),
        ({"max_declaration_age_h": 1.0}, {}, "declaration_too_old"),
        ({}, {"symptoms": True}, "symptoms_declared"),
        ({}, {"exposure": True}, "exposure_declared"),
    ],
)
def test_declaration_rules_deny(cfg: dict[str, Any], changes: dict[str, Any], reason: str) -> None:
    assert outcome(policy(**cfg), decl(**changes)) == ("deny", reason)


def test_symptoms_and_exposure_can_be_allowed() -> None:
    p = policy(deny_symptoms=False, deny_exposure=False)
    assert outcome(p, decl(symptoms=True, exposure=True)) == ("approve",)


def test_proof_zone_needs_a_certificate_or_a_recent_negative_test() -> None:
    p = policy(proof_zones=("79",))  # the declaration comes from province 79
    verdict = p.evaluate([decl()], NOW)
    assert (verdict.outcome, verdict.reasons, verdict.needs) == (
        "refer",
        ("proof_required",),
        ("proof",),
    )
    assert outcome(p, decl(), dcc()) == ("approve",)
    assert outcome(p, decl(), dcc(dose=1)) == ("refer", "proof_required")
    assert outcome(p, decl(), dcc(dose=1, doses=1)) == ("approve",)  # a one-dose series
    negative = dcc(type="t", test_negative=True, sampled_at=NOW - timedelta(hours=10))
    assert outcome(p, decl(), negative) == ("approve",)
    stale = dcc(type="t", test_negative=True, sampled_at=NOW - timedelta(hours=100))
    assert outcome(p, decl(), stale) == ("refer", "proof_required")
    recovered = dcc(type="r", recovery_from="2026-10-01", recovery_until="2027-03-01")
    assert outcome(p, decl(), recovered) == ("approve",)
    assert outcome(p, decl(), dcc(type="r")) == ("refer", "proof_required")  # no dates
    other_origin = decl(origin=Place("01", "", ""))
    assert outcome(p, other_origin) == ("approve",)


def test_declared_health_counts_only_when_allowed() -> None:
    strict = policy(proof_zones=("79",))
    lenient = policy(proof_zones=("79",), accept_declared_health=True)
    assert outcome(strict, decl(vaccine_doses=3)) == ("refer", "proof_required")
    assert outcome(lenient, decl(vaccine_doses=3)) == ("approve",)
    recent_test = decl(vaccine_doses=0, test_result="negative", test_date=NOW.date())
    assert outcome(lenient, recent_test) == ("approve",)


def test_id_card_matching() -> None:
    assert outcome(policy(), decl(), card()) == ("approve",)
    assert outcome(policy(), decl(), card(number="001090000001")) == ("deny", "id_mismatch")
    old_number = decl(id_number="123456789")
    assert outcome(policy(), old_number, card(old="123456789")) == ("approve",)
    required = policy(require_id_card=True)
    verdict = required.evaluate([decl()], NOW)
    assert (verdict.outcome, verdict.reasons, verdict.needs) == (
        "refer",
        ("id_card_required",),
        ("id_card",),
    )
    assert outcome(required, decl(), card()) == ("approve",)


def test_id_card_or_dcc_alone() -> None:
    assert outcome(policy(), card()) == ("refer", "id_card_only")
    assert outcome(policy(), dcc()) == ("refer", "dcc_only")
    assert outcome(policy(accept=("declaration", "dcc")), dcc()) == ("approve",)


def test_basic_policy_never_approves() -> None:
    assert BasicPolicy().evaluate([decl()], NOW).outcome == "refer"
    assert BasicPolicy().evaluate(
        [replace(decl(), valid=False, reasons=("expired",))], NOW
    ).reasons == ("expired",)


def test_a_dcc_must_be_its_holders() -> None:
    p = policy(proof_zones=("79",))
    other = dcc(name="Nguyen Van An")
    assert outcome(p, decl(), other) == ("deny", "dcc_holder_mismatch")
    born_later = dcc(birth_date="1991-01-31")
    assert outcome(p, decl(), born_later) == ("deny", "dcc_holder_mismatch")
    alone = policy(accept=("dcc",), require_id_card=True)
    assert outcome(alone, dcc(), card()) == ("approve",)
    someone_else = IdCard(
        "001090000001", "", "Le Van B", NOW.date().replace(year=1980), "M", "", NOW.date(), 7
    )
    other_card = Credential.from_raw("id_card", b"other", valid=True, claims=someone_else)
    assert outcome(alone, dcc(), other_card) == ("deny", "dcc_holder_mismatch")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"dose": 1}, "vaccination_incomplete"),
        ({"type": "t", "test_negative": False, "sampled_at": NOW}, "test_positive"),
        (
            {"type": "t", "test_negative": True, "sampled_at": NOW - timedelta(days=8)},
            "test_too_old",
        ),
        (
            {"type": "t", "test_negative": True, "sampled_at": NOW + timedelta(days=1)},
            "test_too_old",
        ),
        (
            {"type": "r", "recovery_from": "2026-01-01", "recovery_until": "2026-06-01"},
            "recovery_not_valid",
        ),
        ({"type": "r", "recovery_from": "", "recovery_until": ""}, "recovery_not_valid"),
    ],
)
def test_a_dcc_alone_must_prove_something(fields: dict[str, Any], reason: str) -> None:
    assert outcome(policy(accept=("dcc",)), dcc(**fields)) == ("deny", reason)


def test_a_dcc_alone_that_proves_something() -> None:
    p = policy(accept=("dcc",))
    assert outcome(p, dcc()) == ("approve",)
    assert outcome(p, dcc(type="t", test_negative=True, sampled_at=NOW - timedelta(hours=5))) == (
        "approve",
    )
    recovered = dcc(type="r", recovery_from="2026-11-01", recovery_until="2027-05-01")
    assert outcome(p, recovered) == ("approve",)


def test_a_declared_test_counts_from_the_start_of_its_day() -> None:
    p = policy(proof_zones=("79",), accept_declared_health=True, proof_test_max_age_h=24.0)
    yesterday = NOW.date() - timedelta(days=1)
    tested = decl(vaccine_doses=0, test_result="negative", test_date=yesterday)
    assert outcome(p, tested) == ("refer", "proof_required")  # possibly 32 h old at 08:00
