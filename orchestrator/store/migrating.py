"""Bring a database's schema to the newest migration, with Alembic configured in code.

Alembic is imported only when a database is not at ``HEAD`` yet: a daemon that
starts on a current database checks that with one query and never loads it.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from orchestrator.store import engines

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision this code ships; a test checks it against the migration scripts.
HEAD = "0005"

#: Any constant will do, as long as every replica takes the same one.
_POSTGRES_LOCK_KEY = 0x6F726368  # "orch"
#: Alembic keeps the running migration in module globals (``alembic.context``,
#: ``alembic.op``): one migration at a time per process, whatever the database.
_ALEMBIC = threading.Lock()


def at_head(engine: Engine) -> bool:
    """Whether the database is at ``HEAD`` already (one query; False on any doubt)."""
    try:
        with engine.connect() as connection:
            revisions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError:  # never migrated: no such table
        return False
    return [row[0] for row in revisions] == [HEAD]


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the migrations shipped in this package.

    ``migrations/env.py`` runs them on ``connection`` when one is given.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(__package__) / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "the package ships no migrations"
    return revision


def current(engine: Engine) -> str | None:
    """The revision the database is at, None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to ``revision`` in one transaction; a database already there is left as it is.

    Processes that start together take turns, so only the first one migrates:
    on PostgreSQL through an advisory lock, on SQLite through the write lock.
    Both are released when the transaction ends.
    """
    from alembic import command

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
    from alembic import command

    with _ALEMBIC, engine.connect() as connection, connection.begin():
        command.downgrade(config(connection), revision)
