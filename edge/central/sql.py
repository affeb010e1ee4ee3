"""The operations on the central passage database, in the SQL both backends speak.

One row per passage, keyed by ``pid``, and unique per device by ``seq``:
storing the same passage again (a device re-sends what it is not sure
arrived) changes nothing, so any number of ingest workers can write at once
without double rows. A pid already stored for another device, or a seq the
device already used for another passage, is a **conflict**: refused, never
acknowledged as stored. The message is kept as the device sent it; the columns
tracing queries need are copied out of it.

Only passages checked by :mod:`edge.core.passage` reach :meth:`SqlDB.store`;
anything else goes to the ``rejected`` table with its reason (the same
message again only counts), so nothing is silently dropped. A batch is
written with one ``executemany`` per table in one transaction.

Personal data (ID numbers, declaration ids, names, plates, the traveller
fields of the message, rejected payloads) is purged after the retention the
ingest is configured with (:meth:`SqlDB.purge`); the passage rows stay, without
it, for statistics.

The connection, the schema and what differs between SQLite and PostgreSQL are
in :mod:`edge.central.backends`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from edge.central import rollup
from edge.central.contract import Checked, DatabaseError, Purged, Query, Rejection, Stored
from edge.core.model import iso_utc

COLUMNS = (
    "pid",
    "device",
    "seq",
    "site",
    "ts",
    "decision",
    "decided_by",
    "mode",
    "verdict",
    "id_number",
    "declaration_id",
    "name",
    "message",
    "received_at",
)
# what the rejected table keeps of a message (its size and digest are kept whole)
REJECTED_PAYLOAD_BYTES = 64 * 1024
_CHUNK = 500  # pids per IN (...) list


def occupant_rows(msg: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(pid, idx, id_number, declaration_id, name) of each occupant of a party passage."""
    rows = []
    for idx, occupant in enumerate(msg.get("occupants", [])):
        traveller = occupant["traveller"]
        rows.append(
            (
                msg["pid"],
                idx,
                traveller.get("id_number"),
                traveller.get("declaration_id"),
                traveller.get("name"),
            )
        )
    return rows


def vehicle_rows(msg: dict[str, Any]) -> list[tuple[Any, ...]]:
    vehicle = msg.get("vehicle")
    if vehicle is None:
        return []
    people = len(msg.get("occupants", []))
    return [(msg["pid"], vehicle["kind"], vehicle.get("plate"), people)]


def row_of(passage: Checked, received_at: str) -> tuple[Any, ...]:
    msg = passage.msg
    traveller = msg["traveller"]
    return (
        msg["pid"],
        msg["device"],
        msg["seq"],
        msg["site"],
        msg["ts"],  # checked: ISO 8601 UTC with milliseconds and Z, text order is time order
        msg["decision"],
        msg["decided_by"],
        msg["mode"],
        msg["verdict"],
        traveller.get("id_number"),
        traveller.get("declaration_id"),
        traveller.get("name"),
        passage.text,
        received_at,
    )


def without_personal_data(msg: dict[str, Any]) -> dict[str, Any]:
    """A stored message with every traveller field and the plate taken out."""
    out = dict(msg, traveller={})
    if isinstance(msg.get("occupants"), list):
        out["occupants"] = [
            dict(o, traveller={}) if isinstance(o, dict) else o for o in msg["occupants"]
        ]
    if isinstance(msg.get("vehicle"), dict):
        out["vehicle"] = {k: v for k, v in msg["vehicle"].items() if k != "plate"}
    return out


def rejected_row(rejection: Rejection, now: Any) -> tuple[Any, ...]:
    payload = rejection.payload
    return (
        rejection.topic[:200],
        rejection.device,
        rejection.pid,
        rejection.reason[:300],
        hashlib.sha256(payload).hexdigest(),
        len(payload),
        payload[:REJECTED_PAYLOAD_BYTES],
        now,
        now,
    )


class Tx(Protocol):
    """The part of a connection one transaction uses."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


class SqlDB:
    """What SQLite and PostgreSQL share: the statements, batching and retention.

    ``mark`` is the driver's placeholder; :meth:`_tx` runs one transaction under
    the lock and turns the driver's errors into
    :class:`~edge.central.contract.DatabaseError`.
    """

    mark = "?"

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Tx]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _stamp(self, when: datetime) -> Any:
        """A time as the rejected table's column takes it."""
        return iso_utc(when)

    def _in(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return "(" + ", ".join([self.mark] * len(values)) + ")", list(values)

    def _sql(self, text: str) -> str:
        return text.format(m=self.mark)

    # -- writing -----------------------------------------------------------------

    def store(self, passages: Sequence[Checked]) -> Stored:
        first: dict[str, Checked] = {}
        for p in passages:
            first.setdefault(p.msg["pid"], p)  # a batch may hold the same passage twice
        batch = list(first.values())
        received = iso_utc(datetime.now(UTC))
        result = Stored()
        with self._tx() as tx:
            # one INSERT for the batch (nothing happens for a pid or (device, seq) already
            # held; it says which pids it inserted), then one SELECT says which passage
            # holds each pid
            new = self._insert(tx, [row_of(p, received) for p in batch])
            held = self._held(tx, list(first))
            landed = []
            for p in batch:
                pid, msg = p.msg["pid"], p.msg
                holder = held.get(pid)
                if holder == (msg["device"], msg["seq"]):
                    result.stored.append(pid)  # new, or stored before: the same passage
                    landed.append(msg)
                elif holder is None:
                    result.conflicts[pid] = f"seq {msg['seq']} already stored for another passage"
                elif holder[0] != msg["device"]:
                    result.conflicts[pid] = "pid already stored for another device"
                else:
                    result.conflicts[pid] = f"pid already stored with seq {holder[1]}"
            # idempotent: a passage stored before has them already
            occupants = [row for m in landed for row in occupant_rows(m)]
            if occupants:
                tx.executemany(self._sql(INSERT_OCCUPANT), occupants)
            vehicles = [row for m in landed for row in vehicle_rows(m)]
            if vehicles:
                tx.executemany(self._sql(INSERT_VEHICLE), vehicles)
            # counted once: only what this very transaction inserted (a passage another
            # worker is storing at the same moment is that worker's to count)
            inserted = [m for m in landed if m["pid"] in new]
            result.new = len(inserted)
            rollup.add(tx, self.mark, inserted)
        return result

    def _insert(self, tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
        """INSERT the rows; the pids it may have inserted (those held afterwards by the
        same passage were). SQLite: writers are serialised by BEGIN IMMEDIATE, so what
        was not there before is what this transaction brings."""
        pids = [str(r[0]) for r in rows]
        before = self._held(tx, pids)
        tx.executemany(_insert(self.mark), rows)
        return set(pids) - set(before)  # (those refused for their seq: not held, not counted)

    def _held(self, tx: Tx, pids: list[str]) -> dict[str, tuple[str, int]]:
        """pid -> (device, seq) of those of ``pids`` already stored."""
        held: dict[str, tuple[str, int]] = {}
        for i in range(0, len(pids), _CHUNK):
            marks, params = self._in(pids[i : i + _CHUNK])
            rows = tx.execute(
                f"SELECT pid, device, seq FROM passages WHERE pid IN {marks}",  # noqa: S608
                params,
            ).fetchall()
            held.update({r[0]: (r[1], int(r[2])) for r in rows})
        return held

    def reject(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        now = self._stamp(datetime.now(UTC))
        with self._tx() as tx:
            tx.executemany(self._sql(INSERT_REJECTED), [rejected_row(r, now) for r in rejections])

    def purge(self, before: datetime) -> Purged:
        cutoff = iso_utc(before)
        passages = occupants = vehicles = 0
        while True:
            with self._tx() as tx:
                rows = tx.execute(
                    self._sql(
                        "SELECT pid, message FROM passages WHERE personal = 1 "
                        "AND (ts < {m} OR received_at < {m}) LIMIT 1000"
                    ),
                    (cutoff, cutoff),
                ).fetchall()
                if not rows:
                    break
                tx.executemany(
                    self._sql(
                        "UPDATE passages SET id_number = NULL, declaration_id = NULL, "
                        "name = NULL, message = {m}, personal = 0 WHERE pid = {m}"
                    ),
                    [(_stripped(text), pid) for pid, text in rows],
                )
                pids = [r[0] for r in rows]
                passages += len(pids)
                for i in range(0, len(pids), _CHUNK):
                    marks, params = self._in(pids[i : i + _CHUNK])
                    occupants += tx.execute(
                        "UPDATE occupants SET id_number = NULL, declaration_id = NULL, "  # noqa: S608
                        f"name = NULL WHERE pid IN {marks}",
                        params,
                    ).rowcount
                    vehicles += tx.execute(
                        "UPDATE vehicles SET plate = NULL "  # noqa: S608
                        f"WHERE plate IS NOT NULL AND pid IN {marks}",
                        params,
                    ).rowcount
        with self._tx() as tx:
            rejected = tx.execute(
                self._sql(
                    "UPDATE rejected SET payload = {m} WHERE last_at < {m} AND length(payload) > 0"
                ),
                (b"", self._stamp(before)),
            ).rowcount
        return Purged(passages, occupants, vehicles, rejected)

    # -- reading -------------------------------------------------------------------

    def find(self, query: Query) -> list[dict[str, Any]]:
        where, params = _where(query, self.mark)
        sql = f"SELECT message FROM passages {where} ORDER BY ts, device, seq"  # noqa: S608
        with self._tx(write=False) as tx:
            rows = tx.execute(sql, params).fetchall()
        return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]

    def count(self) -> int:
        with self._tx(write=False) as tx:
            return int(tx.execute("SELECT count(*) FROM passages").fetchone()[0])

    def hourly(self, first: str, end: str, site: str | None = None) -> rollup.Rows:
        """The roll-ups of the hours from ``first`` to before ``end`` (``YYYY-MM-DDTHH``)."""
        try:
            with self._tx(write=False) as tx:
                return rollup.read(tx, self.mark, first, end, site)
        except DatabaseError as exc:
            if "hourly" not in str(exc):
                raise
            raise DatabaseError(
                f"{exc} (no roll-ups yet: the ingest of this version counts the passages "
                "when it first opens the database)",
                transient=False,
            ) from exc


def _stripped(text: str) -> str:
    try:
        msg = json.loads(text)
    except ValueError:
        return "{}"
    if not isinstance(msg, dict):
        return "{}"
    return json.dumps(without_personal_data(msg), ensure_ascii=False, separators=(",", ":"))


INSERT_OCCUPANT = (
    "INSERT INTO occupants (pid, idx, id_number, declaration_id, name) "
    "VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (pid, idx) DO NOTHING"
)
INSERT_VEHICLE = (
    "INSERT INTO vehicles (pid, kind, plate, occupants) "
    "VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (pid) DO NOTHING"
)
# The same message again (a device resending, a flood) only counts.
INSERT_REJECTED = (
    "INSERT INTO rejected (topic, device, pid, reason, digest, size, payload, received_at, "
    "last_at, count) VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, 1) "
    "ON CONFLICT (digest) DO UPDATE SET count = rejected.count + 1, last_at = excluded.last_at"
)


def _insert(mark: str) -> str:
    """The INSERT of a passage: nothing happens when its pid, or its (device, seq), is
    already stored (:meth:`SqlDB.store` then tells a duplicate from a conflict)."""
    columns = ", ".join(COLUMNS)
    marks = ", ".join([mark] * len(COLUMNS))
    return f"INSERT INTO passages ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608


# Query text is built from constant column names and placeholders only; every
# value is a bound parameter.
def _where(query: Query, mark: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("device", query.device),
        ("site", query.site),
        ("decision", query.decision),
    ):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    # a person: the passage's traveller, or one of a party's occupants
    for column, value in (("id_number", query.id_number), ("declaration_id", query.declaration_id)):
        if value is not None:
            clauses.append(
                f"({column} = {mark} OR pid IN (SELECT pid FROM occupants WHERE {column} = {mark}))"  # noqa: S608 - constant names
            )
            params += [value, value]
    if query.plate is not None:
        clauses.append(f"pid IN (SELECT pid FROM vehicles WHERE plate = {mark})")  # noqa: S608
        params.append(query.plate)
    if query.since is not None:
        clauses.append(f"ts >= {mark}")
        params.append(iso_utc(query.since))
    if query.until is not None:
        clauses.append(f"ts <= {mark}")
        params.append(iso_utc(query.until))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
