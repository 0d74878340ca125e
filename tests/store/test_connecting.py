"""Reaching the database: which URLs are accepted, SQLite's set-up, and errors that keep secrets.

The PostgreSQL cases use the same server as ``test_store.py`` (see its docstring).
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from orchestrator.errors import OrchestratorError, PermanentError, TemporaryError
from orchestrator.store import open_store, urls

SECRET = "s3cret-Pa55:word@not-for-logs"
ENCODED_SECRET = "s3cret-Pa55%3Aword%40not-for-logs"


def everything_said(error: BaseException) -> str:
    """The message, repr and the whole traceback with every chained cause, as a log would show."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, so nobody else takes it, never listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


# --- URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgres://u:p@db:5432/orchestrator", "postgresql+psycopg"),
        ("postgresql://u:p@db/orchestrator", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db/orchestrator", "postgresql+psycopg"),
        ("sqlite:////var/lib/orchestrator/state.db", "sqlite"),
        ("sqlite+pysqlite:////var/lib/orchestrator/state.db", "sqlite"),
        ("sqlite://", "sqlite"),
    ],
)
def test_accepted_urls_map_to_their_driver(given: str, driver: str) -> None:
    assert urls.parse(given).drivername == driver


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(f"mysql://admin:{ENCODED_SECRET}@db/orchestrator", id="other-database"),
        pytest.param(f"postgresql+psycopg2://admin:{ENCODED_SECRET}@db/x", id="other-driver"),
        pytest.param(f"::not a url admin:{SECRET}@db", id="unparseable"),
    ],
)
def test_unusable_urls_are_refused_without_the_password(given: str) -> None:
    with pytest.raises(PermanentError) as caught:
        open_store(given)

    assert caught.value.reason == "InvalidDatabaseURL"
    said = everything_said(caught.value)
    assert SECRET not in said
    assert ENCODED_SECRET not in said


# --- SQLite --------------------------------------------------------------------------


def test_sqlite_creates_the_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "does" / "not" / "exist" / "state.db"

    open_store(f"sqlite:///{path}").close()

    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_sqlite_in_memory_is_one_database_for_the_whole_store() -> None:
    store = open_store("sqlite://")
    try:
        assert store.list() == []
    finally:
        store.close()


def test_sqlite_in_a_directory_that_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    with pytest.raises(TemporaryError) as caught:
        open_store(f"sqlite:///{blocker}/state.db")

    assert caught.value.reason == "DatabaseUnavailable"


# --- PostgreSQL errors keep the password ---------------------------------------------


def test_unreachable_postgres_is_unavailable_and_keeps_the_password(closed_port: int) -> None:
    url = f"postgresql://orchestrator:{ENCODED_SECRET}@127.0.0.1:{closed_port}/orchestrator"

    with pytest.raises(TemporaryError) as caught:
        open_store(url)

    error = caught.value
    assert error.reason == "DatabaseUnavailable"
    assert f"orchestrator:***@127.0.0.1:{closed_port}" in str(error), "names the database"
    said = everything_said(error)
    assert SECRET not in said
    assert ENCODED_SECRET not in said


@pytest.mark.postgres
def test_a_refused_login_is_unavailable_and_keeps_the_password(refused_login_url: URL) -> None:
    url = refused_login_url.set(password=SECRET)

    with pytest.raises(OrchestratorError) as caught:
        open_store(url.render_as_string(hide_password=False))

    assert isinstance(caught.value, TemporaryError)
    assert caught.value.reason == "DatabaseUnavailable"
    said = everything_said(caught.value)
    assert SECRET not in said
    assert ENCODED_SECRET not in said


@pytest.mark.postgres
def test_a_login_with_its_password_opens_the_store(password_protected_url: str) -> None:
    store = open_store(password_protected_url)
    try:
        assert store.list() == []
    finally:
        store.close()
