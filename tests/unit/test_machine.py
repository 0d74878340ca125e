"""Every row of the transition table, fired from every source state it lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    ("compensated", State.FAILED): {"compensations": ["delete-subaccount"]},
    ("compensated", State.ROLLING_BACK): {
        "compensations": ["unregister-platform", "delete-subaccount"],
        "started_steps": ["create-subaccount", "register-platform"],
    },
    ("compensated", State.DELETED): {"compensations": ["delete-subaccount"], "offboarding": True},
    ("compensated", State.OFFBOARDING): {
        "compensations": ["unregister-platform", "delete-subaccount"],
        "started_steps": ["create-subaccount", "register-platform"],
        "offboarding": True,
    },
    ("offboard", State.DELETED): {},
    ("offboard", State.OFFBOARDING): {"started_steps": ["create-subaccount"]},
    ("retry", State.OFFBOARDING): {"offboarding": True, "compensations": ["delete-subaccount"]},
    ("retry", State.ROLLING_BACK): {"compensations": ["delete-subaccount"]},
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


def test_a_failure_compensates_every_started_step_in_reverse() -> None:
    started = ["create-subaccount", "register-platform", "install-proxy"]
    machine = OnboardingMachine(
        record(State.INSTALLING_PROXY, started_steps=started, step="install-proxy"), now=NOW
    )

    machine.fire("step_failed", "install-proxy failed")

    assert machine.record.compensations == [
        "uninstall-proxy",
        "unregister-platform",
        "delete-subaccount",
    ]
    assert machine.record.step is None


def test_compensations_run_down_to_failed_and_forget_what_they_undid() -> None:
    machine = OnboardingMachine(
        record(State.INSTALLING_PROXY, started_steps=["create-subaccount", "register-platform"]),
        now=NOW,
    )
    machine.fire("step_failed", "boom")

    states = [machine.fire("compensated", "ok") for _ in range(2)]

    assert states == [State.ROLLING_BACK, State.FAILED]
    assert machine.record.reason == "boom"  # Failed says why, not which undo ran last
    assert machine.record.started_steps == []
    assert machine.record.compensations == []


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
            compensations=["delete-subaccount"],
            started_steps=["create-subaccount"],
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
