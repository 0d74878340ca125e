"""Every row of the transition table, fired from every source state it lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.errors import Conflict
from orchestrator.machine import TRANSITIONS, OnboardingMachine
from orchestrator.records import OnboardingRecord, Source, State

NOW = datetime(2026, 1, 1, tzinfo=UTC)


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
    machine = OnboardingMachine(record(source, **fields), now=NOW)

    state = machine.fire(trigger, "because", workflow="wf-1")

    assert state == dest
    assert machine.record.state == dest
    if trigger not in ("compensated", "compensation_retried"):
        assert machine.record.reason == "because"
    [entry] = machine.log
    assert (entry.from_state, entry.to_state, entry.trigger) == (source, dest, trigger)
    assert (entry.reason, entry.at, entry.workflow) == ("because", NOW, "wf-1")


def test_a_trigger_not_allowed_in_a_state_is_a_conflict_and_changes_nothing() -> None:
    machine = OnboardingMachine(record(State.READY), now=NOW)

    with pytest.raises(Conflict, match="cannot start while Ready"):
        machine.fire("start", "why not")

    assert machine.record.state == State.READY
    assert machine.log == []


def test_a_failure_keeps_the_inventory_that_the_compensations_undo() -> None:
    started = ["create-subaccount", "register-platform", "install-proxy"]
    machine = OnboardingMachine(
        record(State.INSTALLING_PROXY, inventory=started, step="install-proxy"), now=NOW
    )

    machine.fire("step_failed", "install-proxy failed")

    assert machine.record.state == State.ROLLING_BACK
    assert machine.record.inventory == started
    assert machine.record.step is None


def test_compensations_run_down_to_failed_and_forget_what_they_undid() -> None:
    machine = OnboardingMachine(
        record(State.INSTALLING_PROXY, inventory=["create-subaccount", "register-platform"]),
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
    machine = OnboardingMachine(record(State.READY, inventory=everything), now=NOW)

    machine.fire("spec_changed", "new chart")
    assert (machine.record.state, machine.record.step) == (State.UPDATING, None)
    machine.record.step = "create-subaccount"
    machine.fire("step_succeeded", "ok")
    assert (machine.record.state, machine.record.step) == (State.UPDATING, "register-platform")
    machine.fire("step_succeeded", "ok")
    assert machine.record.step == "install-proxy"
    machine.fire("step_failed", "the chart does not install")

    assert machine.record.state == State.UPDATE_FAILED
    assert machine.record.inventory == everything  # the tenant still exists
    machine.fire("retry", "on-call")
    assert (machine.record.state, machine.record.step) == (State.UPDATING, None)


def test_the_last_step_of_an_update_makes_it_ready() -> None:
    machine = OnboardingMachine(record(State.UPDATING, step="install-proxy"), now=NOW)

    assert machine.fire("step_succeeded", "ok") == State.READY
    assert machine.record.step is None


def test_offboarding_an_updated_onboarding_undoes_its_whole_inventory() -> None:
    everything = ["create-subaccount", "register-platform", "install-proxy"]
    machine = OnboardingMachine(record(State.UPDATE_FAILED, inventory=everything), now=NOW)

    assert machine.fire("offboard", "removed") == State.OFFBOARDING
    assert machine.record.inventory == everything


def test_a_vanished_workflow_runs_again_without_counting_an_attempt() -> None:
    machine = OnboardingMachine(
        record(
            State.REGISTERING_PLATFORM,
            step="register-platform",
            workflow="wf-1",
            workflow_submitted=True,
            attempt=2,
            step_deadline=NOW,
        ),
        now=NOW,
    )

    machine.fire("workflow_vanished", "gone")

    assert machine.record.state == State.REGISTERING_PLATFORM
    assert (machine.record.workflow, machine.record.workflow_submitted) == (None, False)
    assert (machine.record.attempt, machine.record.vanished) == (1, 1)
    assert machine.record.step_deadline is None


def test_the_step_deadline_pauses_while_suspended() -> None:
    deadline = NOW + timedelta(minutes=5)
    machine = OnboardingMachine(
        record(State.INSTALLING_PROXY, step="install-proxy", step_deadline=deadline), now=NOW
    )
    machine.fire("suspend", "on-call")
    later = OnboardingMachine(machine.record, now=NOW + timedelta(hours=3))

    later.fire("resume", "on-call")

    assert later.record.step_deadline == deadline + timedelta(hours=3)
    assert later.record.suspended_at is None


def test_suspend_remembers_the_state_and_resume_returns_to_it_with_the_step_intact() -> None:
    machine = OnboardingMachine(
        record(State.REGISTERING_PLATFORM, step="register-platform", workflow="wf-7", attempt=2),
        now=NOW,
    )

    machine.fire("suspend", "on-call")
    assert machine.record.suspended_from == State.REGISTERING_PLATFORM
    machine.fire("resume", "on-call")

    assert machine.record.state == State.REGISTERING_PLATFORM
    assert (machine.record.workflow, machine.record.attempt) == ("wf-7", 2)
    assert machine.record.suspended_from is None


def test_offboarding_a_rollback_keeps_the_running_compensation() -> None:
    machine = OnboardingMachine(
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
    machine = OnboardingMachine(
        record(State.FAILED, last_error="x", attempt_counters={"create-subaccount": 3}), now=NOW
    )

    machine.fire("retry", "on-call")

    assert machine.record.state == State.PENDING
    assert machine.record.last_error is None
    # names of earlier attempts are never reused
    assert machine.record.attempt_counters == {"create-subaccount": 3}
