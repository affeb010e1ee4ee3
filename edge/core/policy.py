"""The policy: what the kiosk recommends for what a traveller presented, and why.

Pure. A traveller may present several codes (a declaration, a vaccination
certificate, an ID card, a personal QR); the policy judges them together. In
``auto`` lane mode its outcome decides; in ``officer`` mode it is the
recommendation shown to the officer, whose decision is final; in ``surge``
mode it is recorded.

The rules that belong to one format live in its module (``Format.assess``);
here are the rules about the codes together: any invalid or unrecognised code
denies, a replayed one denies, every code must name the same person, the ID
card when ``require_id_card``, and nothing approves unless a code that may
approve holds up.

Outcomes: ``approve``, ``deny``, or ``refer`` (an officer must look, or the
traveller must show more: ``Verdict.needs`` says what). Reason codes are
stable; they are published in passages.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from edge.config import PolicyConfig
from edge.core.model import Credential, Verdict
from edge.core.party import Party
from edge.rules.book import RuleBook
from edge.scan import registry
from edge.scan.declaration import KIND as DECLARATION
from edge.scan.format import Assessment
from edge.scan.idcard import KIND as ID_CARD
from edge.scan.reasons import (
    GROUP_EMPTY,
    ID_CARD_REQUIRED,
    ID_MISMATCH,
    NO_DECLARATION,
    NOT_VERIFIED,
    REPLAYED,
    UNRECOGNISED,
)

__all__ = ["UNRECOGNISED", "BasicPolicy", "Policy", "RulePolicy", "combine", "judge_party"]


class Policy(Protocol):
    def evaluate(
        self,
        credentials: Sequence[Credential],
        now: datetime,
        replayed: Iterable[str] = (),
        vouchers: frozenset[str] = frozenset(),
    ) -> Verdict:
        """The outcome for what one person presented; ``replayed`` holds the refs
        (:attr:`Credential.ref`) approved at this lane too recently; ``vouchers``
        the identities in the same party whose codes hold up (see
        :func:`judge_party`)."""
        ...


MAX_PROXIES = 6  # codes one person may have declared for others, in one party


def judge_party(
    policy: Policy,
    party: Party,
    now: datetime,
    replayed: Iterable[str] = (),
    vouchers: Iterable[str] = (),
) -> Verdict:
    """The verdict for a whole party: each person's, the vehicle's codes', combined
    (any deny denies, any refer refers, else approve). The same signed code twice in
    one party is ``replayed``. A proxy code (a child's, declared by a parent) holds up
    when its declarer's code does, in the party or (``vouchers``) approved at this lane
    a moment ago, and no declarer speaks for more than :data:`MAX_PROXIES`. A vehicle
    group with nobody's code yet is referred (``group_empty``)."""
    codes_all = [c for codes in (*party.people, party.vehicle_codes) for c in codes]
    counted = Counter(c.ref for c in codes_all if c.ref is not None)
    replayed = (*replayed, *(ref for ref, n in counted.items() if n > 1))
    verdicts = [policy.evaluate(codes, now, replayed) for codes in party.people]
    found = {
        key
        for codes, verdict in zip(party.people, verdicts, strict=True)
        if verdict.outcome == "approve"
        for c in codes
        if (fmt := registry.get(c.kind)) is not None and c.claims is not None
        if (key := fmt.voucher(c.claims)) is not None
    }
    declared = Counter(
        key
        for c in codes_all
        if (fmt := registry.get(c.kind)) is not None and c.claims is not None
        if (key := fmt.vouched_by(c.claims)) is not None
    )
    vouchers = frozenset(k for k in {*found, *vouchers} if declared[k] <= MAX_PROXIES)
    if vouchers:
        verdicts = [
            policy.evaluate(codes, now, replayed, vouchers) if v.outcome != "approve" else v
            for codes, v in zip(party.people, verdicts, strict=True)
        ]
    if party.vehicle_codes:
        verdicts.append(policy.evaluate(party.vehicle_codes, now, replayed))
    if party.is_group and not party.people:
        verdicts.append(Verdict("refer", (GROUP_EMPTY,), (DECLARATION,)))
    return combine(verdicts)


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """Several verdicts as one: any deny denies, any refer refers, else approve."""
    for outcome in ("deny", "refer"):
        found = [v for v in verdicts if v.outcome == outcome]
        if found:
            reasons = _unique(r for v in found for r in v.reasons)
            return Verdict(outcome, reasons, _unique(n for v in found for n in v.needs))
    return Verdict("approve", ())


class RulePolicy:
    """The config-driven rules of ``[policy]`` (see ``docs/configuration.md``), and the
    business rules (``rules``: the book in use now, None when off) for DCCs."""

    def __init__(
        self, cfg: PolicyConfig, rules: Callable[[], RuleBook | None] = lambda: None
    ) -> None:
        self.cfg = cfg
        self.rules = rules

    def evaluate(
        self,
        credentials: Sequence[Credential],
        now: datetime,
        replayed: Iterable[str] = (),
        vouchers: frozenset[str] = frozenset(),
    ) -> Verdict:
        seen_too_recently = set(replayed)
        valid = [c for c in credentials if c.valid and c.claims is not None]
        ctx = Assessment(
            self.cfg, now, valid, registry.BY_KIND, vouchers=vouchers, rules=self.rules()
        )
        for c in credentials:
            if c.kind == UNRECOGNISED:
                ctx.deny.append(UNRECOGNISED)
            elif not c.valid:
                ctx.deny.extend(c.reasons)
            if c.ref is not None and c.ref in seen_too_recently:
                ctx.deny.append(REPLAYED)
        for c in valid:
            fmt = registry.BY_KIND[c.kind]
            fmt.assess(c, c.claims, ctx)
        self._same_person(ctx)
        if not ctx.authorised and not ctx.deny and not ctx.refer and valid:
            # only codes that identify (an ID card) or cannot approve here (a DCC)
            best = max((registry.BY_KIND[c.kind] for c in valid), key=lambda f: f.rank)
            ctx.refer_for(best.alone or NO_DECLARATION, DECLARATION)
        authorising = any(registry.BY_KIND[c.kind].authorises for c in valid)
        if self.cfg.require_id_card and authorising and not ctx.has(ID_CARD):
            ctx.refer_for(ID_CARD_REQUIRED, ID_CARD)
        return _verdict(ctx)

    @staticmethod
    def _same_person(ctx: Assessment) -> None:
        """Every code shown must be the same traveller's."""
        holders = []
        for c in ctx.shown:
            fmt = registry.BY_KIND[c.kind]
            holder = fmt.holder(c.claims) if c.claims is not None else None
            if holder is not None:
                holders.append((fmt, holder))
        for (fa, a), (fb, b) in itertools.combinations(holders, 2):
            if a.compare(b) == "different":  # the more specific reason of the two
                ctx.deny.append(fa.mismatch if fa.mismatch != ID_MISMATCH else fb.mismatch)


def _verdict(ctx: Assessment) -> Verdict:
    if ctx.deny:
        return Verdict("deny", _unique(ctx.deny))
    if ctx.refer:
        return Verdict("refer", _unique(ctx.refer), _unique(ctx.needs))
    return Verdict("approve", ())


class BasicPolicy:
    """Denies whatever is invalid or unrecognised and approves nothing on its own.

    For tests and tools that need a policy without a config.
    """

    def evaluate(
        self,
        credentials: Sequence[Credential],
        now: datetime,
        replayed: Iterable[str] = (),
        vouchers: frozenset[str] = frozenset(),
    ) -> Verdict:
        reasons: list[str] = []
        for c in credentials:
            reasons.extend([UNRECOGNISED] if c.kind == UNRECOGNISED else c.reasons)
        if reasons:
            return Verdict("deny", _unique(reasons))
        return Verdict("refer", (NOT_VERIFIED,))


def _unique(reasons: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(reasons))
