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

A traveller may show several codes (declaration, vaccination certificate, ID
card, personal QR): while a decision is pending, a code of a kind not yet
presented joins the presentation and the policy judges again; another code of
a kind already presented is the next traveller's and waits (one slot), unless
it is a proxy code of the family (``edge/core/party.py``). An unrecognised code
shown meanwhile is ignored; one shown first is replaced by the first
recognised code that follows.

A vehicle is one passage: the officer opens a vehicle group
(:class:`OpenVehicle`), or the driver's green-lane code does, and every
occupant's code joins it while codes keep coming (each restarts
``group_s``); then the policy judges the whole party (in auto mode it
decides; otherwise the officer does, as for one traveller), the passage
records every occupant's codes and the vehicle, and the barrier opens once.
In surge mode a group is recorded when its window ends. Answers of the online
lookup (:class:`LookupAnswered`) update the code they are for and the policy
judges again.

Ordering promise: :class:`RecordPassage` always comes before the
:class:`OpenBarrier` of the same decision. If recording fails the shell must
not open the barrier and reports a fault instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

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
    Screen,
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
from edge.core.model import (
    Credential,
    Lookup,
    PassageDraft,
    Vehicle,
    Verdict,
    normal_plate,
)
from edge.core.party import Party
from edge.core.passage import MODES, VEHICLE_KINDS, DecidedBy, Decision, Mode
from edge.core.policy import MAX_PROXIES, Policy, judge_party
from edge.scan import registry
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


@dataclass
class _Pending:
    """The presentation being decided: every code shown (by one traveller, a family, or
    a vehicle's occupants), and the verdict."""

    party: Party
    verdict: Verdict

    @property
    def credentials(self) -> list[Credential]:
        return self.party.credentials


class Lane:
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
        self.replay_window = timedelta(seconds=replay_window_s)
        self.group_s = group_s
        self.state = State.READY
        self.faults: dict[str, str] = {}
        self._current: _Pending | None = None
        self._pending: Credential | None = None
        self._token = 0
        self._timers: dict[type, int] = {}
        self._approved: dict[str, datetime] = {}  # Credential.ref -> last approval
        self._surge_group: Party | None = None  # a vehicle collected in surge mode
        # identities (Format.voucher) in parties the policy approved a moment ago, with
        # how many proxy codes each has vouched for since: a parent's code approved, then
        # their child's proxy code shown just after, is the same family
        self._vouchers: dict[str, tuple[datetime, int]] = {}

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

    def party(self) -> Party | None:
        """The party being decided or collected (a vehicle group in surge mode too)."""
        return self._current.party if self._current is not None else self._surge_group

    def remember(self, ref: str, approved_at: datetime) -> None:
        """A credential (its ``ref``) approved before a restart, for replay checks."""
        if self._approved.get(ref, approved_at) <= approved_at:
            self._approved[ref] = approved_at

    def handle(self, event: Event, now: datetime) -> list[Action]:  # noqa: PLR0911, PLR0912 - one per event
        """Apply one event at wall-clock time ``now``; return the actions to carry out."""
        match event:
            case FaultRaised(name=name, reason=reason):
                return self._fault(name, reason, now)
            case FaultCleared(name=name):
                return self._clear(name, now)
            case DecisionTimedOut() | CloseDue() | FailsafeRetryDue() | GroupWindowEnded():
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
                self._timers.pop(CloseDue, None)
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
        self._timers.clear()
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
            self._start(FailsafeRetryDue, self.failsafe_retry_s),
            Note(f"failsafe: {reason}"),
        ]

    # -- transitions -------------------------------------------------------

    def _scanned(self, credential: Credential, now: datetime) -> list[Action]:  # noqa: PLR0911 - a return per lane state
        tag = _tag(credential)
        if self.state is State.FAILSAFE:
            return [Note(f"scan ignored in failsafe: {tag}")]
        if self.state is State.SURGE:
            return self._surge_scan(credential, now)
        if self.state in (State.AWAITING_DECISION, State.GROUP):
            assert self._current is not None
            return self._add_to_presentation(credential, now)
        if self.state is not State.READY:
            return self._queue(credential)
        if self.mode != "closed" and _is_vehicle(credential):
            party = Party([], Vehicle("truck", "", "greenlane"), [credential])
            _seed_vehicle(party, credential)  # a cached confirmation: its plate and kind
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
        self._current = _Pending(party, verdict)
        if self.mode == "auto" and verdict.outcome != "refer":
            return [note, *self._decide_current(verdict.outcome == "approve", "policy", now)]
        self.state = State.AWAITING_DECISION
        return [
            note,
            Signal("reading"),
            Show("awaiting_officer", verdict.reasons, verdict.needs),
            self._start(DecisionTimedOut, self.decision_timeout_s),
        ]

    def _surge_scan(self, credential: Credential, now: datetime) -> list[Action]:
        """Surge: every code is recorded at once, a vehicle's occupants as one group."""
        tag = _tag(credential)
        group = self._surge_group
        if group is None and _is_vehicle(credential):
            group = self._surge_group = Party([], Vehicle("truck", "", "greenlane"), [])
        if group is not None:
            placed = group.place(credential)
            if placed == "duplicate":
                return []
            if placed == "next":  # another vehicle's code: this vehicle is done, the next opens
                return [*self._drop_surge_group(now, SURGE), *self._surge_scan(credential, now)]
            if placed != "ignored":
                if placed == "vehicle":
                    _seed_vehicle(group, credential)
                return [Note(f"surge group: {tag} {placed}"), Signal("reading"),
                        self._start(GroupWindowEnded, self.group_s)]  # fmt: skip
            # a stray code joins no vehicle, but in surge everything shown is recorded
        party = Party.of(credential)
        verdict = self._evaluate(party, now)
        reasons = (*verdict.reasons, SURGE)
        found = f"policy {verdict.outcome} {','.join(verdict.reasons)}"
        note = Note(f"surge: scanned {tag}: {found}")
        draft = self._draft(now, "approved", "policy", reasons, [credential], verdict)
        return [note, RecordPassage(draft), Signal("reading"), Show("surge", verdict.reasons)]

    def _add_to_presentation(self, credential: Credential, now: datetime) -> list[Action]:
        assert self._current is not None
        party = self._current.party
        placed = party.place(credential)
        if placed == "duplicate":
            return []  # the same code again: already part of this presentation
        if placed == "ignored":
            # a stray code (another app's screen) must neither spoil this
            # presentation nor hold up the lane as a phantom next traveller
            return [Note(f"ignored during a presentation: {_tag(credential)}")]
        if placed == "next":
            return self._queue(credential)  # a second code of a kind: the next traveller's
        if placed == "vehicle":
            _seed_vehicle(party, credential)
        verdict = self._evaluate(party, now)
        self._current.verdict = verdict
        note = Note(
            f"added {_tag(credential)} ({placed}): policy {verdict.outcome} "
            f"{','.join(verdict.reasons)}"
        )
        if self.state is State.GROUP:  # more may come: the window starts again
            return [note, Signal("reading"), Show("group", verdict.reasons, verdict.needs),
                    self._start(GroupWindowEnded, self.group_s)]  # fmt: skip
        return [note, *self._judged(verdict, now)]

    def _judged(self, verdict: Verdict, now: datetime) -> list[Action]:
        """After the verdict changed while awaiting a decision: auto mode decides what
        the policy can; otherwise the screen shows the new verdict."""
        if self.mode == "auto" and verdict.outcome != "refer":
            self._timers.pop(DecisionTimedOut, None)
            return self._decide_current(verdict.outcome == "approve", "policy", now)
        return [Show("awaiting_officer", verdict.reasons, verdict.needs)]

    def _open_group(self, party: Party, now: datetime) -> list[Action]:
        verdict = self._evaluate(party, now)
        self._current = _Pending(party, verdict)
        self.state = State.GROUP
        assert party.vehicle is not None
        return [
            Note(f"vehicle group opened ({party.vehicle.kind}) by {party.vehicle.opened_by}"),
            Signal("reading"),
            Show("group", verdict.reasons, verdict.needs),
            self._start(GroupWindowEnded, self.group_s),
        ]

    def _open_vehicle(self, kind: str, plate: str, by: str, now: datetime) -> list[Action]:
        if kind not in VEHICLE_KINDS:
            return [Note(f"vehicle {kind!r} refused: not one of {', '.join(VEHICLE_KINDS)}")]
        typed = normal_plate(plate)
        if typed is None:
            return [Note("vehicle refused: the plate is not a plate")]
        vehicle = Vehicle(kind, typed, "officer")
        if self.state is State.SURGE:
            if self._surge_group is None:
                self._surge_group = Party([], vehicle, [])
                return [Note(f"surge: vehicle group opened ({kind}) by {by}"),
                        self._start(GroupWindowEnded, self.group_s)]  # fmt: skip
            return [Note("surge: a vehicle group is already open")]
        if self.state is not State.READY or self.mode == "closed":
            return [Note(f"vehicle group refused while {self.state.value} ({self.mode})")]
        return self._open_group(Party([], vehicle, []), now)

    def _set_plate(self, plate: str, now: datetime) -> list[Action]:
        party = self.party()
        if party is None or not party.is_group:
            return [Note("plate ignored: no vehicle is being decided")]
        typed = normal_plate(plate)
        if not typed:
            return [Note("plate ignored: not a plate")]
        party.set_plate(typed)
        if self._current is None:
            return [Note("plate set")]
        verdict = self._current.verdict = self._evaluate(party, now)
        screen: Screen = "group" if self.state is State.GROUP else "awaiting_officer"
        return [Note("plate set"), Show(screen, verdict.reasons, verdict.needs)]

    def _lookup_answered(self, sha256: str, lookup: Lookup, now: datetime) -> list[Action]:
        note = Note(f"lookup answered: {lookup.status}")
        if self._pending is not None and self._pending.sha256 == sha256:
            self._pending = replace(self._pending, lookup=lookup)
            return [note]
        group = self._surge_group
        if group is not None and (answered := group.update(sha256, lookup)) is not None:
            _seed_vehicle(group, answered)
            return [note]
        answered = self._current.party.update(sha256, lookup) if self._current else None
        if self._current is None or answered is None:
            return [Note(f"lookup answered ({lookup.status}) for a code no longer shown")]
        party = self._current.party
        _seed_vehicle(party, answered)  # a vehicle's own code: its plate and kind
        verdict = self._current.verdict = self._evaluate(party, now)
        note = Note(f"lookup answered: {lookup.status}: policy {verdict.outcome}")
        if self.state is State.GROUP:
            return [note, Show("group", verdict.reasons, verdict.needs)]
        return [note, *self._judged(verdict, now)]

    def _queue(self, credential: Credential) -> list[Action]:
        replaced = self._pending is not None
        self._pending = credential
        extra = " (replaces queued)" if replaced else ""
        return [Note(f"scan queued while {self.state.value}{extra}: {_tag(credential)}")]

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
            self._timers.pop(CloseDue, None)
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
            self._timers.pop(CloseDue, None)
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
            self._timers.clear()
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

    def _evaluate(self, party: Party, now: datetime) -> Verdict:
        window = self.replay_window
        if window:
            self._approved = {s: t for s, t in self._approved.items() if now - t <= window}
        replayed = [  # a window of 0 is off: nothing is a replay
            c.ref
            for c in party.credentials
            if window and c.ref is not None and c.ref in self._approved
        ]
        self._vouchers = {
            k: v
            for k, v in self._vouchers.items()
            if timedelta(0) <= now - v[0] <= self._vouch_window
        }
        vouchers = [k for k, (_, used) in self._vouchers.items() if used < MAX_PROXIES]
        return judge_party(self.policy, party, now, replayed, vouchers)

    @property
    def _vouch_window(self) -> timedelta:
        """How long after a party's approval its members vouch for proxy codes shown next:
        the vehicle group window (a parent then their child, one after the other)."""
        return timedelta(seconds=self.group_s)

    def _group_complete(self, now: datetime) -> list[Action]:
        """The vehicle group's window ended: judge it (surge: record it)."""
        if self.state is State.SURGE and self._surge_group is not None:
            return self._drop_surge_group(now, SURGE)
        if self.state is not State.GROUP or self._current is None:
            return []  # pragma: no cover - tokens are dropped on every state change
        verdict = self._current.verdict = self._evaluate(self._current.party, now)
        note = Note(f"vehicle group complete: policy {verdict.outcome} {','.join(verdict.reasons)}")
        if self.mode == "auto" and verdict.outcome != "refer":
            return [note, *self._decide_current(verdict.outcome == "approve", "policy", now)]
        self.state = State.AWAITING_DECISION
        return [
            note,
            Show("awaiting_officer", verdict.reasons, verdict.needs),
            self._start(DecisionTimedOut, self.decision_timeout_s),
        ]

    def _drop_surge_group(self, now: datetime, reason: str) -> list[Action]:
        """End a vehicle group collected in surge mode: recorded as approved (the barrier
        was open for them), with ``reason`` for why it ended, unless nobody showed a code."""
        group, self._surge_group = self._surge_group, None
        self._timers.pop(GroupWindowEnded, None)
        if group is None:
            return []
        if not group.credentials and (group.vehicle is None or not group.vehicle.plate):
            return [Note("surge: an empty vehicle group closed: nothing to record")]
        verdict = self._evaluate(group, now)
        reasons = (*verdict.reasons, SURGE, reason)
        draft = group.apply(
            self._draft(now, "approved", "policy", reasons, group.credentials, verdict)
        )
        return [Note(f"surge: vehicle group recorded ({len(group.people)} people)"),
                RecordPassage(draft), Show("surge", verdict.reasons)]  # fmt: skip

    def _party_draft(
        self,
        now: datetime,
        decision: Decision,
        by: DecidedBy,
        reasons: tuple[str, ...],
        pending: _Pending,
    ) -> PassageDraft:
        draft = self._draft(now, decision, by, reasons, pending.credentials, pending.verdict)
        return pending.party.apply(draft)

    def _decide_current(
        self, approve: bool, by: DecidedBy, now: datetime, extra: tuple[str, ...] = ()
    ) -> list[Action]:
        assert self._current is not None
        pending, self._current = self._current, None
        self._timers.pop(DecisionTimedOut, None)
        self._timers.pop(GroupWindowEnded, None)
        reasons = (*pending.verdict.reasons, *extra)
        decision: Decision = "approved" if approve else "denied"
        draft = self._party_draft(now, decision, by, reasons, pending)
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
            if c.ref is not None and self.replay_window:  # 0: off, nothing to remember
                self._approved[c.ref] = draft.ts
        self._remember_vouchers(draft)
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

    def _remember_vouchers(self, draft: PassageDraft) -> None:
        """After an approval the policy recommended: who in it may vouch for a proxy code
        shown next, and which vouchers it used (each vouches for MAX_PROXIES at most)."""
        if draft.verdict != "approve":
            return  # an officer's approval of what the policy referred vouches for nobody
        for c in draft.credentials:
            fmt = registry.get(c.kind)
            if fmt is None or c.claims is None:
                continue
            if (key := fmt.voucher(c.claims)) is not None and key not in self._vouchers:
                self._vouchers[key] = (draft.ts, 0)
            if (by := fmt.vouched_by(c.claims)) is not None and by in self._vouchers:
                since, used = self._vouchers[by]
                self._vouchers[by] = (since, used + 1)

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
        if self._surge_group is not None:  # recorded: the barrier was open for them
            actions += self._drop_surge_group(now, fault(name))
        self._timers.clear()
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

    def _start(self, kind: type[TimerEvent], delay_s: float) -> StartTimer:
        self._token += 1
        self._timers[kind] = self._token
        return StartTimer(kind(self._token), delay_s)


def _tag(credential: Credential) -> str:
    """How a credential appears in logs: its kind and a short hash, never its content."""
    return f"{credential.kind} {credential.short_id}"


def _seed_vehicle(party: Party, credential: Credential) -> None:
    """A vehicle's own code confirmed online (now, or from the cache) names the vehicle:
    its plate (unless typed already) and, for a group the code opened, its kind. Only
    a vehicle's code: a person's confirmation never sets a plate."""
    lookup, vehicle = credential.lookup, party.vehicle
    if vehicle is None or lookup is None or lookup.status != "confirmed":
        return
    if not _is_vehicle(credential):
        return
    plate = normal_plate(lookup.data.get("plate", ""))
    kind = str(lookup.data.get("vehicle", ""))
    if plate and not vehicle.plate:
        party.set_plate(plate)
    if kind in VEHICLE_KINDS and vehicle.opened_by == "greenlane":
        party.vehicle = replace(party.vehicle or vehicle, kind=kind)


def _is_vehicle(credential: Credential) -> bool:
    """A vehicle's own code (a green-lane code), valid or not: it opens a vehicle group."""
    fmt = registry.get(credential.kind)
    return fmt is not None and fmt.vehicle
