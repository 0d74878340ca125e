"""Work proportional to change: the reconciler's record cache and what it does not decide
again, against the fake Argo Servers.

The cache is checked against the stored versions on every pass, so a write by
anyone else (the API, another replica) is seen at the next pass; an onboarding
waiting for its running workflow is not decided again until something about it
changes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.core import reconciling
from orchestrator.core.planning import Command, Situation
from orchestrator.records import State
from orchestrator.store import open_store
from tests.integration.conftest import World

pytestmark = pytest.mark.integration


@pytest.fixture
def decided(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the reconciler decided for each onboarding."""
    counts: Counter[str] = Counter()
    decide = reconciling.decide

    def counting(situation: Situation) -> list[Command]:
        counts[situation.record.name] += 1
        return decide(situation)

    monkeypatch.setattr(reconciling, "decide", counting)
    return counts


async def running(world: World, name: str) -> None:
    world.declare(name)
    await world.start()
    await world.until(world.is_running(name, "create-subaccount"))
    assert world.record(name).workflow_submitted


async def test_an_onboarding_waiting_for_its_workflow_is_not_decided_again(
    world: World, decided: Counter[str]
) -> None:
    await running(world, "team-a")
    assert world.daemon is not None
    await world.daemon.tick()  # the first look at the running workflow
    decided.clear()

    for _ in range(3):
        world.clock.advance(5)
        await world.daemon.tick()

    assert decided["team-a"] == 0
    assert world.is_running("team-a", "create-subaccount")()


async def test_its_workflow_finishing_is_decided_at_once(
    world: World, decided: Counter[str]
) -> None:
    await running(world, "team-a")
    assert world.daemon is not None
    await world.daemon.tick()

    await world.until(world.is_running("team-a", "register-platform"))

    assert decided["team-a"] > 0


async def test_its_deadline_coming_due_is_decided(world: World, decided: Counter[str]) -> None:
    await running(world, "team-a")
    assert world.daemon is not None
    await world.daemon.tick()
    decided.clear()
    deadline = world.record("team-a").step_deadline
    assert deadline is not None

    world.clock.advance((deadline - world.clock.now()).total_seconds() + 1)
    await world.daemon.tick()

    assert decided["team-a"] > 0
    assert world.history("team-a")[-1][2] == "step_retried"  # stopped, to be retried


async def test_a_write_by_another_replica_is_seen_at_the_next_pass(world: World) -> None:
    await running(world, "team-a")
    assert world.daemon is not None
    await world.daemon.tick()
    # another writer (the API, another replica) backs the onboarding off for an hour
    other = open_store(world.settings.db_url)
    try:
        record = world.record("team-a")
        later = world.clock.now() + timedelta(hours=1)
        other.save(replace(record, next_attempt_at=later, reason="edited elsewhere"))
    finally:
        other.close()

    # its workflow finishes: the pass decides from the stored record, not a stale copy
    for fake in world.fakes.values():
        fake.advance()
        fake.advance()
    await world.daemon.tick()

    assert world.is_running("team-a", "create-subaccount")()
    assert world.record("team-a").reason == "edited elsewhere"


async def test_many_newly_declared_onboardings_are_stored_together(world: World) -> None:
    for number in range(12):
        world.declare(f"team-{number:02}", cluster=("local-a", "local-b")[number % 2])
    daemon = await world.start()

    await daemon.tick()

    assert len(world.states()) == 12
    assert {t for n in world.states() for (_, _, t) in world.history(n)[:1]} == {"declared"}


async def test_a_wake_starts_a_pass_itself_or_asks_the_one_under_way_for_another(
    world: World,
) -> None:
    daemon = await world.start()
    calls: list[str] = []

    class Scheduler:
        def get_job(self, job: str) -> object:
            return object()

        def modify_job(self, job: str, **changes: object) -> None:
            calls.append(job)

    daemon.scheduler = Scheduler()  # type: ignore[assignment]
    daemon.acting = True
    running = asyncio.get_running_loop().create_future()
    daemon._passes["local-a"] = running  # type: ignore[assignment]  # a pass under way
    try:
        daemon.wake("local-a")
        daemon.wake("local-b")
        daemon.wake("local-b")  # its pass has not begun yet: still one
        started = daemon._passes["local-b"]
        await started
    finally:
        del daemon._passes["local-a"]
        daemon.scheduler = None
        running.cancel()

    # the pass under way runs again when it ends; the idle cluster's ran at once, once,
    # and without the scheduler
    assert "local-a" in daemon._dirty
    assert started.get_name() == "pass:local-b"
    assert "local-b" not in daemon._passes
    assert "local-b" not in daemon._dirty
    assert calls == []


async def test_the_periodic_pass_is_skipped_while_woken_passes_run(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = await world.start()
    await daemon.tick()
    assert set(daemon._pass_started) == {"local-a", "local-b"}
    ran: list[str] = []

    async def reconcile(cluster: str) -> None:
        ran.append(cluster)

    monkeypatch.setattr(daemon, "reconcile", reconcile)
    interval = daemon.settings.interval_seconds
    daemon._pass_started["local-b"] -= interval / 2  # none began for half the interval

    await daemon.periodic("local-a")  # its pass began just now
    await daemon.periodic("local-b")

    assert ran == ["local-b"]


async def test_a_pass_that_fails_unexpectedly_is_logged_and_the_next_one_runs(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    world.declare("team-a", "local-a")
    daemon = await world.start()
    reconcile_cluster = daemon.reconciler.reconcile_cluster
    calls = 0

    async def once_broken(cluster: str, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await reconcile_cluster(cluster, **kwargs)

    monkeypatch.setattr(daemon.reconciler, "reconcile_cluster", once_broken)

    await daemon.reconcile("local-a")  # raises nothing
    [failed] = [r for r in caplog.records if r.getMessage() == "reconcile pass failed"]
    assert failed.exc_info is not None
    assert "local-a" not in daemon._passes

    await daemon.reconcile("local-a")
    assert world.state("team-a") == State.RUNNING
