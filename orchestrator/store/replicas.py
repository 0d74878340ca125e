"""What replicas of the daemon share through the database besides the rows.

- ``ExclusiveUse``: a replica that runs without leader election holds the
  database alone: an exclusive lock on ``<file>.lock`` beside a SQLite file, a
  session advisory lock on PostgreSQL. A second such replica is refused at start.
- ``WakeChannel``: on PostgreSQL, a replica that stored a change (an API call
  on a follower) wakes the leader's pass for that cluster through
  ``NOTIFY``/``LISTEN``. SQLite has one replica, which wakes itself.

psycopg is imported where PostgreSQL is used, not with this module: a daemon on
SQLite never needs it (start-up time and memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL

from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.store import urls

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: the channel of wake notifications (one payload: the cluster's name)
CHANNEL = "orchestrator_wake"
#: the advisory lock of a replica that runs alone (migrations take another key)
_EXCLUSIVE_KEY = 0x6F726331  # "orc1"
#: longest pause between attempts to listen again after the connection broke
_MAX_BACKOFF_SECONDS = 30.0


def _conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ExclusiveUse:
    """Held from ``acquire`` to ``release``; see the module docstring."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self._file: int | None = None
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def acquire(self) -> None:
        """Take the lock; raises ``PermanentError`` (reason ``DatabaseInUse``) when another
        replica holds it, ``TemporaryError`` when the database cannot be reached."""
        if self.url.get_backend_name() == "sqlite":
            self._lock_file()
        else:
            self._lock_advisory()

    def release(self) -> None:
        if self._file is not None:
            os.close(self._file)  # closing the descriptor drops the lock
            self._file = None
        if self._connection is not None:
            import psycopg

            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def _lock_file(self) -> None:
        if self.url.database in (None, "", ":memory:"):
            return  # a private in-memory database: nobody else can open it
        path = Path(f"{self.url.database}.lock")
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise PermanentError(
                f"database {urls.redact(self.url)} is in use by another daemon (pid {holder},"
                f" lock {path}): SQLite takes one replica; run more on PostgreSQL with"
                " leader election",
                reason="DatabaseInUse",
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._file = descriptor

    def _lock_advisory(self) -> None:
        import psycopg

        try:
            connection = psycopg.connect(_conninfo(self.url), autocommit=True)
        except psycopg.Error as error:
            raise TemporaryError(
                f"database {urls.redact(self.url)} unavailable: {urls.scrub(str(error), self.url)}",
                reason="DatabaseUnavailable",
            ) from None
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (_EXCLUSIVE_KEY,)).fetchone()
        if not (row and row[0]):
            connection.close()
            raise PermanentError(
                f"database {urls.redact(self.url)} is in use by another replica running"
                " without leader election: give every replica a management cluster (leader"
                " election), or run one",
                reason="DatabaseInUse",
            )
        self._connection = connection


class WakeChannel:
    """``NOTIFY`` and ``LISTEN`` on PostgreSQL; see the module docstring."""

    def __init__(self, url: URL) -> None:
        self.url = url

    @staticmethod
    def for_url(url: URL) -> WakeChannel | None:
        return WakeChannel(url) if url.get_backend_name() == "postgresql" else None

    async def send(self, cluster: str) -> None:
        """Wake the leader's pass of ``cluster``; a failure is logged, the periodic pass
        picks the change up anyway."""
        import psycopg

        try:
            async with await psycopg.AsyncConnection.connect(
                _conninfo(self.url), autocommit=True
            ) as connection:
                await connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, cluster))
        except psycopg.Error as error:
            log.warning(
                "cannot wake the leader; its periodic pass picks the change up",
                extra={"cluster": cluster, "error": urls.scrub(str(error), self.url)},
            )

    async def listen(self, on_wake: Callable[[str], None]) -> None:
        """Call ``on_wake(cluster)`` for every notification until cancelled; reconnects
        with back-off when the connection breaks."""
        import psycopg

        delay = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    _conninfo(self.url), autocommit=True
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    delay = 1.0
                    async for notice in connection.notifies():
                        on_wake(notice.payload)
            except psycopg.Error as error:
                log.warning(
                    "listening for wakes failed; trying again",
                    extra={"error": urls.scrub(str(error), self.url), "retry_in": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_SECONDS)
