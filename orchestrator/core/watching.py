"""Watching each cluster's workflows, so that a finished step is acted on at once.

One watch per cluster on the workflows with our managed-by label (the Argo
Server's workflow-events stream or the Kubernetes watch, whichever the
cluster's engine uses), resumed from the last resourceVersion it saw, opened
afresh when that version expired (410), reconnected with back-off when the
cluster does not answer. A workflow that finished or vanished wakes the
cluster's pass; the periodic pass stays as the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

from orchestrator.core.naming import LABEL_MANAGED_BY
from orchestrator.core.planning import Limits, backoff
from orchestrator.errors import OrchestratorError, WatchExpired
from orchestrator.ports import WorkflowEngine
from orchestrator.records import WorkflowEvent, WorkflowStatus

log = logging.getLogger(__name__)


def concerns_us(event: WorkflowEvent) -> bool:
    """Whether the event can change what the daemon does next: a workflow finished
    (or was deleted). Progress from Pending to Running changes nothing."""
    if event.type == "DELETED":
        return True
    return event.status is not None and event.status.phase.finished


class Watcher:
    def __init__(
        self,
        *,
        daemon_id: str,
        engine_of: Callable[[str], WorkflowEngine | None],
        on_change: Callable[[str], None],
        limits: Limits,
        jitter: Callable[[], float],
    ) -> None:
        self.selector = f"{LABEL_MANAGED_BY}={daemon_id}"
        self._engine_of = engine_of
        self._on_change = on_change
        self._limits = limits
        self._jitter = jitter
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: events seen per cluster (for tests and the log)
        self.seen: dict[str, int] = {}
        #: per cluster whose watch is open and has spoken: its workflows as last seen
        self._statuses: dict[str, dict[str, WorkflowStatus]] = {}

    def known(self, cluster: str) -> Mapping[str, WorkflowStatus] | None:
        """What the cluster's open watch last said of each workflow; None when the
        watch is not open (then only a list call can tell)."""
        return self._statuses.get(cluster)

    def retain(self, clusters: Iterable[str]) -> None:
        """Watch exactly these clusters."""
        wanted = set(clusters)
        for cluster in set(self._tasks) - wanted:
            self._tasks.pop(cluster).cancel()
        for cluster in sorted(wanted - set(self._tasks)):
            self._tasks[cluster] = asyncio.create_task(
                self._watch(cluster), name=f"watch-{cluster}"
            )

    def _note(self, cluster: str, event: WorkflowEvent, *, fresh: bool) -> None:
        statuses = self._statuses.setdefault(cluster, {})
        if fresh:
            statuses.clear()
        if event.status is None:
            return
        if event.type == "DELETED":
            statuses.pop(event.status.name, None)
        else:
            statuses[event.status.name] = event.status

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self, cluster: str) -> None:
        version: str | None = None
        failures = 0
        while True:
            engine = self._engine_of(cluster)
            if engine is None:
                await asyncio.sleep(self._limits.backoff_base_seconds)
                continue
            events = 0
            try:
                async for event in engine.watch(self.selector, resource_version=version):
                    events += 1
                    failures = 0
                    self.seen[cluster] = self.seen.get(cluster, 0) + 1
                    if event.resource_version:
                        version = event.resource_version
                    self._note(cluster, event, fresh=version is None and events == 1)
                    if concerns_us(event):
                        self._on_change(cluster)
            except WatchExpired:
                # events may have been missed: start afresh, and let a pass look
                version = None
                self._statuses.pop(cluster, None)
                self._on_change(cluster)
            except OrchestratorError as error:
                self._statuses.pop(cluster, None)
                failures += 1
                delay = backoff(failures, limits=self._limits, jitter=self._jitter())
                log.info(
                    "watch interrupted; the periodic pass goes on",
                    extra={"cluster": cluster, "error": str(error), "retry_in": round(delay, 1)},
                )
                await asyncio.sleep(delay)
                # as the watch tries again, so does a pass (listing): what failed while
                # the cluster was away goes on as soon as it is back, not at the next
                # periodic pass
                self._on_change(cluster)
            else:
                self._statuses.pop(cluster, None)  # closed: known again once it speaks
                if not events:
                    # closed at once without a word: do not hammer the server
                    await asyncio.sleep(self._limits.backoff_base_seconds)
