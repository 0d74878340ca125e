"""The contracts of the outside systems the core depends on.

Each port has a written contract here and more than one implementation, all
checked by one contract test suite (``tests/store``, ``tests/argo``).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from orchestrator.config.configs import Cluster, GlobalAccount, Onboarding
from orchestrator.errors import Conflict
from orchestrator.interfaces.views import (
    ClusterView,
    HeldOffboardingView,
    OnboardingView,
    ReplicaView,
    TransitionView,
)
from orchestrator.records import (
    Leadership,
    LeaseRecord,
    OnboardingRecord,
    State,
    TransitionRecord,
    WorkflowEvent,
    WorkflowStatus,
    WorkflowSubmission,
)


class Store(Protocol):
    """Persisted onboardings and their history.

    Contract:
    - ``create`` stores a new record (version becomes 1) and its first
      transitions atomically; raises ``errors.Conflict`` if the name exists.
    - ``create_all`` stores many new records with their first transitions in one
      transaction, as ``create`` would each, and returns them in order; when any
      name exists it raises ``errors.Conflict`` and stores none of them.
    - ``save`` writes the record and appends ``transitions`` in one
      transaction, only if the stored version equals ``record.version``;
      otherwise raises ``errors.Conflict`` and changes nothing. It returns the
      record with ``version`` incremented.
    - ``save_all`` saves a batch of (record, transitions) in one transaction,
      each as ``save`` would, and answers per item, in order: the saved record,
      or the ``errors.Conflict`` that ``save`` would have raised (nothing of that
      item written, the others still saved). Any other failure writes nothing.
      A name may appear only once per batch (``ValueError``).
    - ``get`` returns None for an unknown name. ``list`` is ordered by name;
      ``names`` keeps only those names (unknown ones are ignored).
    - ``versions`` maps each onboarding of a cluster to its stored version,
      read from an index alone (a cheap way to see what changed).
    - ``history`` is ordered oldest first (by time, then insertion order).
    - ``prune`` deletes, in one transaction, every onboarding in state
      ``Deleted`` whose ``updated_at`` is before ``deleted_before``, together
      with its history, and returns their names sorted. Onboardings in any
      other state, and younger Deleted ones, are left as they are.
    - ``local`` is True when the store answers from within this process (SQLite: a
      read is a library call, not a round trip), so a caller may read on its event
      loop rather than hand the read to a thread.
    - Datetimes go in and come out timezone-aware UTC; a naive one raises
      ``ValueError``.
    - Fencing: ``claim_leadership`` records ``epoch`` as the leader's if it is
      newer than the stored one (True), with the leader's API ``address``, else
      changes nothing (False);
      ``leadership`` reads it back. ``create``, ``save`` and ``save_all`` given
      an ``epoch`` write only while that is the stored epoch, else raise
      ``errors.NotLeading`` and write nothing; a claim waits for the fenced
      writes in progress, and no write of an older epoch goes in after it. A
      write that stalls (its replica frozen) does not hold a claim off for long:
      its session is ended, or the claim raises ``TemporaryError`` to be tried
      again.
      Transitions are stored with the epoch of their write (None without).
    """

    local: bool

    def create(
        self,
        record: OnboardingRecord,
        transitions: Sequence[TransitionRecord] = (),
        *,
        epoch: int | None = None,
    ) -> OnboardingRecord: ...

    def create_all(
        self,
        batch: Sequence[tuple[OnboardingRecord, Sequence[TransitionRecord]]],
        *,
        epoch: int | None = None,
    ) -> builtins.list[OnboardingRecord]: ...

    def get(self, name: str) -> OnboardingRecord | None: ...

    def list(
        self,
        *,
        state: State | None = None,
        cluster: str | None = None,
        names: Collection[str] | None = None,
    ) -> list[OnboardingRecord]: ...

    def versions(self, *, cluster: str) -> dict[str, int]: ...

    def save(
        self,
        record: OnboardingRecord,
        transitions: Sequence[TransitionRecord] = (),
        *,
        epoch: int | None = None,
    ) -> OnboardingRecord: ...

    def save_all(
        self,
        batch: Sequence[tuple[OnboardingRecord, Sequence[TransitionRecord]]],
        *,
        epoch: int | None = None,
    ) -> builtins.list[OnboardingRecord | Conflict]: ...

    def claim_leadership(
        self, *, epoch: int, holder: str, at: datetime, address: str | None = None
    ) -> bool: ...

    def leadership(self) -> Leadership | None: ...

    def history(self, name: str) -> builtins.list[TransitionRecord]: ...

    def prune(self, *, deleted_before: datetime) -> builtins.list[str]: ...

    def close(self) -> None: ...


class Leases(Protocol):
    """The one Lease the replicas elect their leader on.

    Contract: ``get`` answers None when there is no Lease; ``create`` raises
    ``errors.Conflict`` when one exists; ``update`` writes only over the version it
    was read at (``record.version``), else raises ``errors.Conflict``. Both answer
    the stored record with its new version. Other failures are the project's
    errors (``TemporaryError`` for an unreachable API). ``where`` names the Lease
    for messages.
    """

    where: str

    async def get(self) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord) -> LeaseRecord: ...

    async def update(self, record: LeaseRecord) -> LeaseRecord: ...


TemplateChange = Literal["created", "updated", "unchanged"]


class WorkflowEngine(Protocol):
    """Workflows of one cluster's Argo namespace.

    Contract:
    - ``submit`` creates a workflow from a WorkflowTemplate with exactly the
      given name, labels and parameters; raises ``errors.WorkflowExists`` when
      that name is taken (the caller adopts it with ``get``).
    - ``get`` raises ``errors.WorkflowNotFound`` for an unknown name.
    - ``list`` returns the workflows matching a Kubernetes label selector,
      fetching only the fields of ``WorkflowStatus``.
    - ``stop`` and ``delete`` succeed when the workflow is already finished or gone.
    - ``apply_template`` creates or updates a WorkflowTemplate so that its spec
      and labels equal the given manifest.
    - Failures raise ``errors.ArgoError`` subclasses that name the cluster and
      never contain the token.
    """

    cluster: str

    async def submit(self, submission: WorkflowSubmission) -> WorkflowStatus: ...

    async def get(self, name: str) -> WorkflowStatus: ...

    async def list(self, selector: str) -> list[WorkflowStatus]: ...

    def watch(
        self, selector: str, *, resource_version: str | None = None
    ) -> AsyncIterator[WorkflowEvent]:
        """Changes of the workflows matching ``selector`` from ``resource_version`` on
        (None: from now, with an ADDED event for each that exists). Ends when the
        server closes the stream; raises ``errors.WatchExpired`` when the version is
        too old, ``errors.ArgoError`` subclasses otherwise."""
        ...

    async def stop(self, name: str, *, message: str) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def apply_template(self, manifest: dict[str, Any]) -> TemplateChange: ...

    async def lint_template(self, manifest: dict[str, Any]) -> None: ...

    def ui_link(self, name: str) -> str: ...

    async def aclose(self) -> None: ...


Action = Literal["reconcile", "retry", "suspend", "resume"]


class Operations(Protocol):
    """What the HTTP API and on-call can do; implemented by the daemon.

    Errors: ``errors.NotFound`` (404), ``errors.Conflict`` (409: the action is
    not allowed in this state, or the onboarding is declared in files),
    ``errors.ConfigError`` (422: e.g. unknown cluster).
    """

    def list(
        self, *, state: State | None = None, cluster: str | None = None
    ) -> list[OnboardingView]: ...

    def get(self, name: str) -> OnboardingView: ...

    def history(self, name: str) -> builtins.list[TransitionView]: ...

    async def upsert(self, document: Onboarding) -> tuple[OnboardingView, bool, bool]:
        """Returns (OnboardingView, created, changed)."""
        ...

    async def delete(self, name: str) -> OnboardingView: ...

    async def wait(self, name: str, *, timeout: float) -> tuple[OnboardingView, bool]:
        """Wait until Ready or Failed/CleanupFailed/Deleted; returns (view, done)."""
        ...

    async def act(self, name: str, action: Action, *, by: str | None = None) -> OnboardingView:
        """Run an on-call action; ``by`` names the caller in the transition's reason."""
        ...

    def clusters(self) -> builtins.list[ClusterView]:
        """Every declared cluster with its health as the daemon last saw it."""
        ...

    def readiness(self) -> tuple[bool, str]: ...

    def replica(self) -> ReplicaView:
        """This replica's role and the leader (from the store's leadership record)."""
        ...

    def held_offboarding(self) -> HeldOffboardingView:
        """The config change held because it would offboard too many at once, if any."""
        ...

    async def confirm_offboarding(self) -> HeldOffboardingView:
        """Run the held change; Conflict when none is held or the files changed since,
        ConfigError when it has become invalid (a removed cluster is in use again)."""
        ...


class Targets(Protocol):
    """What the steps need on a target cluster besides the workflow (namespace, the step
    pods' ServiceAccount and least-privilege Roles, the BTP credentials Secret), and in
    ``secret_namespaces`` (the pipeline's, e.g. the SAP BTP Service Operator's) the
    right to keep Secrets there.

    Contract: both are idempotent; ``release`` removes only what ``prepare`` created for
    that onboarding (a namespace that was not ours stays). They answer lines for the log.
    """

    async def prepare(
        self,
        cluster: Cluster,
        *,
        onboarding: str,
        namespace: str,
        btp_secret: Mapping[str, str] | None,
        secret_namespaces: Sequence[str] = (),
    ) -> builtins.list[str]: ...

    async def release(
        self,
        cluster: Cluster,
        *,
        onboarding: str,
        namespace: str,
        secret_namespaces: Sequence[str] = (),
    ) -> builtins.list[str]: ...


class Credentials(Protocol):
    """The BTP credentials of a GlobalAccount, as the keys of the Secret the templates read."""

    async def read(self, account: GlobalAccount) -> dict[str, str]: ...
