"""The ingest's heavy half: check a batch of messages and store it.

:class:`Writer` takes the messages of one batch as they came from the broker
(topic, payload) and returns what became of each: stored (new, or stored
before), or rejected with a reason, kept in the ``rejected`` table. It never
touches MQTT; the ingest PUBACKs and answers the devices from the
:class:`Outcome`.

Parsing JSON, checking every field and talking to the database cost more per
message than receiving it. In one Python process all of it shares the one
interpreter lock with paho's network thread, so :class:`WriterProcess` runs
the same Writer in a process of its own: the network thread keeps receiving
while the previous batch is checked and stored on the other core. A writer
process that dies is started again; its batch is not PUBACKed, so the broker
delivers it again.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import multiprocessing
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from edge.central.db import Checked, DatabaseError, PassageDB, Rejection, Stored, open_db
from edge.core.passage import PID, BadPassage, check_passage
from edge.mqtt import topics

log = logging.getLogger(__name__)

Message = tuple[str, bytes]  # (topic, payload) as received
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Outcome:
    """What became of a batch."""

    stored: list[tuple[str, str]] = field(default_factory=list)  # (device, pid) held
    rejected: list[tuple[str | None, str | None, str]] = field(default_factory=list)
    new: int = 0  # stored by this batch
    duplicates: int = 0  # stored before, or twice in this batch


class Writer:
    """Checks and stores batches in this process."""

    def __init__(self, db: PassageDB, max_bytes: int) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self._done: deque[Outcome | DatabaseError] = deque()

    def submit(self, batch: Sequence[Message]) -> None:
        """Start on a batch; :meth:`result` gives its outcome (batches finish in order)."""
        try:
            self._done.append(self.handle(batch))
        except DatabaseError as exc:
            self._done.append(exc)

    def result(self) -> Outcome:
        """The outcome of the oldest batch submitted; raise its DatabaseError."""
        done = self._done.popleft()
        if isinstance(done, DatabaseError):
            raise done
        return done

    def handle(self, batch: Sequence[Message]) -> Outcome:
        """Check and store one batch; raise :class:`DatabaseError` (transient) when the
        database failed: then nothing of the batch is done, and it must come again."""
        # Passages sharing a pid go in separate rounds (the first of each pid in the
        # first), so that the database, not the order of arrival, says which one holds it.
        rounds: list[dict[str, Checked]] = []
        repeated = 0
        rejections: list[Rejection] = []
        for topic, payload in batch:
            passage, rejection = self.check(topic, payload)
            if passage is None:
                if rejection is not None:
                    rejections.append(rejection)
                continue
            msg = passage.msg
            same = (msg["device"], msg["seq"])
            for round_ in rounds:
                first = round_.get(msg["pid"])
                if first is None:
                    round_[msg["pid"]] = passage
                    break
                if (first.msg["device"], first.msg["seq"]) == same:
                    repeated += 1  # sent twice (the device was not sure): stored once
                    break
            else:
                rounds.append({msg["pid"]: passage})
        stored_by: list[tuple[str, str]] = []
        new = duplicates = 0
        for round_ in rounds:
            stored, refused = self._store(list(round_.values()))
            new += stored.new
            duplicates += stored.duplicates
            stored_by += [(round_[pid].msg["device"], pid) for pid in stored.stored]
            rejections += [_refused(round_[pid], why) for pid, why in stored.conflicts.items()]
            rejections += [_refused(passage, why) for passage, why in refused]
        self.db.reject(rejections)  # before the PUBACKs: a rejected message is kept
        return Outcome(
            stored_by,
            [(r.device, r.pid, r.reason) for r in rejections],
            new,
            duplicates + repeated,
        )

    def check(self, topic: str, payload: bytes) -> tuple[Checked | None, Rejection | None]:
        """The passage a message holds, or why it is rejected (with its pid when it names
        one, so that its device can be told)."""
        device = topics.device_of(topic)
        msg: Any = None
        try:
            if device is None:
                raise BadPassage("not a device topic")
            if len(payload) > self.max_bytes:
                raise BadPassage(f"larger than {self.max_bytes} bytes ({len(payload)})")
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise BadPassage("not UTF-8") from None
            try:
                msg = json.loads(text)
            except (ValueError, RecursionError):
                raise BadPassage("not JSON") from None
            return Checked(check_passage(msg, device), text), None
        except Exception as exc:  # BadPassage; anything else is a bug: reject, never stall
            if not isinstance(exc, BadPassage):
                log.exception("ingest: checking a message failed")
            reason = str(exc) if isinstance(exc, BadPassage) else "could not be checked"
            pid = msg.get("pid") if isinstance(msg, dict) else None
            if not (isinstance(pid, str) and PID.fullmatch(pid)):
                pid = None
            return None, Rejection(topic, device, pid, reason, payload)

    def _store(self, passages: Sequence[Checked]) -> tuple[Stored, list[tuple[Checked, str]]]:
        """Store a batch; should the database refuse a value all the same, split the batch
        until the message it refuses stands alone, and refuse only that one. A database
        that fails (not the data) raises: nothing is PUBACKed, all of it comes again."""
        if not passages:
            return Stored(), []
        try:
            return self.db.store(passages), []
        except DatabaseError as exc:
            if exc.transient:
                raise
            problem = str(exc)
        except Exception as exc:  # a bug of ours must not stall the fleet's record either
            log.exception("ingest: storing a batch failed")
            problem = f"storing it failed: {type(exc).__name__}"
        if len(passages) == 1:
            return Stored(), [(passages[0], f"the database refused it: {problem}")]
        half = len(passages) // 2
        first, refused = self._store(passages[:half])
        second, more = self._store(passages[half:])
        merged = Stored(
            first.stored + second.stored,
            first.new + second.new,
            {**first.conflicts, **second.conflicts},
        )
        return merged, refused + more

    def close(self) -> None:
        self.db.close()


def _refused(passage: Checked, reason: str) -> Rejection:
    """A checked passage the database will not take (a conflict, a value it refuses)."""
    msg = passage.msg
    device = msg["device"]
    return Rejection(topics.passage(device), device, msg["pid"], reason, passage.text.encode())


class WriterProcess:
    """A :class:`Writer` in a process of its own, with its own database connection."""

    def __init__(self, url: str, max_bytes: int) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._start()

    def _start(self) -> None:
        # spawn: a fresh interpreter, never a fork of one whose threads hold locks
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve, args=(theirs, self.url, self.max_bytes), name="ingest-writer"
        )
        process.daemon = True
        process.start()
        theirs.close()
        if not ours.poll(START_TIMEOUT_S):
            process.kill()
            raise DatabaseError("the ingest's writer process did not start")
        try:
            ready = ours.recv()
        except (EOFError, OSError) as exc:
            raise DatabaseError("the ingest's writer process died at start") from exc
        if ready != "ready":
            process.join(timeout=5)
            raise DatabaseError(str(ready))
        self._conn, self._process = ours, process

    def submit(self, batch: Sequence[Message]) -> None:
        """Send a batch to the writer process (which works through them in order)."""
        with self._lock:
            if self._conn is None:
                self._start()
            assert self._conn is not None
            try:
                self._conn.send(list(batch))
            except OSError as exc:
                self._lost(exc)

    def result(self) -> Outcome:
        """The outcome of the oldest batch sent; raise DatabaseError when the database (or
        the process) failed: then that batch must come again."""
        with self._lock:
            if self._conn is None:
                raise DatabaseError("the ingest's writer process was restarted")
            try:
                answer = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._lost(exc)
        if isinstance(answer, Outcome):
            return answer
        raise DatabaseError(str(answer))  # a transient database failure: try again

    def _lost(self, exc: BaseException) -> NoReturn:
        """The process died: the next batch starts a new one; what it held comes again."""
        self._conn = None
        if self._process is not None:
            self._process.join(timeout=5)
        raise DatabaseError(f"the ingest's writer process died ({exc!r})") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
                self._conn.close()
                self._conn = None
            if self._process is not None:
                self._process.join(timeout=10)
                if self._process.is_alive():
                    self._process.kill()
                self._process = None


def _serve(conn: Connection, url: str, max_bytes: int) -> None:
    """The writer process: batches in, outcomes out, until told to stop (None)."""
    try:
        writer = Writer(open_db(url), max_bytes)
    except DatabaseError as exc:
        conn.send(str(exc))
        return
    conn.send("ready")
    gc.freeze()  # the modules and the connection: the collector looks only at the batches
    try:
        while True:
            try:
                batch = conn.recv()
            except EOFError:
                return  # the ingest is gone
            if batch is None:
                return
            try:
                conn.send(writer.handle(batch))
            except DatabaseError as exc:
                conn.send(str(exc))
    finally:
        writer.close()
