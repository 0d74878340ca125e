"""Prometheus metrics, all prefixed ``orchestrator_``.

Labels carry names and short reasons only, never a secret or an error text.
One registry per daemon, so tests can make as many daemons as they like; each
also has the standard process and Python collectors (``process_*``,
``python_*``). Counters and histograms have no ``_created`` series.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from orchestrator import __version__
from orchestrator.records import SETTLED, State

# a ``_created`` series per counter and histogram doubles the series and says nothing a
# scrape needs (process-wide: the library reads it when a metric is made)
disable_created_metrics()  # type: ignore[no-untyped-call]

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # the standard collectors, in this registry (not the library's global one)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "orchestrator_build_info",
            "1, labelled with the daemon's version and the Python it runs on.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)
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
            "Workflow submissions (result: created, adopted, rejected).",
            ["cluster", "step", "result"],
            registry=r,
        )
        self.argo_requests = Histogram(
            "orchestrator_argo_request_duration_seconds",
            "Requests to a cluster's Argo Server (or its Kubernetes API for workflows).",
            ["cluster", "operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.argo_errors = Counter(
            "orchestrator_argo_request_errors_total",
            "Failed requests to a cluster's Argo Server (or its Kubernetes API for workflows),"
            " by reason; an answer the daemon expects (a workflow or template not there yet)"
            " is not counted.",
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
        self.http_requests = Counter(
            "orchestrator_http_requests_total",
            "Requests to the daemon's HTTP API, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_request_duration = Histogram(
            "orchestrator_http_request_duration_seconds",
            "Time to answer a request to the daemon's HTTP API (a waiting upsert included).",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.leader = Gauge(
            "orchestrator_leader",
            "1 when this replica acts (the leader, or the only replica), else 0.",
            registry=r,
        )
        self.leader_epoch = Gauge(
            "orchestrator_leader_epoch",
            "The epoch of this replica's current or last leadership (the Lease's transitions).",
            registry=r,
        )
        self.leadership_changes = Counter(
            "orchestrator_leadership_changes_total",
            "Times this replica started or stopped leading.",
            ["change"],
            registry=r,
        )
        for change in ("started", "stopped"):
            self.leadership_changes.labels(change=change)
        #: per cluster, what ``count_cluster`` last set: a pass that changed nothing sets
        #: nothing (the gauges' label look-ups cost more than the pass itself when settled)
        self._counted: dict[str, tuple[dict[State, int], dict[State, datetime]]] = {}
        self.last_cluster_call = Gauge(
            "orchestrator_last_cluster_call_timestamp_seconds",
            "When this replica last sent a request to a cluster (Argo Server or Kubernetes"
            " API); a follower's stays where its leadership ended.",
            registry=r,
        )

    def forget_clusters(self) -> None:
        """Drop the per-cluster gauges a pass sets: a replica that stops leading exports
        none, so that its last values (a CleanupFailed long cleaned up, an old unsettled
        time) cannot keep an alert firing beside the new leader's."""
        for gauge in (
            self.onboardings,
            self.unsettled_since,
            self.cleanup_failed,
            self.cluster_up,
            self.cluster_latency,
        ):
            gauge.clear()
        self._counted.clear()

    def count_cluster(
        self,
        cluster: str,
        counts: Mapping[State, int],
        unsettled_since: Mapping[State, datetime] | None = None,
        *,
        recounted: bool = True,
    ) -> None:
        """Set one cluster's per-state gauges (zeros included) from its last pass; only
        those that changed since the last call are set. A pass that did not count again
        (``recounted`` false) has nothing new once they are set."""
        if not recounted and cluster in self._counted:
            return
        since = dict(unsettled_since or {})
        counted = {state: counts.get(state, 0) for state in State}
        last_counts, last_since = self._counted.get(cluster, ({}, None))
        self._counted[cluster] = (counted, since)
        for state, count in counted.items():
            if last_counts.get(state) != count:
                self.onboardings.labels(state=state.value, cluster=cluster).set(count)
        if last_counts.get(State.CLEANUP_FAILED) != counted[State.CLEANUP_FAILED]:
            self.cleanup_failed.labels(cluster=cluster).set(counted[State.CLEANUP_FAILED])
        if since == last_since:
            return
        for state in State:
            if state in SETTLED:
                continue
            if state in since:
                gauge = self.unsettled_since.labels(cluster=cluster, state=state.value)
                gauge.set(since[state].timestamp())
            else:
                with contextlib.suppress(KeyError):  # none was in that state before either
                    self.unsettled_since.remove(cluster, state.value)
