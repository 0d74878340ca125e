"""The versions index of a SQLite file, read without SQLAlchemy.

Every reconcile pass reads its cluster's names and versions (``Store.versions``)
to see what changed. Through SQLAlchemy that read is a pool checkout, a BEGIN, the
SELECT and a ROLLBACK: about a millisecond, most of it not the query. Here it is
one SELECT on a connection of its own in autocommit mode (a statement is its own
snapshot), answered from the ``(cluster, name, version)`` index.
"""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy import Engine

from orchestrator.errors import TemporaryError
from orchestrator.store import engines

QUERY = "SELECT name, version FROM onboardings WHERE cluster = ?"


class VersionsReader:
    """One SQLite connection for ``versions``, shared by threads under a lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @classmethod
    def for_engine(cls, engine: Engine) -> VersionsReader | None:
        """For a SQLite file; None otherwise (an in-memory database is private to the
        engine's one connection, and a server's reads are round trips anyway)."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        return cls(str(database))

    def versions(self, cluster: str) -> dict[str, int]:
        """Raises ``TemporaryError`` (``DatabaseUnavailable``) when the file cannot be read."""
        with self._lock:
            try:
                if self._connection is None:
                    connection = sqlite3.connect(
                        self._path, isolation_level=None, check_same_thread=False
                    )
                    connection.execute(f"PRAGMA busy_timeout={engines.SQLITE_BUSY_TIMEOUT_MS}")
                    self._connection = connection
                return dict(self._connection.execute(QUERY, (cluster,)).fetchall())
            except sqlite3.Error as error:
                self._drop()
                raise TemporaryError(
                    f"database {self._path} unavailable: {type(error).__name__}: {error}",
                    reason="DatabaseUnavailable",
                ) from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
