"""The contract of ``ports.Store``, run against every backend of ``SqlStore``.

Each case runs twice: ``[sqlite]`` on a file in a temporary directory and
``[postgres]`` (marker ``postgres``) on a fresh database of its own. The
PostgreSQL server is, in order of preference:

- the one named by ``ORCHESTRATOR_TEST_POSTGRES_URL``, e.g.
  ``postgresql://postgres:postgres@127.0.0.1:5432/postgres``; its login must
  be allowed to ``CREATE DATABASE`` and ``DROP DATABASE``;
- a throw-away server the session starts from ``/usr/lib/postgresql/*/bin``
  (as the ``postgres`` user when run as root) and stops at the end.

Without either the ``[postgres]`` cases are skipped, or fail when ``CI=true``.
``pytest -m "not postgres" tests/store`` runs the SQLite cases alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, event, text

from orchestrator.errors import Conflict, PermanentError
from orchestrator.records import OnboardingRecord, Source, State, TransitionRecord
from orchestrator.store import SqlStore, migrating, open_store, urls
from orchestrator.store.tables import metadata

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
OPENERS = 3
#: Two are enough to race, and each costs a Python start-up.
REPLICAS = 2
REPOSITORY = Path(__file__).resolve().parents[2]


def onboarding(name: str = "team-a", **changes: Any) -> OnboardingRecord:
    record = OnboardingRecord(
        name=name,
        cluster="eu-1",
        namespace=name,
        source=Source.FILE,
        spec={"subdomain": name, "proxy": {"chart": "proxy", "version": "1.2.3"}},
        spec_fingerprint="sha256:0f",
        incarnation="inc-1",
        created_at=T0,
        updated_at=T0,
    )
    return replace(record, **changes)


def transition(
    name: str = "team-a",
    *,
    to: State = State.RUNNING,
    at: datetime = T0,
    trigger: str = "start",
    reason: str = "started",
) -> TransitionRecord:
    return TransitionRecord(
        onboarding=name,
        from_state=State.PENDING,
        to_state=to,
        trigger=trigger,
        reason=reason,
        at=at,
    )


def every_field_set(name: str = "team-a") -> OnboardingRecord:
    """A record in which no field has its default, to catch a column that is not stored."""
    return onboarding(
        name,
        source=Source.API,
        state=State.ROLLING_BACK,
        suspended_from=State.RUNNING,
        offboarding=True,
        inventory=["create-subaccount", "register-platform"],
        step="unregister-platform",
        attempt=2,
        workflow="team-a-unregister-platform-2",
        workflow_submitted=True,
        step_started_at=T0 + timedelta(minutes=1),
        step_deadline=T0 + timedelta(minutes=31),
        suspended_at=T0 + timedelta(minutes=5),
        vanished=1,
        attempt_counters={"create-subaccount": 1, "unregister-platform": 2},
        next_attempt_at=T0 + timedelta(seconds=90),
        error_count=3,
        last_error="cluster eu-1: 503 from Argo Server",
        reason="InstallFailed",
    )


# --- create and get ------------------------------------------------------------------


def test_create_stores_every_field_at_version_1(store: SqlStore) -> None:
    record = every_field_set()

    created = store.create(record)

    assert created == replace(record, version=1)
    assert store.get("team-a") == created


def test_get_of_an_unknown_name_is_none(store: SqlStore) -> None:
    assert store.get("nobody") is None


def test_create_of_an_existing_name_conflicts_and_keeps_the_first(store: SqlStore) -> None:
    first = store.create(onboarding(), [transition(reason="first")])

    with pytest.raises(Conflict, match="team-a"):
        store.create(onboarding(cluster="us-1"), [transition(reason="second")])

    assert store.get("team-a") == first
    assert [t.reason for t in store.history("team-a")] == ["first"]


def test_create_all_stores_each_with_its_first_transitions(store: SqlStore) -> None:
    batch = [(onboarding(n), [transition(n, to=State.PENDING, trigger="declared")]) for n in "abc"]

    created = store.create_all(batch)

    assert [r.version for r in created] == [1, 1, 1]
    assert store.list() == created
    assert [t.onboarding for n in "abc" for t in store.history(n)] == ["a", "b", "c"]


def test_create_all_stores_none_when_one_name_exists(store: SqlStore) -> None:
    store.create(onboarding("b"), [transition("b", reason="first")])

    with pytest.raises(Conflict):
        store.create_all([(onboarding(n), [transition(n)]) for n in "abc"])

    assert [r.name for r in store.list()] == ["b"]
    assert store.history("a") == []
    assert [t.reason for t in store.history("b")] == ["first"]


def test_create_all_of_nothing_stores_nothing(store: SqlStore) -> None:
    assert store.create_all([]) == []
    assert store.list() == []


def test_only_sqlite_answers_in_process(store: SqlStore, database_url: str) -> None:
    assert store.local == database_url.startswith("sqlite")


def test_create_writes_the_first_transitions(store: SqlStore) -> None:
    first = [transition(to=State.PENDING, trigger="declared"), transition(at=T0)]

    store.create(onboarding(), first)

    assert store.history("team-a") == first


def test_create_writes_nothing_when_a_transition_cannot_be_stored(store: SqlStore) -> None:
    broken = replace(transition(), reason=None)  # type: ignore[arg-type]  # NOT NULL in the table

    with pytest.raises(PermanentError) as caught:
        store.create(onboarding(), [broken])

    assert caught.value.reason == "DatabaseError"
    assert store.get("team-a") is None
    assert store.history("team-a") == []


# --- list ----------------------------------------------------------------------------


def test_list_is_ordered_by_name_by_code_point(store: SqlStore) -> None:
    # PostgreSQL's default collations would put "a-c" after "ab"; the store must not.
    names = ["b", "ab", "a-c", "a.b", "a0", "a"]
    for name in names:
        store.create(onboarding(name))

    assert [r.name for r in store.list()] == sorted(names)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, ["a", "b", "c", "d"], id="all"),
        pytest.param({"state": State.READY}, ["a", "c"], id="state"),
        pytest.param({"cluster": "eu-1"}, ["a", "b"], id="cluster"),
        pytest.param({"state": State.READY, "cluster": "eu-1"}, ["a"], id="state-and-cluster"),
        pytest.param({"state": State.FAILED}, [], id="no-match"),
    ],
)
def test_list_filters_by_state_and_cluster(
    store: SqlStore, filters: dict[str, Any], expected: list[str]
) -> None:
    store.create(onboarding("a", cluster="eu-1", state=State.READY))
    store.create(onboarding("b", cluster="eu-1", state=State.PENDING))
    store.create(onboarding("c", cluster="us-1", state=State.READY))
    store.create(onboarding("d", cluster="us-1", state=State.SUSPENDED))

    assert [r.name for r in store.list(**filters)] == expected


# --- save ----------------------------------------------------------------------------


def test_save_writes_the_record_and_increments_the_version(store: SqlStore) -> None:
    created = store.create(onboarding())
    changed = replace(every_field_set(), version=created.version)

    saved = store.save(changed, [transition(to=State.ROLLING_BACK, reason="step failed")])

    assert saved == replace(changed, version=2)
    assert store.get("team-a") == saved
    assert [t.to_state for t in store.history("team-a")] == [State.ROLLING_BACK]


def test_save_of_a_stale_version_conflicts_and_writes_nothing(store: SqlStore) -> None:
    read_by_a = store.create(onboarding())
    read_by_b = replace(read_by_a)
    saved_by_a = store.save(replace(read_by_a, state=State.RUNNING), [transition()])

    with pytest.raises(Conflict, match="changed meanwhile"):
        store.save(
            replace(read_by_b, state=State.SUSPENDED),
            [transition(to=State.SUSPENDED, trigger="suspend")],
        )

    assert store.get("team-a") == saved_by_a
    assert [t.trigger for t in store.history("team-a")] == ["start"]


def test_save_of_an_unknown_name_conflicts(store: SqlStore) -> None:
    with pytest.raises(Conflict, match="does not exist"):
        store.save(onboarding(version=1), [transition()])

    assert store.get("team-a") is None
    assert store.history("team-a") == []


def test_save_writes_nothing_when_a_transition_cannot_be_stored(store: SqlStore) -> None:
    created = store.create(onboarding())
    broken = replace(transition(), reason=None)  # type: ignore[arg-type]  # NOT NULL in the table

    with pytest.raises(PermanentError):
        store.save(replace(created, state=State.FAILED), [transition(), broken])

    assert store.get("team-a") == created
    assert store.history("team-a") == []
    assert store.save(created).version == 2, "the failed save must not have taken the version"


def test_transitions_of_another_onboarding_are_refused(store: SqlStore) -> None:
    created = store.create(onboarding())
    store.create(onboarding("team-b"))

    with pytest.raises(ValueError, match="team-b"):
        store.save(replace(created, state=State.READY), [transition("team-b")])

    assert store.get("team-a") == created
    assert store.history("team-b") == []


def test_a_save_writes_the_spec_it_carries_whether_or_not_it_is_the_one_written_last(
    store: SqlStore,
) -> None:
    # a save of the very spec dict written last may leave the column alone (it is the
    # costly one): what is read back is always the spec of the record saved
    created = store.create(onboarding())
    same = store.save(replace(created, state=State.RUNNING))
    assert same.spec is created.spec
    assert store.get("team-a") == same

    edited = {**same.spec, "subdomain": "team-a2"}  # a spec is replaced, never changed
    saved = store.save(replace(same, spec=edited, state=State.UPDATING))
    assert store.get("team-a") == saved
    assert store.get("team-a").spec["subdomain"] == "team-a2"  # type: ignore[union-attr]

    again = store.save(replace(saved, state=State.READY))
    assert store.get("team-a") == again
    assert again.spec == edited


def test_a_spec_written_by_another_store_is_not_taken_for_the_one_written_here(
    database_url: str,
) -> None:
    api, reconciler = open_store(database_url), open_store(database_url)
    try:
        created = reconciler.create(onboarding())
        first = reconciler.save(replace(created, state=State.RUNNING))
        read = api.get("team-a")
        assert read is not None
        api.save(replace(read, spec={**read.spec, "subdomain": "team-a2"}))

        with pytest.raises(Conflict):  # based on the version before the API's save
            reconciler.save(replace(first, state=State.READY))
        current = reconciler.get("team-a")
        assert current is not None
        back = reconciler.save(replace(current, spec=first.spec, state=State.READY))

        assert api.get("team-a") == back
        assert back.spec["subdomain"] == "team-a"
    finally:
        api.close()
        reconciler.close()


def test_two_stores_on_one_database_share_records_and_versions(database_url: str) -> None:
    """The API thread and the reconciler each hold a store; compare-and-set spans both."""
    api, reconciler = open_store(database_url), open_store(database_url)
    try:
        created = api.create(onboarding())
        read = reconciler.get("team-a")
        assert read == created

        api.save(replace(created, state=State.SUSPENDED))
        with pytest.raises(Conflict):
            reconciler.save(replace(created, state=State.RUNNING))

        assert reconciler.get("team-a") == replace(created, state=State.SUSPENDED, version=2)
    finally:
        api.close()
        reconciler.close()


# --- batches and cheap reads ---------------------------------------------------------


def test_save_all_saves_each_and_answers_a_conflict_for_a_stale_one(store: SqlStore) -> None:
    a, b, c = (store.create(onboarding(name)) for name in ("a", "b", "c"))
    store.save(b)  # b is now at version 2: the batch below holds a stale b

    outcomes = store.save_all(
        [
            (replace(a, state=State.RUNNING), [transition("a")]),
            (replace(b, state=State.RUNNING), [transition("b")]),
            (replace(c, state=State.SUSPENDED), [transition("c", to=State.SUSPENDED)]),
        ]
    )

    assert outcomes[0] == replace(a, state=State.RUNNING, version=2)
    assert isinstance(outcomes[1], Conflict)
    assert "changed meanwhile" in str(outcomes[1])
    assert outcomes[2] == replace(c, state=State.SUSPENDED, version=2)
    assert [store.get(name) for name in ("a", "c")] == [outcomes[0], outcomes[2]]
    assert store.get("b") == replace(b, version=2), "nothing of the stale item is written"
    assert [len(store.history(name)) for name in ("a", "b", "c")] == [1, 0, 1]


def test_save_all_writes_nothing_when_one_item_cannot_be_stored(store: SqlStore) -> None:
    a, b = store.create(onboarding("a")), store.create(onboarding("b"))
    broken = replace(transition("b"), reason=None)  # type: ignore[arg-type]  # NOT NULL

    with pytest.raises(PermanentError):
        store.save_all([(replace(a, state=State.READY), [transition("a")]), (b, [broken])])

    assert (store.get("a"), store.get("b")) == (a, b)
    assert store.history("a") == []


def test_save_all_refuses_a_name_twice(store: SqlStore) -> None:
    a = store.create(onboarding("a"))

    with pytest.raises(ValueError, match="twice"):
        store.save_all([(a, []), (replace(a, state=State.READY), [])])

    assert store.get("a") == a


def test_save_all_updates_a_batch_with_one_statement_per_set_of_columns(
    store: SqlStore,
) -> None:
    a, b, c = (store.create(onboarding(name)) for name in ("a", "b", "c"))
    a = store.save(a)  # stored with this very spec: the next save of it leaves that column
    updates: list[tuple[int, bool]] = []

    def seen(_c: Any, _cursor: Any, statement: str, parameters: Any, _x: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE ONBOARDINGS"):
            updates.append((len(parameters) if many else 1, many))

    batch = [
        (replace(a, state=State.RUNNING), [transition("a")]),
        (replace(b, state=State.RUNNING, spec={**b.spec, "namespace": "tenant-b2"}), []),
        (replace(c, state=State.SUSPENDED), [transition("c", to=State.SUSPENDED)]),
    ]
    event.listen(store._engine, "before_cursor_execute", seen)
    try:
        outcomes = store.save_all(batch)
    finally:
        event.remove(store._engine, "before_cursor_execute", seen)

    assert sorted(updates) == [(1, False), (2, True)], "a and c keep their spec, b has a new one"
    assert outcomes == [replace(r, version=r.version + 1) for r, _ in batch]
    assert [store.get(name) for name in ("a", "b", "c")] == outcomes
    assert [len(store.history(name)) for name in ("a", "b", "c")] == [1, 0, 1]


def test_save_all_answers_a_conflict_for_a_row_deleted_meanwhile(store: SqlStore) -> None:
    a, b = store.create(onboarding("a")), store.create(onboarding("b"))
    gone = store.save(replace(b, state=State.DELETED))
    assert store.prune(deleted_before=gone.updated_at + timedelta(seconds=1)) == ["b"]

    outcomes = store.save_all(
        [(replace(a, state=State.READY), [transition("a")]), (replace(b, state=State.READY), [])]
    )

    assert outcomes[0] == replace(a, state=State.READY, version=2)
    assert isinstance(outcomes[1], Conflict)
    assert "does not exist" in str(outcomes[1])
    assert store.get("a") == outcomes[0]
    assert store.get("b") is None


def test_versions_and_list_by_names(store: SqlStore) -> None:
    for name in ("a", "b", "c"):
        store.create(onboarding(name, cluster="eu-1"))
    store.create(onboarding("d", cluster="us-1"))
    store.save(store.get("b") or onboarding())

    assert store.versions(cluster="eu-1") == {"a": 1, "b": 2, "c": 1}
    assert store.versions(cluster="nowhere") == {}
    assert [r.name for r in store.list(names={"c", "a", "unknown"})] == ["a", "c"]
    assert [r.name for r in store.list(cluster="us-1", names={"a", "d"})] == ["d"]
    assert store.list(names=set()) == []


def test_list_by_more_names_than_one_query_takes(store: SqlStore) -> None:
    names = [f"team-{index:04d}" for index in range(1_200)]  # three chunks of IN (...)
    store.save_all([])  # an empty batch is a no-op
    for name in names:
        store.create(onboarding(name))

    assert [r.name for r in store.list(names=names[::-1])] == names


# --- history -------------------------------------------------------------------------


def test_history_is_oldest_first_then_in_insertion_order(store: SqlStore) -> None:
    later, same_time_first, same_time_second, earliest = (
        transition(at=T0 + timedelta(seconds=5), reason="later"),
        transition(at=T0, reason="same time, first"),
        transition(at=T0, reason="same time, second"),
        transition(at=T0 - timedelta(seconds=5), reason="earliest"),
    )
    created = store.create(onboarding(), [later, same_time_first])
    store.save(created, [same_time_second, earliest])

    assert [t.reason for t in store.history("team-a")] == [
        "earliest",
        "same time, first",
        "same time, second",
        "later",
    ]


def test_history_is_kept_per_onboarding(store: SqlStore) -> None:
    store.create(onboarding("team-a"), [transition("team-a")])
    store.create(onboarding("team-b"), [transition("team-b", reason="b")])

    assert [t.onboarding for t in store.history("team-a")] == ["team-a"]
    assert [t.reason for t in store.history("team-b")] == ["b"]
    assert store.history("nobody") == []


def test_history_keeps_the_workflow(store: SqlStore) -> None:
    step = replace(transition(), workflow="team-a-create-subaccount-1")

    store.create(onboarding(), [step])

    assert store.history("team-a")[0].workflow == "team-a-create-subaccount-1"


def test_history_keeps_the_steps_on_either_side(store: SqlStore) -> None:
    moved = TransitionRecord(
        onboarding="team-a",
        from_state=State.RUNNING,
        to_state=State.RUNNING,
        trigger="step_succeeded",
        reason="create-subaccount succeeded",
        at=T0,
        from_step="create-subaccount",
        to_step="register-platform",
    )

    store.create(onboarding(), [moved, transition()])

    assert store.history("team-a") == [moved, transition()]


# --- prune ---------------------------------------------------------------------------


def test_prune_removes_only_deleted_onboardings_older_than_the_cutoff(store: SqlStore) -> None:
    cutoff = T0 + timedelta(hours=1)
    old = T0
    for name in ("old-deleted-b", "old-deleted-a"):
        store.create(
            onboarding(name, state=State.DELETED, updated_at=old),
            [transition(name), transition(name, to=State.DELETED, trigger="compensated")],
        )
    store.create(
        onboarding("deleted-at-the-cutoff", state=State.DELETED, updated_at=cutoff),
        [transition("deleted-at-the-cutoff")],
    )
    store.create(
        onboarding("young-deleted", state=State.DELETED, updated_at=cutoff + timedelta(hours=1)),
        [transition("young-deleted")],
    )
    others = {f"old-{state.value.lower()}": state for state in State if state != State.DELETED}
    for name, state in others.items():
        store.create(onboarding(name, state=state, updated_at=old), [transition(name)])

    pruned = store.prune(deleted_before=cutoff)

    assert pruned == ["old-deleted-a", "old-deleted-b"]
    kept = sorted(["deleted-at-the-cutoff", "young-deleted", *others])
    assert [r.name for r in store.list()] == kept
    assert store.history("old-deleted-a") == []
    assert store.history("old-deleted-b") == []
    assert all(len(store.history(name)) == 1 for name in kept), "other histories are kept"


def test_a_pruned_name_starts_afresh(store: SqlStore) -> None:
    """No transition of the pruned onboarding survives to be read as the new one's."""
    store.create(onboarding(state=State.DELETED), [transition(reason="the first life")])
    store.prune(deleted_before=T0 + timedelta(seconds=1))

    store.create(onboarding(), [transition(reason="the second life")])

    assert [t.reason for t in store.history("team-a")] == ["the second life"]


def test_prune_with_nothing_to_prune_changes_nothing(store: SqlStore) -> None:
    created = store.create(onboarding(state=State.READY), [transition()])

    assert store.prune(deleted_before=T0 + timedelta(days=365)) == []
    assert store.get("team-a") == created
    assert store.history("team-a") == [transition()]


def test_prune_refuses_a_naive_cutoff(store: SqlStore) -> None:
    store.create(onboarding(state=State.DELETED))

    with pytest.raises(ValueError, match="deleted_before"):
        store.prune(deleted_before=datetime(2027, 1, 1))

    assert store.get("team-a") is not None


def test_prune_compares_instants_not_wall_clocks(store: SqlStore) -> None:
    store.create(onboarding(state=State.DELETED, updated_at=T0))
    # 13:00 in CEST is 11:00 UTC, an hour before T0: team-a is not older than that.
    before_t0 = (T0 - timedelta(hours=1)).astimezone(CEST)

    assert store.prune(deleted_before=before_t0) == []
    assert store.prune(deleted_before=(T0 + timedelta(hours=1)).astimezone(CEST)) == ["team-a"]


# --- values round trip ---------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="empty"),
        pytest.param({"a": {"b": [1, 2.5, True, None, "x"]}}, id="nested"),
        pytest.param({"name": "Zürich ☃ 東京", "quote": 'it\'s "quoted"\n'}, id="unicode"),
        pytest.param({"big": 2**62, "negative": -1, "zero": 0.0}, id="numbers"),
        pytest.param({"z": 1, "a": 2, "m": 3}, id="key-order"),
    ],
)
def test_json_columns_round_trip(store: SqlStore, spec: dict[str, Any]) -> None:
    store.create(onboarding(spec=spec, inventory=["b", "a"], attempt_counters={"z": 2, "a": 1}))

    stored = store.get("team-a")

    assert stored is not None
    assert stored.spec == spec
    assert list(stored.spec) == list(spec), "key order is kept"
    assert stored.inventory == ["b", "a"], "kept as given, not sorted"
    assert stored.attempt_counters == {"z": 2, "a": 1}


def test_datetimes_come_back_aware_in_utc(store: SqlStore) -> None:
    local = datetime(2026, 3, 1, 14, 0, 0, 654321, tzinfo=CEST)
    record = onboarding(created_at=local, next_attempt_at=local, suspended_at=local)
    store.create(record, [transition(at=local)])

    stored = store.get("team-a")
    (step,) = store.history("team-a")

    assert stored is not None
    for value in (stored.created_at, stored.next_attempt_at, stored.suspended_at, step.at):
        assert value is not None
        assert value.tzinfo == UTC
        assert value == local, "the same instant, to the microsecond"
    assert stored.step_deadline is None


@pytest.mark.parametrize("field", ["created_at", "step_deadline", "suspended_at"])
def test_naive_datetimes_are_refused(store: SqlStore, field: str) -> None:
    record = onboarding()
    setattr(record, field, datetime(2026, 3, 1, 12, 0))

    with pytest.raises(ValueError, match=field):
        store.create(record)

    assert store.get("team-a") is None


# --- schema and migrations -----------------------------------------------------------


def test_opening_twice_migrates_once_and_keeps_the_data(database_url: str) -> None:
    first = open_store(database_url)
    created = first.create(onboarding(), [transition()])
    first.close()

    again = open_store(database_url)
    try:
        assert again.get("team-a") == created
        assert again.history("team-a") == [transition()]
        assert _revision(database_url) == migrating.head()
    finally:
        again.close()


@pytest.mark.parametrize(
    "start", ["base", "0001", "head"], ids=["downgraded-to-base", "downgraded-to-0001", "at-head"]
)
def test_open_brings_an_existing_database_to_head(database_url: str, start: str) -> None:
    open_store(database_url).close()
    engine = create_engine(urls.parse(database_url))
    try:
        if start != "head":
            migrating.downgrade(engine, start)
    finally:
        engine.dispose()

    store = open_store(database_url)
    try:
        assert _revision(database_url) == migrating.head()
        assert store.list() == []
    finally:
        store.close()


def test_threads_opening_together_all_end_at_head(database_url: str) -> None:
    # Whatever the interleaving, the outcome is the same: the locks make them take turns.
    start = threading.Barrier(OPENERS)

    def opener() -> None:
        start.wait(timeout=30)
        open_store(database_url).close()

    with ThreadPoolExecutor(OPENERS) as pool:
        for opened in [pool.submit(opener) for _ in range(OPENERS)]:
            opened.result(timeout=60)

    assert _revision(database_url) == migrating.head()


def test_replicas_starting_together_all_end_at_head(database_url: str) -> None:
    """Separate processes, as replicas are: only the database's own lock keeps them apart."""
    program = (
        "import sys; from orchestrator.store import open_store; open_store(sys.argv[1]).close()"
    )
    replicas = [
        subprocess.Popen(
            [sys.executable, "-c", program, database_url],
            cwd=REPOSITORY,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(REPLICAS)
    ]
    outcomes = [(replica.wait(timeout=60), replica.stderr) for replica in replicas]

    assert [(code, err.read() if err else "") for code, err in outcomes] == [(0, "")] * REPLICAS
    assert _revision(database_url) == migrating.head()


def test_head_names_the_newest_migration_script() -> None:
    # open_store skips Alembic when the database is at HEAD: a new script must move it
    assert migrating.head() == migrating.HEAD


def test_a_database_at_head_is_opened_without_loading_alembic(
    store: SqlStore, database_url: str
) -> None:
    code = (
        "import sys; from orchestrator.store import open_store; "
        f"open_store({database_url!r}).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert out.strip() == "[]"


def test_the_migrated_schema_is_the_one_in_tables(store: SqlStore, database_url: str) -> None:
    engine = create_engine(urls.parse(database_url))
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_a_schema_newer_than_the_code_is_refused(store: SqlStore, database_url: str) -> None:
    engine = create_engine(urls.parse(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    finally:
        engine.dispose()

    with pytest.raises(PermanentError, match="f00d") as caught:
        open_store(database_url)

    assert caught.value.reason == "DatabaseSchemaUnknown"


def _revision(database_url: str) -> str | None:
    engine = create_engine(urls.parse(database_url))
    try:
        return migrating.current(engine)
    finally:
        engine.dispose()
