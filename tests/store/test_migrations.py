"""Migrations that move data, run on every backend like the rest of the store's contract.

Each case builds a database at an older revision with the store's own engine
(on SQLite its foreign keys are on, as in the daemon, so a table rebuild that
cascades shows up here), writes rows in that revision's shape with plain SQL,
and migrates it as the daemon does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, MetaData, Table, insert, select

from orchestrator.records import OnboardingRecord, Source, State, TransitionRecord
from orchestrator.store import SqlStore, engines, migrating, open_store, urls

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CS, RP, IP = "create-subaccount", "register-platform", "install-proxy"

#: name: (state, started_steps, compensations) in 0001, and the inventory expected in 0002
UPGRADES: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "ready": ("Ready", [CS, RP, IP], [], [CS, RP, IP]),
    "rolling-back": (
        "RollingBack",
        [CS, RP],
        ["unregister-platform", "delete-subaccount"],
        [CS, RP],
    ),
    # Offboarding had already undone register-platform, and removed it from both lists.
    "offboarding": ("Offboarding", [CS], ["delete-subaccount"], [CS]),
    # What is still to undo counts even when started_steps no longer names it,
    # and the inventory is in pipeline order whatever order the lists were in.
    "cleanup-failed": (
        "CleanupFailed",
        [RP],
        ["uninstall-proxy", "delete-subaccount"],
        [CS, RP, IP],
    ),
    "pending": ("Pending", [], [], []),
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = engines.make_engine(urls.parse(database_url))
    try:
        yield made
    finally:
        made.dispose()


@pytest.fixture
def at_0001(engine: Engine) -> Engine:
    """Revision 0001, one onboarding per case of ``UPGRADES`` with two transitions each."""
    migrating.upgrade(engine, "0001")
    with engine.begin() as connection:
        tables = _reflect(connection)
        for name, (state, started, compensations, _) in UPGRADES.items():
            connection.execute(
                insert(tables["onboardings"]).values(
                    _row_0001(name, state, started_steps=started, compensations=compensations)
                )
            )
            connection.execute(
                insert(tables["transitions"]),
                [_transition_values(t) for t in _history(name, state)],
            )
    return engine


@pytest.fixture
def migrated(at_0001: Engine, database_url: str) -> Iterator[SqlStore]:
    store = open_store(database_url)
    try:
        yield store
    finally:
        store.close()


def test_0002_derives_the_inventory_from_started_steps_and_pending_compensations(
    migrated: SqlStore,
) -> None:
    inventories = {record.name: record.inventory for record in migrated.list()}

    assert inventories == {name: case[3] for name, case in UPGRADES.items()}


def test_0002_keeps_every_other_field(migrated: SqlStore) -> None:
    for name, (state, started, compensations, inventory) in UPGRADES.items():
        row = _row_0001(name, state, started_steps=started, compensations=compensations)

        assert migrated.get(name) == _record(row, inventory=inventory)


def test_0002_keeps_the_history(migrated: SqlStore) -> None:
    for name, (state, *_) in UPGRADES.items():
        assert migrated.history(name) == _history(name, state)


def test_0002_refuses_a_step_no_release_knows(engine: Engine, database_url: str) -> None:
    migrating.upgrade(engine, "0001")
    with engine.begin() as connection:
        row = _row_0001("odd", "Failed", started_steps=[CS, "frobnicate"], compensations=[])
        connection.execute(insert(_reflect(connection)["onboardings"]).values(row))

    with pytest.raises(RuntimeError, match=r"'odd'.*frobnicate"):
        open_store(database_url)

    assert migrating.current(engine) == "0001", "nothing of 0002 is left behind"


#: name: (state, suspended_from, inventory), and (started_steps, compensations) expected in 0001
DOWNGRADES: dict[str, tuple[State, State | None, list[str], tuple[list[str], list[str]]]] = {
    "ready": (State.READY, None, [CS, RP, IP], ([CS, RP, IP], [])),
    "rolling-back": (
        State.ROLLING_BACK,
        None,
        [CS, RP],
        ([CS, RP], ["unregister-platform", "delete-subaccount"]),
    ),
    "cleanup-failed": (State.CLEANUP_FAILED, None, [IP], ([IP], ["uninstall-proxy"])),
    "suspended-offboarding": (
        State.SUSPENDED,
        State.OFFBOARDING,
        [CS, IP],
        ([CS, IP], ["uninstall-proxy", "delete-subaccount"]),
    ),
    "suspended-installing": (State.SUSPENDED, State.INSTALLING_PROXY, [CS, RP], ([CS, RP], [])),
}


def test_0002_downgrades_to_started_steps_and_compensations_and_back(
    engine: Engine, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        for name, (state, suspended_from, inventory, _) in DOWNGRADES.items():
            store.create(
                _record(
                    _row_0001(name, state, started_steps=[], compensations=[]),
                    inventory=inventory,
                    suspended_from=suspended_from,
                    suspended_at=T0 + timedelta(minutes=7),
                ),
                _history(name, state),
            )
    finally:
        store.close()

    migrating.downgrade(engine, "0001")

    with engine.connect() as connection:
        tables = _reflect(connection)
        onboardings = tables["onboardings"]
        query = select(onboardings.c.name, onboardings.c.started_steps, onboardings.c.compensations)
        old_shapes = {
            name: (started, pending) for name, started, pending in connection.execute(query)
        }
        transitions = connection.execute(select(tables["transitions"])).all()
    assert old_shapes == {name: case[3] for name, case in DOWNGRADES.items()}
    assert len(transitions) == 2 * len(DOWNGRADES), "the history outlives the rebuilt table"

    store = open_store(database_url)
    try:
        assert {r.name: r.inventory for r in store.list()} == {
            name: case[2] for name, case in DOWNGRADES.items()
        }
        for name, (state, *_) in DOWNGRADES.items():
            assert store.history(name) == _history(name, state)
    finally:
        store.close()


def _reflect(connection: Connection) -> Mapping[str, Table]:
    """The tables as the database has them now, whatever revision it is at."""
    metadata = MetaData()
    metadata.reflect(connection, only=["onboardings", "transitions"])
    return metadata.tables


def _row_0001(
    name: str, state: str, *, started_steps: list[str], compensations: list[str]
) -> dict[str, Any]:
    """An onboarding as revision 0001 stored it, with something in every column."""
    return {
        "name": name,
        "cluster": "eu-1",
        "namespace": name,
        "source": "api",
        "spec": {"subdomain": name, "proxy": {"version": "1.2.3"}},
        "spec_fingerprint": "sha256:0f",
        "incarnation": "inc-1",
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=5),
        "state": state,
        "suspended_from": None,
        "offboarding": state == "Offboarding",
        "started_steps": started_steps,
        "compensations": compensations,
        "step": "register-platform",
        "attempt": 2,
        "workflow": f"{name}-register-platform-2",
        "workflow_submitted": True,
        "step_started_at": T0 + timedelta(minutes=1),
        "step_deadline": T0 + timedelta(minutes=31),
        "attempt_counters": {"create-subaccount": 1, "register-platform": 2},
        "next_attempt_at": T0 + timedelta(seconds=90),
        "error_count": 1,
        "last_error": "cluster eu-1: 503 from Argo Server",
        "reason": "StepFailed",
        "version": 4,
    }


def _record(row: dict[str, Any], **changes: Any) -> OnboardingRecord:
    """The record read from ``row`` at head: the step lists gone, the fields of 0002 at their
    defaults, and 0003's ``state_since`` taken from the last change."""
    values = {k: v for k, v in row.items() if k not in ("started_steps", "compensations")}
    record = OnboardingRecord(
        **values
        | {
            "source": Source(row["source"]),
            "state": State(row["state"]),
            "suspended_from": None,
            "inventory": [],
            "state_since": row["updated_at"],
        }
    )
    for field, value in changes.items():
        setattr(record, field, value)
    return record


def _history(name: str, state: str) -> list[TransitionRecord]:
    return [
        TransitionRecord(
            onboarding=name,
            from_state=State.PENDING,
            to_state=State.CREATING_SUBACCOUNT,
            trigger="start",
            reason="started",
            at=T0,
            workflow=None,
        ),
        TransitionRecord(
            onboarding=name,
            from_state=State.CREATING_SUBACCOUNT,
            to_state=State(state),
            trigger="step_failed",
            reason="it went this way",
            at=T0 + timedelta(minutes=5),
            workflow=f"{name}-create-subaccount-1",
        ),
    ]


def _transition_values(transition: TransitionRecord) -> dict[str, Any]:
    return {
        "onboarding": transition.onboarding,
        "from_state": transition.from_state.value,
        "to_state": transition.to_state.value,
        "trigger": transition.trigger,
        "reason": transition.reason,
        "at": transition.at,
        "workflow": transition.workflow,
    }
