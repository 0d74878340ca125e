"""Alembic's entry point: runs the migrations on the connection ``migrating`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from orchestrator.store.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("migrations run through orchestrator.store.migrating, with a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters a table by copying it; batch mode does that for later migrations.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # The whole upgrade or none of it; SQLite can do this too, Alembic just does not assume it.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
