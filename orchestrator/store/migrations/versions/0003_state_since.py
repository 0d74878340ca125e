"""When each onboarding entered its state (for the stuck-onboarding alert), and an
index a pass reads its cluster's names and versions from alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

onboardings = sa.table(
    "onboardings",
    sa.column("state_since", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    # A plain ADD COLUMN on both backends: no table rebuild, so SQLite's cascade
    # cannot touch the history.
    op.add_column("onboardings", sa.Column("state_since", sa.DateTime(timezone=True)))
    # The last change is the best lower bound there is of when the state began.
    op.execute(onboardings.update().values(state_since=onboardings.c.updated_at))
    op.create_index(
        "ix_onboardings_cluster_versions", "onboardings", ["cluster", "name", "version"]
    )


def downgrade() -> None:
    op.drop_index("ix_onboardings_cluster_versions", table_name="onboardings")
    # a native DROP COLUMN (SQLite 3.35 and later): a batch rebuild would cascade
    # the history away
    op.drop_column("onboardings", "state_since")
