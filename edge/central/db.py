"""The central passage store: SQLite by default, PostgreSQL (psycopg 3) when configured.

One row per passage, keyed by ``pid``: storing the same passage again (a
device re-sends what it is not sure arrived) changes nothing, so any number of
ingest workers can write at once without double rows. The whole message is
kept as JSON; the columns tracing queries need are copied out of it.

Messages from outside are checked before they are stored; one that is not a
passage goes to the ``rejected`` table with the reason, whole, so nothing is
silently dropped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edge.errors import EdgeError
from edge.model import iso_utc

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


class DatabaseError(EdgeError, RuntimeError):
    """The central database cannot be opened or written."""


class BadPassage(EdgeError, ValueError):
    """A message on a passage topic that is not a passage (the reason says why)."""


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


def check_passage(msg: Any, device: str) -> dict[str, Any]:
    """The message if it is a passage of ``device``; raise BadPassage otherwise."""
    if not isinstance(msg, dict):
        raise BadPassage("not a JSON object")
    rules: list[tuple[str, type | tuple[type, ...]]] = [
        ("pid", str),
        ("seq", int),
        ("device", str),
        ("site", str),
        ("ts", str),
        ("decision", str),
        ("decided_by", str),
        ("mode", str),
        ("reasons", list),
        ("credentials", list),
        ("traveller", dict),
    ]
    for key, kind in rules:
        if not isinstance(msg.get(key), kind) or isinstance(msg.get(key), bool):
            raise BadPassage(f"{key} missing or of the wrong type")
    if not 0 < len(msg["pid"]) <= 64 or msg["seq"] < 1:
        raise BadPassage("pid or seq out of range")
    if msg["device"] != device:
        raise BadPassage(f"device {msg['device']!r} published on the topic of {device!r}")
    if msg["decision"] not in ("approved", "denied"):
        raise BadPassage("decision must be approved or denied")
    occupants = msg.get("occupants", [])
    if not isinstance(occupants, list) or not all(
        isinstance(o, dict) and isinstance(o.get("traveller", {}), dict) for o in occupants
    ):
        raise BadPassage("occupants must be a list of objects with a traveller object")
    vehicle = msg.get("vehicle")
    if vehicle is not None and not (
        isinstance(vehicle, dict)
        and isinstance(vehicle.get("kind"), str)
        and isinstance(vehicle.get("plate", ""), str)
    ):
        raise BadPassage("vehicle must be an object with a kind")
    if _ts(msg["ts"]) is None:
        raise BadPassage("ts is not an ISO 8601 time")
    return msg


def _ts(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else None


def occupant_rows(msg: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(pid, idx, id_number, declaration_id, name) of each occupant of a party passage."""
    rows = []
    for idx, occupant in enumerate(msg.get("occupants", [])):
        traveller = occupant.get("traveller", {})
        rows.append(
            (
                msg["pid"],
                idx,
                _text(traveller.get("id_number")),
                _text(traveller.get("declaration_id")),
                _text(traveller.get("name")),
            )
        )
    return rows


def vehicle_rows(msg: dict[str, Any]) -> list[tuple[Any, ...]]:
    vehicle = msg.get("vehicle")
    if not isinstance(vehicle, dict):
        return []
    people = len(msg.get("occupants", []))
    return [(msg["pid"], vehicle["kind"], _text(vehicle.get("plate")), people)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


INSERT_OCCUPANT = (
    "INSERT INTO occupants (pid, idx, id_number, declaration_id, name) "
    "VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (pid, idx) DO NOTHING"
)
INSERT_VEHICLE = (
    "INSERT INTO vehicles (pid, kind, plate, occupants) "
    "VALUES ({m}, {m}, {m}, {m}) ON CONFLICT (pid) DO NOTHING"
)


def row_of(msg: dict[str, Any], received_at: datetime) -> tuple[Any, ...]:
    traveller = msg["traveller"]
    ts = _ts(msg["ts"])
    assert ts is not None
    return (
        msg["pid"],
        msg["device"],
        msg["seq"],
        msg["site"],
        iso_utc(ts),
        msg["decision"],
        msg["decided_by"],
        msg["mode"],
        msg.get("verdict"),
        traveller.get("id_number"),
        traveller.get("declaration_id"),
        traveller.get("name"),
        json.dumps(msg, ensure_ascii=False, separators=(",", ":")),
        iso_utc(received_at),
    )


class PassageDB(Protocol):
    def store(self, messages: Sequence[dict[str, Any]]) -> int:
        """Store passages idempotently in one transaction; how many were new."""
        ...

    def reject(self, topic: str, payload: bytes, reason: str) -> None: ...

    def find(self, query: Query) -> list[dict[str, Any]]:
        """The stored messages matching ``query``, in time order (then device, seq)."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class SqliteDB:
    """SQLite in WAL mode; one connection, serialised by a lock.

    ``readonly`` (the tracing queries): the file must exist and hold the
    ingest's tables; nothing is created or changed.
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        if readonly:
            self._conn = _open_sqlite_readonly(path)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.executescript(_SCHEMA_SQLITE)
            except (sqlite3.Error, OSError) as exc:
                raise DatabaseError(f"cannot open {path}: {exc}") from exc
        self._lock = threading.Lock()

    def store(self, messages: Sequence[dict[str, Any]]) -> int:
        rows = [row_of(m, datetime.now(UTC)) for m in messages]
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                before = self._conn.total_changes
                self._conn.executemany(_insert("?"), rows)
                new = self._conn.total_changes - before
                for msg in messages:
                    self._conn.executemany(INSERT_OCCUPANT.format(m="?"), occupant_rows(msg))
                    self._conn.executemany(INSERT_VEHICLE.format(m="?"), vehicle_rows(msg))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise DatabaseError(f"cannot store passages: {exc}") from exc
            return new

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO rejected (topic, payload, reason, received_at) VALUES (?, ?, ?, ?)",
                (topic, payload, reason, iso_utc(datetime.now(UTC))),
            )

    def find(self, query: Query) -> list[dict[str, Any]]:
        where, params = _where(query, "?")
        sql = f"SELECT message FROM passages {where} ORDER BY ts, device, seq"  # noqa: S608
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(r[0]) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM passages").fetchone()[0])

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


class PostgresDB:
    """PostgreSQL through psycopg 3; one connection, serialised by a lock.

    ``readonly`` (the tracing queries): every transaction is read-only and the
    schema is not created; a database without the ingest's tables is an error.
    """

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        try:
            import psycopg  # noqa: PLC0415 - optional: only PostgreSQL deployments need it
        except ImportError as exc:
            raise DatabaseError(
                "PostgreSQL needs psycopg 3: pip install 'checkpoint-edge[postgres]'"
            ) from exc
        self._psycopg: Any = psycopg
        try:
            self._conn: Any = psycopg.connect(url, connect_timeout=10)
            if readonly:
                self._conn.read_only = True
                with self._conn.transaction():
                    found = self._conn.execute("SELECT to_regclass('passages')").fetchone()
                if found is None or found[0] is None:
                    self._conn.close()
                    raise DatabaseError("not a passage database (no passages table)")
            else:
                with self._conn.transaction():
                    self._conn.execute(_SCHEMA_POSTGRES)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot open the PostgreSQL database: {exc}") from exc
        self._lock = threading.Lock()

    def store(self, messages: Sequence[dict[str, Any]]) -> int:
        rows = [row_of(m, datetime.now(UTC)) for m in messages]
        sql = _insert("%s")
        with self._lock:
            try:
                with self._conn.transaction(), self._conn.cursor() as cur:
                    new = 0
                    for row in rows:
                        cur.execute(sql, row)
                        new += cur.rowcount
                    for msg in messages:
                        for people in occupant_rows(msg):
                            cur.execute(INSERT_OCCUPANT.format(m="%s"), people)
                        for vehicle in vehicle_rows(msg):
                            cur.execute(INSERT_VEHICLE.format(m="%s"), vehicle)
                    return new
            except self._psycopg.Error as exc:
                raise DatabaseError(f"cannot store passages: {exc}") from exc

    def reject(self, topic: str, payload: bytes, reason: str) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "INSERT INTO rejected (topic, payload, reason, received_at) "
                "VALUES (%s, %s, %s, now())",
                (topic, payload, reason),
            )

    def find(self, query: Query) -> list[dict[str, Any]]:
        where, params = _where(query, "%s")
        sql = f"SELECT message FROM passages {where} ORDER BY ts, device, seq"  # noqa: S608
        with self._lock, self._conn.transaction():
            rows = self._conn.execute(sql, params).fetchall()
        return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]

    def count(self) -> int:
        with self._lock, self._conn.transaction():
            return int(self._conn.execute("SELECT count(*) FROM passages").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _insert(mark: str) -> str:
    """The idempotent INSERT (``mark``: the driver's placeholder)."""
    columns = ", ".join(COLUMNS)
    marks = ", ".join([mark] * len(COLUMNS))
    return f"INSERT INTO passages ({columns}) VALUES ({marks}) ON CONFLICT (pid) DO NOTHING"  # noqa: S608


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


def unique(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One message per pid (a batch may hold the same passage twice)."""
    seen: dict[str, dict[str, Any]] = {}
    for m in messages:
        seen.setdefault(m["pid"], m)
    return list(seen.values())


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
CREATE INDEX IF NOT EXISTS passages_device_seq ON passages (device, seq);
CREATE INDEX IF NOT EXISTS passages_ts ON passages (ts);
CREATE INDEX IF NOT EXISTS passages_id_number ON passages (id_number, ts);
CREATE INDEX IF NOT EXISTS passages_declaration ON passages (declaration_id);
CREATE INDEX IF NOT EXISTS passages_site ON passages (site, ts);
CREATE TABLE IF NOT EXISTS occupants (
    pid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    id_number TEXT,
    declaration_id TEXT,
    name TEXT,
    PRIMARY KEY (pid, idx)
);
CREATE INDEX IF NOT EXISTS occupants_id_number ON occupants (id_number);
CREATE INDEX IF NOT EXISTS occupants_declaration ON occupants (declaration_id);
CREATE TABLE IF NOT EXISTS vehicles (
    pid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    plate TEXT,
    occupants INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vehicles_plate ON vehicles (plate);
CREATE TABLE IF NOT EXISTS rejected (
    id {id_key},
    topic TEXT NOT NULL,
    payload {blob} NOT NULL,
    reason TEXT NOT NULL,
    received_at {timestamp} NOT NULL
);
"""
# one schema, each database's types
_SCHEMA_SQLITE = _SCHEMA.format(
    bigint="INTEGER", id_key="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB", timestamp="TEXT"
)
_SCHEMA_POSTGRES = _SCHEMA.format(
    bigint="BIGINT", id_key="BIGSERIAL PRIMARY KEY", blob="BYTEA", timestamp="TIMESTAMPTZ"
)
