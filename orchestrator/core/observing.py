"""What the clusters say about the workflows in flight, and how long to leave a cluster
alone that did not answer.

One list call per cluster and pass covers every onboarding in flight there; a
cluster that fails is backed off as a whole (its onboardings' own back-off is
for their own errors), growing and capped like any back-off.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.clusters import ClusterRegistry
from orchestrator.core.naming import in_flight_selector
from orchestrator.core.passes import PassResult, Tuning
from orchestrator.core.planning import UNKNOWN, Observation, backoff
from orchestrator.errors import TemporaryError, WorkflowNotFound
from orchestrator.metrics import Metrics
from orchestrator.ports import WorkflowEngine
from orchestrator.records import SETTLED, OnboardingRecord, WorkflowStatus

log = logging.getLogger(__name__)

#: names per list call, so a label selector stays a sensible length
SELECTOR_CHUNK = 50


@dataclass(frozen=True)
class ClusterBackoff:
    """A cluster that did not answer: its failures in a row and when to call it again."""

    failures: int
    until: datetime
    reason: str


class Observer:
    def __init__(
        self,
        *,
        clusters: ClusterRegistry,
        metrics: Metrics,
        tuning: Tuning,
        clock: Callable[[], datetime],
        jitter: Callable[[], float],
    ) -> None:
        self.clusters = clusters
        self.metrics = metrics
        self.tuning = tuning
        self.clock = clock
        self.jitter = jitter
        #: clusters that failed lately, and when to call them again
        self._backoff: dict[str, ClusterBackoff] = {}

    def backing_off(self, cluster: str, now: datetime) -> str | None:
        """Why the cluster is not to be called now, or None."""
        backing_off = self._backoff.get(cluster)
        if backing_off is not None and now < backing_off.until:
            return backing_off.reason
        return None

    async def observe(
        self,
        cluster: str,
        engine: WorkflowEngine | None,
        records: list[OnboardingRecord],
        result: PassResult,
        *,
        known: Mapping[str, WorkflowStatus] | None = None,
    ) -> dict[str, Observation]:
        """One list call for the workflows in flight; UNKNOWN for all if it fails.

        ``known``: what the cluster's watch last said of its workflows, when the pass
        was woken by it; only the workflows it does not know are listed (the periodic
        pass lists them all). A workflow the list does not show is looked up by name
        before it is taken as vanished (rare: deleted, or garbage-collected).
        """
        in_flight = [r for r in records if r.workflow is not None and r.state not in SETTLED]
        if not in_flight:
            return {}
        if engine is None or result.down is not None:
            return dict.fromkeys((r.name for r in in_flight), UNKNOWN)
        watched: dict[str, Observation] = {}
        if known is not None:
            watched = {r.name: known[w] for r in in_flight if (w := r.workflow or "") in known}
            in_flight = [r for r in in_flight if r.name not in watched]
            if not in_flight:
                return watched
        found: dict[str, WorkflowStatus] = {}
        names = sorted({r.name for r in in_flight})
        asked = time.monotonic()
        try:
            for start in range(0, len(names), SELECTOR_CHUNK):
                selector = in_flight_selector(
                    daemon=self.tuning.daemon_id, onboardings=names[start : start + SELECTOR_CHUNK]
                )
                for status in await engine.list(selector):
                    found[status.name] = status
            for record in in_flight:
                if record.workflow_submitted and record.workflow not in found:
                    with contextlib.suppress(WorkflowNotFound):
                        assert record.workflow is not None
                        found[record.workflow] = await engine.get(record.workflow)
        except TemporaryError as error:
            self.failed(cluster, error, result)
            return {**watched, **dict.fromkeys(names, UNKNOWN)}
        result.listed = True
        result.answered = True
        self.answered(cluster, latency=time.monotonic() - asked)
        return {**watched, **{r.name: found.get(r.workflow or "") for r in in_flight}}

    def failed(self, cluster: str, error: TemporaryError, result: PassResult) -> None:
        """The cluster did not answer: back off the cluster, not its onboardings."""
        self.clusters.mark(cluster, reachable=False, reason=str(error), now=self.clock())
        self.metrics.reconcile_errors.labels(cluster=cluster, reason=error.reason).inc()
        result.errors += 1
        # the same words as the passes that skip the cluster while it backs off, so what
        # an onboarding shows does not depend on which of them came last
        said = str(error).removeprefix(f"cluster {cluster}: ")  # named once is enough
        reason = f"cluster {cluster} did not answer: {said}"
        result.down = reason
        previous = self._backoff.get(cluster)
        failures = (previous.failures if previous else 0) + 1
        delay = backoff(failures, limits=self.tuning.limits, jitter=self.jitter())
        if error.delay is not None:
            # the server's Retry-After is honoured, up to the longest back-off
            delay = max(delay, min(error.delay, self.tuning.limits.backoff_max_seconds))
        self._backoff[cluster] = ClusterBackoff(
            failures=failures,
            until=self.clock() + timedelta(seconds=delay),
            reason=reason,
        )
        log.warning(
            "cluster did not answer; backing off",
            extra={"cluster": cluster, "error": str(error), "retry_in": round(delay, 1)},
        )

    def answered(self, cluster: str, *, latency: float | None = None) -> None:
        self._backoff.pop(cluster, None)
        self.clusters.mark(cluster, reachable=True, reason=None, now=self.clock(), latency=latency)

    def forget_backoff(self, cluster: str) -> None:
        """Call the cluster at its next pass even if it failed lately (on-call asked)."""
        self._backoff.pop(cluster, None)
