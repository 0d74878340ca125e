"""A custom pipeline for the tests: four steps, one of them with ``compensation: none``."""

from __future__ import annotations

import copy
from typing import Any

from orchestrator.config.pipelines import builtin_pipelines
from orchestrator.core.stepplans import SERVICE_BROKER_PROXY, PlannedStep, StepPlan

#: assign-entitlements has nothing to undo: it never enters the inventory
FOUR_STEPS = StepPlan(
    name="four-steps",
    steps=(
        PlannedStep("create-subaccount", compensation="delete-subaccount"),
        PlannedStep("register-platform", compensation="unregister-platform"),
        PlannedStep("assign-entitlements", compensation=None),
        PlannedStep("install-proxy", compensation="uninstall-proxy"),
    ),
)

PLANS = {plan.name: plan for plan in (SERVICE_BROKER_PROXY, FOUR_STEPS)}


def four_steps_document() -> dict[str, Any]:
    """FOUR_STEPS as a ``Pipeline`` document of the config directory: the built-in steps,
    with ``assign-entitlements`` (template ``orchestrator-assign-entitlements``, taking
    what install-proxy takes) before install-proxy."""
    builtin = builtin_pipelines()[SERVICE_BROKER_PROXY.name].document
    document = copy.deepcopy(builtin.model_dump(mode="json", by_alias=True, exclude_none=True))
    document["metadata"] = {"name": FOUR_STEPS.name}
    steps = document["spec"]["steps"]
    entitlements = {
        "name": "assign-entitlements",
        "template": "orchestrator-assign-entitlements",
        "compensation": "none",
        "parameters": dict(steps[-1]["parameters"]),
    }
    document["spec"]["steps"] = [*steps[:-1], entitlements, steps[-1]]
    return document
