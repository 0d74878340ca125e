"""What on-call and upstream services can do, over the store and the reconciler.

Implements ``ports.Operations`` for the HTTP API. Every change goes through
the state machine and is stored with its history; the affected cluster is
then woken so the change takes effect at once.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from orchestrator.clusters import ClusterRegistry
from orchestrator.config.configs import Cluster, DeletionPolicy, Onboarding, OnboardingSpec
from orchestrator.config.desired import DesiredStateSource, HeldChange
from orchestrator.config.loading import denied_namespace, granted_namespace_problems, resource_keys
from orchestrator.config.pipelines import choice_problems, known_pipelines
from orchestrator.core import stepplans
from orchestrator.core.acting import new_incarnation
from orchestrator.core.machine import OnboardingMachine
from orchestrator.core.passes import utcnow
from orchestrator.core.planning import IN_FLIGHT, SUSPENDED_BY_SPEC, immutable_change, take_spec
from orchestrator.core.roster import new_record
from orchestrator.errors import ChangedMeanwhile, ConfigError, ConfigProblem, Conflict, NotFound
from orchestrator.interfaces.views import (
    ClusterView,
    HeldOffboardingView,
    OnboardingView,
    ReplicaView,
    Role,
    TransitionView,
)
from orchestrator.ports import Action, Store
from orchestrator.records import OnboardingRecord, Source, State, TransitionRecord

#: states after which waiting for an upsert ends
DONE = frozenset(
    {State.READY, State.UPDATE_FAILED, State.FAILED, State.CLEANUP_FAILED, State.DELETED}
)

ON_CALL_REASONS: dict[Action, str] = {
    "retry": "retried by on-call",
    "suspend": "suspended by on-call",
    "resume": "resumed by on-call",
}


class Service:
    def __init__(
        self,
        *,
        store: Store,
        desired: DesiredStateSource,
        clusters: ClusterRegistry,
        wake: Callable[[str], None],
        clock: Callable[[], datetime] = utcnow,
        poll_seconds: float = 0.25,
        accepted: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.desired = desired
        self.registry = clusters
        self.wake = wake
        self.clock = clock
        self.poll_seconds = poll_seconds
        #: what the daemon does after a new desired state is accepted (wakes every cluster)
        self.accepted = accepted
        self.started = False
        #: this replica's identity (None without leader election) and role
        self.replica_id: str | None = None
        self.role: Callable[[], Role] = lambda: "only replica"

    # --- reading ------------------------------------------------------------------

    def view(self, record: OnboardingRecord) -> OnboardingView:
        engine = self.registry.engine(record.cluster)
        link = engine.ui_link(record.workflow) if engine and record.workflow else None
        return OnboardingView.of(record, workflow_url=link)

    def list(
        self, *, state: State | None = None, cluster: str | None = None
    ) -> builtins.list[OnboardingView]:
        return [self.view(r) for r in self.store.list(state=state, cluster=cluster)]

    def _record(self, name: str) -> OnboardingRecord:
        record = self.store.get(name)
        if record is None:
            raise NotFound(f"no onboarding named {name!r}")
        return record

    def get(self, name: str) -> OnboardingView:
        return self.view(self._record(name))

    def history(self, name: str) -> builtins.list[TransitionView]:
        record = self._record(name)
        engine = self.registry.engine(record.cluster)

        def link(workflow: str | None) -> str | None:
            return (engine.ui_link(workflow) or None) if engine and workflow else None

        return [
            TransitionView.of(t, workflow_url=link(t.workflow)) for t in self.store.history(name)
        ]

    def clusters(self) -> builtins.list[ClusterView]:
        counts: dict[str, list[int]] = {}
        for record in self.store.list():
            tally = counts.setdefault(record.cluster, [0, 0])
            tally[0] += 1
            tally[1] += record.state in IN_FLIGHT
        views = []
        for name in self.registry.names():
            health = self.registry.health.get(name)
            cluster = self.registry.cluster(name)
            server = cluster.spec.argo.server if cluster else None
            onboardings, in_flight = counts.get(name, [0, 0])
            views.append(
                ClusterView(
                    name=name,
                    reachable=health.reachable if health else None,
                    reason=health.reason if health else None,
                    since=health.since if health else None,
                    latency_seconds=health.latency if health else None,
                    argo_server=str(server) if server else None,
                    onboardings=onboardings,
                    in_flight=in_flight,
                    max_concurrent=cluster.spec.max_concurrent if cluster else None,
                )
            )
        return views

    def readiness(self) -> tuple[bool, str]:
        if not self.started:
            return False, "starting"
        try:
            self.store.list(state=State.CLEANUP_FAILED)
        except Exception as error:  # the store adapter's errors carry no secret
            return False, f"database: {error}"
        if not self.desired.loaded.is_set():
            return True, "loading the config files; changes wait until they are loaded"
        if self.desired.last_error is not None:
            return True, "running the last valid config; the files on disk are invalid"
        if (held := self.desired.held) is not None:
            return True, (
                f"running the previous config; a change that would offboard {len(held.removed)}"
                " onboardings is held (orchestrator offboard)"
            )
        return True, "ok"

    def replica(self) -> ReplicaView:
        held = self.store.leadership() if self.replica_id is not None else None
        return ReplicaView(
            replica=self.replica_id,
            role=self.role(),
            leader=held.holder if held else None,
            epoch=held.epoch if held else None,
            leader_since=held.since if held else None,
            leader_url=held.address if held else None,
        )

    def held_offboarding(self) -> HeldOffboardingView:
        return _held_view(self.desired.held, self.desired.offboard_hold_share, waiting=True)

    # --- changing -----------------------------------------------------------------

    async def confirm_offboarding(self) -> HeldOffboardingView:
        await self.desired.loaded.wait()  # a change is checked against the files
        if self.role() == "follower":
            # the hold lives in the leader's memory: confirming it here would change nothing
            leader = self.replica().leader or "the leader"
            raise Conflict(
                f"this replica follows; confirm the held offboarding on {leader} (the replica"
                " that leads)"
            )
        held = self.desired.confirm_held()
        if self.accepted is not None:
            await self.accepted()
        return _held_view(held, self.desired.offboard_hold_share, waiting=False)

    def _declared_in_file(self, name: str) -> str | None:
        if name in self.desired.state.onboardings:
            return self.desired.state.sources.get(f"Onboarding/{name}", "the config directory")
        return None

    def _taken(self, name: str, spec: OnboardingSpec) -> ConfigProblem | None:
        """A namespace or subdomain that another onboarding (declared in files, or
        stored and not Deleted) already has: two owners would share, and one could
        delete, the other's tenant."""
        wanted = resource_keys(spec)
        others = [
            (other, OnboardingSpec.model_validate(record.spec))
            for record in self.store.list()
            if (other := record.name) != name and record.state != State.DELETED
        ]
        others += [
            (other, document.spec)
            for other, document in self.desired.state.onboardings.items()
            if other != name
        ]
        for other, other_spec in others:
            theirs = resource_keys(other_spec)
            for field_path, key in wanted.items():
                if theirs[field_path] == key:
                    return ConfigProblem(
                        file="request body",
                        document=f"Onboarding {name}",
                        field=field_path,
                        message=f"{key[1]!r} already belongs to onboarding {other!r}",
                    )
        return None

    def _suspended_in_file(self, name: str) -> bool:
        """Whether the files still declare this onboarding with ``suspend: true``."""
        document = self.desired.state.onboardings.get(name)
        return document is not None and document.spec.suspend

    async def upsert(self, document: Onboarding) -> tuple[OnboardingView, bool, bool]:
        return await _again_if_changed(lambda: self._upsert(document))

    async def delete(self, name: str) -> OnboardingView:
        return await _again_if_changed(lambda: self._delete(name))

    async def act(self, name: str, action: Action, *, by: str | None = None) -> OnboardingView:
        return await _again_if_changed(lambda: self._act(name, action, by=by))

    async def _upsert(self, document: Onboarding) -> tuple[OnboardingView, bool, bool]:
        await self.desired.loaded.wait()  # a change is checked against the files
        name = document.metadata.name
        if (where := self._declared_in_file(name)) is not None:
            raise Conflict(f"onboarding {name!r} is declared in {where}; change it there")
        cluster = document.spec.cluster
        if cluster not in self.desired.state.clusters:
            known = ", ".join(sorted(self.desired.state.clusters)) or "none"
            raise ConfigError(
                [
                    ConfigProblem(
                        file="request body",
                        document=f"Onboarding {name}",
                        field="spec.cluster",
                        message=f"unknown cluster {cluster!r} (known: {known})",
                    )
                ]
            )
        clusters, denied = self.desired.state.clusters, self.desired.rules.denied_namespaces
        if (refused := denied_namespace(document.spec, clusters, denied)) is not None:
            raise ConfigError(
                [
                    ConfigProblem(
                        file="request body",
                        document=f"Onboarding {name}",
                        field="spec.namespace",
                        message=refused,
                    )
                ]
            )
        if (taken := self._taken(name, document.spec)) is not None:
            raise ConfigError([taken])
        if (unrunnable := _pipeline_problem(document, clusters, denied)) is not None:
            raise ConfigError([unrunnable])
        now = self.clock()
        spec = document.spec.model_dump(mode="json", by_alias=True)
        record = self.store.get(name)
        if record is None:
            first = _entry(name, State.PENDING, State.PENDING, "declared", "via the API", now)
            created = self.store.create(new_record(document, now, source=Source.API), [first])
            self.wake(cluster)
            return self.view(created), True, True
        if record.source == Source.FILE and record.state != State.DELETED:
            raise Conflict(f"onboarding {name!r} is managed from files; change it there")
        if record.offboarding and record.state != State.DELETED:
            raise Conflict(f"onboarding {name!r} is being offboarded; upsert it once Deleted")
        if (problem := immutable_change(record, document.spec)) is not None:
            raise Conflict(f"onboarding {name!r}: {problem}")
        alive = record.state != State.DELETED
        if alive and record.spec == spec:
            return self.view(record), False, False
        machine = OnboardingMachine(record, now=now, plan=stepplans.plan_for(record))
        if not alive:
            record.incarnation = new_incarnation()
            record.spec_fingerprint = document.spec.fingerprint()
            machine.fire("recreate", "declared again via the API")
        record.source = Source.API
        take_spec(record, document.spec)
        record.cluster = cluster
        record.updated_at = now
        saved = self.store.save(record, machine.log)
        self.wake(cluster)
        return self.view(saved), False, True

    async def _delete(self, name: str) -> OnboardingView:
        await self.desired.loaded.wait()  # a change is checked against the files
        record = self._record(name)
        if (where := self._declared_in_file(name)) is not None or record.source == Source.FILE:
            raise Conflict(
                f"onboarding {name!r} is declared in {where or 'files'}; remove it there"
            )
        if record.state == State.DELETED or record.offboarding:
            return self.view(record)
        machine = OnboardingMachine(record, now=self.clock(), plan=stepplans.plan_for(record))
        policy = DeletionPolicy(record.spec.get("deletionPolicy", DeletionPolicy.DELETE.value))
        if policy == DeletionPolicy.ORPHAN:
            machine.fire("forget", "deleted via the API with deletionPolicy Orphan")
        elif record.state == State.SUSPENDED:
            raise Conflict(f"onboarding {name!r} is suspended; resume it before deleting")
        elif record.workflow is not None and record.state not in (
            State.ROLLING_BACK,
            State.CLEANUP_FAILED,
        ):
            # a step is running: mark the intent, the reconciler stops it and offboards
            record.offboarding = True
        else:
            machine.fire("offboard", "deleted via the API")
        record.updated_at = self.clock()
        saved = self.store.save(record, machine.log)
        self.wake(record.cluster)
        return self.view(saved)

    async def _act(self, name: str, action: Action, *, by: str | None = None) -> OnboardingView:
        await self.desired.loaded.wait()  # a change is checked against the files
        record = self._record(name)
        if action == "reconcile":
            if record.next_attempt_at is not None:
                record.next_attempt_at = None
                record.updated_at = self.clock()
                record = self.store.save(record)
            self.wake(record.cluster)
            return self.view(record)
        if (
            action == "resume"
            and record.reason == SUSPENDED_BY_SPEC
            and self._suspended_in_file(name)
        ):
            raise Conflict(f"onboarding {name!r} is suspended by spec.suspend; set it false there")
        machine = OnboardingMachine(record, now=self.clock(), plan=stepplans.plan_for(record))
        if not machine.can(action):
            raise Conflict(
                f"onboarding {name!r} cannot be {_past(action)} while {record.state.value}"
            )
        reason = ON_CALL_REASONS[action]
        machine.fire(action, f"{reason} ({by})" if by else reason)
        record.next_attempt_at = None
        record.updated_at = self.clock()
        saved = self.store.save(record, machine.log)
        self.wake(record.cluster)
        return self.view(saved)

    async def wait(self, name: str, *, timeout: float) -> tuple[OnboardingView, bool]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            record = self._record(name)
            if record.state in DONE and not _update_due(record):
                return self.view(record), True
            if loop.time() >= deadline:
                return self.view(record), False
            await asyncio.sleep(min(self.poll_seconds, max(0.0, deadline - loop.time())))


def _update_due(record: OnboardingRecord) -> bool:
    """A Ready onboarding whose stored spec has not been carried out yet (just upserted)."""
    if record.state not in (State.READY, State.UPDATE_FAILED) or record.offboarding:
        return False
    spec = OnboardingSpec.model_validate(record.spec)
    return spec.fingerprint() != record.spec_fingerprint


def _held_view(change: HeldChange | None, limit: float, *, waiting: bool) -> HeldOffboardingView:
    """What is held (``waiting``), or what a confirmation has just applied."""
    if change is None:
        return HeldOffboardingView(held=False, limit=limit)
    return HeldOffboardingView(
        held=waiting,
        onboardings=change.removed,
        declared=change.declared,
        share=round(change.share, 4),
        limit=limit,
        since=change.since,
    )


def _past(action: str) -> str:
    return {"retry": "retried", "suspend": "suspended", "resume": "resumed"}.get(action, action)


def _entry(
    name: str, source: State, dest: State, trigger: str, reason: str, at: datetime
) -> TransitionRecord:
    return TransitionRecord(
        onboarding=name, from_state=source, to_state=dest, trigger=trigger, reason=reason, at=at
    )


T = TypeVar("T")
#: how often an API write that lost a race with the daemon's own save reads again
CHANGED_TRIES = 5


async def _again_if_changed(write: Callable[[], Awaitable[T]]) -> T:
    """An API write races the daemon, which saves the same record as it works: the loser
    of the compare-and-set reads again and decides anew on the latest state (the caller
    named no version, so that is the state they act on) rather than answering 409."""
    for _ in range(CHANGED_TRIES - 1):
        try:
            return await write()
        except ChangedMeanwhile:
            await asyncio.sleep(0)
    return await write()


def _pipeline_problem(
    document: Onboarding, clusters: dict[str, Cluster], denied: Sequence[str]
) -> ConfigProblem | None:
    """The pipeline the onboarding names must be known, with the blocks it reads there, and
    may not give its steps a refused namespace: the files are checked so when they load, a
    request body here."""
    known = known_pipelines()
    found = choice_problems(document.spec, known)
    if not found:
        pipeline = known[document.spec.pipeline_name]
        found = granted_namespace_problems(document.spec, pipeline, clusters, denied)
    if not found:
        return None
    field, message = found[0]
    return ConfigProblem(
        file="request body",
        document=f"Onboarding {document.metadata.name}",
        field=field,
        message=message,
    )
