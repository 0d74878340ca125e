"""Every row of the transition table, fired from every source state it lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.core.machine import TRANSITIONS, OnboardingMachine
from orchestrator.core.stepplans import SERVICE_BROKER_PROXY, StepPlan
from orchestrator.errors import Conflict
from orchestrator.records import OnboardingRecord, Source, State
from tests.plans import FOUR_STEPS

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PLAN = SERVICE_BROKER_PROXY


def machine_of(record: OnboardingRecord, *, now: datetime = NOW) -> OnboardingMachine:
    return OnboardingMachine(record, now=now, plan=PLAN)


def record(state: State, **fields: Any) -> OnboardingRecord:
    return OnboardingRecord(
        name="team-a",
        cluster="local-a",
        namespace="team-a",
        source=Source.FILE,
        spec={},
        spec_fingerprint="f",
        incarnation="abcde",
        created_at=NOW,
        updated_at=NOW,
        state=state,
        **fields,
    )


@dataclass(frozen=True)
class Setup:
    """Record fields that make a row's conditions hold (and not an earlier row's)."""

    fields: dict[str, Any] = field(default_factory=dict)


# Fields per (trigger, dest) for rows with conditions; unconditional rows that come
# after a conditional one need fields that make the earlier condition fail.
SETUPS: dict[tuple[str, State], dict[str, Any]] = {
    ("compensated", State.FAILED): {
        "inventory": ["create-subaccount"],
        "step": "delete-subaccount",
    },
    ("compensated", State.ROLLING_BACK): {
        "inventory": ["create-subaccount", "register-platform"],
        "step": "unregister-platform",
    },
    ("compensated", State.DELETED): {
        "inventory": ["create-subaccount"],
        "step": "delete-subaccount",
        "offboarding": True,
    },
    ("compensated", State.OFFBOARDING): {
        "inventory": ["create-subaccount", "register-platform"],
        "step": "unregister-platform",
        "offboarding": True,
    },
    ("step_succeeded", State.READY): {"step": "install-proxy"},
    ("step_succeeded", State.RUNNING): {"step": "create-subaccount"},
    ("step_succeeded", State.UPDATING): {"step": "create-subaccount"},
    ("offboard", State.DELETED): {},
    ("offboard", State.OFFBOARDING): {"inventory": ["create-subaccount"]},
    ("retry", State.OFFBOARDING): {"offboarding": True, "inventory": ["create-subaccount"]},
    ("retry", State.ROLLING_BACK): {"inventory": ["create-subaccount"]},
}


def rows() -> list[Any]:
    cases = []
    for index, row in enumerate(TRANSITIONS):
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        for source in sources:
            dest = source if row["dest"] == "=" else row["dest"]
            fields = dict(SETUPS.get((row["trigger"], dest), {}))
            if row["trigger"] == "resume":
                fields["suspended_from"] = dest
            if State.RUNNING in (source, dest):
                # Running always runs a step of the plan
                fields.setdefault("step", "register-platform")
            cases.append(
                pytest.param(
                    row["trigger"],
                    State(source),
                    State(dest),
                    fields,
                    id=f"{index:02d}-{row['trigger']}-{State(source).value}-{State(dest).value}",
                )
            )
    return cases


@pytest.mark.parametrize(("trigger", "source", "dest", "fields"), rows())
def test_every_row_fires_and_is_recorded(
    trigger: str, source: State, dest: State, fields: dict[str, Any]
) -> None:
    machine = machine_of(record(source, **fields))
    step = machine.record.step

    state = machine.fire(trigger, "because", workflow="wf-1")

    assert state == dest
    assert machine.record.state == dest
    if trigger not in ("compensated", "compensation_retried"):
        assert machine.record.reason == "because"
    [entry] = machine.log
    assert (entry.from_state, entry.to_state, entry.trigger) == (source, dest, trigger)
    assert (entry.reason, entry.at, entry.workflow) == ("because", NOW, "wf-1")
    assert (entry.from_step, entry.to_step) == (step, machine.record.step)
    if dest == State.RUNNING:
        # the first run always knows its step: what the state's name said before
        assert machine.record.step in PLAN.forward


def test_a_trigger_not_allowed_in_a_state_is_a_conflict_and_changes_nothing() -> None:
    machine = machine_of(record(State.READY))

    with pytest.raises(Conflict, match="cannot start while Ready"):
        machine.fire("start", "why not")

    assert machine.record.state == State.READY
    assert machine.log == []


def test_a_failure_keeps_the_inventory_that_the_compensations_undo() -> None:
    started = ["create-subaccount", "register-platform", "install-proxy"]
    machine = machine_of(record(State.RUNNING, inventory=started, step="install-proxy"), now=NOW)

    machine.fire("step_failed", "install-proxy failed")

    assert machine.record.state == State.ROLLING_BACK
    assert machine.record.inventory == started
    assert machine.record.step is None


def test_compensations_run_down_to_failed_and_forget_what_they_undid() -> None:
    machine = machine_of(
        record(State.RUNNING, inventory=["create-subaccount", "register-platform"]),
        now=NOW,
    )
    machine.fire("step_failed", "boom")
    machine.record.step = "unregister-platform"
    assert machine.fire("compensated", "ok") == State.ROLLING_BACK
    assert machine.record.inventory == ["create-subaccount"]
    machine.record.step = "delete-subaccount"

    assert machine.fire("compensated", "ok") == State.FAILED
    assert machine.record.reason == "boom"  # Failed says why, not which undo ran last
    assert machine.record.inventory == []


def test_an_edit_of_a_ready_onboarding_is_an_update_that_keeps_the_inventory() -> None:
    everything = ["create-subaccount", "register-platform", "install-proxy"]
    machine = machine_of(record(State.READY, inventory=everything))

    machine.fire("spec_changed", "new chart")
    assert (machine.record.state, machine.record.step) == (State.UPDATING, "create-subaccount")
    machine.fire("step_succeeded", "ok")
    assert (machine.record.state, machine.record.step) == (State.UPDATING, "register-platform")
    machine.fire("step_succeeded", "ok")
    assert machine.record.step == "install-proxy"
    machine.fire("step_failed", "the chart does not install")

    assert machine.record.state == State.UPDATE_FAILED
    assert machine.record.inventory == everything  # the tenant still exists
    machine.fire("retry", "on-call")
    assert (machine.record.state, machine.record.step) == (State.UPDATING, "create-subaccount")


def test_the_last_step_of_an_update_makes_it_ready() -> None:
    machine = machine_of(record(State.UPDATING, step="install-proxy"))

    assert machine.fire("step_succeeded", "ok") == State.READY
    assert machine.record.step is None


def test_offboarding_an_updated_onboarding_undoes_its_whole_inventory() -> None:
    everything = ["create-subaccount", "register-platform", "install-proxy"]
    machine = machine_of(record(State.UPDATE_FAILED, inventory=everything))

    assert machine.fire("offboard", "removed") == State.OFFBOARDING
    assert machine.record.inventory == everything


def test_a_vanished_workflow_runs_again_without_counting_an_attempt() -> None:
    machine = machine_of(
        record(
            State.RUNNING,
            step="register-platform",
            workflow="wf-1",
            workflow_submitted=True,
            attempt=2,
            step_deadline=NOW,
        ),
        now=NOW,
    )

    machine.fire("workflow_vanished", "gone")

    assert machine.record.state == State.RUNNING
    assert (machine.record.workflow, machine.record.workflow_submitted) == (None, False)
    assert (machine.record.attempt, machine.record.vanished) == (1, 1)
    assert machine.record.step_deadline is None


def test_the_step_deadline_pauses_while_suspended() -> None:
    deadline = NOW + timedelta(minutes=5)
    machine = machine_of(
        record(State.RUNNING, step="install-proxy", step_deadline=deadline), now=NOW
    )
    machine.fire("suspend", "on-call")
    later = machine_of(machine.record, now=NOW + timedelta(hours=3))

    later.fire("resume", "on-call")

    assert later.record.step_deadline == deadline + timedelta(hours=3)
    assert later.record.suspended_at is None


def test_suspend_remembers_the_state_and_resume_returns_to_it_with_the_step_intact() -> None:
    machine = machine_of(
        record(State.RUNNING, step="register-platform", workflow="wf-7", attempt=2),
        now=NOW,
    )

    machine.fire("suspend", "on-call")
    assert machine.record.suspended_from == State.RUNNING
    machine.fire("resume", "on-call")

    assert machine.record.state == State.RUNNING
    assert (machine.record.workflow, machine.record.attempt) == ("wf-7", 2)
    assert machine.record.suspended_from is None


def test_offboarding_a_rollback_keeps_the_running_compensation() -> None:
    machine = machine_of(
        record(
            State.ROLLING_BACK,
            inventory=["create-subaccount"],
            step="delete-subaccount",
            workflow="wf-9",
        ),
        now=NOW,
    )

    machine.fire("offboard", "removed")

    assert machine.record.state == State.OFFBOARDING
    assert machine.record.offboarding
    assert (machine.record.step, machine.record.workflow) == ("delete-subaccount", "wf-9")


def test_retry_of_a_failed_onboarding_starts_a_fresh_run() -> None:
    machine = machine_of(
        record(State.FAILED, last_error="x", attempt_counters={"create-subaccount": 3}), now=NOW
    )

    machine.fire("retry", "on-call")

    assert machine.record.state == State.PENDING
    assert machine.record.last_error is None
    # names of earlier attempts are never reused
    assert machine.record.attempt_counters == {"create-subaccount": 3}


@pytest.mark.parametrize("plan", [SERVICE_BROKER_PROXY, FOUR_STEPS], ids=lambda p: p.name)
def test_the_first_run_goes_through_the_plans_steps_in_order(plan: StepPlan) -> None:
    machine = OnboardingMachine(record(State.PENDING), now=NOW, plan=plan)

    machine.fire("start", "starting")
    seen = [(machine.record.state, machine.record.step)]
    while machine.record.state == State.RUNNING:
        machine.fire("step_succeeded", "ok")
        seen.append((machine.record.state, machine.record.step))

    assert seen == [*((State.RUNNING, step) for step in plan.forward), (State.READY, None)]
    history = [(t.from_state, t.from_step, t.to_state, t.to_step) for t in machine.log]
    steps = [None, *plan.forward, None]
    states = [State.PENDING, *(State.RUNNING for _ in plan.forward), State.READY]
    assert history == [
        (states[i], steps[i], states[i + 1], steps[i + 1]) for i in range(len(states) - 1)
    ]


def test_each_step_of_the_first_run_is_since_it_began() -> None:
    machine = machine_of(record(State.PENDING))
    machine.fire("start", "starting")
    later = machine_of(machine.record, now=NOW + timedelta(minutes=10))

    later.fire("step_retried", "again")
    assert later.record.state_since == NOW  # the same step, still since it began
    later.fire("step_succeeded", "ok")

    assert later.record.state_since == NOW + timedelta(minutes=10)


@pytest.mark.parametrize("plan", [SERVICE_BROKER_PROXY, FOUR_STEPS], ids=lambda p: p.name)
def test_the_last_step_is_the_plans(plan: StepPlan) -> None:
    for step in plan.forward:
        machine = OnboardingMachine(record(State.RUNNING, step=step), now=NOW, plan=plan)

        machine.fire("step_succeeded", "ok")

        following = plan.next_step(step)
        expected = (State.RUNNING, following) if following else (State.READY, None)
        assert (machine.record.state, machine.record.step) == expected


def test_a_failure_after_a_step_without_compensation_undoes_only_the_others() -> None:
    inventory = ["create-subaccount", "register-platform"]  # assign-entitlements: nothing
    machine = OnboardingMachine(
        record(State.RUNNING, step="install-proxy", inventory=[*inventory, "install-proxy"]),
        now=NOW,
        plan=FOUR_STEPS,
    )
    machine.fire("step_failed", "the chart does not install")
    undone = []
    for compensation in FOUR_STEPS.compensations_for(machine.record.inventory):
        machine.record.step = compensation
        machine.fire("compensated", "ok")
        undone.append(compensation)

    assert undone == ["uninstall-proxy", "unregister-platform", "delete-subaccount"]
    assert (machine.record.state, machine.record.inventory) == (State.FAILED, [])
