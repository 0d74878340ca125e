"""Engines for the two backends, each set up for a daemon that shares it between threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from orchestrator.errors import TemporaryError
from orchestrator.store import urls

#: How long a SQLite writer waits for another one before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 5_000
#: How long a PostgreSQL connection attempt may take, in seconds, unless the URL says.
POSTGRES_CONNECT_TIMEOUT_S = 10
#: Execution option: on SQLite, start the transaction holding the write lock.
BEGIN_IMMEDIATE = "orchestrator_begin_immediate"
#: PostgreSQL ends a session that stays this long inside a transaction without sending a
#: statement, in milliseconds. A replica frozen in the middle of a fenced write (a paused
#: VM or process, a cut network) would otherwise hold the leadership row, and with it
#: the next leader's claim, until it woke. Well under the Lease's default 15 s, so the
#: session is gone before a follower may take over; our transactions never pause.
POSTGRES_IDLE_IN_TRANSACTION_MS = 5_000


def make_engine(url: URL) -> Engine:
    """An engine for a URL that ``urls.parse`` accepted."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    # pre-ping replaces connections a database restart (or the timeout below) left dead.
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, connection_record: Any) -> None:
        # a SET, not a startup option: connection poolers refuse unknown startup options
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(
                    "SET idle_in_transaction_session_timeout = "
                    f"{int(POSTGRES_IDLE_IN_TRANSACTION_MS)}"
                )
        finally:
            dbapi_connection.autocommit = autocommit

    return engine


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One connection shared by all, or every connection sees its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        _create_parent(url)
        engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, connection_record: Any) -> None:
        # pysqlite begins transactions itself, but not before DDL or SELECT: so a
        # migration would not be atomic and reads would see no snapshot. Turn
        # that off here and begin every transaction in "begin" below instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                # WAL lets the API thread read while the reconciler writes.
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(BEGIN_IMMEDIATE, False)
        # IMMEDIATE takes the write lock up front, waiting up to the busy timeout,
        # instead of failing when a read turns into a write under another writer.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _create_parent(url: URL) -> None:
    assert url.database is not None
    parent = Path(url.database).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TemporaryError(
            f"database {urls.redact(url)}: cannot create directory {parent}: {e.strerror}",
            reason="DatabaseUnavailable",
        ) from e
