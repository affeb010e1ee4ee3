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
    READY --vehicle--> GROUP --window ends--> AWAITING_DECISION (or decided in auto)
                         | officer approves / denies: decided at once
    SURGE: barrier held open; every scan is verified and recorded at once
    closed mode: READY with the barrier shut; every scan is recorded as denied
    an operator's open-barrier command: READY --> OPEN (recorded, by operator)
    any --fault--> FAILSAFE --all faults cleared--> READY (or SURGE)

A traveller may show several codes, a family or a vehicle's occupants pass as
one party: :mod:`edge.core.groups`. How a decision ends (recorded, the barrier
opened or not, the next traveller's queued code taken) is
:mod:`edge.core.deciding`; the timers are :mod:`edge.core.timers`, what the lane
approved a moment ago (replays, vouchers) :mod:`edge.core.recent`. :class:`Lane`
is all of them; this module holds its public face, its modes and its faults.

Ordering promise: :class:`RecordPassage` always comes before the
:class:`OpenBarrier` of the same decision. If recording fails the shell must
not open the barrier and reports a fault instead.
"""

from __future__ import annotations

from datetime import datetime

from edge.core.deciding import Presentation
from edge.core.events import (
    Action,
    CloseBarrier,
    CloseDue,
    CredentialScanned,
    DecisionTimedOut,
    Event,
    FailsafeRetryDue,
    FaultCleared,
    FaultRaised,
    GroupWindowEnded,
    LookupAnswered,
    Note,
    OfficerApproved,
    OfficerDenied,
    OpenBarrier,
    OpenVehicle,
    OperatorOpen,
    RecordPassage,
    SetMode,
    SetPlate,
    Show,
    Shutdown,
    Signal,
    StartTimer,
    State,
    TimerEvent,
    VehiclePassed,
)
from edge.core.groups import Groups
from edge.core.model import Credential, Verdict
from edge.core.party import Party, is_vehicle
from edge.core.passage import MODES, Mode
from edge.core.policy import Policy
from edge.core.recent import RecentApprovals
from edge.core.timers import Timers
from edge.scan.reasons import (
    CLOSED,
    INTERNAL_ERROR,
    NO_CREDENTIAL,
    NO_DECISION,
    OPERATOR_OPEN,
    SHUTDOWN,
    SURGE,
    fault,
)

__all__ = [
    "DECIDING",
    "INTERNAL_FAULT",
    "Action",
    "CloseBarrier",
    "CloseDue",
    "CredentialScanned",
    "DecisionTimedOut",
    "Event",
    "FailsafeRetryDue",
    "FaultCleared",
    "FaultRaised",
    "GroupWindowEnded",
    "Lane",
    "LookupAnswered",
    "Note",
    "OfficerApproved",
    "OfficerDenied",
    "OpenBarrier",
    "OpenVehicle",
    "OperatorOpen",
    "RecordPassage",
    "SetMode",
    "SetPlate",
    "Show",
    "Shutdown",
    "Signal",
    "StartTimer",
    "State",
    "TimerEvent",
    "VehiclePassed",
]

INTERNAL_FAULT = "internal"
# States in which a traveller (or a vehicle's occupants) is being decided.
DECIDING = (State.AWAITING_DECISION, State.GROUP)


class Lane(Groups):
    """The lane state machine. Not thread-safe: one thread owns it."""

    def __init__(
        self,
        policy: Policy,
        *,
        mode: Mode,
        decision_timeout_s: float,
        open_s: float,
        failsafe_retry_s: float,
        replay_window_s: float = 0.0,
        group_s: float = 20.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown lane mode {mode!r}")
        self.policy = policy
        self.mode = mode
        self.decision_timeout_s = decision_timeout_s
        self.open_s = open_s
        self.failsafe_retry_s = failsafe_retry_s
        self.group_s = group_s
        self.state = State.READY
        self.faults: dict[str, str] = {}
        self.recent = RecentApprovals(replay_window_s, vouch_window_s=group_s)
        self.timers = Timers()
        self._current: Presentation | None = None
        self._pending: Credential | None = None
        self._surge_group: Party | None = None

    # -- public ------------------------------------------------------------

    def start(self, now: datetime) -> list[Action]:
        """The actions that put the hardware in the lane's initial state."""
        if self.mode == "surge":
            return self._enter_surge()
        return [CloseBarrier(), *self._ready_feedback()]

    def presentation(self) -> tuple[list[Credential], Verdict] | None:
        """The codes shown by the traveller (or party) being decided, and the verdict."""
        if self._current is None:
            return None
        return list(self._current.credentials), self._current.verdict

    def remember(self, ref: str, approved_at: datetime) -> None:
        """A credential (its ``ref``) approved before a restart, for replay checks."""
        self.recent.remember(ref, approved_at)

    def handle(self, event: Event, now: datetime) -> list[Action]:  # noqa: PLR0911, PLR0912 - one per event
        """Apply one event at wall-clock time ``now``; return the actions to carry out."""
        match event:
            case FaultRaised(name=name, reason=reason):
                return self._fault(name, reason, now)
            case FaultCleared(name=name):
                return self._clear(name, now)
            case DecisionTimedOut() | CloseDue() | FailsafeRetryDue() | GroupWindowEnded():
                if not self.timers.fired(event):
                    return []  # a timer from an earlier state: nothing to do
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
            case OpenVehicle(kind=kind, plate=plate, by=by):
                return self._open_vehicle(kind, plate, by, now)
            case SetPlate(plate=plate):
                return self._set_plate(plate, now)
            case LookupAnswered(sha256=sha256, lookup=lookup):
                return self._lookup_answered(sha256, lookup, now)
            case Shutdown():
                return self._shutdown(now)
            case VehiclePassed():
                if self.state is not State.OPEN:
                    return []
                self.timers.cancel(CloseDue)
                return [Note("vehicle passed: closing"), *self._to_ready(now)]
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover - exhaustive

    def fail(self, now: datetime, reason: str = INTERNAL_ERROR) -> list[Action]:
        """Enter failsafe after an internal error; cannot itself fail.

        The lane forgets what it was doing (its state may be inconsistent),
        closes the barrier, records a traveller who was being decided as
        denied, and retries after ``failsafe_retry_s``.
        """
        deciding, self._current = self._current, None
        group, self._surge_group = self._surge_group, None
        self._pending = None
        self.timers.clear()
        self.faults[INTERNAL_FAULT] = reason
        self.state = State.FAILSAFE
        actions: list[Action] = [CloseBarrier()]
        if group is not None and (group.credentials or group.vehicle is not None):
            # a vehicle collected in surge mode passed the open barrier: recorded as it
            # stands, without asking the policy (which may be what failed)
            recorded = (SURGE, reason)
            draft = self._draft(now, "approved", "policy", recorded, group.credentials, None)
            actions.append(RecordPassage(group.apply(draft)))
        if deciding is not None:
            reasons = (*deciding.verdict.reasons, reason)
            actions.append(
                RecordPassage(self._party_draft(now, "denied", "policy", reasons, deciding))
            )
        return [
            *actions,
            Signal("fault"),
            Show("failsafe", (reason,)),
            self.timers.start(FailsafeRetryDue, self.failsafe_retry_s),
            Note(f"failsafe: {reason}"),
        ]

    # -- transitions -------------------------------------------------------

    def _scanned(self, credential: Credential, now: datetime) -> list[Action]:  # noqa: PLR0911 - a return per lane state
        tag = credential.tag
        if self.state is State.FAILSAFE:
            return [Note(f"scan ignored in failsafe: {tag}")]
        if self.state is State.SURGE:
            return self._surge_scan(credential, now)
        if self.state in (State.AWAITING_DECISION, State.GROUP):
            assert self._current is not None
            return self._add_to_presentation(credential, now)
        if self.state is not State.READY:
            return self._queue(credential)
        if self.mode != "closed" and is_vehicle(credential):
            party = Party.green_lane([credential])
            party.seed_vehicle(credential)  # a cached confirmation: its plate and kind
            return self._open_group(party, now)
        party = Party.of(credential)
        verdict = self._evaluate(party, now)
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
        self._current = Presentation(party, verdict)
        if self.mode == "auto" and verdict.outcome != "refer":
            return [note, *self._decide_current(verdict.outcome == "approve", "policy", now)]
        self.state = State.AWAITING_DECISION
        return [
            note,
            Signal("reading"),
            Show("awaiting_officer", verdict.reasons, verdict.needs),
            self.timers.start(DecisionTimedOut, self.decision_timeout_s),
        ]

    def _officer(self, *, approve: bool, now: datetime) -> list[Action]:
        word = "approve" if approve else "deny"
        if self.state in DECIDING:
            return self._decide_current(approve, "officer", now)
        if self.state is State.READY and approve and self.mode == "closed":
            return [Note("officer approve ignored: the checkpoint is closed")]
        if self.state is State.READY and approve:
            # The officer lets someone through without a code: still a passage.
            draft = self._draft(now, "approved", "officer", (NO_CREDENTIAL,), [], None)
            return self._approve(draft, "officer")
        if self.state is State.OPEN and not approve:
            self.timers.cancel(CloseDue)
            return [Note("officer closed the barrier early"), *self._to_ready(now)]
        return [Note(f"officer {word} ignored while {self.state.value}")]

    def _timer(self, event: TimerEvent, now: datetime) -> list[Action]:
        if isinstance(event, DecisionTimedOut) and self.state is State.AWAITING_DECISION:
            return self._decide_current(False, "policy", now, extra=(NO_DECISION,))
        if isinstance(event, GroupWindowEnded):
            return self._group_complete(now)
        if isinstance(event, CloseDue) and self.state is State.OPEN:
            return self._to_ready(now)
        if isinstance(event, FailsafeRetryDue):
            return self._clear(INTERNAL_FAULT, now)
        return []  # pragma: no cover - tokens are dropped on every state change

    def _set_mode(self, mode: Mode, by: str, now: datetime) -> list[Action]:  # noqa: PLR0911 - a return per case
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
            self.timers.cancel(CloseDue)
            if self.state in DECIDING:
                closing += self._decide_current(False, "policy", now, extra=(CLOSED,))
            closing += self._drop_surge_group(now, CLOSED)
            return closing + self._to_ready(now)
        if mode == "surge":
            actions: list[Action] = [note]
            if self.state in DECIDING and self._current is not None:
                pending = self._current
                self._current = None
                reasons = (*pending.verdict.reasons, SURGE)
                actions.append(
                    RecordPassage(self._party_draft(now, "approved", "policy", reasons, pending))
                )
            self.timers.clear()
            return actions + self._enter_surge()
        if was == "surge" or (was == "closed" and self.state is State.READY):
            return [note, *self._drop_surge_group(now, SURGE), *self._to_ready(now)]
        return [note]

    def _shutdown(self, now: datetime) -> list[Action]:
        """A traveller being decided is recorded as denied (``shutdown``); the barrier
        closes whatever the mode; nothing queued is kept."""
        actions: list[Action] = [Note("shutting down")]
        self._pending = None
        if self.state in DECIDING:
            actions += self._decide_current(False, "policy", now, extra=(SHUTDOWN,))
        actions += self._drop_surge_group(now, SHUTDOWN)
        self.timers.clear()
        self._pending = None
        self.state = State.READY
        return [*actions, CloseBarrier(), Signal("closed"), Show("closed", (SHUTDOWN,))]

    def _operator_open(self, by: str, now: datetime) -> list[Action]:
        if self.state is not State.READY:
            return [Note(f"operator open refused while {self.state.value}")]
        draft = self._draft(now, "approved", "operator", (OPERATOR_OPEN,), [], None)
        return self._approve(draft, f"operator {by}")

    def _fault(self, name: str, reason: str, now: datetime) -> list[Action]:
        new = name not in self.faults
        self.faults[name] = reason
        if self.state is State.FAILSAFE:
            return [Note(f"fault {name}: {reason}")] if new else []
        actions: list[Action] = [Note(f"fault {name}: {reason}; failsafe")]
        was_deciding, self._current = self._current, None
        self._pending = None
        if self._surge_group is not None:  # recorded: the barrier was open for them
            actions += self._drop_surge_group(now, fault(name))
        self.timers.clear()
        self.state = State.FAILSAFE
        if was_deciding is not None:
            reasons = (*was_deciding.verdict.reasons, fault(name))
            actions.append(
                RecordPassage(self._party_draft(now, "denied", "policy", reasons, was_deciding))
            )
        return [*actions, CloseBarrier(), Signal("fault"), Show("failsafe", (fault(name),))]

    def _clear(self, name: str, now: datetime) -> list[Action]:
        if self.faults.pop(name, None) is None:
            return []
        if self.faults or self.state is not State.FAILSAFE:
            return [Note(f"fault {name} cleared")]
        return [Note(f"fault {name} cleared; ready"), *self._to_ready(now)]
