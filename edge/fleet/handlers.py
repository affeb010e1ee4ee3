"""The kiosk's command table: what each operator command does.

Built once per kiosk from the :class:`Kiosk` it acts on (the shell). Handlers
run on the fleet thread; those that touch the lane go through the lane
thread (:meth:`edge.service.runner.LaneRunner.call`) and answer with what the lane did.

=============  ==========  ==================================================
command        fleet-wide  what
=============  ==========  ==================================================
ping           yes         ``pong`` with the kiosk's time and uptime
get-status     yes         lane state and mode, outbox, alerts, connectivity
set-mode       no          args.mode: officer / auto / surge / closed
open-barrier   no          one pulse of ``[lane] open_s``, recorded as a
                           passage decided by ``operator``
reload-trust   yes         load the trust files again (last good store kept)
rebirth        yes         republish status, meta, config/reported, alerts
get-logs       yes         args.lines (1-500, default 100), args.level;
                           recent log lines, personal data masked
=============  ==========  ==================================================
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from edge.core.lane import OpenBarrier, OperatorOpen, RecordPassage, SetMode, State
from edge.core.passage import MODES
from edge.errors import TrustError
from edge.fleet.commands import (
    Command,
    CommandFailed,
    CommandRejected,
    Commands,
    Journal,
    Reply,
    Spec,
    arg_choice,
    arg_int,
    no_args,
)
from edge.service.runner import Outcome

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LOG_LEVELS["error"] = logging.ERROR
LANE_WAIT_S = 5.0


class Kiosk(Protocol):
    """What the commands act on (implemented by :class:`edge.service.view.KioskView`)."""

    def status_data(self) -> Mapping[str, Any]: ...

    def lane_call(self, event: SetMode | OperatorOpen, timeout: float) -> Outcome: ...

    def reload_trust(self) -> str: ...

    def rebirth(self) -> None: ...

    def log_lines(self, count: int, level: int) -> list[str]: ...

    def uptime_s(self) -> float: ...


def build(
    kiosk: Kiosk, memory: OrderedDict[str, Reply] | None = None, journal: Journal | None = None
) -> Commands:
    """The command table of ``kiosk`` (``memory``, ``journal``: see :class:`Commands`)."""

    def ping(command: Command) -> Mapping[str, Any]:
        no_args(command)
        return {"pong": True, "uptime_s": round(kiosk.uptime_s(), 1)}

    def get_status(command: Command) -> Mapping[str, Any]:
        no_args(command)
        return kiosk.status_data()

    def set_mode(command: Command) -> Mapping[str, Any]:
        mode = arg_choice(command, "mode", MODES)
        outcome = _lane(kiosk, SetMode(mode, by=f"operator command {command.id}"))
        data: dict[str, Any] = {"mode": outcome.mode, "state": outcome.state.value}
        if outcome.state is State.FAILSAFE:
            data["note"] = "the lane is in failsafe: the mode applies once its faults clear"
        return data

    def open_barrier(command: Command) -> Mapping[str, Any]:
        no_args(command)
        outcome = _lane(kiosk, OperatorOpen(by=f"command {command.id}"))
        opened = any(isinstance(a, OpenBarrier) for a in outcome.actions)
        if opened and outcome.completed:
            return {"opened": True, "state": outcome.state.value}
        if any(isinstance(a, RecordPassage) for a in outcome.actions):
            raise CommandFailed("the passage could not be stored or the barrier failed: closed")
        raise CommandRejected(f"the lane is {outcome.state.value}: open-barrier needs it ready")

    def reload_trust(command: Command) -> Mapping[str, Any]:
        no_args(command)
        try:
            return {"trust": kiosk.reload_trust()}
        except TrustError as exc:
            raise CommandFailed(f"trust files not loaded (last good store kept): {exc}") from exc

    def rebirth(command: Command) -> Mapping[str, Any]:
        no_args(command)
        kiosk.rebirth()
        return {"republished": ["status", "meta", "config/reported", "alerts"]}

    def get_logs(command: Command) -> Mapping[str, Any]:
        count = arg_int(command, "lines", 100, 1, 500)
        level = (
            arg_choice(command, "level", tuple(LOG_LEVELS)) if "level" in command.args else "info"
        )
        unknown = set(command.args) - {"lines", "level"}
        if unknown:
            raise CommandRejected(f"unknown args: {', '.join(sorted(unknown))}")
        return {"lines": kiosk.log_lines(count, LOG_LEVELS[level])}

    return Commands(
        {
            "ping": Spec(ping),
            "get-status": Spec(get_status),
            "set-mode": Spec(set_mode, fleet_wide=False),
            "open-barrier": Spec(open_barrier, fleet_wide=False),
            "reload-trust": Spec(reload_trust),
            "rebirth": Spec(rebirth),
            "get-logs": Spec(get_logs),
        },
        memory,
        journal,
    )


def _lane(kiosk: Kiosk, event: SetMode | OperatorOpen) -> Outcome:
    try:
        return kiosk.lane_call(event, LANE_WAIT_S)
    except TimeoutError:
        raise CommandFailed(f"the lane did not answer within {LANE_WAIT_S:g} s") from None
    except RuntimeError as exc:
        raise CommandFailed(str(exc)) from exc
