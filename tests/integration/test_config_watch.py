"""The config directory is watched: a change is picked up at once, not at the next
periodic check (which a daemon here would run only every minute)."""

from __future__ import annotations

import asyncio

import yaml

from orchestrator.config.configs import Onboarding
from orchestrator.daemon import build
from tests.integration.conftest import World, onboarding_yaml


async def _until(check: object, *, seconds: float = 10.0) -> bool:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return bool(check())


async def test_a_changed_file_is_reloaded_without_waiting_for_the_periodic_check(
    world: World,
) -> None:
    world.declare("team-a")
    daemon = await world.start()
    stop = asyncio.Event()
    watching = asyncio.create_task(daemon.watch_config(stop))
    try:
        await asyncio.sleep(0.5)  # the watch is set up
        assert set(daemon.desired.state.onboardings) == {"team-a"}

        world.write("team-b", onboarding_yaml("team-b", "local-b"))
        assert await _until(lambda: "team-b" in daemon.desired.state.onboardings)

        # an in-place edit of an existing file counts too
        world.write("team-a", onboarding_yaml("team-a", "local-a", version="2.0.0"))
        assert await _until(
            lambda: daemon.desired.state.onboardings["team-a"].spec.proxy_chart.version == "2.0.0"
        )

        # and a burst of changes is one reload once it settles
        generation = daemon.desired.generation
        for index in range(5):
            world.write(f"burst-{index}", onboarding_yaml(f"burst-{index}", "local-a"))
        assert await _until(lambda: "burst-4" in daemon.desired.state.onboardings)
        await asyncio.sleep(1.0)
        assert daemon.desired.generation - generation <= 2
    finally:
        stop.set()
        await asyncio.wait_for(watching, timeout=10)
    assert watching.exception() is None


async def test_the_api_answers_while_the_files_load_and_changes_wait_for_them(
    world: World,
) -> None:
    world.declare("team-a")
    daemon = await build(world.settings, clock=world.clock.now, load_config=False)
    world.closed.append(daemon)
    daemon.service.started = True

    ready, reason = daemon.service.readiness()
    assert ready
    assert "loading the config" in reason
    assert daemon.desired.state.onboardings == {}
    document = Onboarding.model_validate(yaml.safe_load(onboarding_yaml("team-b", "local-b")))
    change = asyncio.create_task(daemon.service.upsert(document))
    await asyncio.sleep(0.2)
    assert not change.done(), "a change waits: local-b is not known before the files are"

    await daemon.desired.load()

    view, created, _ = await asyncio.wait_for(change, timeout=5)
    assert created
    assert view.cluster == "local-b"
    assert set(daemon.desired.state.onboardings) == {"team-a"}
    assert daemon.service.readiness() == (True, "ok")
