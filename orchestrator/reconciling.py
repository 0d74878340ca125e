"""The reconcile pass of one cluster, and the one place that records the outcome of each
onboarding (store, history, logs).

A pass is an ordered list of small steps: observe the workflows in flight
(``observing``), decide per onboarding (``planning``, pure), act on the
decisions (``acting``), record. API cost per pass: one list call for the
cluster when it has workflows in flight, plus the submissions and stops
decided; settled onboardings cost none.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestrator import stepplans
from orchestrator.acting import Actor, log_fields, new_incarnation
from orchestrator.clusters import ClusterRegistry
from orchestrator.configs import DeletionPolicy, Onboarding, OnboardingSpec
from orchestrator.desired import DesiredStateSource
from orchestrator.errors import ClusterUnavailable, Conflict, NotLeading, TemporaryError
from orchestrator.machine import OnboardingMachine
from orchestrator.metrics import Metrics
from orchestrator.observing import Observer
from orchestrator.passes import DEADLINE_GRACE, PassResult, Tuning, utcnow
from orchestrator.planning import (
    IN_FLIGHT,
    UNKNOWN,
    Observation,
    Situation,
    Wait,
    backoff,
    decide,
    immutable_change,
    nothing_exists,
    take_spec,
)
from orchestrator.ports import Credentials, Store, Targets, WorkflowEngine
from orchestrator.records import (
    SETTLED,
    OnboardingRecord,
    Source,
    State,
    TransitionRecord,
    WorkflowStatus,
)
from orchestrator.saving import Saver

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

__all__ = ["PassResult", "Reconciler", "Tuning", "new_incarnation", "new_record", "utcnow"]


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
        #: per cluster, its settled onboardings with nothing to do: name -> (what it was
        #: settled under, see ``_looked_at``; the record as stored)
        self._quiet: dict[str, dict[str, tuple[Look, OnboardingRecord]]] = {}
        #: per cluster, Pending onboardings that wait for a slot: name -> what they waited
        #: under; skipped until given a slot
        self._queued: dict[str, dict[str, Look]] = {}
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
            quiet = dict(self._quiet.get(cluster, {}))
            records = await asyncio.to_thread(self._records, cluster, now, quiet)
            result.examined = len(records)
            engine = self.clusters.engine(cluster)
            # a cluster that failed lately is not called before its back-off ends
            result.down = self.observer.backing_off(cluster, now)
            observations = await self.observer.observe(
                cluster, engine, records, result, known=known
            )
            await self._act_on(records, engine, observations, result)
            result.states.update(r.state for r in records)
            for record in records:
                if record.state not in SETTLED:
                    since = record.state_since or record.updated_at
                    first = result.unsettled_since.get(record.state)
                    result.unsettled_since[record.state] = min(since, first or since)
        finally:
            self.metrics.reconcile_duration.observe(time.monotonic() - started)
        if result.errors == 0:
            self.metrics.reconcile_last_success.set(time.time())
        return result

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
        busy = sum(1 for r in records if r.state in IN_FLIGHT)
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

        ordered = sorted(
            (r for r in records if not self._is_quiet(r)), key=lambda r: (r.created_at, r.name)
        )
        # those that may take a slot go once the others have freed theirs
        takers = [r for r in ordered if r.state in SLOT_TAKERS]
        first = [r for r in ordered if r.state not in SLOT_TAKERS]
        before = {r.name: r.state in IN_FLIGHT for r in first}
        await asyncio.gather(*(turn(r, slot=False) for r in first))
        busy += sum((r.state in IN_FLIGHT) - before[r.name] for r in first)
        # the free slots go, oldest first, to those that look like starting or updating;
        # one that is granted a slot but does not take it leaves it for the next pass
        now = self.clock()
        granted: set[str] = set()
        for record in takers:
            if busy + len(granted) >= limit:
                break
            if self._wants_slot(record, now):
                granted.add(record.name)
        # one still waiting for a slot, unchanged since it last looked, has nothing to do
        await asyncio.gather(
            *(
                turn(r, slot=r.name in granted)
                for r in takers
                if r.name in granted or not self._is_queued(r)
            )
        )

    def _wants_slot(self, record: OnboardingRecord, now: datetime) -> bool:
        """Whether the onboarding would start or update if it had a slot (an estimate
        made before its turn; the planner decides)."""
        if record.next_attempt_at is not None and now < record.next_attempt_at:
            return False
        desired, _ = self._effective_spec(record)
        if desired is None:
            return False
        return record.state == State.PENDING or desired.fingerprint() != record.spec_fingerprint

    def _looked_at(self, record: OnboardingRecord) -> Look:
        """What the onboarding is looked at under: its record version and, when declared
        in files, the desired state's generation (after every accepted change of the
        files, each is looked at once more)."""
        generation = self.desired.generation if record.source == Source.FILE else None
        return generation, record.version

    def _is_queued(self, record: OnboardingRecord) -> bool:
        """Waits for a slot, and neither the record nor its desired spec changed since."""
        queued = self._queued.get(record.cluster, {})
        if record.state == State.PENDING and queued.get(record.name) == self._looked_at(record):
            return True
        queued.pop(record.name, None)
        return False

    def _is_quiet(self, record: OnboardingRecord) -> bool:
        """Settled, and neither the record nor its desired spec changed since: no work."""
        quiet = self._quiet.get(record.cluster, {})
        entry = quiet.get(record.name)
        if entry is not None and entry[0] == self._looked_at(record):
            return True
        quiet.pop(record.name, None)
        return False

    def _limit(self, cluster: str) -> int:
        entry = self.clusters.cluster(cluster)
        return entry.spec.max_concurrent if entry else 0

    def _records(
        self,
        cluster: str,
        now: datetime,
        quiet: Mapping[str, tuple[Look, OnboardingRecord]],
    ) -> list[OnboardingRecord]:
        """The cluster's stored onboardings, creating those newly declared in files and
        taking over those declared anew here while nothing of them exists elsewhere.

        Runs in a worker thread. Of the settled onboardings (``quiet``) it reads only
        the version, from an index: the row is read again only once it changed."""
        versions = self.store.versions(cluster=cluster)
        unchanged = [
            record
            for name, (_, record) in quiet.items()
            if versions.get(name) == record.version and record.cluster == cluster
        ]
        changed = versions.keys() - {record.name for record in unchanged}
        stored = {}
        if unchanged:
            read = self.store.list(cluster=cluster, names=changed) if changed else []
        else:
            read = self.store.list(cluster=cluster)
        for record in [*unchanged, *read]:
            moving = self._declared_cluster(record)
            if moving is not None and moving != cluster and nothing_exists(record):
                continue  # the other cluster's pass takes it over
            stored[record.name] = record
        for name, document in self.desired.state.onboardings.items():
            if document.spec.cluster != cluster or name in stored:
                continue
            other = self.store.get(name)
            if other is None:
                stored[name] = self._create(document, now, source=Source.FILE)
            elif nothing_exists(other):
                moved = self._move(other, cluster, now)
                if moved is not None:
                    stored[name] = moved
            # else: something exists on the other cluster; its pass keeps the stored
            # spec running and says why the new cluster is refused
        return list(stored.values())

    def _declared_cluster(self, record: OnboardingRecord) -> str | None:
        if record.source != Source.FILE:
            return None
        document = self.desired.state.onboardings.get(record.name)
        return document.spec.cluster if document else None

    def _move(
        self, record: OnboardingRecord, cluster: str, now: datetime
    ) -> OnboardingRecord | None:
        """Take over an onboarding declared anew on this cluster (nothing of it exists)."""
        source = record.cluster
        record.cluster = cluster
        record.updated_at = now
        entry = TransitionRecord(
            onboarding=record.name,
            from_state=record.state,
            to_state=record.state,
            trigger="moved",
            reason=f"declared on cluster {cluster} (was {source}; nothing of it existed there)",
            at=now,
        )
        try:
            saved = self.store.save(record, [entry], epoch=self.fence())
        except Conflict:
            return None
        log.info("onboarding moved", extra={"onboarding": record.name, "cluster": cluster})
        return saved

    def _create(self, document: Onboarding, now: datetime, *, source: Source) -> OnboardingRecord:
        name = document.metadata.name
        record = new_record(document, now, source=source)
        where = self.desired.state.sources.get(f"Onboarding/{name}", "the API")
        first = TransitionRecord(
            onboarding=name,
            from_state=State.PENDING,
            to_state=State.PENDING,
            trigger="declared",
            reason=f"declared in {where}",
            at=now,
        )
        created = self.store.create(record, [first], epoch=self.fence())
        log.info("onboarding declared", extra={"onboarding": name, "cluster": record.cluster})
        return created

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
        desired, refused = self._effective_spec(record)
        changed = False
        if desired is not None:
            changed = take_spec(record, desired)
            if record.offboarding and record.state not in (
                State.OFFBOARDING,
                State.CLEANUP_FAILED,
            ):
                record.offboarding = False  # declared again before the offboarding began
                changed = True
        elif record.state != State.DELETED and not record.offboarding and self._offboards(record):
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
                self._quiet.setdefault(record.cluster, {})[record.name] = (
                    self._looked_at(record),
                    record,
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

    def _effective_spec(self, record: OnboardingRecord) -> tuple[OnboardingSpec | None, str | None]:
        """The spec to run and, when the desired one was refused, why.

        A refused change (a field naming an external resource, while something
        exists) never stops the current work: the stored spec keeps running.
        """
        desired = self._desired_spec(record)
        if desired is None:
            return None, None
        problem = immutable_change(record, desired)
        if problem is None:
            return desired, None
        return OnboardingSpec.model_validate(record.spec), problem

    def _offboards(self, record: OnboardingRecord) -> bool:
        policy = record.spec.get("deletionPolicy", DeletionPolicy.DELETE.value)
        return bool(policy == DeletionPolicy.DELETE.value)

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

    def _desired_spec(self, record: OnboardingRecord) -> OnboardingSpec | None:
        if record.source == Source.FILE:
            document = self.desired.state.onboardings.get(record.name)
            return document.spec if document else None
        if record.state == State.DELETED or record.offboarding:
            return None
        return OnboardingSpec.model_validate(record.spec)

    def forget_backoff(self, cluster: str) -> None:
        """Call the cluster at its next pass even if it failed lately (something changed)."""
        self.observer.forget_backoff(cluster)

    def forget_templates(self) -> None:
        """Make the next pass re-check every cluster's WorkflowTemplates."""
        self.actor.forget_templates()

    def start_over(self) -> None:
        """Forget what earlier passes saw: when this replica leads again, another one
        may have acted meanwhile."""
        self._quiet.clear()
        self._queued.clear()
        self.actor.forget_templates()

    # --- recording ------------------------------------------------------------------

    async def _save(self, record: OnboardingRecord, log_: list[TransitionRecord]) -> None:
        record.updated_at = self.clock()
        saved = await self.saver.save(record, list(log_))
        record.version = saved.version
        log_.clear()

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


def new_record(document: Onboarding, now: datetime, *, source: Source) -> OnboardingRecord:
    spec = document.spec
    return OnboardingRecord(
        name=document.metadata.name,
        cluster=spec.cluster,
        namespace=spec.namespace,
        source=source,
        spec=spec.model_dump(mode="json", by_alias=True),
        spec_fingerprint=spec.fingerprint(),
        incarnation=new_incarnation(),
        created_at=now,
        updated_at=now,
        state_since=now,
    )
