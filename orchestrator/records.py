"""Plain data shared by the core and the adapters: what is stored and observed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    PENDING = "Pending"
    #: the first run of the forward steps; ``step`` says which one runs now
    RUNNING = "Running"
    READY = "Ready"
    #: a Ready onboarding whose spec changed: the forward steps run again with the new spec
    UPDATING = "Updating"
    #: a step of an update failed for good: the tenant still exists; retry re-runs the update
    UPDATE_FAILED = "UpdateFailed"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"
    CLEANUP_FAILED = "CleanupFailed"
    OFFBOARDING = "Offboarding"
    DELETED = "Deleted"
    SUSPENDED = "Suspended"


#: States in which nothing happens until something outside changes (spec, files, on-call).
SETTLED: frozenset[State] = frozenset(
    {
        State.READY,
        State.UPDATE_FAILED,
        State.FAILED,
        State.CLEANUP_FAILED,
        State.DELETED,
        State.SUSPENDED,
    }
)


class Source(StrEnum):
    FILE = "file"
    API = "api"


@dataclass(slots=True)  # thousands are kept in memory: no __dict__ each
class OnboardingRecord:
    """The persisted state of one onboarding.

    ``version`` guards against lost updates: a save only succeeds when the
    stored version is still the one that was read.
    """

    name: str
    cluster: str
    namespace: str
    source: Source
    spec: dict[str, Any]
    spec_fingerprint: str
    incarnation: str
    created_at: datetime
    updated_at: datetime
    state: State = State.PENDING
    #: when it entered its current state (None: not recorded, older than revision 0003)
    state_since: datetime | None = None
    suspended_from: State | None = None
    offboarding: bool = False
    #: forward steps that may have created something (started at least once), in
    #: pipeline order. Never cleared by an edit: only a compensation that succeeded
    #: removes its step. Compensations and offboarding are derived from it alone.
    inventory: list[str] = field(default_factory=list)
    #: the step being run now and its attempt in this run (1-based)
    step: str | None = None
    attempt: int = 0
    workflow: str | None = None
    #: True once Argo confirmed the workflow exists (created, or adopted on 409)
    workflow_submitted: bool = False
    step_started_at: datetime | None = None
    step_deadline: datetime | None = None
    #: when it was suspended: the step deadline pauses until it is resumed
    suspended_at: datetime | None = None
    #: times the current step's workflow vanished (garbage-collected) and was re-run
    vanished: int = 0
    #: attempts ever made per step; never reset, so workflow names never repeat
    attempt_counters: dict[str, int] = field(default_factory=dict)
    #: back-off: do nothing for this onboarding before this time
    next_attempt_at: datetime | None = None
    #: consecutive errors talking to the cluster (drives the back-off)
    error_count: int = 0
    last_error: str | None = None
    reason: str | None = None
    version: int = 0


@dataclass(frozen=True)
class TransitionRecord:
    """One recorded change of state (or a recorded retry within a state)."""

    onboarding: str
    from_state: State
    to_state: State
    trigger: str
    reason: str
    at: datetime
    workflow: str | None = None
    #: the leader's epoch it was recorded under (None: not by a leader's pass)
    epoch: int | None = None
    #: the step being run in ``from_state`` and in ``to_state`` (None: none, or not
    #: recorded); together with the states they say what a Running → Running row means
    from_step: str | None = None
    to_step: str | None = None


class WorkflowPhase(StrEnum):
    UNKNOWN = ""
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def finished(self) -> bool:
        return self in (WorkflowPhase.SUCCEEDED, WorkflowPhase.FAILED, WorkflowPhase.ERROR)


@dataclass(frozen=True)
class WorkflowStatus:
    """What the daemon needs to know about one workflow."""

    name: str
    phase: WorkflowPhase
    uid: str = ""
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowSubmission:
    """A workflow to create from a WorkflowTemplate. Parameters are never secrets."""

    name: str
    template: str
    parameters: dict[str, str]
    labels: dict[str, str]
    active_deadline_seconds: int | None = None
    service_account: str | None = None


@dataclass(frozen=True)
class WorkflowEvent:
    """One change of one of our workflows, as a watch reports it.

    ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK (no status: only a newer
    ``resource_version`` to resume from).
    """

    type: str
    resource_version: str
    status: WorkflowStatus | None = None


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who leads, as the store knows it: the epoch every write of a pass is fenced by."""

    epoch: int
    holder: str
    since: datetime
    #: where the other replicas reach the leader's API (None: not advertised)
    address: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """What a ``coordination.k8s.io/v1`` Lease says: who holds it, since when, renewed
    when, for how long, and how often it changed hands (the leader's epoch)."""

    holder: str
    duration_seconds: int
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    transitions: int = 0
    #: the object's resourceVersion: an update applies only to the version read
    version: str | None = None
