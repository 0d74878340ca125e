"""The reconcile pass of one cluster, and the one place that records the outcome of each
onboarding (store, history, logs).

A pass is an ordered list of small steps: load the cluster's records (``roster``),
observe the workflows in flight (``observing``), decide per onboarding
(``planning``, pure, on the spec ``specs`` says it runs with), act on the decisions
(``acting``), record (``saving``, then ``roster`` again). API cost per pass: one list
call for the cluster when it has workflows in flight, plus the submissions and stops
decided; settled onboardings cost none.

Work per pass is proportional to change. The records are read again only where their
stored version differs (``roster``). An onboarding is not decided again while
nothing about it changed: settled ones (until their record or desired spec changes),
Pending ones that wait for a slot (until offered one), and those waiting for their
running workflow (until what the cluster says of it changes, or its deadline or
back-off comes due).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestrator.clusters import ClusterRegistry
from orchestrator.config.desired import DesiredStateSource
from orchestrator.core import stepplans
from orchestrator.core.acting import Actor, log_fields
from orchestrator.core.machine import OnboardingMachine
from orchestrator.core.observing import Observer
from orchestrator.core.passes import (
    DEADLINE_GRACE,
    PassResult,
    Tuning,
    utcnow,
)
from orchestrator.core.planning import (
    IN_FLIGHT,
    UNKNOWN,
    Observation,
    Situation,
    Wait,
    backoff,
    decide,
    take_spec,
)
from orchestrator.core.roster import Roster
from orchestrator.core.saving import Saver
from orchestrator.core.specs import Specs
from orchestrator.errors import ClusterUnavailable, Conflict, NotLeading, TemporaryError
from orchestrator.metrics import Metrics
from orchestrator.ports import Credentials, Store, Targets, WorkflowEngine
from orchestrator.records import (
    OnboardingRecord,
    Source,
    State,
    TransitionRecord,
    WorkflowStatus,
)

log = logging.getLogger(__name__)

#: decisions per onboarding and pass (a success may lead straight to the next submission)
MAX_DECISIONS = 6
#: onboardings of one cluster acted on at the same time within a pass
CONCURRENT_ACTIONS = 16
#: the desired state's generation (file-declared only) and the record version an
#: onboarding was last looked at under; either changing means it is looked at again
Look = tuple[int | None, int]
#: states whose next step may need one of the cluster's slots (a start, an update)
SLOT_TAKERS = frozenset({State.PENDING, State.READY, State.UPDATE_FAILED, State.FAILED})

__all__ = ["PassResult", "Reconciler", "Tuning", "utcnow"]


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        desired: DesiredStateSource,
        clusters: ClusterRegistry,
        templates: list[dict[str, Any]],
        metrics: Metrics,
        tuning: Tuning | None = None,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        targets: Targets | None = None,
        credentials: Credentials | None = None,
        fence: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.store = store
        #: the leader's epoch every write of a pass names (None: the only replica), or
        #: ``NotLeading`` raised when this replica must not write (see ``election``)
        self.fence = fence
        self.desired = desired
        self.clusters = clusters
        self.metrics = metrics
        self.tuning = tuning or Tuning()
        self.clock = clock
        self.jitter = jitter
        #: per cluster, its settled onboardings with nothing to do: name -> what it was
        #: settled under (see ``_look``)
        self._quiet: dict[str, dict[str, Look]] = {}
        #: per cluster, Pending onboardings that wait for a slot: name -> what they waited
        #: under; skipped until given a slot
        self._queued: dict[str, dict[str, Look]] = {}
        #: per cluster, onboardings waiting for their running workflow: name -> (what it
        #: waited under, what the cluster said of the workflow, when time alone changes
        #: the decision: its step deadline or the end of its back-off)
        self._waiting: dict[str, dict[str, tuple[Look, Observation, datetime | None]]] = {}
        self.roster = Roster(store=store, desired=desired, fence=lambda: self.fence())
        self.specs = Specs(desired)
        self.saver = Saver(store, fence=lambda: self.fence())
        self.observer = Observer(
            clusters=clusters, metrics=metrics, tuning=self.tuning, clock=clock, jitter=jitter
        )
        self.actor = Actor(
            desired=desired,
            clusters=clusters,
            templates=templates,
            metrics=metrics,
            tuning=self.tuning,
            clock=clock,
            save=self._save,
            targets=targets,
            credentials=credentials,
        )

    # --- the pass ----------------------------------------------------------------

    async def reconcile_cluster(
        self, cluster: str, *, known: Mapping[str, WorkflowStatus] | None = None
    ) -> PassResult:
        """One pass over one cluster's onboardings; ``known``: what the cluster's watch
        says of its workflows (a pass the watch woke lists only what it does not know)."""
        started = time.monotonic()
        result = PassResult(cluster)
        try:
            now = self.clock()
            records = await self.roster.load(cluster, now, woken_by_watch=known is not None)
            result.examined = len(records)
            engine = self.clusters.engine(cluster)
            # a cluster that failed lately is not called before its back-off ends
            result.down = self.observer.backing_off(cluster, now)
            observations = await self.observer.observe(
                cluster, engine, records, result, known=known
            )
            await self._act_on(records, engine, observations, result)
            self._count(cluster, result)
        finally:
            self.metrics.reconcile_duration.observe(time.monotonic() - started)
        if result.errors == 0:
            self.metrics.reconcile_last_success.set(time.time())
        return result

    def _count(self, cluster: str, result: PassResult) -> None:
        """What the gauges count of the cluster (see ``Roster.tally``)."""
        tally, result.recounted = self.roster.tally(cluster)
        result.states.update(tally.states)
        result.unsettled_since.update(tally.unsettled_since())

    def written_outside(self) -> None:
        """Something other than this reconciler may have written to the store (an API
        action, a prune): the next pass of every cluster reads the stored versions."""
        self.roster.written_outside()

    async def _act_on(
        self,
        records: list[OnboardingRecord],
        engine: WorkflowEngine | None,
        observations: dict[str, Observation],
        result: PassResult,
    ) -> None:
        """Decide and act for each onboarding, those in flight first (concurrently), so
        that a slot they free is taken by a waiting one in this same pass."""
        limit = self._limit(result.cluster)
        turns = asyncio.Semaphore(CONCURRENT_ACTIONS)
        probe = asyncio.Lock()

        async def act(record: OnboardingRecord, slot: bool) -> None:
            await self._reconcile_one(
                record,
                engine if result.down is None else None,
                observations.get(record.name),
                slot_available=slot,
                result=result,
            )

        async def turn(record: OnboardingRecord, *, slot: bool) -> None:
            async with turns:
                if result.answered:
                    await act(record, slot)
                    return
                # until the cluster has answered once in this pass, one call at a time:
                # a dead cluster is asked once, not once per onboarding
                async with probe:
                    await act(record, slot)

        agenda = self._to_decide(result.cluster, records, observations, self.clock())
        # those that may take a slot go once the others have freed theirs; each onboarding
        # acted on is a copy: the cached record stays as stored until a save succeeds (a
        # failed or refused save leaves nothing half-changed behind)
        takers = [r for r in agenda.found if r.state in SLOT_TAKERS]
        first = [_copy(r) for r in agenda.found if r.state not in SLOT_TAKERS]
        before = {r.name: r.state in IN_FLIGHT for r in first}
        await asyncio.gather(*(turn(r, slot=False) for r in first))
        busy = agenda.busy + sum((r.state in IN_FLIGHT) - before[r.name] for r in first)
        # the free slots go, oldest first, to those that look like starting or updating
        # (the queued ones among them); one that is granted a slot but does not take it
        # leaves it for the next pass
        granted: set[str] = set()
        if busy < limit and (takers or agenda.queued):
            now = self.clock()
            for record in sorted(takers + agenda.queued, key=_age):
                if busy + len(granted) >= limit:
                    break
                if self._wants_slot(record, now):
                    granted.add(record.name)
        # one still waiting for a slot, unchanged since it last looked, has nothing to do
        await asyncio.gather(
            *(turn(_copy(r), slot=r.name in granted) for r in takers),
            *(turn(_copy(r), slot=True) for r in agenda.queued if r.name in granted),
        )

    def _wants_slot(self, record: OnboardingRecord, now: datetime) -> bool:
        """Whether the onboarding would start or update if it had a slot (an estimate
        made before its turn; the planner decides)."""
        if record.next_attempt_at is not None and now < record.next_attempt_at:
            return False
        desired, _ = self.specs.effective(record)
        if desired is None:
            return False
        return (
            record.state == State.PENDING
            or self.specs.fingerprint(record, desired) != record.spec_fingerprint
        )

    def _looked_at(self, record: OnboardingRecord) -> Look:
        return _look(record, self.desired.generation)

    def _limit(self, cluster: str) -> int:
        entry = self.clusters.cluster(cluster)
        return entry.spec.max_concurrent if entry else 0

    def _to_decide(
        self,
        cluster: str,
        records: list[OnboardingRecord],
        observations: Mapping[str, Observation],
        now: datetime,
    ) -> _Agenda:
        """The onboardings to decide for, oldest first: all but the settled ones, those
        waiting for their running workflow and those waiting for a slot, while nothing
        that decides changed since they were last looked at (the record, its desired
        spec, what the cluster says of the workflow, the clock against its deadline and
        back-off); and those waiting for a slot, for when one is free.

        It runs over every onboarding of the cluster at every pass, so it is one loop
        rather than a call or two per onboarding."""
        generation = self.desired.generation
        quiet = self._quiet.setdefault(cluster, {})
        waiting = self._waiting.setdefault(cluster, {})
        queued = self._queued.setdefault(cluster, {})
        agenda = _Agenda()
        for record in records:
            name = record.name
            state = record.state
            if state in IN_FLIGHT:
                agenda.busy += 1
            look = _look(record, generation)
            settled_under = quiet.get(name)
            if settled_under is not None:
                if settled_under == look:
                    continue
                del quiet[name]
            entry = waiting.get(name)
            if entry is not None:
                under, seen, due = entry
                if under == look and observations.get(name) == seen and (due is None or now < due):
                    continue
                del waiting[name]
            queued_under = queued.get(name)
            if queued_under is not None:
                if queued_under == look and state == State.PENDING:
                    agenda.queued.append(record)
                    continue
                del queued[name]
            agenda.found.append(record)
        agenda.found.sort(key=_age)
        return agenda

    # --- one onboarding --------------------------------------------------------

    async def _reconcile_one(
        self,
        record: OnboardingRecord,
        engine: WorkflowEngine | None,
        observation: Observation,
        *,
        slot_available: bool,
        result: PassResult,
    ) -> None:
        """Decide and act for one onboarding (the caller counts the slots it holds)."""
        stored_error = record.last_error
        offered = slot_available
        desired, refused = self.specs.effective(record)
        changed = False
        if desired is not None:
            if not self.specs.runs_with(record, desired):
                changed = take_spec(record, desired)
            if record.offboarding and record.state not in (
                State.OFFBOARDING,
                State.CLEANUP_FAILED,
            ):
                record.offboarding = False  # declared again before the offboarding began
                changed = True
        elif (
            record.state != State.DELETED
            and not record.offboarding
            and self.specs.offboards(record)
        ):
            # removed: shown as offboarding at once, even while the cluster cannot be reached
            record.offboarding = True
            changed = True
        if isinstance(observation, WorkflowStatus):
            changed |= self._adopt(record, observation)
            if record.error_count or record.last_error:
                # the cluster answered about this onboarding's workflow: the error is over
                record.error_count = 0
                record.last_error = None
                record.next_attempt_at = None
                changed = True
        elif observation is UNKNOWN and result.down is not None:
            record.last_error = result.down
        try:
            plan = stepplans.plan_for(record)
        except stepplans.UnknownPipeline as error:
            await self._note_error(record, TemporaryError(str(error), reason="UnknownPipeline"))
            return
        machine = OnboardingMachine(record, now=self.clock(), plan=plan)
        fingerprint = self.specs.fingerprint(record, desired) if desired is not None else None
        try:
            for _ in range(MAX_DECISIONS):
                situation = Situation(
                    record=record,
                    desired=desired,
                    observation=observation,
                    now=self.clock(),
                    plan=plan,
                    slot_available=slot_available,
                    limits=self.tuning.limits,
                    jitter=self.jitter,
                    fingerprint=fingerprint,
                )
                commands = decide(situation)
                if isinstance(commands[0], Wait):
                    break
                changed = True
                acted = await self.actor.execute(machine, commands, engine, situation, result)
                if acted:
                    result.answered = True
                    # it acted on the cluster without an error: the error streak is over
                    record.error_count = 0
                    if record.last_error == stored_error:
                        record.last_error = None
                    self.observer.answered(record.cluster)
                if record.state in IN_FLIGHT:
                    slot_available = False  # it holds the slot it was offered
                # after a transition the new state's first step has not been observed
                observation = None
                if acted:
                    break
            if refused is not None:
                record.last_error = refused
            if changed or record.last_error != stored_error:
                await self._save(record, machine.log)
            if isinstance(commands[0], Wait) and record.state == State.PENDING and not offered:
                # waits for a slot: not looked at again until offered one or changed
                self._queued.setdefault(record.cluster, {})[record.name] = self._looked_at(record)
            if isinstance(commands[0], Wait) and commands[0].settled:
                # nothing to do until the record or its desired spec changes
                self._quiet.setdefault(record.cluster, {})[record.name] = self._looked_at(record)
            elif (
                isinstance(commands[0], Wait)
                and isinstance(observation, WorkflowStatus)
                and not observation.phase.finished
            ):
                # its workflow runs: nothing to do until the cluster says otherwise, or
                # its deadline or back-off comes due
                dues = [t for t in (record.step_deadline, record.next_attempt_at) if t]
                self._waiting.setdefault(record.cluster, {})[record.name] = (
                    self._looked_at(record),
                    observation,
                    min(dues) if dues else None,
                )
        except ClusterUnavailable as error:
            if result.listed:
                # the cluster answered this pass's list call: the failure is this
                # onboarding's (its submit or stop), so it backs off on its own
                result.errors += 1
                self.metrics.reconcile_errors.labels(
                    cluster=record.cluster, reason=error.reason
                ).inc()
                await self._note_error(record, error, machine.log)
            else:
                # the cluster's fault, not this onboarding's: back off the cluster
                if result.down is None:
                    self.observer.failed(record.cluster, error, result)
                record.last_error = refused or str(result.down or error)
                await self._save_quietly(record, machine.log)
        except TemporaryError as error:
            result.errors += 1
            self.metrics.reconcile_errors.labels(cluster=record.cluster, reason=error.reason).inc()
            await self._note_error(record, error, machine.log)
        except Conflict as error:
            # changed meanwhile (an API action): the next pass starts from the stored record
            log.info("skipped: changed meanwhile", extra=log_fields(record, error=str(error)))
        except NotLeading:
            raise  # this replica stops acting: nothing is recorded, the pass ends
        except Exception as error:
            result.errors += 1
            self.metrics.reconcile_errors.labels(cluster=record.cluster, reason="Internal").inc()
            log.exception("reconcile failed", extra=log_fields(record))
            await self._note_error(
                record, TemporaryError(f"internal error: {type(error).__name__}"), machine.log
            )

    def _adopt(self, record: OnboardingRecord, status: WorkflowStatus) -> bool:
        """The workflow exists: make sure that is recorded with its deadline.

        Repairs a submission whose record was lost (an on-call action saved the
        onboarding while the submit was under way)."""
        changed = False
        if not record.workflow_submitted:
            record.workflow_submitted = True
            changed = True
        if record.step_deadline is None:
            begun = status.started_at or self.clock()
            record.step_started_at = record.step_started_at or begun
            record.step_deadline = (
                begun + timedelta(seconds=self.tuning.step_timeout_seconds) + DEADLINE_GRACE
            )
            changed = True
        return changed

    def forget_backoff(self, cluster: str) -> None:
        """Call the cluster at its next pass even if it failed lately (something changed)."""
        self.observer.forget_backoff(cluster)

    def forget_templates(self) -> None:
        """Make the next pass re-check every cluster's WorkflowTemplates."""
        self.actor.forget_templates()

    def start_over(self) -> None:
        """Forget what earlier passes saw: when this replica leads again, another one
        may have acted meanwhile."""
        self.roster.forget()
        self._quiet.clear()
        self._queued.clear()
        self._waiting.clear()
        self.actor.forget_templates()

    # --- recording ------------------------------------------------------------------

    async def _save(self, record: OnboardingRecord, log_: list[TransitionRecord]) -> None:
        record.updated_at = self.clock()
        saved = await self.saver.save(record, list(log_))
        record.version = saved.version
        log_.clear()
        # what is stored now (a copy: the caller goes on changing ``record``)
        self.roster.stored(saved)

    async def _note_error(
        self,
        record: OnboardingRecord,
        error: TemporaryError,
        pending: list[TransitionRecord] | None = None,
    ) -> None:
        """Back off this onboarding and remember why; its state does not change."""
        record.error_count += 1
        delay = backoff(record.error_count, limits=self.tuning.limits, jitter=self.jitter())
        if error.delay is not None:
            # the server's Retry-After is honoured, up to the longest back-off
            delay = max(delay, min(error.delay, self.tuning.limits.backoff_max_seconds))
        record.last_error = str(error)
        record.next_attempt_at = self.clock() + timedelta(seconds=delay)
        log.warning(
            "will retry",
            extra=log_fields(
                record, error=str(error), reason=error.reason, retry_in=round(delay, 1)
            ),
        )
        await self._save_quietly(record, pending if pending is not None else [])

    async def _save_quietly(
        self, record: OnboardingRecord, pending: list[TransitionRecord]
    ) -> None:
        """Save what an error left; a conflict or a store error only loses this note."""
        try:
            await self._save(record, pending)
        except Conflict:
            pass
        except TemporaryError as store_error:
            log.error("cannot record the error", extra=log_fields(record, error=str(store_error)))


@dataclasses.dataclass
class _Agenda:
    """A pass's onboardings to decide for (``Reconciler._to_decide``)."""

    #: those with something to decide, oldest first
    found: list[OnboardingRecord] = dataclasses.field(default_factory=list)
    #: Pending ones waiting for a slot, unchanged since they last looked (in no order)
    queued: list[OnboardingRecord] = dataclasses.field(default_factory=list)
    #: how many of the cluster's onboardings hold a slot (are in flight)
    busy: int = 0


def _age(record: OnboardingRecord) -> tuple[datetime, str]:
    """Oldest first: the order in which onboardings are decided and given slots."""
    return record.created_at, record.name


def _look(record: OnboardingRecord, generation: int) -> Look:
    """What the onboarding is looked at under: its record version and, when declared in
    files, the desired state's ``generation`` (after every accepted change of the files,
    each is looked at once more)."""
    return (generation if record.source == Source.FILE else None), record.version


def _copy(record: OnboardingRecord) -> OnboardingRecord:
    """A shallow copy (``copy.copy`` costs several times more). Safe because nothing
    changes a record's lists or dicts in place: they are replaced."""
    twin = object.__new__(OnboardingRecord)
    for name in _RECORD_FIELDS:
        setattr(twin, name, getattr(record, name))
    return twin


_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(OnboardingRecord))
