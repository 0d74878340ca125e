"""Prometheus metrics, all prefixed ``orchestrator_``.

Labels carry names and short reasons only, never a secret or an error text.
One registry per daemon, so tests can make as many daemons as they like.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.records import SETTLED, State

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.onboardings = Gauge(
            "orchestrator_onboardings",
            "Onboardings per state and cluster.",
            ["state", "cluster"],
            registry=r,
        )
        self.unsettled_since = Gauge(
            "orchestrator_unsettled_since_timestamp_seconds",
            "Unix time at which the longest-waiting onboarding of the cluster entered the"
            " state; only for states that are not settled, and absent while none is in it.",
            ["cluster", "state"],
            registry=r,
        )
        self.transitions = Counter(
            "orchestrator_transitions_total",
            "State transitions.",
            ["from_state", "to_state", "trigger"],
            registry=r,
        )
        self.step_duration = Histogram(
            "orchestrator_step_duration_seconds",
            "Time from a step attempt's submission to its outcome.",
            ["step", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.step_outcomes = Counter(
            "orchestrator_step_outcomes_total",
            "Step attempts by outcome.",
            ["step", "cluster", "outcome"],
            registry=r,
        )
        self.workflow_submissions = Counter(
            "orchestrator_workflow_submissions_total",
            "Workflows submitted (result: created, adopted, error).",
            ["cluster", "step", "result"],
            registry=r,
        )
        self.argo_requests = Histogram(
            "orchestrator_argo_request_duration_seconds",
            "Argo Server request latency.",
            ["cluster", "operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.argo_errors = Counter(
            "orchestrator_argo_request_errors_total",
            "Argo Server request errors.",
            ["cluster", "operation", "reason"],
            registry=r,
        )
        self.cluster_up = Gauge(
            "orchestrator_cluster_reachable",
            "1 when the last call to the cluster worked.",
            ["cluster"],
            registry=r,
        )
        self.cluster_latency = Gauge(
            "orchestrator_cluster_latency_seconds",
            "Duration of the last list of in-flight workflows on the cluster.",
            ["cluster"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "orchestrator_reconcile_duration_seconds",
            "Duration of a reconcile pass.",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.reconcile_last_success = Gauge(
            "orchestrator_reconcile_last_success_timestamp_seconds",
            "Unix time of the last reconcile pass that completed.",
            registry=r,
        )
        self.reconcile_errors = Counter(
            "orchestrator_reconcile_errors_total",
            "Onboarding reconciles that raised.",
            ["cluster", "reason"],
            registry=r,
        )
        self.config_reload_errors = Counter(
            "orchestrator_config_reload_errors_total",
            "Rejected desired-state reloads.",
            registry=r,
        )
        self.config_last_success = Gauge(
            "orchestrator_config_last_reload_success_timestamp_seconds",
            "Unix time of the last accepted desired-state load.",
            registry=r,
        )
        self.config_valid = Gauge(
            "orchestrator_config_valid",
            "1 when the files on disk are valid (running, or a held change waiting for"
            " confirmation), 0 when the last reload was rejected.",
            registry=r,
        )
        self.config_offboard_held = Gauge(
            "orchestrator_config_offboard_held",
            "Onboardings a held config change would offboard (it removes too many at once and"
            " waits for `orchestrator offboard --confirm`); 0 when nothing is held.",
            registry=r,
        )
        self.cleanup_failed = Gauge(
            "orchestrator_cleanup_failed",
            "Onboardings parked in CleanupFailed, waiting for on-call.",
            ["cluster"],
            registry=r,
        )
        self.leader = Gauge(
            "orchestrator_leader",
            "1 when this replica acts.",
            registry=r,
        )

    def count_cluster(
        self,
        cluster: str,
        counts: Mapping[State, int],
        unsettled_since: Mapping[State, datetime] | None = None,
    ) -> None:
        """Set one cluster's per-state gauges (zeros included) from its last pass."""
        for state in State:
            self.onboardings.labels(state=state.value, cluster=cluster).set(counts.get(state, 0))
        self.cleanup_failed.labels(cluster=cluster).set(counts.get(State.CLEANUP_FAILED, 0))
        since = unsettled_since or {}
        for state in State:
            if state in SETTLED:
                continue
            if state in since:
                gauge = self.unsettled_since.labels(cluster=cluster, state=state.value)
                gauge.set(since[state].timestamp())
            else:
                with contextlib.suppress(KeyError):  # none was in that state before either
                    self.unsettled_since.remove(cluster, state.value)
