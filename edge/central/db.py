"""The central passage store: SQLite by default, PostgreSQL (psycopg 3) when configured.

One row per passage, keyed by ``pid``, and unique per device by ``seq``:
storing the same passage again (a device re-sends what it is not sure
arrived) changes nothing, so any number of ingest workers can write at once
without double rows. A pid already stored for another device, or a seq the
device already used for another passage, is a **conflict**: refused, never
acknowledged as stored. The message is kept as the device sent it; the columns
tracing queries need are copied out of it.

Only passages checked by :mod:`edge.core.passage` reach :meth:`store`;
anything else goes to the ``rejected`` table with its reason (the same
message again only counts), so nothing is silently dropped. A batch is
written with one ``executemany`` per table in one transaction.

Personal data (ID numbers, declaration ids, names, plates, the traveller
fields of the message, rejected payloads) is purged after the retention the
ingest is configured with (:meth:`purge`); the passage rows stay, without it,
for statistics.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edge.core.model import iso_utc
from edge.errors import EdgeError

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


class DatabaseError(EdgeError, RuntimeError):
    """The central database cannot be opened or written.

    ``transient``: the database (or the way to it) failed, not the data; the same
    write may succeed later. Otherwise the database refused what was written.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Query:
    """What tracing asks for; every field narrows the result."""

    device: str | None = None
    id_number: str | None = None
    declaration_id: str | None = None
    site: str | None = None
    decision: str | None = None
    plate: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Checked:
    """A passage that passed the model's check: the message and its text as received
    (kept as is: parsed once, never re-encoded)."""

    msg: dict[str, Any]
    text: str

    @classmethod
    def of(cls, msg: dict[str, Any]) -> Checked:
        return cls(msg, json.dumps(msg, ensure_ascii=False, separators=(",", ":")))


@dataclass
class Stored:
    """What one :meth:`PassageDB.store` did with the pids of its batch."""

    stored: list[str] = field(default_factory=list)  # the database holds them for their device
    new: int = 0  # of those, how many this call stored (the others were there already)
    conflicts: dict[str, str] = field(default_factory=dict)  # pid -> why it was refused

    @property
    def duplicates(self) -> int:
        return len(self.stored) - self.new


@dataclass(frozen=True)
class Rejection:
    topic: str
    device: str | None
    pid: str | None
    reason: str
    payload: bytes


@dataclass(frozen=True)
class Purged:
    """What one retention pass emptied of personal data."""

    passages: int = 0
    occupants: int = 0
    vehicles: int = 0
    rejected: int = 0

    def __bool__(self) -> bool:
        return any((self.passages, self.occupants, self.vehicles, self.rejected))


class PassageDB(Protocol):
    def store(self, passages: Sequence[Checked]) -> Stored:
        """Store checked passages in one transaction: new, duplicate or conflict each."""
        ...

    def reject(self, rejections: Sequence[Rejection]) -> None:
        """Keep refused messages with their reasons (the same message again: counted)."""
        ...

    def purge(self, before: datetime) -> Purged:
        """Empty of personal data every passage decided or received before ``before``,
        and every message rejected before it."""
        ...

    def find(self, query: Query) -> list[dict[str, Any]]:
        """The stored messages matching ``query``, in time order (then device, seq)."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


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


class _SqlDB:
    """What SQLite and PostgreSQL share: the statements, batching and retention.

    ``mark`` is the driver's placeholder; :meth:`_tx` runs one transaction under
    the lock and turns the driver's errors into :class:`DatabaseError`.
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
            # held), then one SELECT says which passage holds each pid
            result.new = self._insert(tx, [row_of(p, received) for p in batch])
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
        return result

    def _insert(self, tx: Tx, rows: list[tuple[Any, ...]]) -> int:
        """INSERT the rows; how many were new."""
        cur = tx.executemany(_insert(self.mark), rows)
        return int(cur.rowcount)

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


class SqliteDB(_SqlDB):
    """SQLite in WAL mode; one connection, serialised by a lock.

    ``readonly`` (the tracing queries): the file must exist and hold the
    ingest's tables; nothing is created or changed.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        super().__init__()
        if readonly:
            self._conn = _open_sqlite_readonly(path)
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA_SQLITE)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open {path}: {exc}") from exc

    def _migrate(self) -> None:
        """Columns and indexes a database written by an older ingest lacks."""
        for table, columns in _ADDED.items():
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name not in have:
                    self._conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN {name} {kind.format(**_SQLITE_TYPES)}"
                    )
        self._conn.executescript(_INDEXES)

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Tx]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield self._conn
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise DatabaseError(
                    f"database error: {type(exc).__name__}: {_first_line(exc)}",
                    transient=isinstance(exc, sqlite3.OperationalError),
                ) from exc
            except (OverflowError, ValueError, TypeError) as exc:  # a value it cannot bind
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise DatabaseError(
                    f"database refused a value: {type(exc).__name__}", transient=False
                ) from exc
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _open_sqlite_readonly(path: Path) -> sqlite3.Connection:
    """An existing ingest database, opened read-only (a missing file is an error, not
    a new empty database)."""
    if not path.is_file():
        raise DatabaseError(f"database {path} does not exist")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {path}: {exc}") from exc
    if "passages" not in tables:
        conn.close()
        raise DatabaseError(f"{path} is not a passage database (no passages table)")
    return conn


class PostgresDB(_SqlDB):
    """PostgreSQL through psycopg 3; one connection, serialised by a lock, opened again
    when it broke (a database restart).

    ``readonly`` (the tracing queries): every transaction is read-only and the
    schema is not created; a database without the ingest's tables is an error.
    A batch is COPYed into a temporary table, then moved with one INSERT ... SELECT:
    half the client's CPU of a pipelined executemany (measured here).
    """

    mark = "%s"

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        super().__init__()
        try:
            import psycopg  # noqa: PLC0415 - optional: only PostgreSQL deployments need it
        except ImportError as exc:
            raise DatabaseError(
                "PostgreSQL needs psycopg 3: pip install 'checkpoint-edge[postgres]'"
            ) from exc
        self._psycopg: Any = psycopg
        self._url = url
        self._readonly = readonly
        try:
            self._conn: Any = self._connect()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot open the PostgreSQL database: {exc}") from exc

    def _connect(self) -> Any:
        conn = self._psycopg.connect(self._url, connect_timeout=10)
        if self._readonly:
            conn.read_only = True
            with conn.transaction():
                found = conn.execute("SELECT to_regclass('passages')").fetchone()
            if found is None or found[0] is None:
                conn.close()
                raise DatabaseError("not a passage database (no passages table)")
            return conn
        with conn.transaction():
            conn.execute(_SCHEMA_POSTGRES)
            for table, columns in _ADDED.items():
                for name, kind in columns:
                    conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} "
                        f"{kind.format(**_POSTGRES_TYPES)}"
                    )
            conn.execute(_INDEXES)
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT {', '.join(COLUMNS)} FROM passages WITH NO DATA"
            )
        return conn

    def _stamp(self, when: datetime) -> Any:
        return when

    def _insert(self, tx: Tx, rows: list[tuple[Any, ...]]) -> int:
        if self._readonly:
            raise DatabaseError("the database is opened read-only", transient=False)
        cur: Any = tx
        with cur.copy(_COPY_INCOMING) as copy:
            for row in rows:
                copy.write_row(row)
        return int(cur.execute(_INSERT_INCOMING).rowcount)  # emptied at commit

    def _in(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return "(SELECT unnest(%s::text[]))", [list(values)]

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Tx]:
        errors = self._psycopg
        with self._lock:
            try:
                if self._conn.broken or self._conn.closed:
                    self._conn = self._connect()  # the database came back (or will)
                with self._conn.transaction(), self._conn.cursor() as cur:
                    yield cur
            except errors.Error as exc:
                transient = isinstance(exc, errors.OperationalError | errors.InterfaceError)
                if self._conn.closed:
                    transient = True
                raise DatabaseError(
                    f"database error: {type(exc).__name__}: {_first_line(exc)}",
                    transient=transient,
                ) from exc
            except (OverflowError, ValueError, TypeError) as exc:  # a value it cannot send
                raise DatabaseError(
                    f"database refused a value: {type(exc).__name__}", transient=False
                ) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_COPY_INCOMING = f"COPY incoming ({', '.join(COLUMNS)}) FROM STDIN"
_INSERT_INCOMING = (
    f"INSERT INTO passages ({', '.join(COLUMNS)}) "  # noqa: S608 - constant names
    f"SELECT {', '.join(COLUMNS)} FROM incoming ON CONFLICT DO NOTHING"
)


def _first_line(exc: BaseException) -> str:
    """An error's first line, without the values a driver may quote after it."""
    return str(exc).split("\n", 1)[0][:200]


def _insert(mark: str) -> str:
    """The INSERT of a passage: nothing happens when its pid, or its (device, seq), is
    already stored (:meth:`_SqlDB.store` then tells a duplicate from a conflict)."""
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


def open_db(url: str, *, readonly: bool = False) -> PassageDB:
    """The database a URL names: ``sqlite:///PATH`` or ``postgresql://...``.

    ``readonly`` opens an existing database for queries: nothing is created.
    """
    if url.startswith("sqlite:///"):
        return SqliteDB(Path(url.removeprefix("sqlite:///")), readonly=readonly)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDB(url, readonly=readonly)
    raise DatabaseError(f"unsupported database URL (sqlite:/// or postgresql://): {url[:40]}")


# ts is ISO 8601 UTC with milliseconds and Z: text order is time order.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    pid TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    seq {bigint} NOT NULL,
    site TEXT NOT NULL,
    ts TEXT NOT NULL,
    decision TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    mode TEXT NOT NULL,
    verdict TEXT,
    id_number TEXT,
    declaration_id TEXT,
    name TEXT,
    message TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS occupants (
    pid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    id_number TEXT,
    declaration_id TEXT,
    name TEXT,
    PRIMARY KEY (pid, idx)
);
CREATE TABLE IF NOT EXISTS vehicles (
    pid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    plate TEXT,
    occupants INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    id {id_key},
    topic TEXT NOT NULL,
    payload {blob} NOT NULL,
    reason TEXT NOT NULL,
    received_at {timestamp} NOT NULL
);
"""
# Added since the first schema: created on new databases, added to old ones.
_ADDED = {
    "passages": [("personal", "INTEGER NOT NULL DEFAULT 1")],
    "rejected": [
        ("device", "TEXT"),
        ("pid", "TEXT"),
        ("digest", "TEXT"),
        ("size", "INTEGER NOT NULL DEFAULT 0"),
        ("count", "INTEGER NOT NULL DEFAULT 1"),
        ("last_at", "{timestamp}"),
    ],
}
_INDEXES = """
DROP INDEX IF EXISTS passages_device_seq;
CREATE UNIQUE INDEX IF NOT EXISTS passages_device_seq_unique ON passages (device, seq);
CREATE INDEX IF NOT EXISTS passages_ts ON passages (ts);
CREATE INDEX IF NOT EXISTS passages_received ON passages (received_at);
CREATE INDEX IF NOT EXISTS passages_id_number ON passages (id_number, ts);
CREATE INDEX IF NOT EXISTS passages_declaration ON passages (declaration_id);
CREATE INDEX IF NOT EXISTS passages_site ON passages (site, ts);
CREATE INDEX IF NOT EXISTS passages_personal ON passages (personal, ts);
CREATE INDEX IF NOT EXISTS occupants_id_number ON occupants (id_number);
CREATE INDEX IF NOT EXISTS occupants_declaration ON occupants (declaration_id);
CREATE INDEX IF NOT EXISTS vehicles_plate ON vehicles (plate);
CREATE UNIQUE INDEX IF NOT EXISTS rejected_digest ON rejected (digest);
CREATE INDEX IF NOT EXISTS rejected_last ON rejected (last_at);
"""
_SQLITE_TYPES = {
    "bigint": "INTEGER", "id_key": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB",
    "timestamp": "TEXT",
}  # fmt: skip
_POSTGRES_TYPES = {
    "bigint": "BIGINT", "id_key": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA",
    "timestamp": "TIMESTAMPTZ",
}  # fmt: skip
# one schema, each database's types
_SCHEMA_SQLITE = _SCHEMA.format(**_SQLITE_TYPES)
_SCHEMA_POSTGRES = _SCHEMA.format(**_POSTGRES_TYPES)
