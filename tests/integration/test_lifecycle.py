"""Regression tests of the day-2 lifecycle, against the fake Argo Servers.

Each test pins down one behaviour of the reworked lifecycle by what ran on the
clusters (``World.steps_run``, the workflows' parameters) and what the record says:
edits of a Ready onboarding are updates that never roll back, fields naming
external resources are refused while anything exists, back-off, vanished
workflows, suspension, removal while a cluster is down, and pruning.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
import yaml

from orchestrator.configs import Onboarding
from orchestrator.errors import Conflict, PermanentError
from orchestrator.planning import Situation, Wait, decide
from orchestrator.records import State
from tests.integration.conftest import World, onboarding_yaml

pytestmark = pytest.mark.integration

FORWARD = ["create-subaccount", "register-platform", "install-proxy"]
COMPENSATIONS = ["uninstall-proxy", "unregister-platform", "delete-subaccount"]
CREATE = "WorkflowService_CreateWorkflow"
LIST = "WorkflowService_ListWorkflows"
#: our step deadline: step_timeout_seconds (600) plus the 60 s grace
DEADLINE = 600 + 60


def document_yaml(
    name: str,
    cluster: str,
    *,
    namespace: str | None = None,
    subdomain: str | None = None,
    region: str | None = None,
    **kwargs: Any,
) -> str:
    """``onboarding_yaml`` with other names for the external resources."""
    text = onboarding_yaml(name, cluster, **kwargs)
    if namespace is not None:
        text = text.replace(f"namespace: {name}\n", f"namespace: {namespace}\n")
    if subdomain is not None:
        text = text.replace(f"subdomain: {name},", f"subdomain: {subdomain},")
    if region is not None:
        text = text.replace("region: eu10,", f"region: {region},")
    return text


def document(name: str, cluster: str, **kwargs: Any) -> Onboarding:
    return Onboarding.model_validate(yaml.safe_load(document_yaml(name, cluster, **kwargs)))


def workflows(world: World, cluster: str, onboarding: str) -> list[dict[str, Any]]:
    """The workflows submitted for ``onboarding`` on ``cluster``, in creation order."""
    return [
        w
        for w in world.fakes[cluster].workflows.values()
        if w["metadata"]["labels"].get("orchestrator.dev/onboarding") == onboarding
    ]


def parameters(workflow: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}


def creates(world: World, cluster: str) -> int:
    """Create requests that reached ``cluster`` (answered or not)."""
    return sum(1 for r in world.fakes[cluster].requests if r.operation == CREATE)


def triggers(world: World, name: str) -> list[str]:
    return [trigger for _, _, trigger in world.history(name)]


def without_argo_deadline(world: World, cluster: str, onboarding: str) -> dict[str, Any]:
    """The onboarding's running workflow, made deaf to Argo's own activeDeadlineSeconds,
    so that only the daemon's step deadline can end it (the fake enforces Argo's)."""
    running = [
        w
        for w in workflows(world, cluster, onboarding)
        if w["status"].get("phase") not in ("Succeeded", "Failed", "Error")
    ]
    assert len(running) == 1, running
    running[0]["spec"].pop("activeDeadlineSeconds", None)
    return running[0]


async def ready(world: World, name: str, cluster: str = "local-a", **kwargs: Any) -> None:
    world.declare(name, cluster, **kwargs)
    if world.daemon is None:
        await world.start()
    await world.until(world.is_(name, State.READY))


# --- 1. an edit never loses what exists -------------------------------------------


async def test_removal_during_an_update_compensates_every_step_ever_started(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    await ready(world, "team-a")
    fake.behave("create-subaccount", "hang", times=1)

    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATING))
    await world.step()
    assert world.steps_run("local-a", "team-a") == [*FORWARD, "create-subaccount"]
    assert world.record("team-a").inventory == FORWARD  # the edit cleared nothing

    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, "create-subaccount", *COMPENSATIONS]
    update = workflows(world, "local-a", "team-a")[3]
    assert update["spec"].get("shutdown") == "Stop"  # the running update step was stopped
    assert ("Updating", "Offboarding", "offboard") in world.history("team-a")
    assert world.record("team-a").inventory == []


async def test_an_edit_waiting_for_a_slot_then_removed_offboards_everything(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    await ready(world, "team-a")
    fake.behave("create-subaccount", "hang")
    for other in ("team-b", "team-c", "team-d"):  # they take the cluster's three slots
        world.declare(other, "local-a")
    await world.step()
    assert {world.state(n) for n in ("team-b", "team-c", "team-d")} == {
        State.CREATING_SUBACCOUNT
    }

    world.declare("team-a", "local-a", version="2.0.0")
    for _ in range(3):
        await world.step()
    assert world.state("team-a") == State.READY  # the update waits for a slot
    assert world.steps_run("local-a", "team-a") == FORWARD

    world.remove("team-a")
    await world.until(world.is_("team-a", State.DELETED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, *COMPENSATIONS]
    assert world.record("team-a").inventory == []


async def test_an_update_whose_first_step_fails_parks_without_compensating(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    await ready(world, "team-a")
    fake.behave("create-subaccount", "fail", message="subaccount quota exceeded")

    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))
    for _ in range(3):  # parked: nothing more happens by itself
        await world.step()

    assert world.state("team-a") == State.UPDATE_FAILED
    # two attempts of the update's first step (step_attempts=2), and nothing undone
    assert world.steps_run("local-a", "team-a") == [
        *FORWARD,
        "create-subaccount",
        "create-subaccount",
    ]
    record = world.record("team-a")
    assert record.inventory == FORWARD
    assert "subaccount quota exceeded" in (record.reason or "")
    assert "RollingBack" not in {to for _, to, _ in world.history("team-a")}


# --- 2. a failed update parks in UpdateFailed -----------------------------------------


async def test_a_failed_chart_bump_parks_then_a_fix_or_a_retry_updates_again(
    world: World,
) -> None:
    fake = world.fakes["local-a"]
    daemon = await world.start()
    await ready(world, "team-a")
    fake.behave("install-proxy", "fail", message="helm: chart proxy 2.0.0 not found")

    world.declare("team-a", "local-a", version="2.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))

    assert world.steps_run("local-a", "team-a") == [*FORWARD, *FORWARD, "install-proxy"]
    record = world.record("team-a")
    assert record.inventory == FORWARD
    assert "install-proxy" in (record.reason or "")
    assert "chart proxy 2.0.0 not found" in (record.reason or "")
    assert ("Updating", "UpdateFailed", "step_failed") in world.history("team-a")

    # the platform team fixes the version in the file: the update runs again
    fake.behave("install-proxy", "succeed")
    world.declare("team-a", "local-a", version="2.0.1")
    await world.until(world.is_("team-a", State.UPDATING))
    await world.until(world.is_("team-a", State.READY))
    assert parameters(workflows(world, "local-a", "team-a")[-1])["chart-version"] == "2.0.1"
    assert ("UpdateFailed", "Updating", "spec_changed") in world.history("team-a")

    # on-call path: fails again, the cause is fixed, on-call retries the update
    fake.behave("install-proxy", "fail", message="helm: timed out waiting for the condition")
    world.declare("team-a", "local-a", version="3.0.0")
    await world.until(world.is_("team-a", State.UPDATE_FAILED))
    fake.behave("install-proxy", "succeed")
    before = len(workflows(world, "local-a", "team-a"))
    await daemon.service.act("team-a", "retry")
    assert world.state("team-a") == State.UPDATING
    await world.until(world.is_("team-a", State.READY))

    ran = world.steps_run("local-a", "team-a")
    assert ran[before:] == FORWARD  # the whole update again, nothing undone
    assert not set(COMPENSATIONS) & set(ran)
    assert parameters(workflows(world, "local-a", "team-a")[-1])["chart-version"] == "3.0.0"
    assert ("UpdateFailed", "Updating", "retry") in world.history("team-a")
    assert world.record("team-a").inventory == FORWARD
