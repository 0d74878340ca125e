"""Carrying out the planner's commands for one onboarding: fire its transitions, submit
and stop its workflows, prepare and release its target, keep the cluster's
WorkflowTemplates current. The outcome is recorded by the reconciler.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from orchestrator.clusters import ClusterRegistry
from orchestrator.config.configs import DEFAULT_STEP_IMAGE, OnboardingSpec, StepPods
from orchestrator.config.desired import DesiredStateSource
from orchestrator.config.pipelines import pipeline_for
from orchestrator.core.machine import OnboardingMachine
from orchestrator.core.naming import workflow_labels, workflow_name
from orchestrator.core.passes import DEADLINE_GRACE, PassResult, Tuning
from orchestrator.core.planning import (
    Command,
    Fire,
    Situation,
    Stop,
    Submit,
    attempt_failed,
    next_compensation,
)
from orchestrator.core.stepplans import StepPlan
from orchestrator.errors import ClusterUnavailable, PermanentError, TemporaryError, WorkflowExists
from orchestrator.metrics import Metrics
from orchestrator.ports import Credentials, Targets, TemplateChange, WorkflowEngine
from orchestrator.records import OnboardingRecord, State, TransitionRecord, WorkflowSubmission

log = logging.getLogger(__name__)

#: how often templates are compared again before a submission (someone may have changed them)
TEMPLATES_RECHECK = timedelta(minutes=5)

#: validated specs kept (of the onboardings acted on last): more than act at once
SPECS_KEPT = 1024

#: saves the record with the transitions so far (the reconciler's recording)
Save = Callable[[OnboardingRecord, list[TransitionRecord]], Awaitable[None]]


class Actor:
    def __init__(
        self,
        *,
        desired: DesiredStateSource,
        clusters: ClusterRegistry,
        templates: list[dict[str, Any]],
        metrics: Metrics,
        tuning: Tuning,
        clock: Callable[[], datetime],
        save: Save,
        targets: Targets | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.desired = desired
        self.clusters = clusters
        self.templates = templates
        self.metrics = metrics
        self.tuning = tuning
        self.clock = clock
        self._save = save
        self.targets = targets
        self.credentials = credentials
        #: when each cluster's WorkflowTemplates were last made current
        self._templates_applied: dict[str, datetime] = {}
        #: the step containers' image where a Cluster's spec.steps.image names none
        self.step_image = DEFAULT_STEP_IMAGE
        #: per onboarding acted on lately, its stored spec and that spec validated
        self._specs: OrderedDict[str, tuple[dict[str, Any], OnboardingSpec]] = OrderedDict()

    async def execute(
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
                if ends_offboarding(record, command.trigger, machine.plan):
                    await self.release(record)
                self.fire(machine, command, situation)
            elif isinstance(command, Stop):
                await self._require(engine, record, result).stop(
                    command.workflow, message=command.message
                )
                log.info("workflow stopped", extra=log_fields(record, workflow=command.workflow))
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

    def fire(self, machine: OnboardingMachine, command: Fire, situation: Situation) -> None:
        record = machine.record
        source = record.state
        step = record.step
        started_at = record.step_started_at
        fingerprint = situation.desired_fingerprint()
        if command.trigger in ("start", "spec_changed") and fingerprint is not None:
            # the spec this run (or update) carries out; a later edit updates again
            record.spec_fingerprint = fingerprint
        if command.trigger == "recreate":
            # a new incarnation: new workflow names, the new spec, nothing inherited
            record.incarnation = new_incarnation()
            if fingerprint is not None:
                record.spec_fingerprint = fingerprint
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
            extra=log_fields(record, step=step, workflow=command.workflow, trigger=command.trigger),
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
        compensation = machine.plan.is_compensation(step)
        if command.new_attempt:
            begin_attempt(record, step, machine.plan)
            # the intent is stored before Argo hears of it: after a crash the
            # same name is looked up, then resubmitted, never run twice
            await self._save(record, machine.log)
        cluster = self.clusters.cluster(record.cluster)
        prepared = cluster is not None and cluster.spec.kubeconfig is not None
        if prepared and not compensation:
            try:
                await self._prepare(record)
            except PermanentError as error:
                # e.g. invalid BTP credentials, or a 4xx from Kubernetes: another
                # pass cannot do better, so it counts as a failed attempt
                self._refused(machine, situation, step, f"preparing the target failed: {error}")
                return
        await self.apply_templates(record.cluster, engine)
        assert record.workflow is not None
        spec = self._spec_of(record)
        pipeline = pipeline_for(record)
        counter = record.attempt_counters[step]
        deadline_seconds = pipeline.deadline_of(step) or self.tuning.step_timeout_seconds
        submission = WorkflowSubmission(
            name=record.workflow,
            template=pipeline.step(step).template,
            parameters=pipeline.parameters(step, onboarding=record.name, spec=spec),
            labels=workflow_labels(
                onboarding=record.name,
                incarnation=record.incarnation,
                step=step,
                attempt=counter,
                daemon=self.tuning.daemon_id,
            ),
            active_deadline_seconds=deadline_seconds,
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
        record.step_deadline = now + timedelta(seconds=deadline_seconds) + DEADLINE_GRACE
        self.metrics.workflow_submissions.labels(
            cluster=record.cluster, step=step, result=outcome
        ).inc()
        log.info(
            f"workflow {outcome}",
            extra=log_fields(record, step=step, workflow=record.workflow, attempt=record.attempt),
        )

    def _refused(
        self, machine: OnboardingMachine, situation: Situation, step: str, why: str
    ) -> None:
        """An attempt that could not even start: it counts as failed, with the real reason."""
        record = machine.record
        self.metrics.workflow_submissions.labels(
            cluster=record.cluster, step=step, result="rejected"
        ).inc()
        log.error("attempt refused", extra=log_fields(record, step=step, error=why))
        record.last_error = f"{step}: {why}"
        for failed in attempt_failed(situation, step, f"{step}: {why}"):
            if isinstance(failed, Fire):
                self.fire(machine, failed, situation)

    async def _prepare(self, record: OnboardingRecord) -> None:
        """Namespace, ServiceAccount, Roles and the BTP credentials Secret, before a step."""
        cluster = self.clusters.cluster(record.cluster)
        if self.targets is None or cluster is None:
            return
        spec = self._spec_of(record)
        btp: dict[str, str] | None = None
        name = spec.subaccount.global_account
        account = self.desired.state.global_accounts.get(name) if name else None
        if account is not None and self.credentials is not None:
            btp = await self.credentials.read(account)
        for line in await self.targets.prepare(
            cluster,
            onboarding=record.name,
            namespace=record.namespace,
            btp_secret=btp,
            secret_namespaces=pipeline_for(record).secret_namespaces(spec),
        ):
            log.info(f"prepared: {line}", extra=log_fields(record))

    async def release(self, record: OnboardingRecord) -> None:
        """Remove what ``_prepare`` made for this onboarding, before it becomes Deleted."""
        cluster = self.clusters.cluster(record.cluster)
        if self.targets is None or cluster is None or cluster.spec.kubeconfig is None:
            return
        spec = self._spec_of(record)
        for line in await self.targets.release(
            cluster,
            onboarding=record.name,
            namespace=record.namespace,
            secret_namespaces=pipeline_for(record).secret_namespaces(spec),
        ):
            log.info(f"released: {line}", extra=log_fields(record))

    def _spec_of(self, record: OnboardingRecord) -> OnboardingSpec:
        """The record's spec as a model, validated once while it stays the same rather
        than at every step (a record's spec is replaced when it changes, never changed in
        place, so the dict it was validated from is the spec still)."""
        entry = self._specs.get(record.name)
        if entry is None or entry[0] is not record.spec:
            entry = (record.spec, OnboardingSpec.model_validate(record.spec))
            self._specs[record.name] = entry
            if len(self._specs) > SPECS_KEPT:
                self._specs.popitem(last=False)
        else:
            self._specs.move_to_end(record.name)
        return entry[1]

    async def apply_templates(self, cluster: str, engine: WorkflowEngine) -> None:
        applied = self._templates_applied.get(cluster)
        if applied is not None and self.clock() - applied < TEMPLATES_RECHECK:
            return
        declared = self.clusters.cluster(cluster)
        steps = declared.spec.steps if declared is not None else StepPods()
        # the cluster's step image, pull Secrets and resources; the same every time, so a
        # template nobody changed is left as it is
        manifests = [steps.install(t, default_image=self.step_image) for t in self.templates]
        # the first alone (a cluster that does not answer is asked once), then the others
        # at once: one after the other, a cluster's first submission waited for ten round
        # trips or twenty
        changes: list[TemplateChange | BaseException] = []
        if manifests:
            changes.append(await engine.apply_template(manifests[0]))
        changes += await asyncio.gather(
            *(engine.apply_template(manifest) for manifest in manifests[1:]),
            return_exceptions=True,
        )
        for manifest, change in zip(manifests, changes, strict=True):
            if isinstance(change, BaseException):
                raise change
            if change != "unchanged":
                log.info(
                    f"WorkflowTemplate {change}",
                    extra={"cluster": cluster, "template": manifest["metadata"]["name"]},
                )
        self._templates_applied[cluster] = self.clock()

    def forget_templates(self) -> None:
        """Make the next pass re-check every cluster's WorkflowTemplates."""
        self._templates_applied.clear()


_OUTCOMES = {
    "step_succeeded": "succeeded",
    "compensated": "succeeded",
    "step_retried": "failed",
    "compensation_retried": "failed",
    "step_failed": "failed",
    "compensation_exhausted": "failed",
}


def log_fields(record: OnboardingRecord, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"onboarding": record.name, "cluster": record.cluster}
    fields.update({k: v for k, v in extra.items() if v is not None})
    return fields


def ends_offboarding(record: OnboardingRecord, trigger: str, plan: StepPlan) -> bool:
    """Whether firing ``trigger`` makes an offboarded onboarding Deleted (see the table)."""
    if trigger == "compensated":
        step = next_compensation(record, plan)
        undone = plan.forward_of(step) if step is not None else None
        return record.offboarding and not [s for s in record.inventory if s != undone]
    if trigger == "offboard":
        return not record.inventory
    return False


def begin_attempt(record: OnboardingRecord, step: str, plan: StepPlan) -> None:
    """Record a new attempt of ``step`` and its deterministic workflow name."""
    record.attempt = record.attempt + 1 if record.step == step else 1
    record.step = step
    counter = record.attempt_counters.get(step, 0) + 1
    record.attempt_counters = {**record.attempt_counters, step: counter}
    record.workflow = workflow_name(record.name, record.incarnation, step, counter)
    record.workflow_submitted = False
    record.step_started_at = None
    record.step_deadline = None
    undoable = not plan.is_compensation(step) and plan.compensation_of(step) is not None
    if undoable and step not in record.inventory:
        # from now on something may exist: only its compensation's success removes it (a
        # step with ``compensation: none`` leaves nothing to undo, so it is never listed)
        record.inventory = plan.inventory_order([*record.inventory, step])


def new_incarnation() -> str:
    return secrets.token_hex(3)[:5]
