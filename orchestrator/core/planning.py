"""Deciding what to do next for one onboarding: pure, no I/O.

``decide`` looks at the stored record, the desired spec and what Argo says
about the current workflow, and returns the commands to carry out in order.
The reconciler executes them; the state machine records the transitions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from orchestrator.config.configs import DEFAULT_PIPELINE, DeletionPolicy, OnboardingSpec
from orchestrator.core.stepplans import StepPlan
from orchestrator.core.steps import HOPELESS_EXIT_CODES
from orchestrator.records import OnboardingRecord, State, WorkflowPhase, WorkflowStatus

EXIT_CODE = re.compile(r"\(exit code (\d+)\)")

#: ``reason`` of an onboarding suspended because its spec says so (resumed when it no longer does)
SUSPENDED_BY_SPEC = "spec.suspend is true"


class Unknown(Enum):
    """Argo could not be asked this time (the cluster is unreachable or erring)."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN

#: What Argo says about the current workflow: its status, None (no such workflow), or UNKNOWN.
Observation = WorkflowStatus | None | Unknown


@dataclass(frozen=True)
class Fire:
    trigger: str
    reason: str
    workflow: str | None = None
    #: back-off before the next attempt, for retries
    delay: float | None = None


@dataclass(frozen=True)
class Submit:
    """Submit ``step``; ``new_attempt`` False resubmits the recorded name (never confirmed)."""

    step: str
    new_attempt: bool = True


@dataclass(frozen=True)
class Stop:
    workflow: str
    message: str


@dataclass(frozen=True)
class Wait:
    """Nothing to do now; ``why`` is shown by ``plan``. ``settled``: nothing will be
    to do until the record or its desired spec changes (time alone changes nothing)."""

    why: str
    settled: bool = field(default=False, compare=False)


Command = Fire | Submit | Stop | Wait


@dataclass(frozen=True)
class Limits:
    step_attempts: int = 3
    compensation_attempts: int = 5
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 300.0


@dataclass
class Situation:
    """Everything ``decide`` looks at for one onboarding."""

    record: OnboardingRecord
    #: the desired spec; None when the onboarding was removed from the desired state
    desired: OnboardingSpec | None
    observation: Observation
    now: datetime
    #: the order of the onboarding's steps and what undoes each
    plan: StepPlan
    #: a free slot on the cluster, for Pending onboardings to start
    slot_available: bool = True
    limits: Limits = field(default_factory=Limits)
    #: 0..1 random factor for jitter (injected so tests are deterministic)
    jitter: Callable[[], float] = lambda: 0.5
    #: ``desired.fingerprint()`` when the caller knows it already (the reconciler keeps
    #: it per declared spec: computing it is a dump and a hash)
    fingerprint: str | None = None

    def desired_fingerprint(self) -> str | None:
        """The desired spec's fingerprint; None when the onboarding was removed."""
        if self.desired is None:
            return None
        if self.fingerprint is None:
            self.fingerprint = self.desired.fingerprint()
        return self.fingerprint


def backoff(attempt: int, *, limits: Limits, jitter: float) -> float:
    """Exponential back-off with full jitter in its upper half: never zero, capped.

    The exponent is bounded so a streak of any length cannot overflow.
    """
    growth = limits.backoff_base_seconds * 2 ** min(max(0, attempt - 1), 32)
    ceiling = min(limits.backoff_max_seconds, growth)
    return float(ceiling / 2 + ceiling / 2 * jitter)


#: states that run the forward steps (the first run, an update)
FORWARD_STATES = frozenset({State.RUNNING, State.UPDATING})
COMPENSATING = frozenset({State.ROLLING_BACK, State.OFFBOARDING})
#: states that hold one of the cluster's concurrency slots
IN_FLIGHT = FORWARD_STATES | COMPENSATING
#: states in which nothing exists for the onboarding when its inventory is empty
AT_REST = frozenset({State.PENDING, State.FAILED, State.DELETED})
#: how often a step's workflow may vanish and be run again before it counts as failed
MAX_VANISHED = 3


def nothing_exists(record: OnboardingRecord) -> bool:
    """True when no step ever started for this onboarding, or all were undone."""
    state = record.state
    if state == State.SUSPENDED:
        state = record.suspended_from or State.PENDING
    return state in AT_REST and not record.inventory and record.workflow is None


#: ``spec_fingerprint`` of a run whose steps did not all see the same spec
MIXED_SPECS = "mixed: the spec changed while the steps ran"


def take_spec(record: OnboardingRecord, spec: OnboardingSpec) -> bool:
    """Make ``spec`` the one the next steps run with; True when anything changed.

    While a run (first run or update) is under way, the steps done so far ran
    with the old spec: the run is marked mixed, so Ready is followed by one
    more update with the spec as it is then.
    """
    values = spec.model_dump(mode="json", by_alias=True)
    if values == record.spec and spec.namespace == record.namespace:
        return False
    state = record.state
    if state == State.SUSPENDED:
        state = record.suspended_from or State.PENDING
    if state in FORWARD_STATES:
        record.spec_fingerprint = MIXED_SPECS
    record.spec = values
    record.namespace = spec.namespace
    return True


#: fields that name external resources, and the pipeline whose steps made what exists;
#: changing them would orphan it (or undo it with the wrong compensations)
IMMUTABLE = {
    "cluster": ("cluster",),
    "namespace": ("namespace",),
    "subaccount.subdomain": ("subaccount", "subdomain"),
    "subaccount.region": ("subaccount", "region"),
    "pipeline": ("pipeline",),
}

#: what a field left out of a stored spec means (a spec dumps without it then)
IMPLIED = {"pipeline": DEFAULT_PIPELINE}


def immutable_change(record: OnboardingRecord, desired: OnboardingSpec) -> str | None:
    """Why the new spec is refused, or None. One rule for files, the API and ``plan``:
    fields that name external resources cannot change while anything exists; once
    nothing does (never started, rolled back, or Deleted) every change is allowed."""
    if nothing_exists(record):
        return None
    new = desired.model_dump(mode="json", by_alias=True)
    for label, path in IMMUTABLE.items():
        old_value: Any = record.spec
        new_value: Any = new
        for key in path:
            old_value = old_value.get(key) if isinstance(old_value, dict) else None
            new_value = new_value.get(key) if isinstance(new_value, dict) else None
        if label in IMPLIED:
            old_value, new_value = old_value or IMPLIED[label], new_value or IMPLIED[label]
        if old_value != new_value:
            return (
                f"spec.{label} cannot change from {old_value!r} to {new_value!r} while the"
                " onboarding exists; the stored spec keeps running. Offboard it first (remove"
                " it, wait for Deleted), then declare it anew"
            )
    return None


def decide(s: Situation) -> list[Command]:
    record = s.record
    state = record.state
    if state == State.DELETED:
        if s.desired is not None:
            return [Fire("recreate", "declared again")]
        return [Wait("deleted", settled=True)]
    if s.desired is None:
        return _removed(s)
    if s.desired.suspend and state != State.SUSPENDED:
        return [Fire("suspend", SUSPENDED_BY_SPEC)]
    if state == State.SUSPENDED:
        if not s.desired.suspend and record.reason == SUSPENDED_BY_SPEC:
            return [Fire("resume", "spec.suspend is false")]
        return [Wait("suspended", settled=True)]
    if s.desired_fingerprint() != record.spec_fingerprint:
        if state in (State.READY, State.UPDATE_FAILED):
            if not s.slot_available:
                return [Wait("the spec changed; the update waits for a free slot")]
            return [Fire("spec_changed", "the spec changed: updating")]
        if state == State.FAILED:
            return [Fire("spec_changed", "the spec changed: starting again")]
    if record.next_attempt_at is not None and s.now < record.next_attempt_at:
        return [Wait(f"backing off until {record.next_attempt_at.isoformat()}")]
    if state == State.PENDING:
        if not s.slot_available:
            return [Wait("the cluster is at its concurrency limit")]
        return [Fire("start", "starting")]
    if state in FORWARD_STATES:
        return _run_step(s, record.step or s.plan.first)
    if state in COMPENSATING:
        return decide_compensation(s)
    return [Wait(f"{state.value}: settled", settled=True)]


def next_compensation(record: OnboardingRecord, plan: StepPlan) -> str | None:
    """The compensation to run now: the one under way, else the latest inventory entry's."""
    if record.step is not None and plan.is_compensation(record.step):
        return record.step
    undo = plan.compensations_for(record.inventory)
    return undo[0] if undo else None


def _removed(s: Situation) -> list[Command]:
    """The onboarding is no longer desired: offboard or forget, per its policy."""
    record = s.record
    policy = DeletionPolicy(record.spec.get("deletionPolicy", DeletionPolicy.DELETE.value))
    if policy == DeletionPolicy.ORPHAN:
        return [Fire("forget", "removed with deletionPolicy Orphan: left as it is")]
    if record.state == State.SUSPENDED:
        return [
            Wait(
                "removed; offboarding waits until it is resumed (orchestrator resume)", settled=True
            )
        ]
    if record.state == State.OFFBOARDING:
        return decide_compensation(s)
    if record.state == State.CLEANUP_FAILED and record.offboarding:
        return [
            Wait("offboarding stalled in CleanupFailed: waiting for on-call to retry", settled=True)
        ]
    commands: list[Command] = []
    if record.state in FORWARD_STATES and record.workflow is not None:
        observation = s.observation
        if observation is UNKNOWN:
            return [Wait("removed; offboarding waits for the cluster to stop the running step")]
        if isinstance(observation, WorkflowStatus) and not observation.phase.finished:
            commands.append(Stop(record.workflow, "onboarding removed: offboarding"))
    commands.append(Fire("offboard", "removed from the desired state"))
    return commands


def decide_compensation(s: Situation) -> list[Command]:
    record = s.record
    if record.next_attempt_at is not None and s.now < record.next_attempt_at:
        return [Wait(f"backing off until {record.next_attempt_at.isoformat()}")]
    step = next_compensation(record, s.plan)
    if step is None:
        unknown = s.plan.unknown(record.inventory)
        if unknown:
            # what undoes them went with the pipeline's old definition: never guess, park
            return [
                Fire(
                    "compensation_exhausted",
                    f"the inventory holds {', '.join(unknown)}, which the pipeline"
                    f" {s.plan.name} no longer has: what undoes it is unknown; waiting for"
                    " on-call",
                )
            ]
        return [Fire("compensated", "nothing left to compensate")]
    return _run_step(s, step)


def _run_step(s: Situation, step: str) -> list[Command]:
    record = s.record
    if not s.plan.has(step):
        why = f"{step} is not a step of the pipeline {s.plan.name} any more"
        if record.state in COMPENSATING:
            return [Fire("compensation_exhausted", f"{why}; waiting for on-call", record.workflow)]
        return [Fire("step_failed", why, record.workflow)]
    if record.step != step or record.workflow is None:
        return [Submit(step)]
    observation = s.observation
    workflow = record.workflow
    if observation is UNKNOWN:
        return [Wait("cannot reach the cluster")]
    if observation is None:
        if not record.workflow_submitted:
            return [Submit(step, new_attempt=False)]
        if record.vanished < MAX_VANISHED:
            return [
                Fire(
                    "workflow_vanished",
                    f"workflow {workflow} vanished (deleted or garbage-collected before it was"
                    f" seen to finish); {step} runs again, it is idempotent",
                    workflow,
                )
            ]
        return attempt_failed(
            s, step, f"workflow {workflow} vanished {record.vanished + 1} times in a row"
        )
    assert isinstance(observation, WorkflowStatus)
    if observation.phase == WorkflowPhase.SUCCEEDED:
        trigger = "compensated" if s.plan.is_compensation(step) else "step_succeeded"
        return [Fire(trigger, f"{step} succeeded", workflow)]
    if observation.phase.finished:
        message = observation.message or observation.phase.value
        outcome = observation.phase.value.lower()
        hopeless = exit_code(message) in HOPELESS_EXIT_CODES
        return attempt_failed(s, step, f"{step} {outcome}: {message}", final=hopeless)
    if record.step_deadline is not None and s.now >= record.step_deadline:
        return [
            Stop(workflow, "step deadline exceeded"),
            *attempt_failed(s, step, f"{step} passed its deadline"),
        ]
    return [Wait(f"{step} is {observation.phase.value or 'submitted'}")]


def exit_code(message: str) -> int | None:
    """The exit code in Argo's node message ("Error (exit code 1)"), if any."""
    found = EXIT_CODE.search(message)
    return int(found.group(1)) if found else None


def attempt_failed(s: Situation, step: str, reason: str, *, final: bool = False) -> list[Command]:
    """Retry the step, or give up: after its last attempt, or at once when ``final``
    (the step said another attempt cannot do better)."""
    record = s.record
    compensation = s.plan.is_compensation(step)
    default = s.limits.compensation_attempts if compensation else s.limits.step_attempts
    limit = s.plan.attempts_of(step) or default
    if not final and record.attempt < limit:
        delay = backoff(record.attempt, limits=s.limits, jitter=s.jitter())
        trigger = "compensation_retried" if compensation else "step_retried"
        return [
            Fire(trigger, f"{reason}; attempt {record.attempt} of {limit}", record.workflow, delay)
        ]
    why = "not retried: it cannot succeed" if final else f"gave up after {limit} attempts"
    if compensation:
        return [
            Fire("compensation_exhausted", f"{reason}; {why}, waiting for on-call", record.workflow)
        ]
    return [Fire("step_failed", f"{reason}; {why}", record.workflow)]


def describe(commands: list[Command]) -> tuple[str, str]:
    """(action, detail) for the ``plan`` command."""
    first = commands[0]
    if isinstance(first, Fire):
        return first.trigger, first.reason
    if isinstance(first, Submit):
        return "submit", first.step + ("" if first.new_attempt else " (resubmit)")
    if isinstance(first, Stop):
        return "stop", f"{first.workflow}: {first.message}"
    return "wait", first.why


def retry_after(now: datetime, delay: float | None) -> datetime | None:
    return None if delay is None else now + timedelta(seconds=delay)
