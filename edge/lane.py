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
    any --fault--> FAILSAFE --all faults cleared--> READY

Ordering promise: :class:`RecordPassage` always comes before the
:class:`OpenBarrier` of the same decision. If recording fails the shell must
not open the barrier and reports a fault instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from edge.model import Credential, DecidedBy, Decision, PassageDraft, Verdict
from edge.policy import Policy

# Reason codes added by the lane itself.
NO_DECISION = "no_decision"
NO_CREDENTIAL = "no_credential"


class State(enum.Enum):
    READY = "ready"
    AWAITING_DECISION = "awaiting_decision"
    OPEN = "open"
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
    CredentialScanned | OfficerApproved | OfficerDenied | TimerEvent | FaultRaised | FaultCleared
)

# --- actions --------------------------------------------------------------


@dataclass(frozen=True)
class RecordPassage:
    draft: PassageDraft


@dataclass(frozen=True)
class OpenBarrier:
    pass


@dataclass(frozen=True)
class CloseBarrier:
    pass


@dataclass(frozen=True)
class Signal:
    """LED and buzzer pattern: ready, reading, approved, denied, fault."""

    pattern: str


@dataclass(frozen=True)
class Show:
    """What the screen shows: a lane state, and reason codes where there are some."""

    screen: str
    reasons: tuple[str, ...] = ()


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


class Lane:
    """The lane state machine. Not thread-safe: one thread owns it."""

    def __init__(
        self,
        policy: Policy,
        mode: str,
        decision_timeout_s: float,
        open_s: float,
        failsafe_retry_s: float,
    ) -> None:
        if mode not in ("officer", "auto"):
            raise ValueError(f"unknown lane mode {mode!r}")
        self.policy = policy
        self.mode = mode
        self.decision_timeout_s = decision_timeout_s
        self.open_s = open_s
        self.failsafe_retry_s = failsafe_retry_s
        self.state = State.READY
        self.faults: dict[str, str] = {}
        self._current: tuple[Credential, Verdict] | None = None
        self._pending: Credential | None = None
        self._token = 0
        self._timers: dict[type, int] = {}

    # -- public ------------------------------------------------------------

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
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover - exhaustive

    def fail(self, now: datetime, reason: str = "internal_error") -> list[Action]:
        """Enter failsafe after an internal error; cannot itself fail.

        The lane forgets what it was doing (its state may be inconsistent),
        closes the barrier, and retries after ``failsafe_retry_s``.
        """
        self._current = None
        self._pending = None
        self._timers.clear()
        self.faults[INTERNAL_FAULT] = reason
        self.state = State.FAILSAFE
        return [
            CloseBarrier(),
            Signal("fault"),
            Show("failsafe", (reason,)),
            self._start(FailsafeRetryDue, self.failsafe_retry_s),
            Note(f"failsafe: {reason}"),
        ]

    # -- transitions -------------------------------------------------------

    def _scanned(self, credential: Credential, now: datetime) -> list[Action]:
        tag = f"{credential.kind} {credential.short_id}"
        if self.state is State.FAILSAFE:
            return [Note(f"scan ignored in failsafe: {tag}")]
        if self.state is not State.READY:
            replaced = self._pending is not None
            self._pending = credential
            return [
                Note(
                    f"scan queued while {self.state.value}{' (replaces queued)' * replaced}: {tag}"
                )
            ]
        verdict = self.policy.evaluate(credential)
        note = Note(f"scanned {tag}: policy {verdict.outcome} {','.join(verdict.reasons)}")
        if self.mode == "auto" and verdict.outcome != "refer":
            return [
                note,
                *self._decide(
                    verdict.outcome == "approve", "policy", verdict.reasons, credential, now
                ),
            ]
        self._current = (credential, verdict)
        self.state = State.AWAITING_DECISION
        return [
            note,
            Signal("reading"),
            Show("awaiting_officer", verdict.reasons),
            self._start(DecisionTimedOut, self.decision_timeout_s),
        ]

    def _officer(self, *, approve: bool, now: datetime) -> list[Action]:
        word = "approve" if approve else "deny"
        if self.state is State.AWAITING_DECISION:
            assert self._current is not None
            credential, verdict = self._current
            self._current = None
            self._timers.pop(DecisionTimedOut, None)
            return self._decide(approve, "officer", verdict.reasons, credential, now)
        if self.state is State.READY and approve:
            # The officer lets someone through without a code: still a passage.
            return self._decide(True, "officer", (NO_CREDENTIAL,), None, now)
        if self.state is State.OPEN and not approve:
            self._timers.pop(CloseDue, None)
            return [Note("officer closed the barrier early"), *self._to_ready(now)]
        return [Note(f"officer {word} ignored while {self.state.value}")]

    def _timer(self, event: TimerEvent, now: datetime) -> list[Action]:
        if isinstance(event, DecisionTimedOut) and self.state is State.AWAITING_DECISION:
            assert self._current is not None
            credential, verdict = self._current
            self._current = None
            reasons = (*verdict.reasons, NO_DECISION)
            return self._decide(False, "policy", reasons, credential, now)
        if isinstance(event, CloseDue) and self.state is State.OPEN:
            return self._to_ready(now)
        if isinstance(event, FailsafeRetryDue):
            return self._clear(INTERNAL_FAULT, now)
        return []  # pragma: no cover - tokens are dropped on every state change

    def _decide(
        self,
        approve: bool,
        by: DecidedBy,
        reasons: tuple[str, ...],
        credential: Credential | None,
        now: datetime,
    ) -> list[Action]:
        decision: Decision = "approved" if approve else "denied"
        draft = PassageDraft(now, decision, by, reasons, credential, self.mode)
        record = RecordPassage(draft)
        note = Note(f"{decision} by {by}" + (f": {','.join(reasons)}" if reasons else ""))
        if approve:
            self.state = State.OPEN
            return [
                record,
                OpenBarrier(),
                Signal("approved"),
                Show("approved", reasons),
                self._start(CloseDue, self.open_s),
                note,
            ]
        self.state = State.READY
        actions: list[Action] = [record, Signal("denied"), Show("denied", reasons), note]
        return actions + self._take_pending(now)

    def _to_ready(self, now: datetime) -> list[Action]:
        self.state = State.READY
        return [CloseBarrier(), Signal("ready"), Show("ready"), *self._take_pending(now)]

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
            credential, verdict = was_deciding
            draft = PassageDraft(
                now, "denied", "policy", (*verdict.reasons, f"fault_{name}"), credential, self.mode
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
