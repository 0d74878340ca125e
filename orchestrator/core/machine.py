"""The onboarding state machine: one literal transition table, no I/O.

Triggers are fired by the planner (``planning.py``) or by on-call actions. The
callbacks only change the record and emit what should happen next; the
reconciler does the I/O. Every fired transition appends a ``TransitionRecord``.

The table is the same whatever the pipeline: the step being run is data
(``record.step``), and the order of the steps comes from the onboarding's
``StepPlan``, which the caller passes in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from transitions import Machine, MachineError

from orchestrator.core.stepplans import SERVICE_BROKER_PROXY, StepPlan
from orchestrator.errors import Conflict
from orchestrator.records import OnboardingRecord, State, TransitionRecord

P = State.PENDING
RN = State.RUNNING
RD = State.READY
UP = State.UPDATING
UF = State.UPDATE_FAILED
RB = State.ROLLING_BACK
FD = State.FAILED
CF = State.CLEANUP_FAILED
OB = State.OFFBOARDING
DL = State.DELETED
SU = State.SUSPENDED

#: states that run a step (forward or compensation) and may have a workflow in flight
RUNS_A_STEP = [RN, UP, RB, OB]
#: states an onboarding can be suspended in, and resumed to
SUSPENDABLE = [P, RN, RD, UP, UF, RB, FD, CF, OB]
#: states that can be offboarded (the inventory is compensated, latest first)
OFFBOARDABLE = [P, RN, RD, UP, UF, RB, FD, CF]

#: (trigger, source(s), dest, conditions). Rows are tried in order; the first
#: whose conditions hold fires. Reflexive rows (source == dest) are retries
#: or progress within a state, recorded in the history like any other.
TRANSITIONS: list[dict[str, Any]] = [
    # forward: the first run of the steps, one after the other, from the first
    {"trigger": "start", "source": P, "dest": RN},
    {"trigger": "step_succeeded", "source": RN, "dest": RD, "conditions": "last_step"},
    {"trigger": "step_succeeded", "source": RN, "dest": RN},
    # an update: the forward steps again, with the new spec, one after the other
    {"trigger": "step_succeeded", "source": UP, "dest": RD, "conditions": "last_step"},
    {"trigger": "step_succeeded", "source": UP, "dest": UP},
    {"trigger": "step_retried", "source": [RN, UP], "dest": "="},
    # a workflow that vanished (garbage-collected) runs again, not counted as a failure
    {"trigger": "workflow_vanished", "source": RUNS_A_STEP, "dest": "="},
    # a first run that fails is rolled back; an update that fails never is
    {"trigger": "step_failed", "source": RN, "dest": RB},
    {"trigger": "step_failed", "source": UP, "dest": UF},
    # compensation of the inventory, latest first, after a failure or for offboarding
    {"trigger": "compensated", "source": RB, "dest": FD, "conditions": "all_compensated"},
    {"trigger": "compensated", "source": RB, "dest": RB},
    {"trigger": "compensated", "source": OB, "dest": DL, "conditions": "all_compensated"},
    {"trigger": "compensated", "source": OB, "dest": OB},
    {"trigger": "compensation_retried", "source": [RB, OB], "dest": "="},
    {"trigger": "compensation_exhausted", "source": [RB, OB], "dest": CF},
    # desired state changed
    {"trigger": "spec_changed", "source": [RD, UF], "dest": UP},
    {"trigger": "spec_changed", "source": FD, "dest": P},
    {"trigger": "offboard", "source": OFFBOARDABLE, "dest": DL,
     "conditions": "nothing_to_compensate"},
    {"trigger": "offboard", "source": OFFBOARDABLE, "dest": OB},
    {"trigger": "forget", "source": [*SUSPENDABLE, SU], "dest": DL},
    {"trigger": "recreate", "source": DL, "dest": P},
    # on-call
    {"trigger": "retry", "source": FD, "dest": P},
    {"trigger": "retry", "source": UF, "dest": UP},
    {"trigger": "retry", "source": CF, "dest": OB, "conditions": "is_offboarding"},
    {"trigger": "retry", "source": CF, "dest": RB},
    {"trigger": "suspend", "source": SUSPENDABLE, "dest": SU},
    {"trigger": "resume", "source": SU, "dest": P, "conditions": "resumes_to_pending"},
    {"trigger": "resume", "source": SU, "dest": RN, "conditions": "resumes_to_running"},
    {"trigger": "resume", "source": SU, "dest": RD, "conditions": "resumes_to_ready"},
    {"trigger": "resume", "source": SU, "dest": UP, "conditions": "resumes_to_updating"},
    {"trigger": "resume", "source": SU, "dest": UF, "conditions": "resumes_to_update_failed"},
    {"trigger": "resume", "source": SU, "dest": RB, "conditions": "resumes_to_rolling_back"},
    {"trigger": "resume", "source": SU, "dest": FD, "conditions": "resumes_to_failed"},
    {"trigger": "resume", "source": SU, "dest": CF, "conditions": "resumes_to_cleanup_failed"},
    {"trigger": "resume", "source": SU, "dest": OB, "conditions": "resumes_to_offboarding"},
]  # fmt: skip

TRIGGERS = sorted({row["trigger"] for row in TRANSITIONS})


@dataclass
class _Model:
    """What the ``transitions`` library drives: the record plus the pending log."""

    record: OnboardingRecord
    now: datetime
    plan: StepPlan
    reason: str = ""
    log: list[TransitionRecord] = field(default_factory=list)
    state: State = State.PENDING
    #: (trigger, source, workflow) of the transition being fired
    firing: tuple[str, State, str | None] = ("", State.PENDING, None)

    def record_transition(self) -> None:
        """After every state change: apply its effects and log it."""
        record = self.record
        trigger, source, workflow = self.firing
        dest = State(self.state)
        from_step = record.step
        _effects(record, trigger=trigger, source=source, dest=dest, now=self.now, plan=self.plan)
        moved_on = dest == RN and record.step != from_step
        if dest != record.state or moved_on or record.state_since is None:
            # a step of the first run is "since" when it began, as when each had its state
            record.state_since = self.now
        record.state = dest
        if trigger not in ("compensated", "compensation_retried") or record.reason is None:
            # while compensating, the reason stays the failure that started it
            record.reason = self.reason
        self.log.append(
            TransitionRecord(
                onboarding=record.name,
                from_state=source,
                to_state=dest,
                trigger=trigger,
                reason=self.reason,
                at=self.now,
                workflow=workflow,
                from_step=from_step,
                to_step=record.step,
            )
        )

    # --- conditions -------------------------------------------------------------
    def all_compensated(self) -> bool:
        """Nothing is left in the inventory once the compensation that ran is counted."""
        undone = _undone_by(self.record.step, self.plan)
        return not [s for s in self.record.inventory if s != undone]

    def nothing_to_compensate(self) -> bool:
        return not self.record.inventory

    def last_step(self) -> bool:
        step = self.record.step
        return step is not None and self.plan.next_step(step) is None

    def is_offboarding(self) -> bool:
        return self.record.offboarding

    def _resumes_to(self, state: State) -> bool:
        return (self.record.suspended_from or State.PENDING) == state

    def resumes_to_pending(self) -> bool:
        return self._resumes_to(P)

    def resumes_to_running(self) -> bool:
        return self._resumes_to(RN)

    def resumes_to_ready(self) -> bool:
        return self._resumes_to(RD)

    def resumes_to_updating(self) -> bool:
        return self._resumes_to(UP)

    def resumes_to_update_failed(self) -> bool:
        return self._resumes_to(UF)

    def resumes_to_rolling_back(self) -> bool:
        return self._resumes_to(RB)

    def resumes_to_failed(self) -> bool:
        return self._resumes_to(FD)

    def resumes_to_cleanup_failed(self) -> bool:
        return self._resumes_to(CF)

    def resumes_to_offboarding(self) -> bool:
        return self._resumes_to(OB)


#: One machine for every onboarding: a record's model is bound to it only while a
#: trigger is asked or fired (building a machine per onboarding cost milliseconds).
_MACHINE = Machine(
    model=None,
    states=list(State),
    transitions=TRANSITIONS,
    initial=State.PENDING,
    auto_transitions=False,
    after_state_change="record_transition",
)

#: Models already added to ``_MACHINE`` and free to bind: adding one binds every
#: trigger and state callback onto it (about 0.7 ms), so models are reused, not made
#: per binding. A binding takes one out and puts it back; nothing awaits in between.
_IDLE_MODELS: list[_Model] = []


def _take_model() -> _Model:
    if _IDLE_MODELS:
        return _IDLE_MODELS.pop()
    model = _Model(
        record=OnboardingRecord.__new__(OnboardingRecord),
        now=datetime.min,
        plan=SERVICE_BROKER_PROXY,
    )
    _MACHINE.add_model(model, initial=State.PENDING)
    return model


class OnboardingMachine:
    """Fires triggers on one record and keeps what they did.

    ``fire`` returns the new state; ``log`` holds the transitions to store
    together with the record. ``plan`` is the order of the record's steps.
    """

    def __init__(self, record: OnboardingRecord, *, now: datetime, plan: StepPlan) -> None:
        self.record = record
        self.now = now
        self.plan = plan
        #: the transitions fired so far, to store with the record
        self.log: list[TransitionRecord] = []

    @contextmanager
    def _bound(
        self, *, reason: str = "", firing: tuple[str, State, str | None] | None = None
    ) -> Iterator[_Model]:
        model = _take_model()
        model.record = self.record
        model.now = self.now
        model.plan = self.plan
        model.reason = reason
        model.log = self.log
        model.state = self.record.state  # what the machine reads the current state from
        model.firing = firing if firing is not None else ("", State.PENDING, None)
        try:
            yield model
        finally:
            # the log is the caller's: the idle model must not keep adding to it
            model.log = []
            _IDLE_MODELS.append(model)

    def can(self, trigger: str) -> bool:
        with self._bound() as model:
            return bool(getattr(model, f"may_{trigger}")())

    def fire(self, trigger: str, reason: str, *, workflow: str | None = None) -> State:
        """Fire ``trigger``; raises ``Conflict`` when the current state does not allow it."""
        source = State(self.record.state)
        if trigger == "offboard" and self.can("offboard"):
            # bookkeeping the trigger's conditions and effects need
            self.record.offboarding = True
        with self._bound(reason=reason, firing=(trigger, source, workflow)) as model:
            try:
                getattr(model, trigger)()
            except MachineError as error:
                raise Conflict(
                    f"onboarding {self.record.name}: cannot {trigger} while {source.value}"
                ) from error
        return State(self.record.state)


def _undone_by(step: str | None, plan: StepPlan) -> str | None:
    """The forward step whose work the compensation ``step`` undoes, if it is one."""
    if step is None or not plan.is_compensation(step):
        return None
    return plan.forward_of(step)


def _clear_step(record: OnboardingRecord) -> None:
    record.step = None
    record.attempt = 0
    record.workflow = None
    record.workflow_submitted = False
    record.step_started_at = None
    record.step_deadline = None
    record.vanished = 0


def _effects(
    record: OnboardingRecord,
    *,
    trigger: str,
    source: State,
    dest: State,
    now: datetime,
    plan: StepPlan,
) -> None:
    """What a transition changes on the record besides its state.

    Kept beside the table so a reader sees the whole behaviour in one file. The
    inventory only grows when a step starts (``reconciling.begin_attempt``) and
    only shrinks here, when a compensation succeeded, or when the onboarding is
    forgotten (deletionPolicy Orphan) or made anew after Deleted.
    """
    if trigger in ("step_retried", "compensation_retried"):
        # the same step runs again as a new attempt, which the planner submits
        record.workflow = None
        record.workflow_submitted = False
        return
    if trigger == "workflow_vanished":
        # the same attempt again under a new name: not counted against the attempts
        record.workflow = None
        record.workflow_submitted = False
        record.step_deadline = None
        record.attempt = max(0, record.attempt - 1)
        record.vanished += 1
        return
    if trigger == "suspend":
        # an in-flight workflow is left alone and observed again on resume
        record.suspended_from = source
        record.suspended_at = now
        return
    if trigger == "resume":
        # the step's deadline does not run while suspended
        if record.step_deadline is not None and record.suspended_at is not None:
            record.step_deadline += max(now - record.suspended_at, timedelta(0))
        record.suspended_from = None
        record.suspended_at = None
        return
    record.error_count = 0
    record.next_attempt_at = None
    if trigger == "step_succeeded" and dest in (RN, UP):
        # on to the next forward step of the run or the update
        following = plan.next_step(record.step) if record.step else plan.first
        _clear_step(record)
        record.step = following
        return
    if trigger == "compensated":
        undone = _undone_by(record.step, plan)
        record.inventory = [s for s in record.inventory if s != undone]
    if trigger == "offboard" and source in (RB, CF) and _undone_by(record.step, plan) is not None:
        return  # the compensation under way simply goes on, now towards Deleted
    _clear_step(record)
    if dest in (RN, UP):
        # a run (or an update) begins with the plan's first step
        record.step = plan.first
    if dest == P:
        record.offboarding = False
        record.last_error = None
    if trigger in ("forget", "recreate"):
        record.inventory = []
