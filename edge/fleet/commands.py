"""Commands from operators: the envelope, its checks, and the reply.

A command arrives on ``cp/v1/<id>/cmd/<name>`` (or fleet-wide on
``cp/v1/$all/cmd/<name>``) as JSON::

    {"id": "7f3c...", "expires": "2026-11-26T10:00:00Z", "args": {...}}

and is answered on ``cp/v1/<id>/res/<name>`` with the same ``id``::

    {"id": "7f3c...", "status": "ok" | "error" | "rejected" | "expired",
     "data": {...}, "error": "why"}

Rules (each one a guard clause; nothing from outside can raise past here):
a retained command is ignored (it would run again on every reconnect); an
``id`` already seen is answered from memory, never run twice; ``expires`` is
required and a command past it is answered ``expired``; an unknown command, bad
arguments, or a command that moves hardware sent fleet-wide is ``rejected``; a
handler that fails answers ``error``.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from edge.core.times import TimeZoneMissing, parse_iso
from edge.errors import EdgeError

log = logging.getLogger(__name__)
S = TypeVar("S", bound=str)

Status = Literal["ok", "error", "rejected", "expired"]
MAX_COMMAND_BYTES = 16 * 1024
MAX_ID = 64
REMEMBERED = 512  # replies kept for repeated ids
MAX_EXPIRY_S = 3600  # a command valid longer could be replayed long after it was meant


class CommandRejected(EdgeError, ValueError):
    """The command is not acceptable (arguments, lane state): answered ``rejected``."""


class CommandFailed(EdgeError, RuntimeError):
    """The command was accepted but could not be carried out: answered ``error``."""


@dataclass(frozen=True)
class Command:
    id: str
    name: str
    args: Mapping[str, Any]
    expires: datetime
    fleet_wide: bool = False


@dataclass(frozen=True)
class Reply:
    id: str | None
    command: str
    status: Status
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""

    def payload(self) -> bytes:
        doc: dict[str, Any] = {"id": self.id, "status": self.status, "data": dict(self.data)}
        if self.error:
            doc["error"] = self.error
        return json.dumps(doc, separators=(",", ":"), default=str).encode()


Handler = Callable[[Command], Mapping[str, Any]]


@dataclass(frozen=True)
class Spec:
    """A command the kiosk knows: its handler, and whether ``$all`` may send it
    (only commands that move no hardware)."""

    handler: Handler
    fleet_wide: bool = True


def parse_time(value: Any) -> datetime:
    """An ISO 8601 time with a zone (``Z`` accepted) or seconds since the epoch, as UTC."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str):
        raise TypeError("must be an ISO 8601 time or a number of seconds since the epoch")
    try:
        ts = parse_iso(value)
    except TimeZoneMissing:
        raise ValueError("must carry a time zone (e.g. 2026-11-26T10:00:00Z)") from None
    return ts.astimezone(UTC)


class Journal(Protocol):
    """Where ids of commands that moved hardware are kept until they expire, so that
    even after a restart (when the memory of replies is gone) none runs twice."""

    def seen(self, key: str) -> bool: ...

    def record(self, key: str, expires: datetime) -> None: ...


class Commands:
    """The command table of one kiosk, and its memory of recent replies.

    ``memory`` may outlive this table (an in-process restart hands it on);
    ``journal`` keeps hardware commands' ids across process restarts.
    """

    def __init__(
        self,
        specs: Mapping[str, Spec],
        memory: OrderedDict[str, Reply] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.specs = dict(specs)
        self._replies: OrderedDict[str, Reply] = OrderedDict() if memory is None else memory
        self.journal = journal

    def handle(
        self, name: str, payload: bytes, *, retained: bool, fleet_wide: bool, now: datetime
    ) -> Reply | None:
        """The reply to one command message (None: ignored, no reply)."""
        if retained:
            log.warning("command %s ignored: it was retained (a stale command)", name)
            return None
        try:
            doc = _envelope(payload)
            cid = _command_id(doc)
        except CommandRejected as exc:
            log.warning("command %s rejected: %s", name, exc)
            return Reply(None, name, "rejected", error=str(exc))
        key = f"{name}/{cid}"
        remembered = self._replies.get(key)
        if remembered is not None:
            log.info("command %s id %s repeated: answered from memory", name, cid)
            return remembered
        reply = self._run(name, cid, doc, fleet_wide, now)
        self._replies[key] = reply
        while len(self._replies) > REMEMBERED:
            self._replies.popitem(last=False)
        return reply

    def _run(
        self, name: str, cid: str, doc: Mapping[str, Any], fleet_wide: bool, now: datetime
    ) -> Reply:
        try:
            command = self._check(name, cid, doc, fleet_wide)
        except CommandRejected as exc:
            log.warning("command %s id %s rejected: %s", name, cid, exc)
            return Reply(cid, name, "rejected", error=str(exc))
        refusal = self._refusal(command, str(doc["expires"]), now)
        if refusal is not None:
            return refusal
        try:
            data = self.specs[name].handler(command)
        except CommandRejected as exc:
            log.warning("command %s id %s rejected: %s", name, cid, exc)
            return Reply(cid, name, "rejected", error=str(exc))
        except (EdgeError, OSError) as exc:
            log.error("command %s id %s failed: %s", name, cid, exc)  # noqa: TRY400
            return Reply(cid, name, "error", error=str(exc))
        except Exception:
            log.exception("command %s id %s failed", name, cid)
            return Reply(cid, name, "error", error="internal error (see the device's log)")
        log.info("command %s id %s done", name, cid)
        return Reply(cid, name, "ok", data)

    def _refusal(self, command: Command, expires: str, now: datetime) -> Reply | None:
        """Why a well-formed command is not run now (None: run it)."""
        name, cid = command.name, command.id
        if command.expires <= now:
            log.warning("command %s id %s expired; not run", name, cid)
            return Reply(cid, name, "expired", error=f"expired at {expires}")
        if command.expires > now + timedelta(seconds=MAX_EXPIRY_S):
            return Reply(cid, name, "rejected", error=f"expires more than {MAX_EXPIRY_S} s ahead")
        if not self.specs[name].fleet_wide and self.journal is not None:  # it moves hardware
            key = f"{name}/{cid}"
            if self.journal.seen(key):
                log.warning("command %s id %s already carried out; not run again", name, cid)
                return Reply(cid, name, "rejected", error="already carried out (before a restart)")
            self.journal.record(key, command.expires)  # before it acts: at most once
        return None

    def _check(self, name: str, cid: str, doc: Mapping[str, Any], fleet_wide: bool) -> Command:
        spec = self.specs.get(name)
        if spec is None:
            raise CommandRejected(f"unknown command {name!r} (known: {', '.join(self.specs)})")
        if fleet_wide and not spec.fleet_wide:
            raise CommandRejected(f"{name} moves hardware: send it to one device, not to $all")
        if "expires" not in doc:
            raise CommandRejected("expires is required (an ISO 8601 time)")
        try:
            expires = parse_time(doc["expires"])
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise CommandRejected(f"expires: {exc}") from None
        args = doc.get("args", {})
        if not isinstance(args, dict):
            raise CommandRejected("args must be a JSON object")
        unknown = set(doc) - {"id", "expires", "args"}
        if unknown:
            raise CommandRejected(f"unknown field(s): {', '.join(sorted(unknown))}")
        return Command(cid, name, args, expires, fleet_wide)


def _envelope(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRejected(f"too large ({len(payload)} bytes, at most {MAX_COMMAND_BYTES})")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CommandRejected("not JSON") from None
    if not isinstance(doc, dict):
        raise CommandRejected("must be a JSON object with id, expires and args")
    return doc


def _command_id(doc: Mapping[str, Any]) -> str:
    cid = doc.get("id")
    if not isinstance(cid, str) or not 0 < len(cid) <= MAX_ID or not cid.isprintable():
        raise CommandRejected(f"id must be a string of 1-{MAX_ID} printable characters")
    return cid


# -- argument helpers for handlers ---------------------------------------------


def arg_choice(command: Command, key: str, choices: tuple[S, ...]) -> S:
    value = command.args.get(key)
    if value not in choices:
        raise CommandRejected(f"args.{key} must be one of {', '.join(choices)} (got {value!r})")
    return choices[choices.index(value)]


def arg_int(command: Command, key: str, default: int, low: int, high: int) -> int:
    value = command.args.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CommandRejected(f"args.{key} must be an integer {low}-{high} (got {value!r})")
    return value


def no_args(command: Command) -> None:
    if command.args:
        raise CommandRejected(f"{command.name} takes no args (got {', '.join(command.args)})")
