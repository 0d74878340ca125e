"""States generic over the steps: CreatingSubaccount, RegisteringPlatform and
InstallingProxy become Running with the step as data, in onboardings (state and
suspended_from) and in the history, whose rows record the step on either side.

A history row ``CreatingSubaccount → RegisteringPlatform`` becomes ``Running →
Running`` with ``from_step`` create-subaccount and ``to_step`` register-platform:
one step column could not say both, nor let the downgrade give the row back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

# The names as this revision knows them: a migration must not change when the code does.
RUNNING = "Running"
STEP_OF_STATE = {
    "CreatingSubaccount": "create-subaccount",
    "RegisteringPlatform": "register-platform",
    "InstallingProxy": "install-proxy",
}
STATE_OF_STEP = {step: state for state, step in STEP_OF_STATE.items()}
#: what a Running without a recorded step was before: the first step's state
FIRST_STATE = "CreatingSubaccount"

onboardings = sa.table(
    "onboardings",
    sa.column("name", sa.String()),
    sa.column("state", sa.String()),
    sa.column("suspended_from", sa.String()),
    sa.column("step", sa.String()),
)
transitions = sa.table(
    "transitions",
    sa.column("onboarding", sa.String()),
    sa.column("from_state", sa.String()),
    sa.column("to_state", sa.String()),
    sa.column("from_step", sa.String()),
    sa.column("to_step", sa.String()),
)


def upgrade() -> None:
    # plain ADD COLUMNs on both backends: no table rebuild, so SQLite's cascade cannot
    # touch the history
    op.add_column("transitions", sa.Column("from_step", sa.String(253)))
    op.add_column("transitions", sa.Column("to_step", sa.String(253)))
    o = onboardings
    t = transitions
    for state, step in STEP_OF_STATE.items():
        # the step of a forward state was the state's own, recorded or not yet
        op.execute(
            sa.update(o)
            .where(o.c.state == state)
            .values(state=RUNNING, step=sa.func.coalesce(o.c.step, step))
        )
        op.execute(
            sa.update(o)
            .where(o.c.state == "Suspended", o.c.suspended_from == state)
            .values(suspended_from=RUNNING, step=sa.func.coalesce(o.c.step, step))
        )
        op.execute(
            sa.update(t).where(t.c.from_state == state).values(from_state=RUNNING, from_step=step)
        )
        op.execute(sa.update(t).where(t.c.to_state == state).values(to_state=RUNNING, to_step=step))


def downgrade() -> None:
    o = onboardings
    t = transitions
    _refuse_unknown_steps()
    for step, state in STATE_OF_STEP.items():
        op.execute(sa.update(o).where(o.c.state == RUNNING, o.c.step == step).values(state=state))
        op.execute(
            sa.update(o)
            .where(o.c.state == "Suspended", o.c.suspended_from == RUNNING, o.c.step == step)
            .values(suspended_from=state)
        )
        op.execute(
            sa.update(t)
            .where(t.c.from_state == RUNNING, t.c.from_step == step)
            .values(from_state=state)
        )
        op.execute(
            sa.update(t).where(t.c.to_state == RUNNING, t.c.to_step == step).values(to_state=state)
        )
    # a Running whose step was not recorded yet was about to run the first step
    op.execute(sa.update(o).where(o.c.state == RUNNING).values(state=FIRST_STATE))
    op.execute(
        sa.update(o)
        .where(o.c.state == "Suspended", o.c.suspended_from == RUNNING)
        .values(suspended_from=FIRST_STATE)
    )
    op.execute(sa.update(t).where(t.c.from_state == RUNNING).values(from_state=FIRST_STATE))
    op.execute(sa.update(t).where(t.c.to_state == RUNNING).values(to_state=FIRST_STATE))
    # native DROP COLUMNs (SQLite 3.35 and later): a batch rebuild would cascade the
    # history away
    op.drop_column("transitions", "to_step")
    op.drop_column("transitions", "from_step")


def _refuse_unknown_steps() -> None:
    """Revision 0004 has a state for each of the three built-in steps only: a step of
    another pipeline has none to go back to, and guessing one would run the wrong step."""
    connection = op.get_bind()
    o = onboardings
    t = transitions
    known = list(STATE_OF_STEP)
    running = sa.or_(o.c.state == RUNNING, o.c.suspended_from == RUNNING)
    odd = connection.execute(
        sa.select(o.c.name, o.c.step).where(running, o.c.step.not_in(known))
    ).first()
    if odd is None:
        for state, step in ((t.c.from_state, t.c.from_step), (t.c.to_state, t.c.to_step)):
            query = sa.select(t.c.onboarding, step).where(state == RUNNING, step.not_in(known))
            odd = odd or connection.execute(query).first()
    if odd is not None:
        raise RuntimeError(
            f"onboarding {odd[0]!r}: step {odd[1]!r} of the first run has no state before"
            " revision 0005; not downgraded"
        )
