"""The policy's rules over what a traveller shows, one rule at a time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.config import PolicyConfig
from edge.model import Credential
from edge.policy import BasicPolicy, RulePolicy
from edge.scan.claims import Dcc, IdCard, Place

from .test_declaration import make_declaration

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def decl(**changes: Any) -> Credential:
    return Credential.from_raw(
        "declaration", b"decl", valid=True, claims=make_declaration(**changes)
    )


def card(number: str = "079190012345", old: str = "") -> Credential:
    claims = IdCard(number, old, "X", NOW.date().replace(year=1990), "M", "", NOW.date(), 7)
    return Credential.from_raw("id_card", b"card" + number.encode(), valid=True, claims=claims)


def dcc(**fields: Any) -> Credential:
    base: dict[str, Any] = {
        "issuer": "VN",
        "issued_at": NOW - timedelta(days=30),
        "expires_at": NOW + timedelta(days=300),
        "type": "v",
        "certificate_id": "URN:UVCI:01:VN:1",
        "name": "X",
        "birth_date": "1990",
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
    assert outcome(policy(), d, replayed=(d.sha256,)) == ("deny", "replayed")


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
    assert outcome(p, decl(), dcc(type="r")) == ("approve",)
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
