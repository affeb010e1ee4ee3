"""The central passage database per backend: its connection, its schema, and the
statements that differ (:mod:`edge.central.sql` has the operations both share).

SQLite runs in WAL mode with ``synchronous=FULL``; PostgreSQL goes through
psycopg 3, and a batch is COPYed into a temporary table, then moved with one
``INSERT ... SELECT``. Both create the schema, or add to an older one what it
lacks, unless opened ``readonly`` (the tracing queries), which only checks that
the ingest's tables are there.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.central import rollup
from edge.central.contract import DatabaseError
from edge.central.sql import COLUMNS, SqlDB, Tx

log = logging.getLogger(__name__)


class SqliteDB(SqlDB):
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
            self._conn.executescript(rollup.SCHEMA)
            with self._tx() as tx:  # BEGIN IMMEDIATE: one ingest at a time
                _backfilled(rollup.backfill(tx, self.mark))
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


class PostgresDB(SqlDB):
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
            conn.execute(rollup.SCHEMA)
            conn.execute("LOCK TABLE hourly, hourly_reasons IN EXCLUSIVE MODE")
            with conn.cursor() as cur:
                _backfilled(rollup.backfill(cur, self.mark))
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS incoming ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT {', '.join(COLUMNS)} FROM passages WITH NO DATA"
            )
        return conn

    def _stamp(self, when: datetime) -> Any:
        return when

    def _insert(self, tx: Tx, rows: list[tuple[Any, ...]]) -> set[str]:
        if self._readonly:
            raise DatabaseError("the database is opened read-only", transient=False)
        cur: Any = tx
        with cur.copy(_COPY_INCOMING) as copy:
            for row in rows:
                copy.write_row(row)
        # RETURNING: the rows this transaction inserted (a concurrent worker's insert of
        # the same passage, committed or not, is not among them); incoming empties at commit
        return {str(r[0]) for r in cur.execute(_INSERT_INCOMING).fetchall()}

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
    f"SELECT {', '.join(COLUMNS)} FROM incoming ON CONFLICT DO NOTHING RETURNING pid"
)


def _backfilled(counted: int | None) -> None:
    if counted:
        log.info("database: %d passages stored before the hourly roll-ups now counted", counted)


def _first_line(exc: BaseException) -> str:
    """An error's first line, without the values a driver may quote after it."""
    return str(exc).split("\n", 1)[0][:200]


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
