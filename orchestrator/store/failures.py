"""SQLAlchemy and driver exceptions turned into the project's errors, without secrets."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc
from sqlalchemy.engine import URL

from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.store import urls

#: Failures that say nothing about the request, only that the database was not there for it.
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)

#: SQLSTATE and SQLite extended codes of a duplicate key.
_PG_UNIQUE_VIOLATION = "23505"
#: SQLSTATE of a session PostgreSQL ended after ``idle_in_transaction_session_timeout``.
_PG_IDLE_IN_TRANSACTION_TIMEOUT = "25P03"
#: SQLSTATE of a lock not granted within ``lock_timeout``.
_PG_LOCK_NOT_AVAILABLE = "55P03"
_SQLITE_CONSTRAINT_CODES = frozenset({1555, 2067})  # PRIMARYKEY, UNIQUE
#: A driver message is one line of a status reason or a log, not a page.
_MAX_DESCRIPTION = 500


@contextmanager
def translated(url: URL) -> Iterator[None]:
    """Raise what fails inside as ``TemporaryError`` (database unavailable) or ``PermanentError``.

    Errors of the project pass through untouched. Messages name the database
    by its redacted URL and never contain its password.
    """
    try:
        yield
    except exc.SQLAlchemyError as e:
        if isinstance(e, _UNAVAILABLE) or _session_ended(e):
            raise TemporaryError(
                f"database {urls.redact(url)} unavailable: {describe(e, url)}",
                reason="DatabaseUnavailable",
            ) from e
        raise PermanentError(
            f"database {urls.redact(url)}: {describe(e, url)}", reason="DatabaseError"
        ) from e


def is_duplicate_key(error: exc.IntegrityError) -> bool:
    original = error.orig
    if getattr(original, "sqlstate", None) == _PG_UNIQUE_VIOLATION:
        return True
    return getattr(original, "sqlite_errorcode", None) in _SQLITE_CONSTRAINT_CODES


def _session_ended(error: exc.SQLAlchemyError) -> bool:
    """The server ended the session for its own reasons (psycopg files the idle timeout
    under "invalid transaction state", not under the operational errors)."""
    original = getattr(error, "orig", None)
    return getattr(original, "sqlstate", None) == _PG_IDLE_IN_TRANSACTION_TIMEOUT


def is_lock_timeout(error: exc.OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE


def describe(error: BaseException, url: URL) -> str:
    """The driver's own words, not SQLAlchemy's (which repeat statement and parameters)."""
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    text = " ".join(str(original).split()) or type(original).__name__
    if len(text) > _MAX_DESCRIPTION:
        text = text[: _MAX_DESCRIPTION - 3] + "..."
    return urls.scrub(text, url)
