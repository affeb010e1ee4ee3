"""A presentation being decided, and how a decision ends: the lane's common ground.

Every transition of the lane (:class:`edge.core.lane.Lane`, its vehicle groups in
:mod:`edge.core.groups`) ends here: the policy judges the party (with what the
lane approved a moment ago, :mod:`edge.core.recent`); a decision is recorded as
a passage and then opens the barrier, or not; the lane goes back to ready and
takes the next traveller's code, queued meanwhile (one slot, the latest wins).

Ordering promise: :class:`RecordPassage` always comes before the
:class:`OpenBarrier` of the same decision.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from edge.core.events import (
    Action,
    CloseBarrier,
    CloseDue,
    DecisionTimedOut,
    GroupWindowEnded,
    Note,
    OpenBarrier,
    RecordPassage,
    Show,
    Signal,
    State,
)
from edge.core.model import Credential, PassageDraft, Verdict
from edge.core.party import Party
from edge.core.passage import DecidedBy, Decision, Mode
from edge.core.policy import Policy, judge_party
from edge.core.recent import RecentApprovals
from edge.core.timers import Timers


@dataclass
class Presentation:
    """The codes being decided (of one traveller, a family, or a vehicle's occupants:
    the party), and the policy's verdict on them."""

    party: Party
    verdict: Verdict

    @property
    def credentials(self) -> list[Credential]:
        return self.party.credentials


class Deciding(ABC):
    """How the lane decides (see the module's docstring): a base of
    :class:`~edge.core.lane.Lane`, which sets every attribute."""

    policy: Policy
    mode: Mode
    state: State
    open_s: float
    recent: RecentApprovals
    timers: Timers
    _current: Presentation | None  # the presentation being decided
    _pending: Credential | None  # the next traveller's code, waiting for ready

    @abstractmethod
    def _scanned(self, credential: Credential, now: datetime) -> list[Action]:
        """A scanned code, in whatever state the lane is (the queued one, once ready)."""

    def _evaluate(self, party: Party, now: datetime) -> Verdict:
        """The policy's verdict on ``party``, with what the lane approved a moment ago."""
        recent = self.recent
        return judge_party(
            self.policy, party, now, recent.replayed(party, now), recent.vouchers(now)
        )

    def _judged(self, verdict: Verdict, now: datetime) -> list[Action]:
        """After the verdict changed while awaiting a decision: auto mode decides what
        the policy can; otherwise the screen shows the new verdict."""
        if self.mode == "auto" and verdict.outcome != "refer":
            self.timers.cancel(DecisionTimedOut)
            return self._decide_current(verdict.outcome == "approve", "policy", now)
        return [Show("awaiting_officer", verdict.reasons, verdict.needs)]

    def _queue(self, credential: Credential) -> list[Action]:
        replaced = self._pending is not None
        self._pending = credential
        extra = " (replaces queued)" if replaced else ""
        return [Note(f"scan queued while {self.state.value}{extra}: {credential.tag}")]

    def _decide_current(
        self, approve: bool, by: DecidedBy, now: datetime, extra: tuple[str, ...] = ()
    ) -> list[Action]:
        assert self._current is not None
        shown, self._current = self._current, None
        self.timers.cancel(DecisionTimedOut, GroupWindowEnded)
        reasons = (*shown.verdict.reasons, *extra)
        decision: Decision = "approved" if approve else "denied"
        draft = self._party_draft(now, decision, by, reasons, shown)
        if approve:
            return self._approve(draft, by)
        self.state = State.READY
        actions: list[Action] = [
            RecordPassage(draft),
            Signal("denied"),
            Show("denied", reasons),
            Note(f"denied by {by}" + (f": {','.join(reasons)}" if reasons else "")),
        ]
        return actions + self._take_pending(now)

    def _approve(self, draft: PassageDraft, by: str) -> list[Action]:
        self.recent.approved(draft)
        self.state = State.OPEN
        reasons = draft.reasons
        return [
            RecordPassage(draft),
            OpenBarrier(),
            Signal("approved"),
            Show("approved", reasons),
            self.timers.start(CloseDue, self.open_s),
            Note(f"approved by {by}" + (f": {','.join(reasons)}" if reasons else "")),
        ]

    def _party_draft(
        self,
        now: datetime,
        decision: Decision,
        by: DecidedBy,
        reasons: tuple[str, ...],
        shown: Presentation,
    ) -> PassageDraft:
        draft = self._draft(now, decision, by, reasons, shown.credentials, shown.verdict)
        return shown.party.apply(draft)

    def _draft(  # noqa: PLR0917 - the fields of a passage, in their order
        self,
        now: datetime,
        decision: Decision,
        by: DecidedBy,
        reasons: tuple[str, ...],
        credentials: list[Credential],
        verdict: Verdict | None,
    ) -> PassageDraft:
        return PassageDraft(
            ts=now,
            decision=decision,
            decided_by=by,
            reasons=tuple(dict.fromkeys(reasons)),
            credentials=tuple(credentials),
            mode=self.mode,
            verdict=None if verdict is None else verdict.outcome,
        )

    def _to_ready(self, now: datetime) -> list[Action]:
        if self.mode == "surge":
            return self._enter_surge()
        self.state = State.READY
        return [CloseBarrier(), *self._ready_feedback(), *self._take_pending(now)]

    def _ready_feedback(self) -> list[Action]:
        if self.mode == "closed":
            return [Signal("closed"), Show("closed")]
        return [Signal("ready"), Show("ready")]

    def _take_pending(self, now: datetime) -> list[Action]:
        credential, self._pending = self._pending, None
        return [] if credential is None else self._scanned(credential, now)

    def _enter_surge(self) -> list[Action]:
        self.state = State.SURGE
        return [OpenBarrier(hold=True), Signal("surge"), Show("surge")]
