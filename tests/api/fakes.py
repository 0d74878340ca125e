"""An in-memory ``Operations`` that keeps the port's contract, for API and CLI tests.

Actions go through the real ``OnboardingMachine``, so a retry of a Ready
onboarding is refused exactly as the daemon refuses it. Tests move an
onboarding along with ``fire`` (what the reconciler would do) and inject
failures with ``broken``.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orchestrator.config.configs import DeletionPolicy, Onboarding
from orchestrator.core import stepplans
from orchestrator.core.machine import OnboardingMachine
from orchestrator.errors import ConfigError, ConfigProblem, Conflict, NotFound
from orchestrator.interfaces.views import (
    ClusterView,
    HeldOffboardingView,
    OnboardingView,
    ReplicaView,
    TransitionView,
)
from orchestrator.ports import Action, Operations
from orchestrator.records import OnboardingRecord, Source, State, TransitionRecord

#: states in which the compensations of the inventory run
UNDOING = frozenset({State.ROLLING_BACK, State.OFFBOARDING})
#: what ``wait`` waits for
DONE = frozenset({State.READY, State.FAILED, State.CLEANUP_FAILED, State.DELETED})
UI = "https://argo.example.test/workflows/argo"


def document(name: str = "tenant-a", *, cluster: str = "c1", **spec: Any) -> dict[str, Any]:
    """An Onboarding document as a client would send it (aliases, like the files)."""
    body: dict[str, Any] = {
        "cluster": cluster,
        "namespace": f"{name}-ns",
        "subaccount": {"displayName": f"Tenant {name}", "subdomain": name, "region": "eu10"},
        "platform": {"name": f"{name}-platform"},
        "proxyChart": {"repo": "oci://charts.example.test", "name": "proxy", "version": "1.2.3"},
    }
    body.update(spec)
    return {
        "apiVersion": "orchestrator.dev/v1alpha1",
        "kind": "Onboarding",
        "metadata": {"name": name},
        "spec": body,
    }


class FakeOperations:
    def __init__(
        self, *, clusters: tuple[str, ...] = ("c1", "c2"), now: Callable[[], datetime] | None = None
    ) -> None:
        self.cluster_names = set(clusters)
        self.now = now or (lambda: datetime.now(UTC))
        self.records: dict[str, OnboardingRecord] = {}
        self.transitions: dict[str, list[TransitionRecord]] = {}
        self.files: dict[str, str] = {}
        self.ready: tuple[bool, str] = (True, "leader; desired state loaded")
        self.acted: list[tuple[str, Action]] = []
        #: what ``replica`` answers (a test makes it a follower)
        self.replica_view = ReplicaView(role="only replica")
        #: who each action named as its caller (address and token fingerprint)
        self.callers: list[str | None] = []
        #: the config change held because it would offboard many at once (``hold``)
        self.held: HeldOffboardingView | None = None
        self.hold_limit = 0.25
        #: the names each confirmation offboarded
        self.confirmed: list[list[str]] = []
        #: raised by every call when set
        self.broken: Exception | None = None
        # the API calls from its event loop while tests call ``fire`` from theirs
        self._lock = threading.RLock()

    # --- helpers for tests (what the daemon's reconciler would do) --------------

    def declare(self, doc: dict[str, Any], *, file: str) -> OnboardingView:
        """An onboarding declared in a config file."""
        model = Onboarding.model_validate(doc)
        with self._lock:
            self._create(model, Source.FILE)
            self.files[model.metadata.name] = file
            return self._view(model.metadata.name)

    def hold(self, *names: str, declared: int, since: datetime | None = None) -> None:
        """A config change that would offboard ``names`` is held."""
        self.held = HeldOffboardingView(
            held=True,
            onboardings=sorted(names),
            declared=declared,
            share=len(names) / declared,
            limit=self.hold_limit,
            since=since or self.now(),
        )

    def fire(self, name: str, *triggers: str, reason: str = "by the test") -> State:
        with self._lock:
            record = self._record(name)
            for trigger in triggers:
                self._fire(record, trigger, reason)
            return record.state

    def update(self, name: str, **values: Any) -> None:
        with self._lock:
            record = self._record(name)
            for key, value in values.items():
                setattr(record, key, value)

    # --- Operations ---------------------------------------------------------------

    def list(
        self, *, state: State | None = None, cluster: str | None = None
    ) -> list[OnboardingView]:
        self._check()
        with self._lock:
            return [
                self._view(name)
                for name, record in sorted(self.records.items())
                if (state is None or record.state == state)
                and (cluster is None or record.cluster == cluster)
            ]

    def get(self, name: str) -> OnboardingView:
        self._check()
        with self._lock:
            self._record(name)
            return self._view(name)

    def history(self, name: str) -> builtins.list[TransitionView]:
        self._check()
        with self._lock:
            self._record(name)
            return [
                TransitionView.of(t, workflow_url=f"{UI}/{t.workflow}" if t.workflow else None)
                for t in self.transitions[name]
            ]

    async def upsert(self, document: Onboarding) -> tuple[OnboardingView, bool, bool]:
        self._check()
        name = document.metadata.name
        if document.spec.cluster not in self.cluster_names:
            raise ConfigError(
                [
                    ConfigProblem(
                        file="api",
                        document=f"Onboarding {name}",
                        field="spec.cluster",
                        message=f"unknown cluster {document.spec.cluster!r}",
                    )
                ]
            )
        with self._lock:
            record = self.records.get(name)
            if record is not None and record.source is Source.FILE:
                raise Conflict(
                    f"onboarding {name} is declared in file {self.files[name]}; change it there"
                )
            if record is None:
                self._create(document, Source.API)
                return self._view(name), True, True
            if record.state is State.DELETED:
                self._replace_spec(record, document)
                self._fire(record, "recreate", "declared again through the API")
                return self._view(name), True, True
            if record.spec == _spec(document):
                return self._view(name), False, False
            self._replace_spec(record, document)
            if record.state in (State.READY, State.FAILED):
                self._fire(record, "spec_changed", "spec changed through the API")
            return self._view(name), False, True

    async def delete(self, name: str) -> OnboardingView:
        self._check()
        with self._lock:
            record = self._record(name)
            if record.source is Source.FILE:
                raise Conflict(
                    f"onboarding {name} is declared in file {self.files[name]}; remove it there"
                )
            if record.state is not State.DELETED:
                policy = DeletionPolicy(record.spec.get("deletionPolicy", "Delete"))
                trigger = "forget" if policy is DeletionPolicy.ORPHAN else "offboard"
                self._fire(record, trigger, "deleted through the API")
            return self._view(name)

    async def wait(self, name: str, *, timeout: float) -> tuple[OnboardingView, bool]:
        self._check()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = self._record(name).state in DONE
                view = self._view(name)
            if done or time.monotonic() >= deadline:
                return view, done
            await asyncio.sleep(0.005)

    async def act(self, name: str, action: Action, *, by: str | None = None) -> OnboardingView:
        self._check()
        with self._lock:
            record = self._record(name)
            if action == "reconcile":
                if record.state is State.DELETED:
                    raise Conflict(f"onboarding {name}: cannot reconcile while Deleted")
            else:
                self._fire(
                    record, action, f"{action} by on-call ({by})" if by else f"{action} by on-call"
                )
            self.acted.append((name, action))
            self.callers.append(by)
            return self._view(name)

    def replica(self) -> ReplicaView:
        self._check()
        return self.replica_view

    def clusters(self) -> builtins.list[ClusterView]:
        self._check()
        with self._lock:
            records = list(self.records.values())
        return [
            ClusterView(
                name=name,
                reachable=True,
                latency_seconds=0.01,
                onboardings=sum(1 for r in records if r.cluster == name),
                in_flight=sum(1 for r in records if r.cluster == name and r.step is not None),
            )
            for name in sorted(self.cluster_names)
        ]

    def readiness(self) -> tuple[bool, str]:
        self._check()
        return self.ready

    def held_offboarding(self) -> HeldOffboardingView:
        self._check()
        return self.held or HeldOffboardingView(held=False, limit=self.hold_limit)

    async def confirm_offboarding(self) -> HeldOffboardingView:
        self._check()
        with self._lock:
            if self.held is None:
                raise Conflict("no config change is held")
            confirmed = self.held.model_copy(update={"held": False})
            self.held = None
            for name in confirmed.onboardings:
                if name in self.records and self.records[name].state is not State.DELETED:
                    self._fire(self.records[name], "offboard", "removed from the files")
            self.confirmed.append(confirmed.onboardings)
            return confirmed

    # --- inside -------------------------------------------------------------------

    def _check(self) -> None:
        if self.broken is not None:
            raise self.broken

    def _record(self, name: str) -> OnboardingRecord:
        record = self.records.get(name)
        if record is None:
            raise NotFound(f"no onboarding named {name!r}")
        return record

    def _create(self, document: Onboarding, source: Source) -> None:
        now = self.now()
        name = document.metadata.name
        record = OnboardingRecord(
            name=name,
            cluster=document.spec.cluster,
            namespace=document.spec.namespace,
            source=source,
            spec=_spec(document),
            spec_fingerprint=document.spec.fingerprint(),
            incarnation="a1b2c3",
            created_at=now,
            updated_at=now,
            version=1,
        )
        self.records[name] = record
        self.transitions[name] = [
            TransitionRecord(
                name, State.PENDING, State.PENDING, "create", f"declared ({source})", now
            )
        ]

    def _replace_spec(self, record: OnboardingRecord, document: Onboarding) -> None:
        record.spec = _spec(document)
        record.spec_fingerprint = document.spec.fingerprint()
        record.cluster = document.spec.cluster
        record.namespace = document.spec.namespace

    def _fire(self, record: OnboardingRecord, trigger: str, reason: str) -> None:
        plan = stepplans.plan_for(record)
        machine = OnboardingMachine(record, now=self.now(), plan=plan)
        workflow = f"{record.name}-{trigger}" if trigger in ("start", "step_succeeded") else None
        machine.fire(trigger, reason, workflow=workflow)
        step = record.step if record.state == State.RUNNING else None
        if step is not None and trigger != "resume":
            record.attempt, record.workflow = 1, workflow
            if step not in record.inventory:
                record.inventory.append(step)
        elif record.state in UNDOING and record.inventory and record.step is None:
            # the latest step in the inventory is compensated first
            record.step, record.attempt = plan.compensations_for(record.inventory)[0], 1
        record.updated_at = self.now()
        record.version += 1
        self.transitions[record.name].extend(machine.log)

    def _view(self, name: str) -> OnboardingView:
        record = copy.deepcopy(self.records[name])
        url = f"{UI}/{record.workflow}" if record.workflow else None
        return OnboardingView.of(record, workflow_url=url)


class Swap:
    """Stands for whatever ``current`` holds, so one app serves a fresh fake per test."""

    def __init__(self, current: Any) -> None:
        self.current = current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)


def _spec(document: Onboarding) -> dict[str, Any]:
    return document.spec.model_dump(mode="json", by_alias=True)


def _conforms(operations: FakeOperations) -> Operations:
    return operations  # mypy checks the fake against the port here
