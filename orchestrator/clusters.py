"""One workflow engine per declared cluster, rebuilt when its entry changes,
and the health of each cluster as the daemon last saw it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orchestrator.config.configs import Cluster
from orchestrator.metrics import Metrics
from orchestrator.ports import WorkflowEngine

log = logging.getLogger(__name__)

EngineFactory = Callable[[Cluster], WorkflowEngine]


@dataclass
class ClusterHealth:
    reachable: bool | None = None  # None: not asked yet
    reason: str | None = None
    since: datetime | None = None
    latency: float | None = None


class ClusterRegistry:
    def __init__(self, factory: EngineFactory, *, metrics: Metrics) -> None:
        self._factory = factory
        self._metrics = metrics
        self._engines: dict[str, tuple[Cluster, WorkflowEngine]] = {}
        self.health: dict[str, ClusterHealth] = {}

    async def update(self, clusters: Mapping[str, Cluster]) -> None:
        """Build engines for new or changed clusters; close those of removed ones."""
        for name in list(self._engines):
            if name not in clusters or clusters[name] != self._engines[name][0]:
                _, engine = self._engines.pop(name)
                await engine.aclose()
        for name, cluster in clusters.items():
            if name not in self._engines:
                self._engines[name] = (cluster, self._factory(cluster))
                self.health.setdefault(name, ClusterHealth())
        for name in list(self.health):
            if name not in clusters:
                del self.health[name]

    def engine(self, name: str) -> WorkflowEngine | None:
        entry = self._engines.get(name)
        return entry[1] if entry else None

    def cluster(self, name: str) -> Cluster | None:
        entry = self._engines.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        return sorted(self._engines)

    def mark(
        self,
        name: str,
        *,
        reachable: bool,
        reason: str | None,
        now: datetime,
        latency: float | None = None,
    ) -> None:
        health = self.health.setdefault(name, ClusterHealth())
        if latency is not None:
            health.latency = latency
            self._metrics.cluster_latency.labels(cluster=name).set(latency)
        if health.reachable != reachable:
            health.since = now
            if reachable:
                log.info("cluster reachable", extra={"cluster": name})
            else:
                log.warning("cluster unreachable", extra={"cluster": name, "reason": reason})
        health.reachable = reachable
        health.reason = reason
        self._metrics.cluster_up.labels(cluster=name).set(1 if reachable else 0)

    async def aclose(self) -> None:
        for _, engine in self._engines.values():
            await engine.aclose()
        self._engines.clear()
