"""What the planner decides, table-driven: record + desired spec + observation → commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.config.configs import DeletionPolicy, OnboardingSpec
from orchestrator.core.planning import (
    MIXED_SPECS,
    SUSPENDED_BY_SPEC,
    UNKNOWN,
    Fire,
    Limits,
    Observation,
    Situation,
    Stop,
    Submit,
    Wait,
    backoff,
    decide,
    immutable_change,
    take_spec,
)
from orchestrator.core.stepplans import SERVICE_BROKER_PROXY, StepPlan
from orchestrator.records import OnboardingRecord, Source, State, WorkflowPhase, WorkflowStatus
from tests.plans import FOUR_STEPS

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
SPEC = OnboardingSpec.model_validate(
    {
        "cluster": "local-a",
        "namespace": "team-a",
        "subaccount": {"displayName": "A", "subdomain": "team-a", "region": "eu10"},
        "platform": {"name": "team-a"},
        "proxyChart": {"repo": "oci://r", "name": "proxy", "version": "1.0.0"},
    }
)
ORPHAN = SPEC.model_copy(update={"deletion_policy": DeletionPolicy.ORPHAN})
SUSPENDED = SPEC.model_copy(update={"suspend": True})
CHANGED = OnboardingSpec.model_validate(
    {**SPEC.model_dump(by_alias=True), "proxyChart": {"repo": "oci://r", "name": "proxy",
                                                      "version": "2.0.0"}}
)  # fmt: skip


def record(state: State, *, spec: OnboardingSpec = SPEC, **fields: Any) -> OnboardingRecord:
    return OnboardingRecord(
        name="team-a",
        cluster="local-a",
        namespace="team-a",
        source=Source.FILE,
        spec=spec.model_dump(mode="json", by_alias=True),
        spec_fingerprint=SPEC.fingerprint(),
        incarnation="abcde",
        created_at=NOW,
        updated_at=NOW,
        state=state,
        **fields,
    )


def wf(phase: WorkflowPhase, message: str | None = None) -> WorkflowStatus:
    return WorkflowStatus(name="wf", phase=phase, message=message)


RUNNING_CS = {"step": "create-subaccount", "workflow": "wf", "attempt": 1,
              "workflow_submitted": True, "step_deadline": NOW + timedelta(minutes=5)}  # fmt: skip
LAST_CS = {**RUNNING_CS, "attempt": 3}
COMPENSATING = {"inventory": ["create-subaccount", "register-platform"],
                "step": "unregister-platform", "workflow": "wf", "attempt": 1,
                "workflow_submitted": True}  # fmt: skip

CASES = [
    # (id, record, desired, observation, slot, expected)
    ("pending-starts", record(State.PENDING), SPEC, None, True, [Fire("start", "starting")]),
    ("pending-waits-for-a-slot", record(State.PENDING), SPEC, None, False,
     [Wait("the cluster is at its concurrency limit")]),
    ("new-step-is-submitted", record(State.RUNNING, step="create-subaccount"), SPEC, None, True,
     [Submit("create-subaccount")]),
    ("running-step-waits", record(State.RUNNING, **RUNNING_CS), SPEC,
     wf(WorkflowPhase.RUNNING), True, [Wait("create-subaccount is Running")]),
    ("succeeded-step-advances", record(State.RUNNING, **RUNNING_CS), SPEC,
     wf(WorkflowPhase.SUCCEEDED), True,
     [Fire("step_succeeded", "create-subaccount succeeded", "wf")]),
    ("failed-step-retries-with-backoff", record(State.RUNNING, **RUNNING_CS), SPEC,
     wf(WorkflowPhase.FAILED, "exit 1"), True,
     [Fire("step_retried", "create-subaccount failed: exit 1; attempt 1 of 3", "wf", 3.75)]),
    ("last-attempt-fails-the-step", record(State.RUNNING, **LAST_CS), SPEC,
     wf(WorkflowPhase.ERROR, "pod deleted"), True,
     [Fire("step_failed", "create-subaccount error: pod deleted; gave up after 3 attempts",
           "wf")]),
    ("permanent-exit-code-fails-at-once", record(State.RUNNING, **RUNNING_CS), SPEC,
     wf(WorkflowPhase.FAILED, "Error (exit code 1)"), True,
     [Fire("step_failed", "create-subaccount failed: Error (exit code 1); not retried: it"
           " cannot succeed", "wf")]),
    ("transient-exit-code-is-retried", record(State.RUNNING, **RUNNING_CS), SPEC,
     wf(WorkflowPhase.FAILED, "Error (exit code 75)"), True,
     [Fire("step_retried", "create-subaccount failed: Error (exit code 75); attempt 1 of 3",
           "wf", 3.75)]),
    ("permanent-compensation-stalls-at-once", record(State.ROLLING_BACK, **COMPENSATING), SPEC,
     wf(WorkflowPhase.FAILED, "Error (exit code 1)"), True,
     [Fire("compensation_exhausted", "unregister-platform failed: Error (exit code 1); not"
           " retried: it cannot succeed, waiting for on-call", "wf")]),
    ("deadline-stops-and-fails-the-attempt",
     record(State.RUNNING, **{**LAST_CS, "step_deadline": NOW}), SPEC,
     wf(WorkflowPhase.RUNNING), True,
     [Stop("wf", "step deadline exceeded"),
      Fire("step_failed", "create-subaccount passed its deadline; gave up after 3 attempts",
           "wf")]),
    ("unconfirmed-submission-missing-is-resubmitted",
     record(State.RUNNING, **{**RUNNING_CS, "workflow_submitted": False}), SPEC,
     None, True, [Submit("create-subaccount", new_attempt=False)]),
    ("confirmed-workflow-vanished-runs-again-uncounted",
     record(State.RUNNING, **RUNNING_CS), SPEC, None, True,
     [Fire("workflow_vanished", "workflow wf vanished (deleted or garbage-collected before it"
           " was seen to finish); create-subaccount runs again, it is idempotent", "wf")]),
    ("vanishing-again-and-again-fails-the-attempt",
     record(State.RUNNING, **{**RUNNING_CS, "vanished": 3}), SPEC, None, True,
     [Fire("step_retried", "workflow wf vanished 4 times in a row; attempt 1 of 3", "wf",
           3.75)]),
    ("cluster-unknown-waits", record(State.RUNNING, **RUNNING_CS), SPEC, UNKNOWN,
     True, [Wait("cannot reach the cluster")]),
    ("backing-off-waits",
     record(State.RUNNING, next_attempt_at=NOW + timedelta(seconds=1)), SPEC, None,
     True, [Wait("backing off until 2026-01-01T12:00:01+00:00")]),
    ("compensation-undoes-the-latest-inventory-entry-first", record(State.ROLLING_BACK,
     inventory=["create-subaccount", "register-platform"]), SPEC, None, True,
     [Submit("unregister-platform")]),
    ("compensation-with-an-empty-inventory-is-done", record(State.ROLLING_BACK), SPEC, None,
     True, [Fire("compensated", "nothing left to compensate")]),
    ("compensation-succeeded", record(State.ROLLING_BACK, **COMPENSATING), SPEC,
     wf(WorkflowPhase.SUCCEEDED), True,
     [Fire("compensated", "unregister-platform succeeded", "wf")]),
    ("compensation-exhausted", record(State.ROLLING_BACK, **{**COMPENSATING, "attempt": 5}),
     SPEC, wf(WorkflowPhase.FAILED, "422"), True,
     [Fire("compensation_exhausted", "unregister-platform failed: 422; gave up after 5"
           " attempts, waiting for on-call", "wf")]),
    ("ready-is-settled", record(State.READY), SPEC, None, True, [Wait("Ready: settled")]),
    ("ready-with-a-new-spec-updates", record(State.READY), CHANGED, None, True,
     [Fire("spec_changed", "the spec changed: updating")]),
    ("ready-with-a-new-spec-waits-for-a-slot", record(State.READY), CHANGED, None, False,
     [Wait("the spec changed; the update waits for a free slot")]),
    ("update-failed-with-a-new-spec-updates-again", record(State.UPDATE_FAILED), CHANGED, None,
     True, [Fire("spec_changed", "the spec changed: updating")]),
    ("update-failed-is-settled", record(State.UPDATE_FAILED), SPEC, None, True,
     [Wait("UpdateFailed: settled")]),
    ("failed-with-a-new-spec-runs-again", record(State.FAILED), CHANGED, None, True,
     [Fire("spec_changed", "the spec changed: starting again")]),
    ("in-flight-with-a-new-spec-goes-on", record(State.RUNNING, **RUNNING_CS),
     CHANGED, wf(WorkflowPhase.RUNNING), True, [Wait("create-subaccount is Running")]),
    ("update-starts-with-the-first-step", record(State.UPDATING), SPEC, None, True,
     [Submit("create-subaccount")]),
    ("update-runs-its-current-step", record(State.UPDATING, step="install-proxy"), SPEC, None,
     True, [Submit("install-proxy")]),
    ("update-step-failing-for-good-parks", record(State.UPDATING, **{**LAST_CS}), SPEC,
     wf(WorkflowPhase.FAILED, "boom"), True,
     [Fire("step_failed", "create-subaccount failed: boom; gave up after 3 attempts", "wf")]),
    ("removed-while-updating-stops-then-offboards",
     record(State.UPDATING, **RUNNING_CS), None, wf(WorkflowPhase.RUNNING), True,
     [Stop("wf", "onboarding removed: offboarding"),
      Fire("offboard", "removed from the desired state")]),
    ("removed-update-failed-offboards", record(State.UPDATE_FAILED), None, None, True,
     [Fire("offboard", "removed from the desired state")]),
    ("removed-rolling-back-offboards", record(State.ROLLING_BACK, **COMPENSATING), None,
     wf(WorkflowPhase.RUNNING), True, [Fire("offboard", "removed from the desired state")]),
    ("spec-suspend-suspends", record(State.READY), SUSPENDED, None, True,
     [Fire("suspend", SUSPENDED_BY_SPEC)]),
    ("spec-unsuspend-resumes", record(State.SUSPENDED, reason=SUSPENDED_BY_SPEC), SPEC, None,
     True, [Fire("resume", "spec.suspend is false")]),
    ("on-call-suspension-stays", record(State.SUSPENDED, reason="suspended by on-call"), SPEC,
     None, True, [Wait("suspended")]),
    ("removed-ready-offboards", record(State.READY), None, None, True,
     [Fire("offboard", "removed from the desired state")]),
    ("removed-mid-step-stops-then-offboards", record(State.RUNNING, **RUNNING_CS),
     None, wf(WorkflowPhase.RUNNING), True,
     [Stop("wf", "onboarding removed: offboarding"),
      Fire("offboard", "removed from the desired state")]),
    ("removed-mid-step-unknown-waits", record(State.RUNNING, **RUNNING_CS), None,
     UNKNOWN, True,
     [Wait("removed; offboarding waits for the cluster to stop the running step")]),
    ("removed-orphan-is-forgotten", record(State.READY, spec=ORPHAN), None, None, True,
     [Fire("forget", "removed with deletionPolicy Orphan: left as it is")]),
    ("removed-suspended-waits", record(State.SUSPENDED), None, None, True,
     [Wait("removed; offboarding waits until it is resumed (orchestrator resume)")]),
    ("removed-suspended-by-spec-waits-too",
     record(State.SUSPENDED, reason=SUSPENDED_BY_SPEC), None, None, True,
     [Wait("removed; offboarding waits until it is resumed (orchestrator resume)")]),
    ("offboarding-continues", record(State.OFFBOARDING, offboarding=True,
     inventory=["create-subaccount"]), None, None, True, [Submit("delete-subaccount")]),
    ("offboarding-of-everything-starts-with-the-proxy", record(State.OFFBOARDING,
     offboarding=True, inventory=["create-subaccount", "register-platform", "install-proxy"]),
     None, None, True, [Submit("uninstall-proxy")]),
    ("offboarding-stalled-waits-for-on-call", record(State.CLEANUP_FAILED, offboarding=True),
     None, None, True,
     [Wait("offboarding stalled in CleanupFailed: waiting for on-call to retry")]),
    ("deleted-and-declared-again", record(State.DELETED), SPEC, None, True,
     [Fire("recreate", "declared again")]),
    ("deleted-stays-deleted", record(State.DELETED), None, None, True, [Wait("deleted")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "desired", "observation", "slot", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_decide(
    current: OnboardingRecord,
    desired: OnboardingSpec | None,
    observation: Observation,
    slot: bool,
    expected: list[Any],
) -> None:
    situation = Situation(
        record=current,
        desired=desired,
        observation=observation,
        now=NOW,
        plan=SERVICE_BROKER_PROXY,
        slot_available=slot,
        jitter=lambda: 0.5,
    )

    assert decide(situation) == expected


#: (id, record, observation, expected) with the four-step plan, whose assign-entitlements
#: has ``compensation: none``
FOUR_STEP_CASES = [
    ("a-step-without-compensation-is-run", record(State.RUNNING, step="assign-entitlements"),
     None, [Submit("assign-entitlements")]),
    ("it-is-not-the-last-step", record(State.RUNNING, **{**RUNNING_CS,
     "step": "assign-entitlements"}), wf(WorkflowPhase.SUCCEEDED),
     [Fire("step_succeeded", "assign-entitlements succeeded", "wf")]),
    ("it-fails-like-any-step", record(State.RUNNING, **{**LAST_CS,
     "step": "assign-entitlements"}), wf(WorkflowPhase.FAILED, "boom"),
     [Fire("step_failed", "assign-entitlements failed: boom; gave up after 3 attempts", "wf")]),
    ("the-rollback-skips-it", record(State.ROLLING_BACK,
     inventory=["create-subaccount", "register-platform"]), None,
     [Submit("unregister-platform")]),
    ("offboarding-starts-with-the-last-undoable-step", record(State.OFFBOARDING,
     offboarding=True, inventory=["create-subaccount", "register-platform", "install-proxy"]),
     None, [Submit("uninstall-proxy")]),
    ("an-update-runs-it-too", record(State.UPDATING, step="assign-entitlements"), None,
     [Submit("assign-entitlements")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "observation", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in FOUR_STEP_CASES],
)
def test_decide_over_another_plan(
    current: OnboardingRecord, observation: Observation, expected: list[Any]
) -> None:
    desired = None if current.offboarding else SPEC
    situation = Situation(
        record=current, desired=desired, observation=observation, now=NOW, plan=FOUR_STEPS
    )

    assert decide(situation) == expected


@pytest.mark.parametrize("plan", [SERVICE_BROKER_PROXY, FOUR_STEPS], ids=lambda p: p.name)
def test_running_without_a_recorded_step_runs_the_first(plan: StepPlan) -> None:
    situation = Situation(
        record=record(State.RUNNING), desired=SPEC, observation=None, now=NOW, plan=plan
    )

    assert decide(situation) == [Submit(plan.first)]


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 2.5),
        (1, 1.0, 5.0),
        (2, 0.5, 7.5),
        (3, 0.0, 10.0),
        (10, 1.0, 300.0),
        # a streak of any length stays capped (it once overflowed after about 85 minutes)
        (5000, 1.0, 300.0),
        (10**9, 0.0, 150.0),
    ],
)
def test_backoff_grows_is_jittered_and_capped(attempt: int, jitter: float, expected: float) -> None:
    assert backoff(attempt, limits=Limits(), jitter=jitter) == expected


MOVED = SPEC.model_copy(update={"cluster": "local-b"})
RESUBDOMAINED = OnboardingSpec.model_validate(
    {**SPEC.model_dump(by_alias=True),
     "subaccount": {"displayName": "A", "subdomain": "team-a2", "region": "eu10"}}
)  # fmt: skip
RENAMESPACED = SPEC.model_copy(update={"namespace": "team-a2"})
#: not a field naming the subaccount (it is found by subdomain and region): an edit is an
#: update, and the step refuses (never moves) a subaccount that is in another directory
REPLACED = OnboardingSpec.model_validate(
    {**SPEC.model_dump(by_alias=True),
     "subaccount": {"displayName": "A", "subdomain": "team-a", "region": "eu10",
                    "parentDirectory": "5b0f6a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
                    "usedForProduction": True}}
)  # fmt: skip


@pytest.mark.parametrize(
    ("current", "desired", "refused"),
    [
        pytest.param(record(State.READY, inventory=["create-subaccount"]), MOVED,
                     "spec.cluster", id="ready-cluster"),
        pytest.param(record(State.READY, inventory=["create-subaccount"]), RESUBDOMAINED,
                     "spec.subaccount.subdomain", id="ready-subdomain"),
        pytest.param(record(State.UPDATE_FAILED, inventory=["create-subaccount"]),
                     RENAMESPACED, "spec.namespace", id="update-failed-namespace"),
        pytest.param(record(State.RUNNING, **RUNNING_CS,
                            inventory=["create-subaccount"]), MOVED, "spec.cluster",
                     id="in-flight-cluster"),
        pytest.param(record(State.SUSPENDED, suspended_from=State.READY,
                            inventory=["create-subaccount"]), MOVED, "spec.cluster",
                     id="suspended-ready-cluster"),
        pytest.param(record(State.SUSPENDED), MOVED, None, id="suspended-before-start"),
        pytest.param(record(State.CLEANUP_FAILED, inventory=["create-subaccount"]),
                     RESUBDOMAINED, "spec.subaccount.subdomain", id="cleanup-failed-subdomain"),
        pytest.param(record(State.READY, inventory=["create-subaccount"]), CHANGED, None,
                     id="ready-mutable-field"),
        pytest.param(record(State.READY, inventory=["create-subaccount"]), REPLACED, None,
                     id="ready-directory-and-production-flag"),
        pytest.param(record(State.PENDING), MOVED, None, id="pending-nothing-exists"),
        pytest.param(record(State.FAILED), RESUBDOMAINED, None, id="failed-rolled-back"),
        pytest.param(record(State.DELETED), MOVED, None, id="deleted"),
        pytest.param(record(State.FAILED, inventory=["create-subaccount"]), MOVED,
                     "spec.cluster", id="failed-with-something-left"),
    ],
)  # fmt: skip
def test_one_rule_for_fields_naming_external_resources(
    current: OnboardingRecord, desired: OnboardingSpec, refused: str | None
) -> None:
    problem = immutable_change(current, desired)

    if refused is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(refused + " cannot change")
        assert "the stored spec keeps running" in problem


@pytest.mark.parametrize(
    ("state", "suspended_from", "mixed"),
    [
        pytest.param(State.RUNNING, None, True, id="first-run"),
        pytest.param(State.UPDATING, None, True, id="update"),
        pytest.param(State.SUSPENDED, State.RUNNING, True, id="suspended-mid-run"),
        pytest.param(State.PENDING, None, False, id="pending"),
        pytest.param(State.READY, None, False, id="ready"),
        pytest.param(State.FAILED, None, False, id="failed"),
    ],
)
def test_a_spec_taken_while_the_steps_run_marks_the_run_mixed(
    state: State, suspended_from: State | None, mixed: bool
) -> None:
    current = record(state, suspended_from=suspended_from)

    assert take_spec(current, CHANGED)
    assert current.spec["proxyChart"]["version"] == "2.0.0"
    assert (current.spec_fingerprint == MIXED_SPECS) is mixed
    assert not take_spec(current, CHANGED)  # the same spec again changes nothing
