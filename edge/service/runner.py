"""The lane thread: feeds events to the lane and carries out its actions.

Every other thread (buttons, scanner, camera, MQTT, signals) only *posts*
events; this thread alone touches the :class:`~edge.core.lane.Lane`. Timers are a
deadline table consulted between events, so a timer that the lane replaces or
abandons can never fire into a later state (the lane's tokens guard that too).

Actions are carried out in order. If recording a passage fails, the rest of
that decision (opening the barrier above all) is skipped and the failure goes
back to the lane as a ``store`` fault. An exception inside the lane puts it
into failsafe.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from edge.core.events import Pattern, Screen
from edge.core.lane import (
    Action,
    CloseBarrier,
    Event,
    FaultRaised,
    Lane,
    Note,
    OpenBarrier,
    RecordPassage,
    Show,
    Signal,
    StartTimer,
    State,
    TimerEvent,
)
from edge.core.model import Passage, PassageDraft
from edge.errors import EdgeError

log = logging.getLogger("edge.core.lane")

Listener = Callable[[Event, list[Action], State], None]


class Effects(Protocol):
    """What the lane's actions do in the world."""

    def record(self, draft: PassageDraft) -> Passage:
        """Store a passage durably; raise EdgeError (or OSError) when that fails."""
        ...

    def set_barrier(self, open_: bool, hold: bool = False) -> None: ...

    def signal(self, pattern: Pattern) -> None: ...

    def show(self, screen: Screen, reasons: tuple[str, ...]) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Stop:
    pass


@dataclass(frozen=True)
class Outcome:
    """What one event did: the lane's actions, whether all were carried out, the state after."""

    actions: list[Action]
    completed: bool
    state: State
    mode: str


@dataclass(frozen=True)
class _Call:
    event: Event
    future: Future[Outcome]


class LaneRunner(threading.Thread):
    """Owns the lane; ``post`` is the only way in."""

    def __init__(
        self,
        lane: Lane,
        effects: Effects,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="lane", daemon=True)
        self.lane = lane
        self.effects = effects
        self.clock = clock
        self.monotonic = monotonic
        self._queue: queue.Queue[Event | _Call | _Stop] = queue.Queue()
        self._timers: dict[type, tuple[float, TimerEvent]] = {}
        self._listeners: list[Listener] = []
        self.events = 0

    @property
    def state(self) -> State:
        return self.lane.state

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, actions, state)`` on the lane thread after each event."""
        self._listeners.append(listener)

    def post(self, event: Event) -> None:
        """Hand an event to the lane (any thread)."""
        self._queue.put(event)

    def call(self, event: Event, timeout: float = 5.0) -> Outcome:
        """Post ``event`` and wait until the lane has handled it (any thread but the lane's).

        Raises TimeoutError when the lane did not get to it in time.
        """
        future: Future[Outcome] = Future()
        self._queue.put(_Call(event, future))
        return future.result(timeout)

    def stop(self) -> None:
        """Finish the events already posted, then end."""
        self._queue.put(_Stop())

    def run(self) -> None:
        self._guarded(lambda: self._execute(self.lane.start(self.clock())))
        while self.step(self._next_timeout()):
            pass

    def step(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` for one event, handle it and any due timers; False on stop."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            item = None
        if isinstance(item, _Stop):
            return False
        # An event already taken from the queue happened before any timer that
        # is due now was looked at: it goes first (an officer's press at the
        # last moment beats the decision timeout).
        if isinstance(item, _Call):
            self._guarded(self._handle, item.event, item.future)
            if not item.future.done():
                item.future.set_exception(RuntimeError("the lane failed on this event"))
        elif item is not None:
            self._guarded(self._handle, item)
        for event in self._due_timers():
            self._guarded(self._handle, event)
        return True

    def _guarded(self, work: Callable[..., object], *args: Any) -> None:
        """Nothing may end the lane thread: an error here is a lane failure, not a crash."""
        try:
            work(*args)
        except Exception:
            log.exception("lane: unexpected error")
            try:
                self._timers.clear()
                self._execute(self.lane.fail(self.clock()))
            except Exception:
                log.exception("lane: could not even enter failsafe")

    def _next_timeout(self) -> float | None:
        if not self._timers:
            return None
        return max(0.0, min(due for due, _ in self._timers.values()) - self.monotonic())

    def _due_timers(self) -> list[TimerEvent]:
        now = self.monotonic()
        due = sorted((t, ev) for ev_type, (t, ev) in self._timers.items() if t <= now)
        for _, ev in due:
            del self._timers[type(ev)]
        return [ev for _, ev in due]

    def _handle(self, event: Event, future: Future[Outcome] | None = None) -> None:
        self.events += 1
        now = self.clock()
        try:
            actions = self.lane.handle(event, now)
        except Exception:
            log.exception("lane: internal error on %s", type(event).__name__)
            actions = self.lane.fail(now)
            self._timers.clear()
        completed = self._execute(actions)
        if future is not None:
            future.set_result(Outcome(actions, completed, self.lane.state, self.lane.mode))
        for listener in self._listeners:
            try:
                listener(event, actions, self.lane.state)
            except Exception:
                log.exception("lane: listener failed")

    def _execute(self, actions: list[Action]) -> bool:
        """Carry out ``actions`` in order; False when one failed and the rest were skipped."""
        for action in actions:
            try:
                self._perform(action)
            except Exception as exc:  # any driver or store error: the lane must hear of it
                name = "store" if isinstance(action, RecordPassage) else "barrier"
                if isinstance(exc, EdgeError | OSError):
                    log.error("lane: %s failed: %s", type(action).__name__, exc)  # noqa: TRY400
                else:
                    log.exception("lane: %s failed", type(action).__name__)
                # Skip the rest of this decision: above all, never open the
                # barrier for a passage that is not on disk.
                self._handle(FaultRaised(name, type(exc).__name__))
                return False
        return True

    def _perform(self, action: Action) -> None:
        match action:
            case RecordPassage(draft=draft):
                self.effects.record(draft)
            case OpenBarrier(hold=hold):
                self.effects.set_barrier(True, hold)
            case CloseBarrier():
                self.effects.set_barrier(False)
            case Signal(pattern=pattern):
                self._quietly(self.effects.signal, pattern)
            case Show(screen=screen, reasons=reasons):
                self._quietly(self.effects.show, screen, reasons)
            case StartTimer(event=event, delay_s=delay_s):
                self._timers[type(event)] = (self.monotonic() + delay_s, event)
            case Note(text=text):
                log.info("lane: %s", text)

    @staticmethod
    def _quietly(fn: Callable[..., None], *args: object) -> None:
        """LEDs, buzzer and screen are feedback: their failure must not stop the lane."""
        try:
            fn(*args)
        except Exception:
            log.exception("lane: feedback failed")
