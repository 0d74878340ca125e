"""A custom plan for the tests: four steps, one of them with ``compensation: none``."""

from __future__ import annotations

from orchestrator.stepplans import SERVICE_BROKER_PROXY, PlannedStep, StepPlan

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
