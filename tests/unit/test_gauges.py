"""The per-cluster state gauges are set only when a pass changed them, and still say
exactly what the last pass counted (after ``forget_clusters`` too)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from orchestrator.core.passes import Tally
from orchestrator.metrics import Metrics
from orchestrator.records import OnboardingRecord, Source, State

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_pass_that_changed_nothing_sets_nothing_and_a_change_is_exported() -> None:
    metrics = Metrics()
    metrics.count_cluster("c1", {State.READY: 2, State.PENDING: 1}, {State.PENDING: T0})
    calls = 0
    labels = metrics.onboardings.labels

    def counting(*args: str, **kwargs: str) -> object:
        nonlocal calls
        calls += 1
        return labels(*args, **kwargs)

    metrics.onboardings.labels = counting  # type: ignore[method-assign]
    metrics.count_cluster("c1", {State.READY: 2, State.PENDING: 1}, {State.PENDING: T0})
    assert calls == 0

    metrics.count_cluster("c1", {State.READY: 3}, {})
    assert calls == 2  # Ready and Pending changed
    assert value(metrics, "orchestrator_onboardings", state="Ready", cluster="c1") == 3
    assert value(metrics, "orchestrator_onboardings", state="Pending", cluster="c1") == 0
    since = "orchestrator_unsettled_since_timestamp_seconds"
    assert value(metrics, since, cluster="c1", state="Pending") is None


def test_after_forgetting_the_clusters_the_next_pass_sets_every_gauge_again() -> None:
    metrics = Metrics()
    counts = {State.CLEANUP_FAILED: 1}
    metrics.count_cluster("c1", counts)
    metrics.forget_clusters()

    metrics.count_cluster("c1", counts)

    assert value(metrics, "orchestrator_onboardings", state="CleanupFailed", cluster="c1") == 1
    assert value(metrics, "orchestrator_onboardings", state="Ready", cluster="c1") == 0
    assert value(metrics, "orchestrator_cleanup_failed", cluster="c1") == 1


def test_a_pass_that_did_not_count_again_leaves_the_gauges_once_they_are_set() -> None:
    metrics = Metrics()
    metrics.count_cluster("c1", {State.READY: 2})

    metrics.count_cluster("c1", {State.READY: 5}, recounted=False)  # as after the last pass
    assert value(metrics, "orchestrator_onboardings", state="Ready", cluster="c1") == 2

    metrics.forget_clusters()  # e.g. leadership lost and won again: nothing is set
    metrics.count_cluster("c1", {State.READY: 2}, recounted=False)
    assert value(metrics, "orchestrator_onboardings", state="Ready", cluster="c1") == 2
    assert value(metrics, "orchestrator_onboardings", state="Pending", cluster="c1") == 0


def test_a_tally_follows_records_moving_between_states() -> None:
    def record(name: str, state: State, minutes: int) -> OnboardingRecord:
        at = T0 + timedelta(minutes=minutes)
        return OnboardingRecord(
            name=name,
            cluster="c1",
            namespace=name,
            source=Source.FILE,
            spec={},
            spec_fingerprint="sha256:0f",
            incarnation="inc-1",
            created_at=T0,
            updated_at=at,
            state=state,
            state_since=at,
        )

    a, b, c = (
        record("a", State.PENDING, 1),
        record("b", State.PENDING, 2),
        record("c", State.READY, 0),
    )
    tally = Tally([a, b, c])
    assert (tally.states, tally.unsettled_since()) == (
        Counter({State.PENDING: 2, State.READY: 1}),
        {State.PENDING: a.state_since},
    )

    tally.remove(a)  # a starts
    tally.add(replace(a, state=State.RUNNING, state_since=T0 + timedelta(minutes=3)))
    assert tally.states[State.PENDING] == 1
    assert tally.unsettled_since() == {
        State.PENDING: b.state_since,
        State.RUNNING: T0 + timedelta(minutes=3),
    }

    tally.remove(b)  # none is Pending any more: no time is told for it
    assert tally.states[State.PENDING] == 0
    assert State.PENDING not in tally.unsettled_since()
