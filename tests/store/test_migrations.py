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
            connection.execute(insert(tables["transitions"]), _old_history(name, state))
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
    # Running: RegisteringPlatform in 0001, by its step (0005's downgrade)
    "suspended-running": (State.SUSPENDED, State.RUNNING, [CS, RP], ([CS, RP], [])),
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


def _old_history(name: str, state: str) -> list[dict[str, Any]]:
    """Two transitions as revisions 0001 to 0004 stored them (the step in the state's name)."""
    return [
        {
            "onboarding": name,
            "from_state": "Pending",
            "to_state": "CreatingSubaccount",
            "trigger": "start",
            "reason": "started",
            "at": T0,
            "workflow": None,
        },
        {
            "onboarding": name,
            "from_state": "CreatingSubaccount",
            "to_state": state,
            "trigger": "step_failed",
            "reason": "it went this way",
            "at": T0 + timedelta(minutes=5),
            "workflow": f"{name}-create-subaccount-1",
        },
    ]


def _history(name: str, state: str) -> list[TransitionRecord]:
    """``_old_history`` as it reads at head: CreatingSubaccount is Running create-subaccount."""
    return [
        TransitionRecord(
            onboarding=name,
            from_state=State.PENDING,
            to_state=State.RUNNING,
            trigger="start",
            reason="started",
            at=T0,
            workflow=None,
            to_step=CS,
        ),
        TransitionRecord(
            onboarding=name,
            from_state=State.RUNNING,
            to_state=State(state),
            trigger="step_failed",
            reason="it went this way",
            at=T0 + timedelta(minutes=5),
            workflow=f"{name}-create-subaccount-1",
            from_step=CS,
        ),
    ]


# --- 0005: the first run's states become Running with the step as data ---------------

#: name: (state, suspended_from, step) in 0004, and (state, suspended_from, step) at head
RUNNING_UPGRADES: dict[
    str, tuple[tuple[str, str | None, str | None], tuple[State, State | None, str]]
] = {
    "creating": (("CreatingSubaccount", None, CS), (State.RUNNING, None, CS)),
    # started, its first workflow not submitted yet: no step recorded
    "creating-unsubmitted": (("CreatingSubaccount", None, None), (State.RUNNING, None, CS)),
    "registering": (("RegisteringPlatform", None, RP), (State.RUNNING, None, RP)),
    "registering-unsubmitted": (("RegisteringPlatform", None, None), (State.RUNNING, None, RP)),
    "installing": (("InstallingProxy", None, IP), (State.RUNNING, None, IP)),
    "installing-unsubmitted": (("InstallingProxy", None, None), (State.RUNNING, None, IP)),
    "suspended-creating": (
        ("Suspended", "CreatingSubaccount", None),
        (State.SUSPENDED, State.RUNNING, CS),
    ),
    "suspended-registering": (
        ("Suspended", "RegisteringPlatform", RP),
        (State.SUSPENDED, State.RUNNING, RP),
    ),
    "suspended-installing": (
        ("Suspended", "InstallingProxy", IP),
        (State.SUSPENDED, State.RUNNING, IP),
    ),
}
#: states that were not about the first run's steps: as they were, step and all
UNCHANGED: dict[str, tuple[str, str | None, str | None]] = {
    "pending": ("Pending", None, None),
    "ready": ("Ready", None, None),
    "updating": ("Updating", None, RP),
    "update-failed": ("UpdateFailed", None, None),
    "rolling-back": ("RollingBack", None, "unregister-platform"),
    "failed": ("Failed", None, None),
    "cleanup-failed": ("CleanupFailed", None, "delete-subaccount"),
    "offboarding": ("Offboarding", None, "uninstall-proxy"),
    "deleted": ("Deleted", None, None),
    "suspended-updating": ("Suspended", "Updating", IP),
    "suspended-ready": ("Suspended", "Ready", None),
}

#: a history through every first-run state, as 0004 stored it: (from, to, trigger)
OLD_HISTORY = [
    ("Pending", "Pending", "declared"),
    ("Pending", "CreatingSubaccount", "start"),
    ("CreatingSubaccount", "CreatingSubaccount", "step_retried"),
    ("CreatingSubaccount", "RegisteringPlatform", "step_succeeded"),
    ("RegisteringPlatform", "InstallingProxy", "step_succeeded"),
    ("InstallingProxy", "Suspended", "suspend"),
    ("Suspended", "InstallingProxy", "resume"),
    ("InstallingProxy", "InstallingProxy", "workflow_vanished"),
    ("InstallingProxy", "RollingBack", "step_failed"),
    ("RollingBack", "Failed", "compensated"),
    ("Failed", "Pending", "retry"),
    ("Pending", "CreatingSubaccount", "start"),
    ("CreatingSubaccount", "RegisteringPlatform", "step_succeeded"),
    ("RegisteringPlatform", "InstallingProxy", "step_succeeded"),
    ("InstallingProxy", "Ready", "step_succeeded"),
    ("Ready", "Updating", "spec_changed"),
    ("Updating", "Updating", "step_succeeded"),
]
#: the same history at head: (from, from_step, to, to_step, trigger)
NEW_HISTORY = [
    (State.PENDING, None, State.PENDING, None, "declared"),
    (State.PENDING, None, State.RUNNING, CS, "start"),
    (State.RUNNING, CS, State.RUNNING, CS, "step_retried"),
    (State.RUNNING, CS, State.RUNNING, RP, "step_succeeded"),
    (State.RUNNING, RP, State.RUNNING, IP, "step_succeeded"),
    (State.RUNNING, IP, State.SUSPENDED, None, "suspend"),
    (State.SUSPENDED, None, State.RUNNING, IP, "resume"),
    (State.RUNNING, IP, State.RUNNING, IP, "workflow_vanished"),
    (State.RUNNING, IP, State.ROLLING_BACK, None, "step_failed"),
    (State.ROLLING_BACK, None, State.FAILED, None, "compensated"),
    (State.FAILED, None, State.PENDING, None, "retry"),
    (State.PENDING, None, State.RUNNING, CS, "start"),
    (State.RUNNING, CS, State.RUNNING, RP, "step_succeeded"),
    (State.RUNNING, RP, State.RUNNING, IP, "step_succeeded"),
    (State.RUNNING, IP, State.READY, None, "step_succeeded"),
    (State.READY, None, State.UPDATING, None, "spec_changed"),
    (State.UPDATING, None, State.UPDATING, None, "step_succeeded"),
]


@pytest.fixture
def at_0004(engine: Engine) -> Engine:
    """Revision 0004: an onboarding in every state (the first run's in each, suspended in
    each too), each with the whole ``OLD_HISTORY``."""
    migrating.upgrade(engine, "0004")
    old = {name: case[0] for name, case in RUNNING_UPGRADES.items()} | UNCHANGED
    with engine.begin() as connection:
        tables = _reflect(connection)
        for name, (state, suspended_from, step) in old.items():
            connection.execute(
                insert(tables["onboardings"]).values(
                    _row_0004(name, state, suspended_from=suspended_from, step=step)
                )
            )
            connection.execute(insert(tables["transitions"]), _old_rows(name, OLD_HISTORY))
    return engine


def test_0005_makes_the_first_runs_states_running_with_their_step(
    at_0004: Engine, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        records = {r.name: r for r in store.list()}
    finally:
        store.close()

    for name, (_, expected) in RUNNING_UPGRADES.items():
        record = records[name]
        assert (record.state, record.suspended_from, record.step) == expected, name
    for name, (state, suspended_from, step) in UNCHANGED.items():
        record = records[name]
        assert (record.state.value, record.suspended_from, record.step) == (
            state,
            State(suspended_from) if suspended_from else None,
            step,
        ), name
    # everything else is as it was
    row = _row_0004("creating", "CreatingSubaccount", suspended_from=None, step=CS)
    kept = {k: v for k, v in row.items() if k != "epoch"} | {"state": "Running"}
    assert records["creating"] == _record(kept, inventory=[CS], state_since=row["state_since"])


def test_0005_keeps_the_meaning_of_the_history(at_0004: Engine, database_url: str) -> None:
    store = open_store(database_url)
    try:
        histories = {name: store.history(name) for name in RUNNING_UPGRADES | UNCHANGED}
    finally:
        store.close()

    for name, history in histories.items():
        moves = [(t.from_state, t.from_step, t.to_state, t.to_step, t.trigger) for t in history]
        assert moves == NEW_HISTORY, name
        assert [(t.reason, t.at, t.workflow, t.epoch) for t in history] == [
            (f"{trigger} {index}", T0 + timedelta(minutes=index), f"wf-{index}", 7)
            for index, (_, _, trigger) in enumerate(OLD_HISTORY)
        ]


def test_0005_downgrades_to_what_0004_stored(at_0004: Engine, database_url: str) -> None:
    open_store(database_url).close()  # to head
    assert migrating.current(at_0004) == migrating.HEAD == "0005"

    migrating.downgrade(at_0004, "0004")

    with at_0004.connect() as connection:
        tables = _reflect(connection)
        onboardings, transitions = tables["onboardings"], tables["transitions"]
        query = select(
            onboardings.c.name, onboardings.c.state, onboardings.c.suspended_from,
            onboardings.c.step,
        )  # fmt: skip
        rows = {name: (state, f, step) for name, state, f, step in connection.execute(query)}
        history = connection.execute(
            select(transitions.c.onboarding, transitions.c.from_state, transitions.c.to_state,
                   transitions.c.trigger).order_by(transitions.c.id)
        ).all()  # fmt: skip
    # a step that was not recorded yet stays recorded: 0004's code runs it all the same
    expected = {
        name: (state, suspended_from, step or after[2])
        for name, ((state, suspended_from, step), after) in RUNNING_UPGRADES.items()
    } | UNCHANGED
    assert rows == expected
    assert "from_step" not in transitions.c
    for name in expected:
        assert [tuple(h[1:]) for h in history if h[0] == name] == OLD_HISTORY, name


def test_0005_refuses_to_downgrade_a_step_0004_has_no_state_for(
    engine: Engine, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        row = _row_0001("custom", "Running", started_steps=[], compensations=[])
        store.create(_record(row, step="assign-entitlements"))
    finally:
        store.close()

    with pytest.raises(RuntimeError, match=r"'custom'.*assign-entitlements"):
        migrating.downgrade(engine, "0004")

    assert migrating.current(engine) == "0005", "nothing of the downgrade is left behind"


def _row_0004(
    name: str, state: str, *, suspended_from: str | None, step: str | None
) -> dict[str, Any]:
    """An onboarding as revision 0004 stored it, with something in every column."""
    row = _row_0001(name, state, started_steps=[], compensations=[])
    del row["started_steps"], row["compensations"]
    return row | {
        "suspended_from": suspended_from,
        "step": step,
        "inventory": [CS],
        "suspended_at": T0 + timedelta(minutes=3),
        "vanished": 1,
        "state_since": T0 + timedelta(minutes=4),
        "epoch": 7,
    }


def _old_rows(name: str, history: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "onboarding": name,
            "from_state": from_state,
            "to_state": to_state,
            "trigger": trigger,
            "reason": f"{trigger} {index}",
            "at": T0 + timedelta(minutes=index),
            "workflow": f"wf-{index}",
            "epoch": 7,
        }
        for index, (from_state, to_state, trigger) in enumerate(history)
    ]
