"""The leader's epoch, which every write of a reconcile pass is fenced by, and the
epoch each transition and each onboarding's last write was recorded under.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "leadership",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("holder", sa.String(253), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        # where the other replicas reach the leader's API (a forwarded call)
        sa.Column("address", sa.String(2048)),
        sa.CheckConstraint("id = 1", name=op.f("ck_leadership_one_row")),
    )
    # plain ADD COLUMNs on both backends: no table rebuild
    op.add_column("transitions", sa.Column("epoch", sa.BigInteger))
    op.add_column("onboardings", sa.Column("epoch", sa.BigInteger))


def downgrade() -> None:
    op.drop_column("onboardings", "epoch")
    op.drop_column("transitions", "epoch")
    op.drop_table("leadership")
