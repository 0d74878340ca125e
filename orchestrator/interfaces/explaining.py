"""Why an onboarding is where it is: what it waits for, since when, until when, and what
on-call can do about it. Pure: built from what the API answers (the onboarding, its
history, its cluster's health), so the API and the CLI say the same thing.

The causes, most pressing first: deleted, suspended (by whom), its cluster unreachable
(since when), failed and waiting for on-call (the failed step, its full reason and its
workflow), an edit of an immutable field refused, a back-off (until when), a free slot
of the cluster's ``maxConcurrent``, an error of the last pass, the workflow of a step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from orchestrator.core.planning import IN_FLIGHT, SUSPENDED_BY_SPEC
from orchestrator.core.steps import Step
from orchestrator.interfaces.views import (
    ClusterView,
    Explanation,
    FailedStep,
    OnboardingView,
    TransitionView,
    state_and_step,
)
from orchestrator.records import State

#: the start of ``lastError`` when an edit of a field naming an external resource was refused
REFUSED_CHANGE = re.compile(r"^spec\.[\w.]+ cannot change from ")
#: transitions that record a failed attempt (their workflow is the one that failed)
FAILURES = frozenset(
    {"step_failed", "compensation_exhausted", "step_retried", "compensation_retried"}
)
#: states that wait for on-call (or an edit), and what each means
ON_CALL: dict[State, str] = {
    State.FAILED: "failed and rolled back (nothing of it exists)",
    State.UPDATE_FAILED: "an update failed (the tenant still exists, nothing was undone)",
    State.CLEANUP_FAILED: "cleanup failed (what it created may still exist)",
}
STEPS = frozenset(step.value for step in Step)
#: the failure that put an onboarding in each of those states
FINAL_FAILURE: dict[State, frozenset[str]] = {
    State.FAILED: frozenset({"step_failed"}),
    State.UPDATE_FAILED: frozenset({"step_failed"}),
    State.CLEANUP_FAILED: frozenset({"compensation_exhausted"}),
}


def explain(
    view: OnboardingView,
    *,
    now: datetime,
    history: Sequence[TransitionView] = (),
    cluster: ClusterView | None = None,
    slot_holders: Sequence[str] | None = None,
) -> Explanation:
    """The explanation of one onboarding. Without ``history`` the failed step is taken
    from the onboarding's reason (its workflow is then unknown); without
    ``slot_holders`` the cluster's count of onboardings in flight stands for them."""
    failed = None
    if view.state in ON_CALL or (view.state in IN_FLIGHT and view.attempt > 1):
        failed = failed_step(history, state=view.state) or _failed_from_reason(view)
    explanation = Explanation(
        name=view.name,
        cluster=view.cluster,
        state=view.state,
        waiting_for="nothing",
        summary=view.state.value.lower(),
        workflow=view.workflow,
        workflow_url=view.workflow_url,
        failed_step=failed,
    )
    for applies in (_deleted, _suspended, _cluster_down, _on_call, _refused, _backoff):
        if applies(explanation, view, now=now, history=history, cluster=cluster):
            break
    else:
        _moving(explanation, view, cluster=cluster, slot_holders=slot_holders)
    if cluster is not None and cluster.reachable is False and explanation.waiting_for != "cluster":
        explanation.details.append(f"its cluster {cluster.name} is unreachable: {cluster.reason}")
    return explanation


def cause(view: OnboardingView, *, now: datetime, cluster: ClusterView | None = None) -> str | None:
    """The cause in one line, for a list; None when nothing holds the onboarding up."""
    explanation = explain(view, now=now, cluster=cluster)
    return None if explanation.waiting_for == "nothing" else explanation.summary


def failed_step(
    history: Sequence[TransitionView], *, state: State | None = None
) -> FailedStep | None:
    """The failed attempt in the history that ``state`` is about (the step that failed for
    Failed and UpdateFailed, the exhausted compensation for CleanupFailed; else the latest
    failure of any kind): its step, full reason and workflow."""
    wanted = FINAL_FAILURE.get(state, FAILURES) if state is not None else FAILURES
    for transition in reversed(history):
        if transition.trigger in wanted:
            return FailedStep(
                step=step_of(transition.reason),
                reason=transition.reason,
                at=transition.at,
                workflow=transition.workflow,
                workflow_url=transition.workflow_url,
            )
    return None


def _failed_from_reason(view: OnboardingView) -> FailedStep | None:
    if view.state not in ON_CALL or not view.reason:
        return None
    return FailedStep(step=step_of(view.reason), reason=view.reason, at=view.updated_at)


def step_of(reason: str) -> str | None:
    """The step a transition's reason starts with (``create-subaccount failed: ...``)."""
    first = reason.split(" ", 1)[0].rstrip(":")
    return first if first in STEPS else None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# --- the causes: each fills in the explanation and answers True when it applies ----------


def _deleted(e: Explanation, view: OnboardingView, **_: object) -> bool:
    if view.state != State.DELETED:
        return False
    e.summary = "deleted; listed with its history until it is pruned"
    e.since = view.updated_at
    return True


def _suspended(
    e: Explanation, view: OnboardingView, *, history: Sequence[TransitionView], **_: object
) -> bool:
    if view.state != State.SUSPENDED:
        return False
    e.waiting_for = "suspended"
    entered = next((t for t in reversed(history) if t.to_state == State.SUSPENDED), None)
    e.since = entered.at if entered is not None else view.updated_at
    if view.reason == SUSPENDED_BY_SPEC:
        e.by = "its spec (spec.suspend: true)"
        e.summary = "suspended by its spec (spec.suspend: true)"
        e.hint = (
            "set spec.suspend: false in its file"
            if view.source == "file"
            else "upsert it with spec.suspend: false"
        )
    else:
        caller = _caller(entered.reason if entered is not None else view.reason)
        e.by = f"on-call, through the API ({caller})" if caller else "on-call, through the API"
        e.summary = f"suspended by on-call ({caller})" if caller else "suspended by on-call"
        e.hint = f"orchestrator resume {view.name}"
        e.details.append("the daemon's log names the caller (an audit line with action=suspend)")
    if entered is not None and entered.reason not in (view.reason, None):
        e.details.append(f"why: {entered.reason}")
    if view.suspended_from is not None:
        back = state_and_step(view.suspended_from, view.step)
        e.details.append(f"it goes back to {back} when resumed")
    if view.offboarding:
        e.details.append("it was removed: the offboarding starts once it is resumed")
    if view.workflow:
        e.details.append(f"its workflow {view.workflow} is left alone meanwhile")
    return True


def _cluster_down(
    e: Explanation, view: OnboardingView, *, cluster: ClusterView | None, **_: object
) -> bool:
    if cluster is None or cluster.reachable is not False or view.state in ON_CALL:
        return False
    if view.state == State.READY and not view.offboarding:
        return False  # nothing to do there now; noted in the details
    e.waiting_for = "cluster"
    e.summary = f"cluster {cluster.name} is unreachable: {_first_line(cluster.reason or '?')}"
    e.since = cluster.since
    e.hint = (
        "orchestrator clusters shows every cluster's health; the daemon retries with back-off"
        " and carries on by itself once the cluster answers"
    )
    if view.last_error and _first_line(view.last_error) not in e.summary:
        e.details.append(f"last error: {view.last_error.strip()}")
    return True


def _on_call(e: Explanation, view: OnboardingView, **_: object) -> bool:
    meaning = ON_CALL.get(view.state)
    if meaning is None:
        return False
    e.waiting_for = "on-call"
    failed = e.failed_step
    reason = failed.reason if failed is not None else (view.reason or "no reason recorded")
    e.summary = reason  # the state says the rest; the reason first, so a list shows it
    e.since = failed.at if failed is not None else view.updated_at
    e.details.append(f"{view.state.value}: {meaning}")
    if view.reason and view.reason != reason:
        e.details.append(f"reason: {view.reason}")
    if failed is not None and failed.workflow:
        e.details.append(
            f"failed workflow: {failed.workflow}"
            + (f" ({failed.workflow_url})" if failed.workflow_url else "")
        )
    if view.last_error and view.last_error != view.reason:
        e.details.append(f"last error: {view.last_error.strip()}")
    if view.state == State.UPDATE_FAILED:
        e.hint = (
            f"fix the spec (the next edit updates again) or the cause, then"
            f" orchestrator retry {view.name}"
        )
    else:
        e.hint = f"fix the cause, then orchestrator retry {view.name}"
    return True


def _refused(e: Explanation, view: OnboardingView, **_: object) -> bool:
    if not view.last_error or not REFUSED_CHANGE.match(view.last_error):
        return False
    e.waiting_for = "refused-change"
    refusal = view.last_error.strip()
    e.summary = f"an edit was refused: {refusal.split(' while the onboarding exists')[0]}"
    e.details.append(refusal)
    e.hint = (
        "restore the field; to move it, offboard it first (remove it, wait for Deleted),"
        " then declare it anew"
    )
    return True


def _backoff(e: Explanation, view: OnboardingView, *, now: datetime, **_: object) -> bool:
    if view.next_attempt_at is None or view.next_attempt_at <= now:
        return False
    e.waiting_for = "backoff"
    error = _first_line(view.last_error) if view.last_error else None
    e.summary = f"backing off after an error: {error}" if error else "backing off"
    e.until = view.next_attempt_at
    if view.last_error:
        e.details.append(f"last error: {view.last_error.strip()}")
    e.hint = f"orchestrator reconcile {view.name} tries again at once"
    return True


def _moving(
    e: Explanation,
    view: OnboardingView,
    *,
    cluster: ClusterView | None,
    slot_holders: Sequence[str] | None,
) -> None:
    """Nothing holds it up but its own progress: a slot, a pass, an error, a workflow."""
    if view.state == State.PENDING:
        holders = list(slot_holders) if slot_holders is not None else None
        busy = len(holders) if holders is not None else (cluster.in_flight if cluster else 0)
        limit = cluster.max_concurrent if cluster else None
        if busy and (limit is None or busy >= limit):
            e.waiting_for = "slot"
            of = f" of {limit}" if limit is not None else ""
            e.summary = (
                f"waits for a free slot of cluster {view.cluster}: {busy}{of} in flight"
                " (its maxConcurrent)"
            )
            e.slot_holders = holders or []
            if holders:
                e.details.append(f"the slots are held by: {', '.join(holders)}")
            e.hint = (
                "slots go to the oldest waiting first; raise the cluster's maxConcurrent"
                " to start more at once"
            )
        else:
            e.waiting_for = "next-pass"
            e.summary = f"starts at the next pass of cluster {view.cluster}"
            e.hint = f"orchestrator reconcile {view.name} runs that pass now"
        if view.last_error:
            e.details.append(f"last error: {view.last_error.strip()}")
        return
    if view.state not in IN_FLIGHT:
        if view.state == State.READY:
            e.summary = "ready"
        return
    doing = "undoing" if view.state in (State.ROLLING_BACK, State.OFFBOARDING) else "running"
    if view.last_error:
        e.waiting_for = "error"
        e.summary = f"the last pass failed: {_first_line(view.last_error)}"
        e.details.append(f"last error: {view.last_error.strip()}")
        e.hint = f"orchestrator reconcile {view.name} tries again at once"
        return
    e.waiting_for = "workflow"
    if view.step and view.workflow:
        e.summary = f"{view.step} is {doing} (attempt {view.attempt})"
    elif view.step:
        e.summary = f"{view.step} is about to be submitted (attempt {max(view.attempt, 1)})"
    else:
        e.summary = f"{view.state.value}: the next step is submitted at the next pass"
    if view.offboarding and view.state != State.OFFBOARDING:
        e.details.append("it was removed: the offboarding follows once the running step is stopped")


def with_causes(
    views: Sequence[OnboardingView], clusters: Sequence[ClusterView], *, now: datetime
) -> list[OnboardingView]:
    """The views with their ``cause`` filled in, from their clusters' health."""
    by_name = {c.name: c for c in clusters}
    return [
        view.model_copy(update={"cause": cause(view, now=now, cluster=by_name.get(view.cluster))})
        for view in views
    ]


def _caller(reason: str | None) -> str | None:
    """Who an on-call transition's reason names: ``suspended by on-call (ADDRESS, token
    FINGERPRINT)`` gives ``ADDRESS, token FINGERPRINT``."""
    if not reason or not reason.endswith(")") or "(" not in reason:
        return None
    return reason[reason.rindex("(") + 1 : -1] or None
