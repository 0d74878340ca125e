"""The step plans: what the machine and the planner ask of a pipeline."""

from __future__ import annotations

import pytest

from orchestrator.core.stepplans import SERVICE_BROKER_PROXY, PlannedStep, StepPlan
from orchestrator.core.steps import COMPENSATION_OF, FORWARD_STEPS
from tests.plans import FOUR_STEPS


def test_the_built_in_plan_keeps_todays_names() -> None:
    """Workflow names, labels and in-flight workflows of existing onboardings stay valid."""
    assert SERVICE_BROKER_PROXY.forward == tuple(s.value for s in FORWARD_STEPS)
    for step in FORWARD_STEPS:
        assert SERVICE_BROKER_PROXY.compensation_of(step.value) == COMPENSATION_OF[step].value


def test_steps_follow_one_another_and_the_last_has_none() -> None:
    plan = FOUR_STEPS

    assert plan.first == "create-subaccount"
    assert [plan.next_step(s) for s in plan.forward] == [*plan.forward[1:], None]


def test_compensations_are_of_the_inventory_latest_first_and_skip_nothing_to_undo() -> None:
    everything = ["install-proxy", "create-subaccount", "assign-entitlements", "register-platform"]

    assert FOUR_STEPS.compensations_for(everything) == [
        "uninstall-proxy",
        "unregister-platform",
        "delete-subaccount",
    ]
    assert FOUR_STEPS.compensations_for(["register-platform"]) == ["unregister-platform"]
    assert FOUR_STEPS.compensations_for([]) == []


def test_compensations_know_what_they_undo() -> None:
    assert FOUR_STEPS.compensation_of("assign-entitlements") is None
    assert FOUR_STEPS.is_compensation("uninstall-proxy")
    assert not FOUR_STEPS.is_compensation("install-proxy")
    assert FOUR_STEPS.forward_of("unregister-platform") == "register-platform"


def test_the_inventory_is_in_plan_order_each_once() -> None:
    steps = ["install-proxy", "create-subaccount", "install-proxy"]

    assert FOUR_STEPS.inventory_order(steps) == ["create-subaccount", "install-proxy"]


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param((), id="no-steps"),
        pytest.param((PlannedStep("a", "undo-a"), PlannedStep("a", None)), id="a-step-twice"),
        pytest.param((PlannedStep("a", "b"), PlannedStep("b", None)), id="undo-is-a-step"),
        pytest.param((PlannedStep("a", "x"), PlannedStep("b", "x")), id="one-undo-for-two"),
    ],
)
def test_a_plan_that_could_not_be_run_is_refused(steps: tuple[PlannedStep, ...]) -> None:
    with pytest.raises(ValueError, match="plan 'odd'"):
        StepPlan(name="odd", steps=steps)
