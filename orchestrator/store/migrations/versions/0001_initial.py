"""Onboardings and their transitions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _name() -> sa.String:
    return sa.String(253).with_variant(sa.String(253, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "onboardings",
        sa.Column("name", _name(), nullable=False),
        sa.Column("cluster", sa.String(253), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_fingerprint", sa.String(255), nullable=False),
        sa.Column("incarnation", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("suspended_from", sa.String(32), nullable=True),
        sa.Column("offboarding", sa.Boolean(), nullable=False),
        sa.Column("started_steps", sa.JSON(), nullable=False),
        sa.Column("compensations", sa.JSON(), nullable=False),
        sa.Column("step", sa.String(253), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("workflow", sa.String(253), nullable=True),
        sa.Column("workflow_submitted", sa.Boolean(), nullable=False),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("step_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt_counters", sa.JSON(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_onboardings"),
    )
    op.create_index("ix_onboardings_cluster", "onboardings", ["cluster"])
    op.create_index("ix_onboardings_state", "onboardings", ["state"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("onboarding", _name(), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workflow", sa.String(253), nullable=True),
        sa.ForeignKeyConstraint(
            ["onboarding"],
            ["onboardings.name"],
            name="fk_transitions_onboarding_onboardings",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_transitions"),
    )
    op.create_index("ix_transitions_onboarding", "transitions", ["onboarding", "at"])


def downgrade() -> None:
    op.drop_index("ix_transitions_onboarding", table_name="transitions")
    op.drop_table("transitions")
    op.drop_index("ix_onboardings_state", table_name="onboardings")
    op.drop_index("ix_onboardings_cluster", table_name="onboardings")
    op.drop_table("onboardings")
