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

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, TypeVar

from edge.config import PolicyConfig
from edge.model import Credential, Verdict
from edge.scan.claims import Dcc, Declaration, IdCard
from edge.scan.reasons import (
    DCC_HOLDER_MISMATCH,
    DCC_ONLY,
    DECLARATION_TOO_OLD,
    EXPOSURE,
    FORMAT_NOT_ACCEPTED,
    ID_CARD_ONLY,
    ID_CARD_REQUIRED,
    ID_MISMATCH,
    ISSUER_NOT_ACCEPTED,
    PROOF_REQUIRED,
    RECOVERY_NOT_VALID,
    REPLAYED,
    SYMPTOMS,
    TEST_POSITIVE,
    TEST_TOO_OLD,
    UNRECOGNISED,
    VACCINATION_INCOMPLETE,
)

__all__ = ["UNRECOGNISED", "BasicPolicy", "Policy", "RulePolicy"]


class Policy(Protocol):
    def evaluate(
        self, credentials: Sequence[Credential], now: datetime, replayed: Iterable[str] = ()
    ) -> Verdict:
        """The outcome for what was presented; ``replayed`` holds the refs
        (:attr:`Credential.ref`) approved at this lane too recently."""
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
            if c.ref is not None and c.ref in seen_too_recently:
                found.deny.append(REPLAYED)
        decl = _first(credentials, Declaration)
        dcc = _first(credentials, Dcc)
        card = _first(credentials, IdCard)
        if decl is not None:
            self._declaration(decl, dcc, now, found)
        elif dcc is not None and "dcc" in self.cfg.accept:
            found.deny.extend(self._dcc_shortfalls(dcc, now))  # it must stand on its own
        elif card is not None or dcc is not None:
            found.refer_for(ID_CARD_ONLY if dcc is None else DCC_ONLY, "declaration")
        self._same_person(decl, dcc, card, found)
        if card is None and self.cfg.require_id_card and (decl or dcc):
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

    @staticmethod
    def _same_person(
        decl: Declaration | None, dcc: Dcc | None, card: IdCard | None, found: _Findings
    ) -> None:
        """Every code shown must be the same traveller's."""
        if (
            decl is not None
            and card is not None
            and decl.id_number
            not in (
                card.id_number,
                card.old_id,
            )
        ):
            found.deny.append(ID_MISMATCH)
        if dcc is not None:
            holder = decl or card
            if holder is not None and not _same_holder(dcc, holder.name, holder.birth_date):
                found.deny.append(DCC_HOLDER_MISMATCH)

    def _dcc_shortfalls(self, dcc: Dcc, now: datetime) -> list[str]:
        """Why a (valid) DCC does not prove vaccination, a recent negative test or recovery."""
        cfg = self.cfg
        if dcc.type == "v":
            complete = dcc.dose >= cfg.proof_doses or (dcc.doses > 0 and dcc.dose >= dcc.doses)
            return [] if complete else [VACCINATION_INCOMPLETE]
        if dcc.type == "t":
            if not dcc.test_negative:
                return [TEST_POSITIVE]
            sampled = dcc.sampled_at
            max_age = timedelta(hours=cfg.proof_test_max_age_h)
            skew = timedelta(seconds=cfg.clock_skew_s)
            if sampled is None or not now - max_age <= sampled <= now + skew:
                return [TEST_TOO_OLD]
            return []
        try:
            valid_from = date.fromisoformat(dcc.recovery_from)
            valid_until = date.fromisoformat(dcc.recovery_until)
        except ValueError:
            return [RECOVERY_NOT_VALID]
        return [] if valid_from <= now.date() <= valid_until else [RECOVERY_NOT_VALID]

    def _has_proof(self, dcc: Dcc | None, decl: Declaration, now: datetime) -> bool:
        """A vaccination, a recent negative test or a recovery (certified; declared if allowed)."""
        cfg = self.cfg
        if dcc is not None and not self._dcc_shortfalls(dcc, now):
            return True
        if cfg.accept_declared_health:
            if decl.vaccine_doses >= cfg.proof_doses:
                return True
            if decl.test_result == "negative" and decl.test_date is not None:
                # counted from the start of the test's day: the earliest it can have been
                taken = datetime.combine(decl.test_date, time(0), tzinfo=UTC)
                return now - taken <= timedelta(hours=cfg.proof_test_max_age_h)
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


def _name_tokens(name: str) -> list[str]:
    """A name as sorted, accent-free, upper-case words ("Nguyễn Văn Bình" ~ "BINH NGUYEN VAN")."""
    plain = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    letters = "".join(ch for ch in plain if not unicodedata.combining(ch))
    words = "".join(ch if ch.isalnum() else " " for ch in letters.upper()).split()
    return sorted(words)


def _same_holder(dcc: Dcc, name: str, birth_date: date) -> bool:
    """The DCC's holder has this name and birth date (a DCC may give only YYYY or YYYY-MM)."""
    if dcc.birth_date and not birth_date.isoformat().startswith(dcc.birth_date):
        return False
    return _name_tokens(dcc.name) == _name_tokens(name)


def _unique(reasons: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(reasons))
