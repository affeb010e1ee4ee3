"""The lane: a pure state machine from events to actions.

One lane thread owns a :class:`Lane` and feeds it events one at a time with
the current wall-clock time; the lane answers with a list of actions for the
shell to carry out in order. The lane does no I/O and keeps no clock: timers
are actions (:class:`StartTimer`) whose event the shell posts back when due,
each carrying a token so that a stale timer is ignored.

States::

    READY --scan--> AWAITING_DECISION --approve--> OPEN --close due--> READY
      |                    | deny / timeout
      |                    v
      +-- auto mode -----> READY (denied) or OPEN (approved)
    SURGE: barrier held open; every scan is verified and recorded at once
    closed mode: READY with the barrier shut; every scan is recorded as denied
    an operator's open-barrier command: READY --> OPEN (recorded, by operator)
    any --fault--> FAILSAFE --all faults cleared--> READY (or SURGE)

A traveller may show several codes (declaration, vaccination certificate, ID
card): while a decision is pending, a code of a kind not yet presented joins
the presentation and the policy judges again; another code of a kind already
presented is the next traveller's and waits (one slot). An unrecognised code
shown meanwhile is ignored; one shown first is replaced by the first
recognised code that follows.

Ordering promise: :class:`RecordPassage` always comes before the
:class:`OpenBarrier` of the same decision. If recording fails the shell must
not open the barrier and reports a fault instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.model import Credential, DecidedBy, Decision, PassageDraft, Verdict
from edge.policy import Policy
from edge.scan.reasons import UNRECOGNISED

# Reason codes added by the lane itself.
NO_DECISION = "no_decision"
NO_CREDENTIAL = "no_credential"
SURGE = "surge"
CLOSED = "closed"
SHUTDOWN = "shutdown"
OPERATOR_OPEN = "operator_open"

MODES = ("officer", "auto", "surge", "closed")
# Replays are recognised by Credential.ref (issuer and id of a declaration or
# DCC), not by the payload bytes: re-encoding a signed code changes its bytes.
# An ID card has no ref: it is the person, not the permission.


class State(enum.Enum):
    READY = "ready"
    AWAITING_DECISION = "awaiting_decision"
    OPEN = "open"
    SURGE = "surge"
    FAILSAFE = "failsafe"


# --- events ---------------------------------------------------------------


@dataclass(frozen=True)
class CredentialScanned:
    credential: Credential


@dataclass(frozen=True)
class OfficerApproved:
    pass


@dataclass(frozen=True)
class OfficerDenied:
    pass


@dataclass(frozen=True)
class SetMode:
    """Switch lane mode (officer, auto, surge); ``by`` says who, for the log."""

    mode: str
    by: str = "operator"


@dataclass(frozen=True)
class OperatorOpen:
    """An operator opens the barrier remotely for one passage (a pulse of ``open_s``)."""

    by: str = "operator"


@dataclass(frozen=True)
class VehiclePassed:
    """The vehicle-loop detector says the vehicle has left: close without waiting."""


@dataclass(frozen=True)
class Shutdown:
    """The kiosk is stopping: finish the passage in progress and close the barrier."""


@dataclass(frozen=True)
class DecisionTimedOut:
    token: int


@dataclass(frozen=True)
class CloseDue:
    token: int


@dataclass(frozen=True)
class FailsafeRetryDue:
    token: int


@dataclass(frozen=True)
class FaultRaised:
    """Something the lane depends on failed; ``name`` is stable (camera, store, ...)."""

    name: str
    reason: str


@dataclass(frozen=True)
class FaultCleared:
    name: str


TimerEvent = DecisionTimedOut | CloseDue | FailsafeRetryDue
Event = (
    CredentialScanned
    | OfficerApproved
    | OfficerDenied
    | SetMode
    | OperatorOpen
    | Shutdown
    | VehiclePassed
    | TimerEvent
    | FaultRaised
    | FaultCleared
)

# --- actions --------------------------------------------------------------


@dataclass(frozen=True)
class RecordPassage:
    draft: PassageDraft


@dataclass(frozen=True)
class OpenBarrier:
    """Open for one passage (a pulse the panel bounds), or ``hold`` it open (surge)."""

    hold: bool = False


@dataclass(frozen=True)
class CloseBarrier:
    pass


@dataclass(frozen=True)
class Signal:
    """LED and buzzer pattern: ready, reading, approved, denied, fault, surge."""

    pattern: str


@dataclass(frozen=True)
class Show:
    """What the screen shows: a lane state, reason codes, and what more to present."""

    screen: str
    reasons: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartTimer:
    """Post ``event`` back to the lane after ``delay_s`` seconds, replacing any
    pending timer of the same event type."""

    event: TimerEvent
    delay_s: float


@dataclass(frozen=True)
class Note:
    """A line for the log: what the lane did and why (never personal data)."""

    text: str


Action = RecordPassage | OpenBarrier | CloseBarrier | Signal | Show | StartTimer | Note


INTERNAL_FAULT = "internal"


@dataclass
class _Pending:
    """The presentation being decided: every code the traveller has shown, and the verdict."""

    credentials: list[Credential]
    verdict: Verdict


class Lane:
    """The lane state machine. Not thread-safe: one thread owns it."""

    def __init__(
        self,
        policy: Policy,
        *,
        mode: str,
        decision_timeout_s: float,
        open_s: float,
        failsafe_retry_s: float,
        replay_window_s: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown lane mode {mode!r}")
        self.policy = policy
        self.mode = mode
        self.decision_timeout_s = decision_timeout_s
        self.open_s = open_s
        self.failsafe_retry_s = failsafe_retry_s
        self.replay_window = timedelta(seconds=replay_window_s)
        self.state = State.READY
        self.faults: dict[str, str] = {}
        self._current: _Pending | None = None
        self._pending: Credential | None = None
        self._token = 0
        self._timers: dict[type, int] = {}
        self._approved: dict[str, datetime] = {}  # Credential.ref -> last approval

    # -- public ------------------------------------------------------------

    def start(self, now: datetime) -> list[Action]:
        """The actions that put the hardware in the lane's initial state."""
        if self.mode == "surge":
            return self._enter_surge()
        return [CloseBarrier(), *self._ready_feedback()]

    def presentation(self) -> tuple[list[Credential], Verdict] | None:
        """The codes shown by the traveller being decided, and the policy's verdict."""
        if self._current is None:
            return None
        return list(self._current.credentials), self._current.verdict

    def remember(self, ref: str, approved_at: datetime) -> None:
        """A credential (its ``ref``) approved before a restart, for replay checks."""
        if self._approved.get(ref, approved_at) <= approved_at:
            self._approved[ref] = approved_at

    def handle(self, event: Event, now: datetime) -> list[Action]:  # noqa: PLR0911 - one per event
        """Apply one event at wall-clock time ``now``; return the actions to carry out."""
        match event:
            case FaultRaised(name=name, reason=reason):
                return self._fault(name, reason, now)
            case FaultCleared(name=name):
                return self._clear(name, now)
            case DecisionTimedOut() | CloseDue() | FailsafeRetryDue():
                if self._timers.get(type(event)) != event.token:
                    return []  # a timer from an earlier state: nothing to do
                del self._timers[type(event)]
                return self._timer(event, now)
            case CredentialScanned(credential=credential):
                return self._scanned(credential, now)
            case OfficerApproved():
                return self._officer(approve=True, now=now)
            case OfficerDenied():
                return self._officer(approve=False, now=now)
            case SetMode(mode=mode, by=by):
                return self._set_mode(mode, by, now)
            case OperatorOpen(by=by):
                return self._operator_open(by, now)
            case Shutdown():
                return self._shutdown(now)
            case VehiclePassed():
                if self.state is not State.OPEN:
                    return []
                self._timers.pop(CloseDue, None)
                return [Note("vehicle passed: closing"), *self._to_ready(now)]
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover - exhaustive

    def fail(self, now: datetime, reason: str = "internal_error") -> list[Action]:
        """Enter failsafe after an internal error; cannot itself fail.

        The lane forgets what it was doing (its state may be inconsistent),
        closes the barrier, records a traveller who was being decided as
        denied, and retries after ``failsafe_retry_s``.
        """
        deciding, self._current = self._current, None
        self._pending = None
        self._timers.clear()
        self.faults[INTERNAL_FAULT] = reason
        self.state = State.FAILSAFE
        actions: list[Action] = [CloseBarrier()]
        if deciding is not None:
            reasons = (*deciding.verdict.reasons, reason)
            actions.append(
                RecordPassage(
                    self._draft(
                        now, "denied", "policy", reasons, deciding.credentials, deciding.verdict
                    )
                )
            )
        return [
            *actions,
            Signal("fault"),
            Show("failsafe", (reason,)),
            self._start(FailsafeRetryDue, self.failsafe_retry_s),
            Note(f"failsafe: {reason}"),
        ]

    # -- transitions -------------------------------------------------------

    def _scanned(self, credential: Credential, now: datetime) -> list[Action]:  # noqa: PLR0911 - a return per lane state
        tag = _tag(credential)
        if self.state is State.FAILSAFE:
            return [Note(f"scan ignored in failsafe: {tag}")]
        if self.state is State.SURGE:
            verdict = self._evaluate([credential], now)
            reasons = (*verdict.reasons, SURGE)
            found = f"policy {verdict.outcome} {','.join(verdict.reasons)}"
            note = Note(f"surge: scanned {tag}: {found}")
            draft = self._draft(now, "approved", "policy", reasons, [credential], verdict)
            return [note, RecordPassage(draft), Signal("reading"), Show("surge", verdict.reasons)]
        if self.state is State.AWAITING_DECISION:
            assert self._current is not None
            return self._add_to_presentation(credential, now)
        if self.state is not State.READY:
            return self._queue(credential)
        verdict = self._evaluate([credential], now)
        if self.mode == "closed":
            draft = self._draft(
                now, "denied", "policy", (*verdict.reasons, CLOSED), [credential], verdict
            )
            return [
                Note(f"closed: scanned {tag}: denied"),
                RecordPassage(draft),
                Signal("denied"),
                Show("closed", (CLOSED,)),
            ]
        note = Note(f"scanned {tag}: policy {verdict.outcome} {','.join(verdict.reasons)}")
        self._current = _Pending([credential], verdict)
        if self.mode == "auto" and verdict.outcome != "refer":
            return [note, *self._decide_current(verdict.outcome == "approve", "policy", now)]
        self.state = State.AWAITING_DECISION
        return [
            note,
            Signal("reading"),
            Show("awaiting_officer", verdict.reasons, verdict.needs),
            self._start(DecisionTimedOut, self.decision_timeout_s),
        ]

    def _add_to_presentation(self, credential: Credential, now: datetime) -> list[Action]:
        assert self._current is not None
        shown = self._current.credentials
        if any(c.sha256 == credential.sha256 for c in shown):
            return []  # the same code again: already part of this presentation
        if credential.kind == UNRECOGNISED:
            # a stray code (another app's screen) must neither spoil this
            # presentation nor hold up the lane as a phantom next traveller
            return [Note(f"ignored during a presentation: {_tag(credential)}")]
        if all(c.kind == UNRECOGNISED for c in shown):
            shown.clear()  # the traveller showed the wrong code first, then the right one
        elif any(c.kind == credential.kind for c in shown):
            return self._queue(credential)  # a second code of a kind: the next traveller's
        shown.append(credential)
        verdict = self._evaluate(shown, now)
        self._current.verdict = verdict
        note = Note(
            f"added {_tag(credential)}: policy {verdict.outcome} {','.join(verdict.reasons)}"
        )
        if self.mode == "auto" and verdict.outcome != "refer":
            self._timers.pop(DecisionTimedOut, None)
            return [note, *self._decide_current(verdict.outcome == "approve", "policy", now)]
        return [note, Show("awaiting_officer", verdict.reasons, verdict.needs)]

    def _queue(self, credential: Credential) -> list[Action]:
        replaced = self._pending is not None
        self._pending = credential
        extra = " (replaces queued)" if replaced else ""
        return [Note(f"scan queued while {self.state.value}{extra}: {_tag(credential)}")]

    def _officer(self, *, approve: bool, now: datetime) -> list[Action]:
        word = "approve" if approve else "deny"
        if self.state is State.AWAITING_DECISION:
            self._timers.pop(DecisionTimedOut, None)
            return self._decide_current(approve, "officer", now)
        if self.state is State.READY and approve and self.mode == "closed":
            return [Note("officer approve ignored: the checkpoint is closed")]
        if self.state is State.READY and approve:
            # The officer lets someone through without a code: still a passage.
            draft = self._draft(now, "approved", "officer", (NO_CREDENTIAL,), [], None)
            return self._approve(draft, "officer")
        if self.state is State.OPEN and not approve:
            self._timers.pop(CloseDue, None)
            return [Note("officer closed the barrier early"), *self._to_ready(now)]
        return [Note(f"officer {word} ignored while {self.state.value}")]

    def _timer(self, event: TimerEvent, now: datetime) -> list[Action]:
        if isinstance(event, DecisionTimedOut) and self.state is State.AWAITING_DECISION:
            return self._decide_current(False, "policy", now, extra=(NO_DECISION,))
        if isinstance(event, CloseDue) and self.state is State.OPEN:
            return self._to_ready(now)
        if isinstance(event, FailsafeRetryDue):
            return self._clear(INTERNAL_FAULT, now)
        return []  # pragma: no cover - tokens are dropped on every state change

    def _set_mode(self, mode: str, by: str, now: datetime) -> list[Action]:  # noqa: PLR0911 - a return per case
        if mode not in MODES:
            return [Note(f"mode {mode!r} refused: not one of {', '.join(MODES)}")]
        if mode == self.mode:
            return []
        was, self.mode = self.mode, mode
        note = Note(f"mode {was} -> {mode} by {by}")
        if self.state is State.FAILSAFE:
            return [note]  # applies once the faults clear
        if mode == "closed":
            closing: list[Action] = [note]
            self._timers.pop(CloseDue, None)
            if self.state is State.AWAITING_DECISION:
                self._timers.pop(DecisionTimedOut, None)
                closing += self._decide_current(False, "policy", now, extra=(CLOSED,))
            return closing + self._to_ready(now)
        if mode == "surge":
            actions: list[Action] = [note]
            if self.state is State.AWAITING_DECISION and self._current is not None:
                pending = self._current
                self._current = None
                reasons = (*pending.verdict.reasons, SURGE)
                draft = self._draft(
                    now, "approved", "policy", reasons, pending.credentials, pending.verdict
                )
                actions.append(RecordPassage(draft))
            self._timers.clear()
            return actions + self._enter_surge()
        if was == "surge" or (was == "closed" and self.state is State.READY):
            return [note, *self._to_ready(now)]
        return [note]

    def _shutdown(self, now: datetime) -> list[Action]:
        """A traveller being decided is recorded as denied (``shutdown``); the barrier
        closes whatever the mode; nothing queued is kept."""
        actions: list[Action] = [Note("shutting down")]
        self._pending = None
        if self.state is State.AWAITING_DECISION:
            actions += self._decide_current(False, "policy", now, extra=(SHUTDOWN,))
        self._timers.clear()
        self._pending = None
        self.state = State.READY
        return [*actions, CloseBarrier(), Signal("closed"), Show("closed", (SHUTDOWN,))]

    def _operator_open(self, by: str, now: datetime) -> list[Action]:
        if self.state is not State.READY:
            return [Note(f"operator open refused while {self.state.value}")]
        draft = self._draft(now, "approved", "operator", (OPERATOR_OPEN,), [], None)
        return self._approve(draft, f"operator {by}")

    def _enter_surge(self) -> list[Action]:
        self.state = State.SURGE
        return [OpenBarrier(hold=True), Signal("surge"), Show("surge")]

    def _evaluate(self, credentials: list[Credential], now: datetime) -> Verdict:
        window = self.replay_window
        if window:
            self._approved = {s: t for s, t in self._approved.items() if now - t <= window}
        replayed = [c.ref for c in credentials if c.ref is not None and c.ref in self._approved]
        return self.policy.evaluate(credentials, now, replayed)

    def _decide_current(
        self, approve: bool, by: DecidedBy, now: datetime, extra: tuple[str, ...] = ()
    ) -> list[Action]:
        assert self._current is not None
        pending, self._current = self._current, None
        reasons = (*pending.verdict.reasons, *extra)
        decision: Decision = "approved" if approve else "denied"
        draft = self._draft(now, decision, by, reasons, pending.credentials, pending.verdict)
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
        for c in draft.credentials:
            if c.ref is not None:
                self._approved[c.ref] = draft.ts
        self.state = State.OPEN
        reasons = draft.reasons
        return [
            RecordPassage(draft),
            OpenBarrier(),
            Signal("approved"),
            Show("approved", reasons),
            self._start(CloseDue, self.open_s),
            Note(f"approved by {by}" + (f": {','.join(reasons)}" if reasons else "")),
        ]

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

    def _fault(self, name: str, reason: str, now: datetime) -> list[Action]:
        new = name not in self.faults
        self.faults[name] = reason
        if self.state is State.FAILSAFE:
            return [Note(f"fault {name}: {reason}")] if new else []
        actions: list[Action] = [Note(f"fault {name}: {reason}; failsafe")]
        was_deciding, self._current = self._current, None
        self._pending = None
        self._timers.clear()
        self.state = State.FAILSAFE
        if was_deciding is not None:
            reasons = (*was_deciding.verdict.reasons, f"fault_{name}")
            draft = self._draft(
                now, "denied", "policy", reasons, was_deciding.credentials, was_deciding.verdict
            )
            actions.append(RecordPassage(draft))
        return [*actions, CloseBarrier(), Signal("fault"), Show("failsafe", (f"fault_{name}",))]

    def _clear(self, name: str, now: datetime) -> list[Action]:
        if self.faults.pop(name, None) is None:
            return []
        if self.faults or self.state is not State.FAILSAFE:
            return [Note(f"fault {name} cleared")]
        return [Note(f"fault {name} cleared; ready"), *self._to_ready(now)]

    def _start(self, kind: type[TimerEvent], delay_s: float) -> StartTimer:
        self._token += 1
        self._timers[kind] = self._token
        return StartTimer(kind(self._token), delay_s)


def _tag(credential: Credential) -> str:
    """How a credential appears in logs: its kind and a short hash, never its content."""
    return f"{credential.kind} {credential.short_id}"
