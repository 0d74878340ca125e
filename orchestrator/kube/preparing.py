"""Prepare a target cluster for an onboarding's steps, and undo exactly that.

``prepare_target`` is idempotent: run it before every first step; a second run
changes nothing and says so. It ensures

- the target namespace, created with ``orchestrator.dev/managed-by`` and
  ``orchestrator.dev/onboarding`` labels; an existing namespace without our
  ``managed-by`` label is used but reported as not ours, so it is never deleted;
- in the Argo namespace, the ServiceAccount the step pods run as, with a Role
  that lets Argo's executor report step results (``workflowtaskresults``) —
  both shared by every onboarding on the cluster, so never removed;
- in the target namespace, a Role for this onboarding with what the steps need
  there and nothing more (Secrets, and what ``helm upgrade --install`` of a
  proxy chart touches), bound to that ServiceAccount; nothing cluster-wide;
- in each of ``secret_namespaces`` (the SAP BTP Service Operator's namespace,
  where create-operator-access writes the operator's access Secret and helm
  keeps the operator release's records), the namespace if missing and a Role
  for this onboarding with Secrets only, bound the same way;
- the BTP credentials Secret the step templates read through ``secretKeyRef``,
  created or updated when its data differs; its data is never logged or put
  into a result.

``release_target`` removes this onboarding's RoleBindings and Roles, and each
namespace only when we created it and no other onboarding of ours still has a
Role in it. It never touches anything it did not create.

The kubernetes client's models are imported where they are first used, not with
this module (start-up time and memory; see ``clients``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.config.configs import Cluster
from orchestrator.core.naming import LABEL_MANAGED_BY, LABEL_ONBOARDING
from orchestrator.kube.clients import Apis, KubeAccess
from orchestrator.kube.engines import KubeAccesses
from orchestrator.kube.errors import KubeNotFound, KubeUnavailable

Action = Literal["created", "updated", "unchanged", "deleted", "absent", "kept"]

BTP_SECRET_NAME = "orchestrator-btp-credentials"

_ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]

#: What the step pods may do in the target namespace: their Secrets, and what
#: ``helm upgrade --install`` of a proxy chart creates there (its release is
#: stored in Secrets too); pods, replica sets and events only to watch a rollout.
STEP_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["secrets", "configmaps", "services", "serviceaccounts"],
        "verbs": _ALL,
    },
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _ALL},
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["pods", "events"], "verbs": _READ},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _READ},
    # the tenant's own ServiceInstances, only counted: delete-operator-access waits for them
    {
        "apiGroups": ["services.cloud.sap.com"],
        "resources": ["serviceinstances"],
        "verbs": _READ,
    },
]

#: What the step pods may do in a namespace besides the target where a step keeps Secrets:
#: the SAP BTP Service Operator's (the access Secret, helm's records of the operator release).
SECRET_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": _ALL},
]

#: What Argo's executor needs in the Argo namespace to report a step's outputs.
EXECUTOR_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["argoproj.io"],
        "resources": ["workflowtaskresults"],
        "verbs": ["create", "patch"],
    },
]


@dataclass(frozen=True)
class Change:
    """What happened to one object; safe to log (names only, never data)."""

    kind: str
    namespace: str | None
    name: str
    action: Action

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}: {self.action}"


@dataclass(frozen=True)
class Preparation:
    namespace: str
    #: False when the namespace existed without our label: it is used, never deleted
    namespace_ours: bool
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return any(c.action not in ("unchanged", "kept") for c in self.changes)


@dataclass(frozen=True)
class Release:
    namespace: str
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return any(c.action == "deleted" for c in self.changes)


def step_role_name(step_service_account: str, onboarding: str) -> str:
    """Name of the Role and RoleBinding of one onboarding in its target namespace."""
    return f"{step_service_account}-{onboarding}"


async def prepare_target(
    access: KubeAccess,
    *,
    onboarding: str,
    namespace: str,
    argo_namespace: str,
    step_service_account: str,
    daemon: str,
    btp_secret: Mapping[str, str] | None,
    btp_secret_name: str = BTP_SECRET_NAME,
    secret_namespaces: Sequence[str] = (),
) -> Preparation:
    """Ensure what the steps of ``onboarding`` need on the cluster of ``access``."""
    from kubernetes import client as k8s

    ours = {LABEL_MANAGED_BY: daemon}
    mine = {**ours, LABEL_ONBOARDING: onboarding}
    changes: list[Change] = []

    namespace_change, namespace_ours = await _ensure_namespace(access, namespace, labels=mine)
    changes.append(namespace_change)
    changes.append(
        await _ensure(
            access,
            "ServiceAccount",
            argo_namespace,
            step_service_account,
            wanted={"metadata": {"labels": ours}},
            read=lambda k: k.core.read_namespaced_service_account(
                step_service_account, argo_namespace, _request_timeout=k.timeout
            ),
            create=lambda k, body: k.core.create_namespaced_service_account(
                argo_namespace,
                k8s.V1ServiceAccount.model_validate(body),
                _request_timeout=k.timeout,
            ),
            replace=None,
        )
    )
    executor = f"{step_service_account}-executor"
    changes.extend(
        await _ensure_role_and_binding(
            access,
            argo_namespace,
            executor,
            rules=EXECUTOR_RULES,
            labels=ours,
            subject=(argo_namespace, step_service_account),
        )
    )
    others = [n for n in dict.fromkeys(secret_namespaces) if n != namespace]
    for other in others:
        changes.append((await _ensure_namespace(access, other, labels=ours))[0])
    for where, rules in [(namespace, STEP_RULES), *((other, SECRET_RULES) for other in others)]:
        changes.extend(
            await _ensure_role_and_binding(
                access,
                where,
                step_role_name(step_service_account, onboarding),
                rules=rules,
                labels=mine,
                subject=(argo_namespace, step_service_account),
            )
        )
    if btp_secret is not None:
        changes.append(
            await _ensure_secret(
                access, argo_namespace, btp_secret_name, data=btp_secret, labels=ours
            )
        )
    return Preparation(namespace=namespace, namespace_ours=namespace_ours, changes=tuple(changes))


async def release_target(
    access: KubeAccess,
    *,
    onboarding: str,
    namespace: str,
    step_service_account: str,
    daemon: str,
    secret_namespaces: Sequence[str] = (),
) -> Release:
    """Remove what ``prepare_target`` created for ``onboarding``, and nothing else."""
    name = step_role_name(step_service_account, onboarding)
    changes: list[Change] = []
    for where in [namespace, *(n for n in dict.fromkeys(secret_namespaces) if n != namespace)]:
        changes.extend(
            await _release_role(access, where, name, onboarding=onboarding, daemon=daemon)
        )
        changes.append(await _release_namespace(access, where, daemon=daemon))
    return Release(namespace=namespace, changes=tuple(changes))


async def _release_role(
    access: KubeAccess, namespace: str, name: str, *, onboarding: str, daemon: str
) -> list[Change]:
    """This onboarding's RoleBinding and Role in ``namespace``, deleted if they are ours."""
    changes: list[Change] = []
    # The binding first: a Role without it grants nothing, the reverse would dangle.
    for kind, read, delete in (
        (
            "RoleBinding",
            lambda k: k.rbac.read_namespaced_role_binding(
                name, namespace, _request_timeout=k.timeout
            ),
            lambda k: k.rbac.delete_namespaced_role_binding(
                name, namespace, _request_timeout=k.timeout
            ),
        ),
        (
            "Role",
            lambda k: k.rbac.read_namespaced_role(name, namespace, _request_timeout=k.timeout),
            lambda k: k.rbac.delete_namespaced_role(name, namespace, _request_timeout=k.timeout),
        ),
    ):
        current = await _read(access, f"read_{kind.lower()}", f"{kind} {namespace}/{name}", read)
        changes.append(
            await _delete_if_mine(
                access,
                kind,
                namespace,
                name,
                current,
                onboarding=onboarding,
                daemon=daemon,
                delete=delete,
            )
        )
    return changes


# --- namespace ------------------------------------------------------------------


async def _ensure_namespace(
    access: KubeAccess, namespace: str, *, labels: dict[str, str]
) -> tuple[Change, bool]:
    from kubernetes import client as k8s

    current = await _read(
        access,
        "read_namespace",
        f"Namespace {namespace}",
        lambda k: k.core.read_namespace(namespace, _request_timeout=k.timeout),
    )
    if current is None:
        body = {"metadata": {"name": namespace, "labels": labels}}
        await access.call(
            "create_namespace",
            f"Namespace {namespace}",
            lambda k: k.core.create_namespace(
                k8s.V1Namespace.model_validate(body), _request_timeout=k.timeout
            ),
        )
        return Change("Namespace", None, namespace, "created"), True
    if (current.get("status") or {}).get("phase") == "Terminating":
        raise KubeUnavailable(
            f"namespace {namespace} is being deleted; waiting until it is gone",
            cluster=access.cluster,
            reason="NamespaceTerminating",
        )
    current_labels = (current.get("metadata") or {}).get("labels") or {}
    ours = current_labels.get(LABEL_MANAGED_BY) == labels[LABEL_MANAGED_BY]
    return Change("Namespace", None, namespace, "unchanged" if ours else "kept"), ours


async def _release_namespace(access: KubeAccess, namespace: str, *, daemon: str) -> Change:
    current = await _read(
        access,
        "read_namespace",
        f"Namespace {namespace}",
        lambda k: k.core.read_namespace(namespace, _request_timeout=k.timeout),
    )
    if current is None or (current.get("status") or {}).get("phase") == "Terminating":
        return Change("Namespace", None, namespace, "absent")
    labels = (current.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != daemon:
        return Change("Namespace", None, namespace, "kept")
    # Another onboarding of ours in the same namespace still has its Role there.
    roles = await access.call(
        "list_roles",
        f"Roles in {namespace}",
        lambda k: k.rbac.list_namespaced_role(
            namespace, label_selector=f"{LABEL_MANAGED_BY}={daemon}", _request_timeout=k.timeout
        ),
    )
    if roles.items:
        return Change("Namespace", None, namespace, "kept")
    try:
        await access.call(
            "delete_namespace",
            f"Namespace {namespace}",
            lambda k: k.core.delete_namespace(namespace, _request_timeout=k.timeout),
        )
    except KubeNotFound:
        return Change("Namespace", None, namespace, "absent")
    return Change("Namespace", None, namespace, "deleted")


# --- RBAC -------------------------------------------------------------------------


async def _ensure_role_and_binding(
    access: KubeAccess,
    namespace: str,
    name: str,
    *,
    rules: list[dict[str, Any]],
    labels: dict[str, str],
    subject: tuple[str, str],
) -> list[Change]:
    from kubernetes import client as k8s

    role = await _ensure(
        access,
        "Role",
        namespace,
        name,
        wanted={"metadata": {"labels": labels}, "rules": rules},
        read=lambda k: k.rbac.read_namespaced_role(name, namespace, _request_timeout=k.timeout),
        create=lambda k, body: k.rbac.create_namespaced_role(
            namespace, k8s.V1Role.model_validate(body), _request_timeout=k.timeout
        ),
        replace=lambda k, body: k.rbac.replace_namespaced_role(
            name, namespace, k8s.V1Role.model_validate(body), _request_timeout=k.timeout
        ),
    )
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
    subjects = [{"kind": "ServiceAccount", "namespace": subject[0], "name": subject[1]}]
    binding = await _ensure(
        access,
        "RoleBinding",
        namespace,
        name,
        wanted={"metadata": {"labels": labels}, "roleRef": role_ref, "subjects": subjects},
        read=lambda k: k.rbac.read_namespaced_role_binding(
            name, namespace, _request_timeout=k.timeout
        ),
        create=lambda k, body: k.rbac.create_namespaced_role_binding(
            namespace, k8s.V1RoleBinding.model_validate(body), _request_timeout=k.timeout
        ),
        replace=lambda k, body: k.rbac.replace_namespaced_role_binding(
            name, namespace, k8s.V1RoleBinding.model_validate(body), _request_timeout=k.timeout
        ),
        # roleRef cannot change: a binding with another one is deleted and made again
        immutable=("roleRef",),
        delete=lambda k: k.rbac.delete_namespaced_role_binding(
            name, namespace, _request_timeout=k.timeout
        ),
    )
    return [role, binding]


# --- Secret -----------------------------------------------------------------------


async def _ensure_secret(
    access: KubeAccess,
    namespace: str,
    name: str,
    *,
    data: Mapping[str, str],
    labels: dict[str, str],
) -> Change:
    from kubernetes import client as k8s

    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return await _ensure(
        access,
        "Secret",
        namespace,
        name,
        wanted={"metadata": {"labels": labels}, "type": "Opaque", "data": encoded},
        read=lambda k: k.core.read_namespaced_secret(name, namespace, _request_timeout=k.timeout),
        create=lambda k, body: k.core.create_namespaced_secret(
            namespace, k8s.V1Secret.model_validate(body), _request_timeout=k.timeout
        ),
        replace=lambda k, body: k.core.replace_namespaced_secret(
            name, namespace, k8s.V1Secret.model_validate(body), _request_timeout=k.timeout
        ),
        immutable=("type",),
        delete=lambda k: k.core.delete_namespaced_secret(
            name, namespace, _request_timeout=k.timeout
        ),
    )


# --- the generic create-or-update ----------------------------------------------------


async def _ensure(
    access: KubeAccess,
    kind: str,
    namespace: str,
    name: str,
    *,
    wanted: dict[str, Any],
    read: Callable[[Apis], Any],
    create: Callable[[Apis, dict[str, Any]], Any],
    replace: Callable[[Apis, dict[str, Any]], Any] | None,
    immutable: tuple[str, ...] = (),
    delete: Callable[[Apis], Any] | None = None,
) -> Change:
    """Create ``kind`` with ``wanted`` fields, or update it when they differ.

    ``wanted`` holds the fields we own: ``metadata.labels`` are merged into the
    object's labels (others' labels stay), every other top-level field is ours.
    """
    subject = f"{kind} {namespace}/{name}"
    current = await _read(access, f"read_{kind.lower()}", subject, read)
    wanted_labels: dict[str, str] = wanted["metadata"]["labels"]
    fields = {k: v for k, v in wanted.items() if k != "metadata"}
    body = {"metadata": {"name": name, "namespace": namespace, "labels": wanted_labels}, **fields}
    if current is None:
        await access.call(f"create_{kind.lower()}", subject, lambda k: create(k, body))
        return Change(kind, namespace, name, "created")
    metadata = current.get("metadata") or {}
    labels = metadata.get("labels") or {}
    same_labels = all(labels.get(k) == v for k, v in wanted_labels.items())
    same_fields = all(_normal(current.get(k)) == _normal(v) for k, v in fields.items())
    if same_labels and same_fields:
        return Change(kind, namespace, name, "unchanged")
    if replace is None:
        return Change(kind, namespace, name, "kept")
    if delete is not None and any(
        _normal(current.get(k)) != _normal(fields.get(k)) for k in immutable
    ):
        await access.call(f"delete_{kind.lower()}", subject, delete)
        await access.call(f"create_{kind.lower()}", subject, lambda k: create(k, body))
        return Change(kind, namespace, name, "updated")
    body["metadata"] = {
        **{k: v for k, v in metadata.items() if k in ("annotations", "resourceVersion")},
        "name": name,
        "namespace": namespace,
        "labels": {**labels, **wanted_labels},
    }
    await access.call(f"replace_{kind.lower()}", subject, lambda k: replace(k, body))
    return Change(kind, namespace, name, "updated")


async def _delete_if_mine(
    access: KubeAccess,
    kind: str,
    namespace: str,
    name: str,
    current: dict[str, Any] | None,
    *,
    onboarding: str,
    daemon: str,
    delete: Callable[[Apis], Any],
) -> Change:
    if current is None:
        return Change(kind, namespace, name, "absent")
    labels = (current.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != daemon or labels.get(LABEL_ONBOARDING) != onboarding:
        return Change(kind, namespace, name, "kept")
    try:
        await access.call(f"delete_{kind.lower()}", f"{kind} {namespace}/{name}", delete)
    except KubeNotFound:
        return Change(kind, namespace, name, "absent")
    return Change(kind, namespace, name, "deleted")


async def _read(
    access: KubeAccess, operation: str, subject: str, read: Callable[[Apis], Any]
) -> dict[str, Any] | None:
    """The object as JSON-shaped data (camelCase keys), or None when it does not exist."""
    try:
        found: Any = await access.call(
            operation,
            subject,
            lambda k: k.client.sanitize_for_serialization(read(k)),  # type: ignore[no-untyped-call]
        )
    except KubeNotFound:
        return None
    return found if isinstance(found, dict) else None


def _normal(value: Any) -> Any:
    """Equal once the empty values the API server drops are dropped on both sides."""
    if isinstance(value, dict):
        out = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


class ClusterTargets:
    """``prepare_target``/``release_target`` with each cluster entry's own settings.

    Shaped as a port for the core (it takes a ``Cluster`` document, plain names
    and data, and answers the changes as log lines), so the reconciler does not
    import this package.
    """

    def __init__(
        self,
        accesses: KubeAccesses,
        *,
        daemon: str,
        btp_secret_name: str = BTP_SECRET_NAME,
    ) -> None:
        self.accesses = accesses
        self.daemon = daemon
        self.btp_secret_name = btp_secret_name

    async def prepare(
        self,
        cluster: Cluster,
        *,
        onboarding: str,
        namespace: str,
        btp_secret: Mapping[str, str] | None,
        secret_namespaces: Sequence[str] = (),
    ) -> list[str]:
        """Lines for the log, one per object created or updated (none when all was in place)."""
        prepared = await prepare_target(
            self.accesses.get(cluster),
            onboarding=onboarding,
            namespace=namespace,
            argo_namespace=cluster.spec.argo.namespace,
            step_service_account=cluster.spec.argo.service_account,
            daemon=self.daemon,
            btp_secret=btp_secret,
            btp_secret_name=self.btp_secret_name,
            secret_namespaces=secret_namespaces,
        )
        return [str(c) for c in prepared.changes if c.action in ("created", "updated")]

    async def release(
        self,
        cluster: Cluster,
        *,
        onboarding: str,
        namespace: str,
        secret_namespaces: Sequence[str] = (),
    ) -> list[str]:
        """Lines for the log, one per object deleted or deliberately kept."""
        released = await release_target(
            self.accesses.get(cluster),
            onboarding=onboarding,
            namespace=namespace,
            step_service_account=cluster.spec.argo.service_account,
            daemon=self.daemon,
            secret_namespaces=secret_namespaces,
        )
        return [str(c) for c in released.changes if c.action in ("deleted", "kept")]
