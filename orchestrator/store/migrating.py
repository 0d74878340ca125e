"""Bring a database's schema to the newest migration, with Alembic configured in code."""

from __future__ import annotations

import threading
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from orchestrator.store import engines

#: Any constant will do, as long as every replica takes the same one.
_POSTGRES_LOCK_KEY = 0x6F726368  # "orch"
#: Alembic keeps the running migration in module globals (``alembic.context``,
#: ``alembic.op``): one migration at a time per process, whatever the database.
_ALEMBIC = threading.Lock()


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the migrations shipped in this package.

    ``migrations/env.py`` runs them on ``connection`` when one is given.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(__package__) / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "the package ships no migrations"
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at, None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction; a database already there is left as it is.

    Processes that start together take turns, so only the first one migrates:
    on PostgreSQL through an advisory lock, on SQLite through the write lock.
    Both are released when the transaction ends.
    """
    with (
        _ALEMBIC,
        engine.connect().execution_options(**{engines.BEGIN_IMMEDIATE: True}) as connection,
        connection.begin(),
    ):
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY}
            )
        command.upgrade(config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _ALEMBIC, engine.connect() as connection, connection.begin():
        command.downgrade(config(connection), revision)
