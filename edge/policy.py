"""The policy: what the kiosk recommends for what a traveller presented, and why.

Pure. A traveller may present several codes (a declaration, a vaccination
certificate, an ID card); the policy judges them together. In ``auto`` lane
mode its outcome decides; in ``officer`` mode it is the recommendation shown
to the officer, whose decision is final; in ``surge`` mode it is recorded.

Outcomes: ``approve``, ``deny``, or ``refer`` (an officer must look, or the
traveller must show more: ``Verdict.needs`` says what). Reason codes are
stable; they are published in passages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from edge.config import PolicyConfig
from edge.model import Credential, Verdict
from edge.scan.claims import Dcc, Declaration, IdCard
from edge.scan.reasons import (
    DCC_ONLY,
    DECLARATION_TOO_OLD,
    EXPOSURE,
    FORMAT_NOT_ACCEPTED,
    ID_CARD_ONLY,
    ID_CARD_REQUIRED,
    ID_MISMATCH,
    ISSUER_NOT_ACCEPTED,
    PROOF_REQUIRED,
    REPLAYED,
    SYMPTOMS,
    UNRECOGNISED,
)

__all__ = ["UNRECOGNISED", "BasicPolicy", "Policy", "RulePolicy"]


class Policy(Protocol):
    def evaluate(
        self, credentials: Sequence[Credential], now: datetime, replayed: Iterable[str] = ()
    ) -> Verdict:
        """The outcome for what was presented; ``replayed`` holds sha256s seen too recently."""
        ...


@dataclass
class _Findings:
    deny: list[str] = field(default_factory=list)
    refer: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)

    def refer_for(self, reason: str, need: str) -> None:
        self.refer.append(reason)
        self.needs.append(need)

    def verdict(self) -> Verdict:
        if self.deny:
            return Verdict("deny", _unique(self.deny))
        if self.refer:
            return Verdict("refer", _unique(self.refer), _unique(self.needs))
        return Verdict("approve", ())


class RulePolicy:
    """The config-driven rules of ``[policy]`` (see ``docs/configuration.md``)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg

    def evaluate(
        self, credentials: Sequence[Credential], now: datetime, replayed: Iterable[str] = ()
    ) -> Verdict:
        found = _Findings()
        seen_too_recently = set(replayed)
        for c in credentials:
            if c.kind == UNRECOGNISED:
                found.deny.append(UNRECOGNISED)
            elif not c.valid:
                found.deny.extend(c.reasons)
            if c.sha256 in seen_too_recently:
                found.deny.append(REPLAYED)
        decl = _first(credentials, Declaration)
        dcc = _first(credentials, Dcc)
        card = _first(credentials, IdCard)
        if decl is not None:
            self._declaration(decl, dcc, now, found)
        elif dcc is not None and "dcc" in self.cfg.accept:
            pass  # a vaccination certificate alone is enough here
        elif card is not None or dcc is not None:
            found.refer_for(ID_CARD_ONLY if dcc is None else DCC_ONLY, "declaration")
        if card is not None and decl is not None:
            if decl.id_number not in (card.id_number, card.old_id):
                found.deny.append(ID_MISMATCH)
        elif card is None and self.cfg.require_id_card and (decl or dcc):
            found.refer_for(ID_CARD_REQUIRED, "id_card")
        return found.verdict()

    def _declaration(
        self, decl: Declaration, dcc: Dcc | None, now: datetime, found: _Findings
    ) -> None:
        cfg = self.cfg
        if "declaration" not in cfg.accept:
            found.deny.append(FORMAT_NOT_ACCEPTED)
        if cfg.issuers and decl.issuer not in cfg.issuers:
            found.deny.append(ISSUER_NOT_ACCEPTED)
        if now - decl.issued_at > timedelta(hours=cfg.max_declaration_age_h):
            found.deny.append(DECLARATION_TOO_OLD)
        if cfg.deny_symptoms and decl.symptoms:
            found.deny.append(SYMPTOMS)
        if cfg.deny_exposure and decl.exposure:
            found.deny.append(EXPOSURE)
        if decl.origin.province in cfg.proof_zones and not self._has_proof(dcc, decl, now):
            found.refer_for(PROOF_REQUIRED, "proof")

    def _has_proof(self, dcc: Dcc | None, decl: Declaration, now: datetime) -> bool:
        """A vaccination, a recent negative test or a recovery (certified; declared if allowed)."""
        cfg = self.cfg
        test_age = timedelta(hours=cfg.proof_test_max_age_h)
        if dcc is not None:
            if dcc.type == "v" and (
                dcc.dose >= cfg.proof_doses or (dcc.doses and dcc.dose >= dcc.doses)
            ):
                return True
            if dcc.type == "t" and dcc.test_negative and dcc.sampled_at is not None:
                return now - dcc.sampled_at <= test_age
            if dcc.type == "r":
                return True  # within its own validity, checked by the verifier
        if cfg.accept_declared_health:
            if decl.vaccine_doses >= cfg.proof_doses:
                return True
            if decl.test_result == "negative" and decl.test_date is not None:
                return (now.date() - decl.test_date).days * 24 <= cfg.proof_test_max_age_h
        return False


class BasicPolicy:
    """Denies whatever is invalid or unrecognised and approves nothing on its own.

    For tests and tools that need a policy without a config.
    """

    def evaluate(
        self, credentials: Sequence[Credential], now: datetime, replayed: Iterable[str] = ()
    ) -> Verdict:
        reasons: list[str] = []
        for c in credentials:
            reasons.extend([UNRECOGNISED] if c.kind == UNRECOGNISED else c.reasons)
        if reasons:
            return Verdict("deny", _unique(reasons))
        return Verdict("refer", ("not_verified",))


T = TypeVar("T")


def _first(credentials: Sequence[Credential], cls: type[T]) -> T | None:
    for c in credentials:
        if c.valid and isinstance(c.claims, cls):
            return c.claims
    return None


def _unique(reasons: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(reasons))
