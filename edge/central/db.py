"""The central passage store: SQLite by default, PostgreSQL (psycopg 3) when configured.

What it takes and gives is in :mod:`edge.central.contract`, its operations (store a
batch idempotently, keep rejections, purge personal data, tracing queries) in
:mod:`edge.central.sql`, and each backend's connection and schema in
:mod:`edge.central.backends`; :func:`open_db` picks the backend a URL names.
"""

from __future__ import annotations

from pathlib import Path

from edge.central.backends import PostgresDB, SqliteDB
from edge.central.contract import (
    Checked,
    DatabaseError,
    PassageDB,
    Purged,
    Query,
    Rejection,
    Stored,
)

# the names the ingest, the writer and tracing import from here
__all__ = [
    "Checked",
    "DatabaseError",
    "PassageDB",
    "Purged",
    "Query",
    "Rejection",
    "Stored",
    "open_db",
]


def open_db(url: str, *, readonly: bool = False) -> PassageDB:
    """The database a URL names: ``sqlite:///PATH`` or ``postgresql://...``.

    ``readonly`` opens an existing database for queries: nothing is created.
    """
    if url.startswith("sqlite:///"):
        return SqliteDB(Path(url.removeprefix("sqlite:///")), readonly=readonly)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDB(url, readonly=readonly)
    raise DatabaseError(f"unsupported database URL (sqlite:/// or postgresql://): {url[:40]}")
