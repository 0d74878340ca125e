"""Config accidents never offboard: an emptied file, a mass removal held until confirmed."""

from __future__ import annotations

import pytest

from orchestrator.records import State
from tests.integration.conftest import World

pytestmark = pytest.mark.integration

TEAMS = ("team-a", "team-b", "team-c", "team-d")
COMPENSATIONS = {"uninstall-proxy", "unregister-platform", "delete-subaccount"}


def all_in(world: World, state: State, names: tuple[str, ...] = TEAMS) -> bool:
    return all(world.is_(name, state)() for name in names)


async def test_an_emptied_file_and_a_mass_removal_offboard_nothing_until_confirmed(
    world: World,
) -> None:
    for name in TEAMS:
        world.declare(name, "local-a")
    daemon = await world.start()
    daemon.service.started = True
    metric = daemon.metrics.registry.get_sample_value
    await world.until(lambda: all_in(world, State.READY))

    def undone() -> list[str]:
        return [s for n in TEAMS for s in world.steps_run("local-a", n) if s in COMPENSATIONS]

    # a file truncated to nothing is an invalid change, not the removal of team-a
    (world.config / "team-a.yaml").write_text("")
    for _ in range(5):
        await world.step()
    assert all_in(world, State.READY), world.states()
    assert undone() == []
    assert metric("orchestrator_config_valid") == 0
    assert metric("orchestrator_config_reload_errors_total") == 1
    assert daemon.desired.last_error is not None
    assert "holds no document" in str(daemon.desired.last_error)
    world.declare("team-a", "local-a")
    await world.step()
    assert metric("orchestrator_config_valid") == 1

    # three of four removed at once: held, everything keeps running
    for name in ("team-b", "team-c", "team-d"):
        world.remove(name)
    for _ in range(10):
        await world.step()
        assert all_in(world, State.READY), world.states()
    assert undone() == []
    assert metric("orchestrator_config_offboard_held") == 3
    held = daemon.service.held_offboarding()
    assert (held.held, held.onboardings, held.declared) == (True, ["team-b", "team-c", "team-d"], 4)
    ready, reason = daemon.service.readiness()
    assert ready
    assert "held" in reason

    # on-call confirms: exactly those three offboard, the clusters are woken at once
    confirmed = await daemon.service.confirm_offboarding()
    assert confirmed.onboardings == ["team-b", "team-c", "team-d"]
    assert set(daemon.clusters.names()) <= daemon._dirty  # woken, not left to the interval
    assert metric("orchestrator_config_offboard_held") == 0
    assert daemon.service.readiness() == (True, "ok")
    await world.until(lambda: all_in(world, State.DELETED, ("team-b", "team-c", "team-d")))
    assert world.state("team-a") == State.READY
    assert world.steps_run("local-a", "team-b")[-3:] == [
        "uninstall-proxy", "unregister-platform", "delete-subaccount"
    ]  # fmt: skip


async def test_a_mass_removal_while_the_daemon_was_down_is_held_at_start(world: World) -> None:
    for name in TEAMS:
        world.declare(name, "local-a")
    await world.start()
    await world.until(lambda: all_in(world, State.READY))

    # the files lose three onboardings while no daemon runs; a new one starts
    for name in ("team-b", "team-c", "team-d"):
        world.remove(name)
    daemon = await world.restart(graceful=True)
    for _ in range(8):
        await world.step()
        assert all_in(world, State.READY), world.states()
    compensations = [s for n in TEAMS for s in world.steps_run("local-a", n) if s in COMPENSATIONS]
    assert compensations == []
    held = daemon.service.held_offboarding()
    assert (held.held, held.onboardings) == (True, ["team-b", "team-c", "team-d"])
    assert daemon.metrics.registry.get_sample_value("orchestrator_config_offboard_held") == 3

    await daemon.service.confirm_offboarding()
    await world.until(lambda: all_in(world, State.DELETED, ("team-b", "team-c", "team-d")))
    assert world.state("team-a") == State.READY
