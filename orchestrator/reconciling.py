"""The reconcile pass of one cluster: an ordered list of small steps, with one
place that records the outcome of each onboarding (store, history, metrics, logs).

API cost per pass: one list call for the cluster when it has workflows in
flight, plus the submissions and stops decided; settled onboardings cost none.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.clusters import ClusterRegistry
from orchestrator.configs import DeletionPolicy, Onboarding, OnboardingSpec
from orchestrator.desired import DesiredStateSource
from orchestrator.errors import (
    ClusterUnavailable,
    Conflict,
    PermanentError,
    TemporaryError,
    WorkflowExists,
    WorkflowNotFound,
)
from orchestrator.machine import OnboardingMachine
from orchestrator.metrics import Metrics
from orchestrator.naming import in_flight_selector, workflow_labels, workflow_name
from orchestrator.parameters import step_parameters
from orchestrator.planning import (
    IN_FLIGHT,
    UNKNOWN,
    Command,
    Fire,
    Limits,
    Observation,
    Situation,
    Stop,
    Submit,
    Wait,
    attempt_failed,
    backoff,
    decide,
    immutable_change,
    next_compensation,
    nothing_exists,
)
from orchestrator.ports import Credentials, Store, Targets, WorkflowEngine
from orchestrator.records import (
    SETTLED,
    OnboardingRecord,
    Source,
    State,
    TransitionRecord,
    WorkflowStatus,
    WorkflowSubmission,
)
from orchestrator.steps import Step, forward_of, inventory_order

log = logging.getLogger(__name__)

#: names per list call, so a label selector stays a sensible length
SELECTOR_CHUNK = 50
#: decisions per onboarding and pass (a success may lead straight to the next submission)
MAX_DECISIONS = 6
#: how often templates are compared again before a submission (someone may have changed them)
TEMPLATES_RECHECK = timedelta(minutes=5)
#: our deadline trails the workflow's own activeDeadlineSeconds by this much
DEADLINE_GRACE = timedelta(seconds=60)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tuning:
    """The reconciler's knobs (from ``settings.Settings``)."""

    daemon_id: str = "orchestrator"
    step_timeout_seconds: int = 1800
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class ClusterBackoff:
    """A cluster that did not answer: its failures in a row and when to call it again."""

    failures: int
    until: datetime
    reason: str


@dataclass
class PassResult:
    cluster: str
    examined: int = 0
    listed: bool = False
    submitted: int = 0
    errors: int = 0
    #: why the cluster stopped answering in this pass; the rest of the pass does not call it
    down: str | None = None


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
    ) -> None:
        self.store = store
        self.targets = targets
        self.credentials = credentials
        self.desired = desired
        self.clusters = clusters
        self.templates = templates
        self.metrics = metrics
        self.tuning = tuning or Tuning()
        self.clock = clock
        self.jitter = jitter
        #: when each cluster's WorkflowTemplates were last made current
        self._templates_applied: dict[str, datetime] = {}
        #: clusters that failed lately, and when to call them again
        self._cluster_backoff: dict[str, ClusterBackoff] = {}

    # --- the pass ----------------------------------------------------------------

    async def reconcile_cluster(self, cluster: str) -> PassResult:
        """One pass over one cluster's onboardings."""
        started = time.monotonic()
        result = PassResult(cluster)
        try:
            now = self.clock()
            records = self._records(cluster, now)
            result.examined = len(records)
            engine = self.clusters.engine(cluster)
            backing_off = self._cluster_backoff.get(cluster)
            if backing_off is not None and now < backing_off.until:
                # the cluster failed lately: no call to it before its back-off ends
                result.down = backing_off.reason
            observations = await self._observe(cluster, engine, records, result)
            busy = sum(1 for r in records if r.state in IN_FLIGHT)
            limit = self._limit(cluster)
            for record in sorted(records, key=lambda r: (r.created_at, r.name)):
                observation = observations.get(record.name, None)
                started_here = await self._reconcile_one(
                    record,
                    engine if result.down is None else None,
                    observation,
                    slot_available=busy < limit,
                    result=result,
                )
                busy += started_here
        finally:
            self.metrics.reconcile_duration.observe(time.monotonic() - started)
        if result.errors == 0:
            self.metrics.reconcile_last_success.set(time.time())
        return result

    def _limit(self, cluster: str) -> int:
        entry = self.clusters.cluster(cluster)
        return entry.spec.max_concurrent if entry else 0

    def _records(self, cluster: str, now: datetime) -> list[OnboardingRecord]:
        """The cluster's stored onboardings, creating those newly declared in files and
        taking over those declared anew here while nothing of them exists elsewhere."""
        stored = {}
        for record in self.store.list(cluster=cluster):
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
            saved = self.store.save(record, [entry])
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
        created = self.store.create(record, [first])
        log.info("onboarding declared", extra={"onboarding": name, "cluster": record.cluster})
        return created

    async def _observe(
        self,
        cluster: str,
        engine: WorkflowEngine | None,
        records: list[OnboardingRecord],
        result: PassResult,
    ) -> dict[str, Observation]:
        """One list call for the workflows in flight; UNKNOWN for all if it fails.

        A workflow the list does not show is looked up by name before it is taken
        as vanished (rare: deleted, or garbage-collected during an outage).
        """
        in_flight = [r for r in records if r.workflow is not None and r.state not in SETTLED]
        if not in_flight:
            return {}
        if engine is None or result.down is not None:
            return dict.fromkeys((r.name for r in in_flight), UNKNOWN)
        found: dict[str, WorkflowStatus] = {}
        names = sorted({r.name for r in in_flight})
        asked = time.monotonic()
        try:
            for start in range(0, len(names), SELECTOR_CHUNK):
                selector = in_flight_selector(
                    daemon=self.tuning.daemon_id, onboardings=names[start : start + SELECTOR_CHUNK]
                )
                for status in await engine.list(selector):
                    found[status.name] = status
            for record in in_flight:
                if record.workflow_submitted and record.workflow not in found:
                    with contextlib.suppress(WorkflowNotFound):
                        assert record.workflow is not None
                        found[record.workflow] = await engine.get(record.workflow)
        except TemporaryError as error:
            self._cluster_failed(cluster, error, result)
            return dict.fromkeys(names, UNKNOWN)
        result.listed = True
        self._cluster_answered(cluster, latency=time.monotonic() - asked)
        return {r.name: found.get(r.workflow or "") for r in in_flight}

    def _cluster_failed(self, cluster: str, error: TemporaryError, result: PassResult) -> None:
        """The cluster did not answer: back off the cluster, not its onboardings."""
        self.clusters.mark(cluster, reachable=False, reason=str(error), now=self.clock())
        self.metrics.reconcile_errors.labels(cluster=cluster, reason=error.reason).inc()
        result.errors += 1
        result.down = str(error)
        previous = self._cluster_backoff.get(cluster)
        failures = (previous.failures if previous else 0) + 1
        delay = backoff(failures, limits=self.tuning.limits, jitter=self.jitter())
        if error.delay is not None:
            delay = max(delay, error.delay)
        self._cluster_backoff[cluster] = ClusterBackoff(
            failures=failures,
            until=self.clock() + timedelta(seconds=delay),
            reason=f"cluster {cluster} did not answer: {error}",
        )
        log.warning(
            "cluster did not answer; backing off",
            extra={"cluster": cluster, "error": str(error), "retry_in": round(delay, 1)},
        )

    def _cluster_answered(self, cluster: str, *, latency: float | None = None) -> None:
        self._cluster_backoff.pop(cluster, None)
        self.clusters.mark(cluster, reachable=True, reason=None, now=self.clock(), latency=latency)

    # --- one onboarding --------------------------------------------------------

    async def _reconcile_one(
        self,
        record: OnboardingRecord,
        engine: WorkflowEngine | None,
        observation: Observation,
        *,
        slot_available: bool,
        result: PassResult,
    ) -> int:
        """Decide and act for one onboarding; returns 1 if it took a cluster slot."""
        stored_error = record.last_error
        desired, refused = self._effective_spec(record)
        changed = False
        if desired is not None:
            spec = desired.model_dump(mode="json", by_alias=True)
            if spec != record.spec or desired.namespace != record.namespace:
                record.spec = spec
                record.namespace = desired.namespace
                changed = True
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
        took_slot = 0
        machine = OnboardingMachine(record, now=self.clock())
        try:
            for _ in range(MAX_DECISIONS):
                situation = Situation(
                    record=record,
                    desired=desired,
                    observation=observation,
                    now=self.clock(),
                    slot_available=slot_available and not took_slot,
                    limits=self.tuning.limits,
                    jitter=self.jitter,
                )
                commands = decide(situation)
                if isinstance(commands[0], Wait):
                    break
                changed = True
                acted = await self._execute(machine, commands, engine, situation, result)
                if acted:
                    # it acted on the cluster without an error: the error streak is over
                    record.error_count = 0
                    if record.last_error == stored_error:
                        record.last_error = None
                    self._cluster_answered(record.cluster)
                if any(isinstance(c, Fire) and c.trigger == "start" for c in commands):
                    took_slot = 1
                if any(isinstance(c, Fire) and c.trigger == "spec_changed" for c in commands):
                    took_slot = int(record.state == State.UPDATING)
                # after a transition the new state's first step has not been observed
                observation = None
                if acted:
                    break
            if refused is not None:
                record.last_error = refused
            if changed or record.last_error != stored_error:
                self._save(record, machine.log)
        except ClusterUnavailable as error:
            # the cluster's fault, not this onboarding's: back off the cluster
            if result.down is None:
                self._cluster_failed(record.cluster, error, result)
            record.last_error = refused or str(result.down or error)
            self._save_quietly(record, machine.log)
        except TemporaryError as error:
            result.errors += 1
            self.metrics.reconcile_errors.labels(cluster=record.cluster, reason=error.reason).inc()
            self._note_error(record, error, machine.log)
        except Conflict as error:
            # changed meanwhile (an API action): the next pass starts from the stored record
            log.info(
                "skipped: changed meanwhile", extra={"onboarding": record.name, "error": str(error)}
            )
        except Exception as error:
            result.errors += 1
            self.metrics.reconcile_errors.labels(cluster=record.cluster, reason="Internal").inc()
            log.exception("reconcile failed", extra={"onboarding": record.name})
            self._note_error(
                record, TemporaryError(f"internal error: {type(error).__name__}"), machine.log
            )
        return took_slot

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

    async def _execute(
        self,
        machine: OnboardingMachine,
        commands: list[Command],
        engine: WorkflowEngine | None,
        situation: Situation,
        result: PassResult,
    ) -> bool:
        """Carry out the commands in order; True when it talked to Argo (ends the turn)."""
        record = machine.record
        acted = False
        for command in commands:
            if isinstance(command, Fire):
                if ends_offboarding(record, command.trigger):
                    await self._release(record)
                self._fire(machine, command, situation)
            elif isinstance(command, Stop):
                await self._require(engine, record, result).stop(
                    command.workflow, message=command.message
                )
                log.info("workflow stopped", extra=_fields(record, workflow=command.workflow))
                acted = True
            elif isinstance(command, Submit):
                await self._submit(
                    machine, command, self._require(engine, record, result), situation
                )
                result.submitted += 1
                acted = True
        return acted

    def _require(
        self, engine: WorkflowEngine | None, record: OnboardingRecord, result: PassResult
    ) -> WorkflowEngine:
        if engine is not None:
            return engine
        if result.down is not None:
            raise ClusterUnavailable(result.down)
        raise TemporaryError(
            f"cluster {record.cluster} is not declared; cannot act on it",
            reason="UnknownCluster",
        )

    def _fire(self, machine: OnboardingMachine, command: Fire, situation: Situation) -> None:
        record = machine.record
        source = record.state
        step = record.step
        started_at = record.step_started_at
        if command.trigger in ("start", "spec_changed") and situation.desired is not None:
            # the spec this run (or update) carries out; a later edit updates again
            record.spec_fingerprint = situation.desired.fingerprint()
        if command.trigger == "recreate":
            # a new incarnation: new workflow names, the new spec, nothing inherited
            record.incarnation = new_incarnation()
            if situation.desired is not None:
                record.spec_fingerprint = situation.desired.fingerprint()
        new = machine.fire(command.trigger, command.reason, workflow=command.workflow)
        if command.delay is not None:
            record.next_attempt_at = self.clock() + timedelta(seconds=command.delay)
        self.metrics.transitions.labels(
            from_state=source.value, to_state=new.value, trigger=command.trigger
        ).inc()
        outcome = _OUTCOMES.get(command.trigger)
        if outcome and step:
            self.metrics.step_outcomes.labels(
                step=step, cluster=record.cluster, outcome=outcome
            ).inc()
            if started_at is not None:
                elapsed = (self.clock() - started_at).total_seconds()
                self.metrics.step_duration.labels(step=step, outcome=outcome).observe(elapsed)
        level = logging.WARNING if new in (State.FAILED, State.CLEANUP_FAILED) else logging.INFO
        log.log(
            level,
            f"{source.value} -> {new.value}: {command.reason}",
            extra=_fields(record, step=step, workflow=command.workflow, trigger=command.trigger),
        )

    async def _submit(
        self,
        machine: OnboardingMachine,
        command: Submit,
        engine: WorkflowEngine,
        situation: Situation,
    ) -> None:
        record = machine.record
        step = command.step
        if command.new_attempt:
            begin_attempt(record, step)
            # the intent is stored before Argo hears of it: after a crash the
            # same name is looked up, then resubmitted, never run twice
            self._save(record, machine.log)
        cluster = self.clusters.cluster(record.cluster)
        prepared = cluster is not None and cluster.spec.kubeconfig is not None
        if prepared and not step.is_compensation:
            try:
                await self._prepare(record)
            except PermanentError as error:
                # e.g. invalid BTP credentials, or a 4xx from Kubernetes: another
                # pass cannot do better, so it counts as a failed attempt
                self._refused(machine, situation, step, f"preparing the target failed: {error}")
                return
        await self._apply_templates(record.cluster, engine)
        assert record.workflow is not None
        spec = OnboardingSpec.model_validate(record.spec)
        counter = record.attempt_counters[step.value]
        submission = WorkflowSubmission(
            name=record.workflow,
            template=step.template,
            parameters=step_parameters(onboarding=record.name, spec=spec, step=step),
            labels=workflow_labels(
                onboarding=record.name,
                incarnation=record.incarnation,
                step=step,
                attempt=counter,
                daemon=self.tuning.daemon_id,
            ),
            active_deadline_seconds=self.tuning.step_timeout_seconds,
            # a cluster the daemon prepares runs the steps as the ServiceAccount it made
            service_account=cluster.spec.argo.service_account if cluster and prepared else None,
        )
        try:
            await engine.submit(submission)
            outcome = "created"
        except WorkflowExists:
            await engine.get(record.workflow)  # adopt it: it is ours by its name
            outcome = "adopted"
        except PermanentError as error:
            self._refused(machine, situation, step, f"the workflow was rejected: {error}")
            return
        now = self.clock()
        record.workflow_submitted = True
        record.step_started_at = now
        record.step_deadline = (
            now + timedelta(seconds=self.tuning.step_timeout_seconds) + DEADLINE_GRACE
        )
        self.metrics.workflow_submissions.labels(
            cluster=record.cluster, step=step.value, result=outcome
        ).inc()
        log.info(
            f"workflow {outcome}",
            extra=_fields(
                record, step=step.value, workflow=record.workflow, attempt=record.attempt
            ),
        )

    def _refused(
        self, machine: OnboardingMachine, situation: Situation, step: Step, why: str
    ) -> None:
        """An attempt that could not even start: it counts as failed, with the real reason."""
        record = machine.record
        self.metrics.workflow_submissions.labels(
            cluster=record.cluster, step=step.value, result="rejected"
        ).inc()
        log.error("attempt refused", extra=_fields(record, step=step.value, error=why))
        record.last_error = f"{step.value}: {why}"
        for failed in attempt_failed(situation, step, f"{step.value}: {why}"):
            if isinstance(failed, Fire):
                self._fire(machine, failed, situation)

    async def _prepare(self, record: OnboardingRecord) -> None:
        """Namespace, ServiceAccount, Roles and the BTP credentials Secret, before a step."""
        cluster = self.clusters.cluster(record.cluster)
        if self.targets is None or cluster is None:
            return
        spec = OnboardingSpec.model_validate(record.spec)
        btp: dict[str, str] | None = None
        name = spec.subaccount.global_account
        account = self.desired.state.global_accounts.get(name) if name else None
        if account is not None and self.credentials is not None:
            btp = await self.credentials.read(account)
        for line in await self.targets.prepare(
            cluster, onboarding=record.name, namespace=record.namespace, btp_secret=btp
        ):
            log.info(f"prepared: {line}", extra=_fields(record))

    async def _release(self, record: OnboardingRecord) -> None:
        """Remove what ``_prepare`` made for this onboarding, before it becomes Deleted."""
        cluster = self.clusters.cluster(record.cluster)
        if self.targets is None or cluster is None or cluster.spec.kubeconfig is None:
            return
        for line in await self.targets.release(
            cluster, onboarding=record.name, namespace=record.namespace
        ):
            log.info(f"released: {line}", extra=_fields(record))

    async def _apply_templates(self, cluster: str, engine: WorkflowEngine) -> None:
        applied = self._templates_applied.get(cluster)
        if applied is not None and self.clock() - applied < TEMPLATES_RECHECK:
            return
        for manifest in self.templates:
            change = await engine.apply_template(manifest)
            if change != "unchanged":
                log.info(
                    f"WorkflowTemplate {change}",
                    extra={"cluster": cluster, "template": manifest["metadata"]["name"]},
                )
        self._templates_applied[cluster] = self.clock()

    def forget_templates(self) -> None:
        """Make the next pass re-check every cluster's WorkflowTemplates."""
        self._templates_applied.clear()

    # --- recording ------------------------------------------------------------------

    def _save(self, record: OnboardingRecord, log_: list[TransitionRecord]) -> None:
        record.updated_at = self.clock()
        saved = self.store.save(record, list(log_))
        record.version = saved.version
        log_.clear()

    def _note_error(
        self,
        record: OnboardingRecord,
        error: TemporaryError,
        pending: list[TransitionRecord] | None = None,
    ) -> None:
        """Back off this onboarding and remember why; its state does not change."""
        record.error_count += 1
        delay = backoff(record.error_count, limits=self.tuning.limits, jitter=self.jitter())
        if error.delay is not None:
            delay = max(delay, error.delay)
        record.last_error = str(error)
        record.next_attempt_at = self.clock() + timedelta(seconds=delay)
        log.warning(
            "will retry",
            extra=_fields(record, error=str(error), reason=error.reason, retry_in=round(delay, 1)),
        )
        self._save_quietly(record, pending if pending is not None else [])

    def _save_quietly(self, record: OnboardingRecord, pending: list[TransitionRecord]) -> None:
        """Save what an error left; a conflict or a store error only loses this note."""
        try:
            self._save(record, pending)
        except Conflict:
            pass
        except TemporaryError as store_error:
            log.error("cannot record the error", extra={"error": str(store_error)})


_OUTCOMES = {
    "step_succeeded": "succeeded",
    "compensated": "succeeded",
    "step_retried": "failed",
    "compensation_retried": "failed",
    "step_failed": "failed",
    "compensation_exhausted": "failed",
}


def _fields(record: OnboardingRecord, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"onboarding": record.name, "cluster": record.cluster}
    fields.update({k: v for k, v in extra.items() if v is not None})
    return fields


def ends_offboarding(record: OnboardingRecord, trigger: str) -> bool:
    """Whether firing ``trigger`` makes an offboarded onboarding Deleted (see the table)."""
    if trigger == "compensated":
        step = next_compensation(record)
        undone = forward_of(step).value if step is not None else None
        return record.offboarding and not [s for s in record.inventory if s != undone]
    if trigger == "offboard":
        return not record.inventory
    return False


def new_incarnation() -> str:
    return secrets.token_hex(3)[:5]


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
    )


def begin_attempt(record: OnboardingRecord, step: Step) -> None:
    """Record a new attempt of ``step`` and its deterministic workflow name."""
    record.attempt = record.attempt + 1 if record.step == step.value else 1
    record.step = step.value
    counter = record.attempt_counters.get(step.value, 0) + 1
    record.attempt_counters = {**record.attempt_counters, step.value: counter}
    record.workflow = workflow_name(record.name, record.incarnation, step, counter)
    record.workflow_submitted = False
    record.step_started_at = None
    record.step_deadline = None
    if not step.is_compensation and step.value not in record.inventory:
        # from now on something may exist: only its compensation's success removes it
        record.inventory = inventory_order([*record.inventory, step.value])
