"""The lane's parties: codes joining the presentation, vehicle groups, online answers.

A traveller may show several codes (declaration, vaccination certificate, ID
card, personal QR): while a decision is pending, a code of a kind not yet
presented joins the presentation and the policy judges again; another code of
a kind already presented is the next traveller's and waits (one slot), unless
it is a proxy code of the family. Where a code goes is the party's rule
(:meth:`edge.core.party.Party.place`). An unrecognised code shown meanwhile is
ignored; one shown first is replaced by the first recognised code that follows.

A vehicle is one passage: the officer opens a vehicle group
(:class:`OpenVehicle`), or the driver's green-lane code does, and every
occupant's code joins it while codes keep coming (each restarts
``group_s``); then the policy judges the whole party (in auto mode it
decides; otherwise the officer does, as for one traveller), the passage
records every occupant's codes and the vehicle, and the barrier opens once.
In surge mode a group is recorded when its window ends. Answers of the online
lookup (:class:`LookupAnswered`) update the code they are for and the policy
judges again; the officer may type the vehicle's plate (:class:`SetPlate`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from edge.core.deciding import Deciding, Presentation
from edge.core.events import (
    Action,
    DecisionTimedOut,
    GroupWindowEnded,
    Note,
    RecordPassage,
    Screen,
    Show,
    Signal,
    State,
)
from edge.core.model import Credential, Lookup, Vehicle, normal_plate
from edge.core.party import Party, is_vehicle
from edge.core.passage import VEHICLE_KINDS
from edge.scan.reasons import SURGE


class Groups(Deciding):
    """How the lane handles parties and vehicle groups (see the module's docstring): a
    base of :class:`~edge.core.lane.Lane`, which sets every attribute."""

    decision_timeout_s: float
    group_s: float
    _surge_group: Party | None  # a vehicle collected in surge mode

    def party(self) -> Party | None:
        """The party being decided or collected (a vehicle group in surge mode too)."""
        return self._current.party if self._current is not None else self._surge_group

    def _add_to_presentation(self, credential: Credential, now: datetime) -> list[Action]:
        assert self._current is not None
        party = self._current.party
        placed = party.place(credential)
        if placed == "duplicate":
            return []  # the same code again: already part of this presentation
        if placed == "ignored":
            # a stray code (another app's screen) must neither spoil this
            # presentation nor hold up the lane as a phantom next traveller
            return [Note(f"ignored during a presentation: {credential.tag}")]
        if placed == "next":
            return self._queue(credential)  # a second code of a kind: the next traveller's
        if placed == "vehicle":
            party.seed_vehicle(credential)
        verdict = self._evaluate(party, now)
        self._current.verdict = verdict
        note = Note(
            f"added {credential.tag} ({placed}): policy {verdict.outcome} "
            f"{','.join(verdict.reasons)}"
        )
        if self.state is State.GROUP:  # more may come: the window starts again
            return [note, Signal("reading"), Show("group", verdict.reasons, verdict.needs),
                    self.timers.start(GroupWindowEnded, self.group_s)]  # fmt: skip
        return [note, *self._judged(verdict, now)]

    def _open_group(self, party: Party, now: datetime) -> list[Action]:
        verdict = self._evaluate(party, now)
        self._current = Presentation(party, verdict)
        self.state = State.GROUP
        assert party.vehicle is not None
        return [
            Note(f"vehicle group opened ({party.vehicle.kind}) by {party.vehicle.opened_by}"),
            Signal("reading"),
            Show("group", verdict.reasons, verdict.needs),
            self.timers.start(GroupWindowEnded, self.group_s),
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
                        self.timers.start(GroupWindowEnded, self.group_s)]  # fmt: skip
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
            group.seed_vehicle(answered)
            return [note]
        answered = self._current.party.update(sha256, lookup) if self._current else None
        if self._current is None or answered is None:
            return [Note(f"lookup answered ({lookup.status}) for a code no longer shown")]
        party = self._current.party
        party.seed_vehicle(answered)  # a vehicle's own code: its plate and kind
        verdict = self._current.verdict = self._evaluate(party, now)
        note = Note(f"lookup answered: {lookup.status}: policy {verdict.outcome}")
        if self.state is State.GROUP:
            return [note, Show("group", verdict.reasons, verdict.needs)]
        return [note, *self._judged(verdict, now)]

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
            self.timers.start(DecisionTimedOut, self.decision_timeout_s),
        ]

    def _surge_scan(self, credential: Credential, now: datetime) -> list[Action]:
        """Surge: every code is recorded at once, a vehicle's occupants as one group."""
        tag = credential.tag
        group = self._surge_group
        if group is None and is_vehicle(credential):
            group = self._surge_group = Party.green_lane()
        if group is not None:
            placed = group.place(credential)
            if placed == "duplicate":
                return []
            if placed == "next":  # another vehicle's code: this vehicle is done, the next opens
                return [*self._drop_surge_group(now, SURGE), *self._surge_scan(credential, now)]
            if placed != "ignored":
                if placed == "vehicle":
                    group.seed_vehicle(credential)
                return [Note(f"surge group: {tag} {placed}"), Signal("reading"),
                        self.timers.start(GroupWindowEnded, self.group_s)]  # fmt: skip
            # a stray code joins no vehicle, but in surge everything shown is recorded
        party = Party.of(credential)
        verdict = self._evaluate(party, now)
        reasons = (*verdict.reasons, SURGE)
        found = f"policy {verdict.outcome} {','.join(verdict.reasons)}"
        note = Note(f"surge: scanned {tag}: {found}")
        draft = self._draft(now, "approved", "policy", reasons, [credential], verdict)
        return [note, RecordPassage(draft), Signal("reading"), Show("surge", verdict.reasons)]

    def _drop_surge_group(self, now: datetime, reason: str) -> list[Action]:
        """End a vehicle group collected in surge mode: recorded as approved (the barrier
        was open for them), with ``reason`` for why it ended, unless nobody showed a code."""
        group, self._surge_group = self._surge_group, None
        self.timers.cancel(GroupWindowEnded)
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
