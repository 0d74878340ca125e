"""One inventory of forward steps instead of started steps and compensations;
the deadline pause and the count of vanished workflows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# The step names as this revision knows them: a migration must not change when the code does.
FORWARD_STEPS = ("create-subaccount", "register-platform", "install-proxy")
FORWARD_STEP_OF = {
    "delete-subaccount": "create-subaccount",
    "unregister-platform": "register-platform",
    "uninstall-proxy": "install-proxy",
}
COMPENSATION_OF = {forward: compensation for compensation, forward in FORWARD_STEP_OF.items()}
#: States in which the 0001 schema kept compensations pending.
COMPENSATING_STATES = frozenset({"RollingBack", "Offboarding", "CleanupFailed"})

onboardings = sa.table(
    "onboardings",
    sa.column("name", sa.String()),
    sa.column("state", sa.String()),
    sa.column("suspended_from", sa.String()),
    sa.column("started_steps", sa.JSON()),
    sa.column("compensations", sa.JSON()),
    sa.column("inventory", sa.JSON()),
)


def upgrade() -> None:
    with _history_kept():
        with op.batch_alter_table("onboardings") as batch:
            batch.add_column(sa.Column("inventory", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(
                sa.Column("vanished", sa.Integer(), nullable=False, server_default=sa.text("0"))
            )

        connection = op.get_bind()
        query = sa.select(
            onboardings.c.name, onboardings.c.started_steps, onboardings.c.compensations
        )
        inventories = [
            {"row_name": name, "row_inventory": _inventory(name, started, compensations)}
            for name, started, compensations in connection.execute(query)
        ]
        _write(connection, inventories, inventory="row_inventory")

        with op.batch_alter_table("onboardings") as batch:
            batch.alter_column("inventory", existing_type=sa.JSON(), nullable=False)
            batch.drop_column("started_steps")
            batch.drop_column("compensations")


def downgrade() -> None:
    with _history_kept():
        with op.batch_alter_table("onboardings") as batch:
            batch.add_column(sa.Column("started_steps", sa.JSON(), nullable=True))
            batch.add_column(sa.Column("compensations", sa.JSON(), nullable=True))

        connection = op.get_bind()
        query = sa.select(
            onboardings.c.name,
            onboardings.c.state,
            onboardings.c.suspended_from,
            onboardings.c.inventory,
        )
        old_shapes = [
            {
                "row_name": name,
                "row_started_steps": inventory,
                "row_compensations": _compensations(state, suspended_from, inventory),
            }
            for name, state, suspended_from, inventory in connection.execute(query)
        ]
        _write(
            connection,
            old_shapes,
            started_steps="row_started_steps",
            compensations="row_compensations",
        )

        with op.batch_alter_table("onboardings") as batch:
            batch.alter_column("started_steps", existing_type=sa.JSON(), nullable=False)
            batch.alter_column("compensations", existing_type=sa.JSON(), nullable=False)
            batch.drop_column("vanished")
            batch.drop_column("suspended_at")
            batch.drop_column("inventory")


def _inventory(name: str, started: list[str], compensations: list[str]) -> list[str]:
    """Every forward step started, or whose compensation is still to run, in pipeline order."""
    unknown = sorted(
        {s for s in started if s not in FORWARD_STEPS}
        | {c for c in compensations if c not in FORWARD_STEP_OF}
    )
    if unknown:
        # No release wrote such names; dropping them could forget something left to undo.
        raise RuntimeError(f"onboarding {name!r}: unknown steps {unknown}; not migrated")
    owed = set(started) | {FORWARD_STEP_OF[c] for c in compensations}
    return [step for step in FORWARD_STEPS if step in owed]


def _compensations(state: str, suspended_from: str | None, inventory: list[str]) -> list[str]:
    """The compensations 0001 kept pending: those of the inventory, latest first, while
    rolling back or offboarding (a suspended one included), none otherwise."""
    if (suspended_from if state == "Suspended" else state) not in COMPENSATING_STATES:
        return []
    return [COMPENSATION_OF[step] for step in reversed(FORWARD_STEPS) if step in inventory]


def _write(connection: sa.Connection, rows: list[dict[str, Any]], **columns: str) -> None:
    """Set ``columns`` (JSON) of each row to its value under the given parameter name."""
    if not rows:
        return
    statement = (
        sa.update(onboardings)
        .where(onboardings.c.name == sa.bindparam("row_name"))
        .values({column: sa.bindparam(key, type_=sa.JSON()) for column, key in columns.items()})
    )
    connection.execute(statement, rows)


@contextmanager
def _history_kept() -> Iterator[None]:
    """Put the transitions back after SQLite rebuilt ``onboardings``.

    SQLite alters a table (here: any change but adding a column without an
    expression default) by copying it and dropping the old one, and with
    foreign keys on (as the store's engines have them) that drop deletes the
    transitions through their ON DELETE CASCADE. The pragma cannot be turned
    off inside the migration's transaction, so the history is set aside.
    """
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        yield
        return
    connection.exec_driver_sql("CREATE TEMP TABLE transitions_kept AS SELECT * FROM transitions")
    yield
    connection.exec_driver_sql("DELETE FROM transitions")
    connection.exec_driver_sql("INSERT INTO transitions SELECT * FROM transitions_kept")
    connection.exec_driver_sql("DROP TABLE transitions_kept")
