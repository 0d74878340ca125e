"""The per-cluster state gauges are set only when a pass changed them, and still say
exactly what the last pass counted (after ``forget_clusters`` too)."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.metrics import Metrics
from orchestrator.records import State

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
