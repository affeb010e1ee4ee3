"""The lane's timers: which are pending, so that a stale one is ignored when it fires.

The lane keeps no clock. Starting a timer is an action (:class:`StartTimer`)
whose event the shell posts back when it is due; each event carries a token,
and only the latest timer of each event type counts. A timer the lane no
longer waits for (its state changed, or a newer one replaced it) fires to no
effect: it can never close or open the barrier later.
"""

from __future__ import annotations

from edge.core.events import StartTimer, TimerEvent


class Timers:
    """The pending timer of each event type, by token. Not thread-safe: the lane's."""

    def __init__(self) -> None:
        self._token = 0
        self._pending: dict[type[TimerEvent], int] = {}

    def start(self, kind: type[TimerEvent], delay_s: float) -> StartTimer:
        """The action that starts a timer of ``kind``, replacing any pending one."""
        self._token += 1
        self._pending[kind] = self._token
        return StartTimer(kind(self._token), delay_s)

    def fired(self, event: TimerEvent) -> bool:
        """``event`` is the pending timer of its type (now no longer pending); False for
        a stale one."""
        if self._pending.get(type(event)) != event.token:
            return False
        del self._pending[type(event)]
        return True

    def cancel(self, *kinds: type[TimerEvent]) -> None:
        for kind in kinds:
            self._pending.pop(kind, None)

    def clear(self) -> None:
        self._pending.clear()
