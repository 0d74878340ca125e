"""What the HTTP API answers: read-only views of records, never a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestrator.records import OnboardingRecord, State, TransitionRecord


class OnboardingView(BaseModel):
    name: str
    cluster: str
    namespace: str
    source: str = Field(description="file: declared in the config directory; api: upserted.")
    state: State
    reason: str | None = Field(default=None, description="Why it is in this state.")
    step: str | None = Field(default=None, description="Step or compensation running now.")
    attempt: int = 0
    workflow: str | None = None
    workflow_url: str | None = Field(default=None, description="Link to the Argo UI.")
    last_error: str | None = None
    suspended_from: State | None = None
    offboarding: bool = False
    inventory: list[str] = Field(
        default_factory=list,
        description="Forward steps that may have created something; offboarding undoes them.",
    )
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    cause: str | None = Field(
        default=None,
        description="What it waits for now, in one line (GET /onboardings/{name}/explain has"
        " the whole explanation); None when nothing holds it up.",
    )
    spec: dict[str, Any] = Field(
        description="The spec as declared, admin e-mails included: a daemon whose port others"
        " can reach guards reads with a token (--api-read-token-file)."
    )

    @classmethod
    def of(cls, record: OnboardingRecord, *, workflow_url: str | None = None) -> OnboardingView:
        return cls(
            name=record.name,
            cluster=record.cluster,
            namespace=record.namespace,
            source=record.source.value,
            state=record.state,
            reason=record.reason,
            step=record.step,
            attempt=record.attempt,
            workflow=record.workflow,
            workflow_url=workflow_url,
            last_error=record.last_error,
            suspended_from=record.suspended_from,
            offboarding=record.offboarding,
            inventory=list(record.inventory),
            next_attempt_at=record.next_attempt_at,
            created_at=record.created_at,
            updated_at=record.updated_at,
            spec=record.spec,
        )


def state_and_step(state: State, step: str | None) -> str:
    """``Running:install-proxy`` for the first run, whose state's name said the step
    before the states were made generic over the steps; the state alone otherwise."""
    return f"{state.value}:{step}" if state == State.RUNNING and step else state.value


class TransitionView(BaseModel):
    from_state: State
    to_state: State
    trigger: str
    reason: str
    at: datetime
    workflow: str | None = None
    workflow_url: str | None = Field(default=None, description="Link to the Argo UI.")
    from_step: str | None = Field(
        default=None, description="The step being run in from_state (None: none, or not recorded)."
    )
    to_step: str | None = Field(
        default=None, description="The step being run in to_state (None: none, or not recorded)."
    )

    @classmethod
    def of(cls, transition: TransitionRecord, *, workflow_url: str | None = None) -> TransitionView:
        return cls(
            from_state=transition.from_state,
            to_state=transition.to_state,
            trigger=transition.trigger,
            reason=transition.reason,
            at=transition.at,
            workflow=transition.workflow,
            workflow_url=workflow_url,
            from_step=transition.from_step,
            to_step=transition.to_step,
        )


class UpsertResult(BaseModel):
    onboarding: OnboardingView
    created: bool
    changed: bool
    done: bool | None = Field(
        default=None, description="With wait: true when Ready or failed before the timeout."
    )


class ClusterView(BaseModel):
    name: str
    reachable: bool | None = Field(description="None until the daemon has asked it.")
    reason: str | None = Field(default=None, description="Why it is unreachable.")
    since: datetime | None = Field(default=None, description="When it last changed.")
    latency_seconds: float | None = Field(
        default=None, description="Duration of the last list call."
    )
    argo_server: str | None = Field(
        default=None, description="Argo Server URL, or None when submitting through Kubernetes."
    )
    onboardings: int = Field(default=0, description="Onboardings on it, in any state.")
    in_flight: int = Field(default=0, description="Onboardings with a step or undo under way.")
    max_concurrent: int | None = Field(
        default=None, description="Its maxConcurrent: onboardings it lets be in flight at once."
    )


class HeldOffboardingView(BaseModel):
    """A config change held because it would offboard many onboardings at once."""

    held: bool = Field(description="True while a change waits for confirmation.")
    onboardings: list[str] = Field(
        default_factory=list,
        description="What the change would offboard; after a confirmation, what it offboards.",
    )
    declared: int = Field(
        default=0, description="File-declared onboardings running when it was held."
    )
    share: float | None = Field(
        default=None, description="The share of those it would offboard (0 to 1)."
    )
    limit: float = Field(
        description="A change offboarding more than this share (and more than one) is held."
    )
    since: datetime | None = Field(default=None, description="When the change was held.")


#: what an onboarding waits for, as ``Explanation.waiting_for`` says it
Waiting = Literal[
    "nothing",
    "suspended",
    "cluster",
    "refused-change",
    "on-call",
    "backoff",
    "slot",
    "next-pass",
    "workflow",
    "error",
]


class FailedStep(BaseModel):
    """The step (or compensation) whose failure put the onboarding where it is."""

    step: str | None = Field(default=None, description="The step or compensation that failed.")
    reason: str = Field(description="Why, in full, as the transition recorded it.")
    at: datetime
    workflow: str | None = None
    workflow_url: str | None = Field(default=None, description="Link to the Argo UI.")


class Explanation(BaseModel):
    """Why an onboarding is where it is and what it waits for: the on-call's first question."""

    name: str
    cluster: str
    state: State
    waiting_for: Waiting = Field(
        description="nothing (settled as wanted), suspended, cluster (unreachable), refused-change"
        " (an edit of an immutable field), on-call (failed: retry or fix), backoff, slot (the"
        " cluster's maxConcurrent), next-pass, workflow (a step is running), error."
    )
    summary: str = Field(description="The cause in one line (the CAUSE column of `list`).")
    details: list[str] = Field(default_factory=list, description="More about it, a line each.")
    since: datetime | None = Field(default=None, description="Since when the cause holds.")
    until: datetime | None = Field(default=None, description="Until when (a back-off).")
    by: str | None = Field(default=None, description="Who suspended it.")
    slot_holders: list[str] = Field(
        default_factory=list, description="Onboardings holding the cluster's slots."
    )
    workflow: str | None = Field(default=None, description="The workflow running now.")
    workflow_url: str | None = None
    failed_step: FailedStep | None = None
    hint: str | None = Field(default=None, description="What on-call can do about it.")


#: what a replica does: acts (leader), serves and stores changes for the leader
#: (follower), or acts without leader election (only replica)
Role = Literal["leader", "follower", "only replica"]


class ReplicaView(BaseModel):
    """This replica and the leader, for ``GET /api/v1/replica``."""

    replica: str | None = Field(
        default=None, description="This replica's identity in the Lease (None: no election)."
    )
    role: Role = Field(
        description="leader: it acts; follower: it serves the API and stores changes for"
        " the leader; only replica: no leader election (one daemon per database)."
    )
    leader: str | None = Field(
        default=None, description="The replica that holds the leader's epoch in the database."
    )
    epoch: int | None = Field(
        default=None, description="The leader's epoch (the Lease's transitions when it won)."
    )
    leader_since: datetime | None = None
    leader_url: str | None = Field(
        default=None,
        description="Where the other replicas reach the leader's API (what a follower"
        " forwards to it).",
    )
