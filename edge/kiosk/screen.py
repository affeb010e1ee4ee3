"""What the kiosk's screen shows, kept up to date by the lane and read by the web server.

The lane reaches the screen one way only: the lane thread calls
:meth:`ScreenModel.lane_event` after every event it handled (a runner
listener), and the model takes the last ``Show`` action (the screen, reason
codes and what else to present), the presentation being decided (for the
officer), and each recorded passage (the recent list). Every change bumps a
version and wakes the server's event streams, so a decision reaches the screen
in the time it takes to write one small JSON line.

The status beside the lane (connectivity, outbox depth, alerts) is data the
model pulls (``status``): into every officer's view, and in :meth:`refresh`,
which the daemon's main thread calls every second to wake the screens when it
changed without a lane event. A version remembers the status it went out with,
so what a lane event changed there (its fault alert, a passage in the outbox)
goes out with that event, not a second time.

Two views of the same state (:meth:`snapshot`): the traveller's, with personal
data masked (initials, the last three digits of the ID number), and the
officer's, with the full decoded codes, the policy's recommendation, the lane's
mode, connectivity, outbox depth and recent passages. The officer's view is
only ever built for a logged-in officer session.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from edge.core.lane import Action, Event, RecordPassage, Show, State
from edge.core.model import (
    Credential,
    PassageDraft,
    Verdict,
    initials,
    iso_utc,
    mask_tail,
    plain,
    traveller,
)
from edge.core.party import Party
from edge.scan import registry
from edge.scan.reasons import rule_of

RECENT = 10


def _person(credentials: Sequence[Credential]) -> tuple[str, str]:
    """(name, ID number) of the traveller, from the codes shown (the best-ranked
    format's, as in passages)."""
    found = traveller(credentials, ("name", "id_number"))
    return str(found.get("name", "")), str(found.get("id_number", ""))


def _code(c: Credential) -> dict[str, Any]:
    """One code as the officer sees it: kind, validity, reasons, and the decoded fields
    its format shows (``Format.labels``)."""
    fields = plain(c.claims, iso_utc) if c.claims is not None else {}
    fmt = registry.get(c.kind)
    if fmt is not None:
        shown = fmt.labels()
        fields = {k: v for k, v in fields.items() if k in shown}
    return {
        "kind": c.kind,
        "valid": c.valid,
        "reasons": list(c.reasons),
        "lookup": None if c.lookup is None else c.lookup.status,
        "fields": fields,
    }


def _vehicle(party: Party | None) -> dict[str, Any] | None:
    """The vehicle being decided, as the officer sees it: kind, plate, how many people,
    who opened it, and what the green-lane confirmation said (registered drivers)."""
    if party is None or party.vehicle is None:
        return None
    drivers: list[str] = []
    lookup = None
    for c in party.vehicle_codes:
        if c.lookup is not None:
            lookup = c.lookup.status
            found = c.lookup.data.get("drivers", [])
            drivers += [str(d.get("name", "")) for d in found if isinstance(d, dict)]
    return {
        "kind": party.vehicle.kind,
        "plate": party.vehicle.plate,
        "people": len(party.people),
        "opened_by": party.vehicle.opened_by,
        "lookup": lookup,
        "drivers": [d for d in drivers if d],
    }


class ScreenModel:
    """The screen's state: written by the lane thread, read by the server's threads."""

    def __init__(
        self,
        status: Callable[[], Mapping[str, Any]] | None = None,
        rules: Callable[[str], Mapping[str, str]] = lambda _identifier: {},
    ) -> None:
        self._cond = threading.Condition()
        self.version = 0
        self.shown = 0  # how many times the lane has shown a screen (a new decision: +1)
        self.screen = "ready"
        self.reasons: tuple[str, ...] = ()
        self.needs: tuple[str, ...] = ()
        self.state = State.READY.value
        self.mode = ""
        self.changed_at = iso_utc(datetime.now().astimezone())
        self._person = ("", "")
        self._vehicle: dict[str, Any] | None = None
        self._codes: list[dict[str, Any]] = []
        self._verdict: Verdict | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._status = status or (lambda: {})
        self._status_sent: Mapping[str, Any] = {}  # as pulled at the last version
        self._rules = rules  # a business rule's descriptions by language, by its identifier

    # -- the lane thread -------------------------------------------------------------

    def lane_event(self, _event: Event, actions: list[Action], state: State, lane: Any) -> None:
        shows = [a for a in actions if isinstance(a, Show)]
        records = [a.draft for a in actions if isinstance(a, RecordPassage)]
        presentation: tuple[list[Credential], Verdict] | None = lane.presentation()
        vehicle = _vehicle(lane.party())
        with self._cond:
            if vehicle != self._vehicle:
                self._vehicle = vehicle
                changed_vehicle = True
            else:
                changed_vehicle = False
            changed = state.value != self.state or lane.mode != self.mode or bool(records)
            changed = changed or changed_vehicle
            self.state, self.mode = state.value, lane.mode
            for draft in records:
                self._recent.appendleft(_recent(draft))
            if presentation is not None:
                credentials, verdict = presentation
                self._codes = [_code(c) for c in credentials]
                self._verdict = verdict
                self._person = _person(credentials)
                changed = True
            elif records:
                last = records[-1]
                self._codes = [_code(c) for c in last.credentials]
                self._verdict = None
                self._person = _person(last.credentials)
            if shows:
                show = shows[-1]
                self.screen, self.reasons, self.needs = show.screen, show.reasons, show.needs
                self.shown += 1
                if show.screen in ("ready", "closed", "surge", "failsafe") and vehicle is None:
                    # nobody is being decided: no traveller's data stays on the screen
                    self._person, self._codes, self._verdict = ("", ""), [], None
                changed = True
            if changed:
                self._bump()

    # -- the main thread --------------------------------------------------------------

    def refresh(self) -> None:
        """Wake the screens when the status is no longer what the last version went out
        with (an alert, the broker, the ingest, the outbox changed outside the lane)."""
        status = self._status()
        with self._cond:
            if status != self._status_sent:
                self._bump(status)

    def touch(self) -> None:
        """A new version without a change of the lane's: every page is sent the state again."""
        with self._cond:
            self._bump()

    def _bump(self, status: Mapping[str, Any] | None = None) -> None:
        """(Under the lock.) ``status``: as just pulled, else pulled here."""
        self._status_sent = self._status() if status is None else status
        self.version += 1
        self.changed_at = iso_utc(datetime.now().astimezone())
        self._cond.notify_all()

    # -- the server's threads --------------------------------------------------------

    def wait_newer(
        self, version: int, timeout: float, until: Callable[[], bool] = lambda: False
    ) -> int:
        """Wait until the state is newer than ``version``, ``until()`` is true after a
        :meth:`wake`, or ``timeout``; the version now."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != version or until(), timeout)
            return self.version

    def wake(self) -> None:
        """Wake every waiter without a change (an event stream told to end)."""
        with self._cond:
            self._cond.notify_all()

    def _policy_reasons(self) -> list[str]:
        verdict = self._verdict
        codes = [r for c in self._codes for r in c.get("reasons", [])]
        return [*(verdict.reasons if verdict else ()), *codes]

    def _rule_texts(self, reasons: Sequence[str]) -> dict[str, Mapping[str, str]]:
        """What a business rule named in ``reasons`` (``rule_failed:<Id>``) says, by
        language: the screens show it instead of a code."""
        found: dict[str, Mapping[str, str]] = {}
        for code in reasons:
            rule = rule_of(code)
            if rule is not None and rule[1] not in found:
                found[rule[1]] = dict(self._rules(rule[1]))
        return found

    def snapshot(self, officer: bool) -> dict[str, Any]:
        """The traveller's view, and with ``officer`` the officer's too."""
        with self._cond:
            name, number = self._person
            doc: dict[str, Any] = {
                "version": self.version,
                "shown": self.shown,  # the page speaks each traveller's decision: new ones
                "ts": self.changed_at,
                "screen": self.screen,
                "reasons": list(self.reasons),
                "needs": list(self.needs),
                "mode": self.mode,
                "traveller": (
                    {"initials": initials(name), "id_last": mask_tail(number)}
                    if (name or number) and self._vehicle is None
                    else None
                ),
                # a vehicle group: its kind and how many have shown a code (no plate here)
                "group": (
                    {"kind": self._vehicle["kind"], "people": self._vehicle["people"]}
                    if self._vehicle is not None
                    else None
                ),
            }
            doc["rules"] = self._rule_texts([*self.reasons, *self._policy_reasons()])
            if officer:
                verdict = self._verdict
                doc["officer"] = {
                    "state": self.state,
                    "codes": [dict(c) for c in self._codes],
                    "recommendation": verdict.outcome if verdict else None,
                    "policy_reasons": list(verdict.reasons) if verdict else [],
                    "recent": list(self._recent),
                    "vehicle": dict(self._vehicle) if self._vehicle is not None else None,
                    **self._status(),
                }
        return doc


def _recent(draft: PassageDraft) -> dict[str, Any]:
    name, number = _person(draft.credentials)
    return {
        "ts": iso_utc(draft.ts),
        "vehicle": draft.vehicle.kind if draft.vehicle is not None else None,
        "people": len(draft.occupants) or (1 if draft.credentials else 0),
        "decision": draft.decision,
        "decided_by": draft.decided_by,
        "reasons": list(draft.reasons),
        "kinds": [c.kind for c in draft.credentials],
        "name": name,
        "id_number": number,
    }
