"""The clusters' workflow watches: a finished step wakes its cluster at once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import pytest

from orchestrator.core.planning import Limits
from orchestrator.core.watching import Watcher
from orchestrator.daemon import Daemon
from orchestrator.errors import WatchExpired
from orchestrator.records import State, WorkflowEvent
from tests.integration.conftest import World

pytestmark = pytest.mark.integration


async def events_of(
    world: World, *, resource_version: str | None, count: int
) -> list[WorkflowEvent]:
    assert world.daemon is not None
    engine = world.daemon.clusters.engine("local-a")
    assert engine is not None
    seen: list[WorkflowEvent] = []

    async def read() -> None:
        async for event in engine.watch(
            "orchestrator.dev/managed-by=orchestrator", resource_version=resource_version
        ):
            seen.append(event)
            if len(seen) == count:
                return

    await asyncio.wait_for(read(), timeout=5)
    return seen


async def test_the_argo_watch_lists_what_exists_then_streams_changes(world: World) -> None:
    world.declare("team-a", "local-a")
    await world.start()
    await world.step()  # create-subaccount submitted, then one stage on
    [first] = await events_of(world, resource_version=None, count=1)
    assert first.type == "ADDED"
    assert first.status is not None
    assert first.status.labels["orchestrator.dev/onboarding"] == "team-a"

    world.fakes["local-a"].settle()  # it runs, then finishes
    later = await events_of(world, resource_version=first.resource_version, count=2)

    assert [e.type for e in later] == ["MODIFIED", "MODIFIED"]
    assert [e.status.phase.value for e in later if e.status] == ["Running", "Succeeded"]
    assert int(later[1].resource_version) > int(later[0].resource_version)


async def test_a_version_too_old_is_expired(world: World) -> None:
    world.declare("team-a", "local-a")
    await world.start()
    await world.until(world.is_("team-a", State.READY))

    with pytest.raises(WatchExpired):
        await events_of(world, resource_version="1", count=1)


async def test_a_finished_workflow_wakes_its_cluster_within_moments(world: World) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()
    woken: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    watcher = Watcher(
        daemon_id="orchestrator",
        engine_of=daemon.clusters.engine,
        on_change=lambda cluster: woken.append((cluster, loop.time())),
        limits=Limits(),
        jitter=lambda: 0.5,
    )
    watcher.retain(["local-a", "local-b"])
    try:
        await asyncio.sleep(0.3)  # the watches are open
        assert woken == []  # nothing finished yet: nothing to do
        finished_at = loop.time()
        world.fakes["local-a"].settle()
        for _ in range(100):
            if woken:
                break
            await asyncio.sleep(0.01)
    finally:
        await watcher.aclose()

    assert woken, "no wake"
    cluster, at = woken[0]
    assert cluster == "local-a"
    assert at - finished_at < 0.5
    assert watcher.seen["local-a"] >= 2


async def test_a_watch_that_fails_is_opened_again(world: World) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()
    fake = world.fakes["local-a"]
    fake.fail_next(2, status=503, operation="WorkflowService_WatchWorkflows")
    woken: list[str] = []
    watcher = Watcher(
        daemon_id="orchestrator",
        engine_of=daemon.clusters.engine,
        on_change=woken.append,
        limits=Limits(backoff_base_seconds=0.05, backoff_max_seconds=0.1),
        jitter=lambda: 0.5,
    )
    watcher.retain(["local-a"])
    try:
        for _ in range(200):
            if watcher.seen.get("local-a"):
                break
            await asyncio.sleep(0.01)
        fake.settle()
        for _ in range(100):
            if len(woken) >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        await watcher.aclose()

    watches = [r for r in fake.requests if r.operation == "WorkflowService_WatchWorkflows"]
    assert [r.status for r in watches][:3] == [503, 503, 200]
    # each retry after a failure wakes a pass (what failed meanwhile goes on once the
    # cluster is back), then the workflow's event does
    assert woken == ["local-a"] * 3


@contextlib.asynccontextmanager
async def watched(daemon: Daemon, cluster: str) -> AsyncIterator[Watcher]:
    """The daemon's watch of ``cluster``, open and heard from (it waits for that)."""
    watcher = daemon.watcher = Watcher(
        daemon_id="orchestrator",
        engine_of=daemon.clusters.engine,
        on_change=functools.partial(daemon.wake, by_watch=True),
        limits=Limits(),
        jitter=lambda: 0.5,
    )
    watcher.retain([cluster])
    try:
        for _ in range(100):  # the watch has spoken (the workflows that exist)
            if watcher.known(cluster):
                break
            await asyncio.sleep(0.01)
        yield watcher
    finally:
        await watcher.aclose()
        daemon.watcher = None


async def woken_by_watch(daemon: Daemon, cluster: str) -> None:
    for _ in range(100):
        if cluster in daemon._dirty:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the watch did not wake {cluster}")


async def said_finished(watcher: Watcher, cluster: str, workflow: str | None) -> None:
    for _ in range(100):
        status = (watcher.known(cluster) or {}).get(workflow or "")
        if status is not None and status.phase.finished:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the watch did not say {workflow} finished")


async def test_a_pass_the_watch_woke_lists_nothing_the_watch_already_said(world: World) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()  # create-subaccount submitted
    fake = world.fakes["local-a"]
    async with watched(daemon, "local-a"):
        fake.settle()
        await woken_by_watch(daemon, "local-a")
        lists = fake.operations().count("WorkflowService_ListWorkflows")

        await daemon.reconcile("local-a")  # the pass the watch asked for

        assert world.at("team-a") == "Running:register-platform"
        assert fake.operations().count("WorkflowService_ListWorkflows") == lists
        # any other wake (an API call, a reload) lists again
        daemon.wake("local-a")
        await daemon.reconcile("local-a")
        assert fake.operations().count("WorkflowService_ListWorkflows") == lists + 1


async def test_a_pass_the_watch_woke_reads_the_store_again_only_after_another_wrote(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.declare("team-a", "local-a")
    world.declare("team-b", "local-a")
    daemon = await world.start()
    await world.step()  # both submitted their first step
    fake = world.fakes["local-a"]
    reads: list[str] = []
    versions = daemon.store.versions

    def counted(*, cluster: str) -> dict[str, int]:
        reads.append(cluster)
        return versions(cluster=cluster)

    monkeypatch.setattr(daemon.store, "versions", counted)
    async with watched(daemon, "local-a") as watcher:
        fake.settle()
        await woken_by_watch(daemon, "local-a")
        await daemon.reconcile("local-a")
        # only this reconciler wrote since the last read: its cache is what is stored
        assert reads == []
        assert world.at("team-a") == world.at("team-b") == "Running:register-platform"

        # the API writes; a pass the watch alone wakes then (as if the API's own wake
        # had gone to a pass already under way) reads the versions again, and acts on
        # what the API wrote
        await daemon.service.act("team-b", "suspend")
        daemon._watch_only.add("local-a")
        fake.settle()
        await said_finished(watcher, "local-a", world.record("team-a").workflow)
        await daemon.reconcile("local-a")

        assert reads == ["local-a"]
        assert world.at("team-a") == "Running:install-proxy"
        assert world.record("team-b").state == State.SUSPENDED
        assert world.steps_run("local-a", "team-b") == ["create-subaccount", "register-platform"]


async def test_the_state_gauges_follow_passes_the_watch_alone_woke(world: World) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    await world.step()  # create-subaccount submitted
    fake = world.fakes["local-a"]

    def gauge(state: State) -> float | None:
        labels = {"cluster": "local-a", "state": state.value}
        return daemon.metrics.registry.get_sample_value("orchestrator_onboardings", labels)

    async with watched(daemon, "local-a") as watcher:
        for step in ("create-subaccount", "register-platform", "install-proxy"):
            assert (gauge(State.RUNNING), gauge(State.READY)) == (1, 0), step
            fake.settle()
            await said_finished(watcher, "local-a", world.record("team-a").workflow)
            await woken_by_watch(daemon, "local-a")
            await daemon.reconcile("local-a")  # trusts its cache: the store is not read

    # the last pass saved Ready itself; no other read of the store recounted it
    assert world.record("team-a").state == State.READY
    assert (gauge(State.RUNNING), gauge(State.READY)) == (0, 1)
