"""Preparing a target on local-a: idempotent, least privilege, released exactly."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from orchestrator.config.configs import Cluster, Kubeconfig
from orchestrator.core.naming import LABEL_MANAGED_BY, LABEL_ONBOARDING
from orchestrator.kube.clients import KubeAccess
from orchestrator.kube.engines import KubeAccesses
from orchestrator.kube.preparing import (
    ClusterTargets,
    Preparation,
    Release,
    prepare_target,
    release_target,
    step_role_name,
)
from orchestrator.kube.tokens import TokenRequestSource
from tests.controlplane import cluster as controlplane
from tests.kube.conftest import ARGO_NAMESPACE, kubeconfig_with_token, write_yaml

pytestmark = pytest.mark.e2e

BTP = {
    "client-id": "cid-1",
    "client-secret": "csecret-8d2f",
    "token-url": "https://t",
    "accounts-url": "https://a",
}


@dataclass
class Target:
    """One test's names: its own daemon id, step ServiceAccount and Secret, so tests never meet."""

    daemon: str
    onboarding: str
    namespace: str
    step_service_account: str
    btp_secret_name: str


def actions(result: Preparation | Release) -> dict[str, str]:
    return {f"{c.kind} {c.namespace or ''}/{c.name}": c.action for c in result.changes}


@pytest.fixture
async def target(access: KubeAccess, unique: str) -> AsyncIterator[Target]:
    t = Target(
        daemon=f"{unique}-daemon",
        onboarding=f"{unique}-onb",
        namespace=f"{unique}-ns",
        step_service_account=f"{unique}-steps",
        btp_secret_name=f"{unique}-btp",
    )
    yield t
    core = k8s.CoreV1Api(access.api_client())
    rbac = k8s.RbacAuthorizationV1Api(access.api_client())
    for delete in (
        lambda: core.delete_namespace(t.namespace),
        lambda: core.delete_namespaced_service_account(t.step_service_account, ARGO_NAMESPACE),
        lambda: core.delete_namespaced_secret(t.btp_secret_name, ARGO_NAMESPACE),
        lambda: rbac.delete_namespaced_role(f"{t.step_service_account}-executor", ARGO_NAMESPACE),
        lambda: rbac.delete_namespaced_role_binding(
            f"{t.step_service_account}-executor", ARGO_NAMESPACE
        ),
    ):
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise


async def prepare(
    access: KubeAccess,
    t: Target,
    btp: dict[str, str] | None = BTP,
    secret_namespaces: tuple[str, ...] = (),
) -> Preparation:
    return await prepare_target(
        access,
        onboarding=t.onboarding,
        namespace=t.namespace,
        argo_namespace=ARGO_NAMESPACE,
        step_service_account=t.step_service_account,
        daemon=t.daemon,
        btp_secret=btp,
        btp_secret_name=t.btp_secret_name,
        secret_namespaces=secret_namespaces,
    )


async def release(
    access: KubeAccess,
    t: Target,
    onboarding: str | None = None,
    secret_namespaces: tuple[str, ...] = (),
) -> Release:
    return await release_target(
        access,
        onboarding=onboarding or t.onboarding,
        namespace=t.namespace,
        step_service_account=t.step_service_account,
        daemon=t.daemon,
        secret_namespaces=secret_namespaces,
    )


def namespace_labels(access: KubeAccess, name: str) -> dict[str, str] | None:
    try:
        ns = k8s.CoreV1Api(access.api_client()).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    if ns.status is not None and ns.status.phase == "Terminating":
        return None
    return dict(ns.metadata.labels or {}) if ns.metadata else {}


async def test_prepare_twice_changes_nothing_the_second_time(
    access: KubeAccess, target: Target
) -> None:
    role = step_role_name(target.step_service_account, target.onboarding)
    first = await prepare(access, target)

    assert actions(first) == {
        f"Namespace /{target.namespace}": "created",
        f"ServiceAccount {ARGO_NAMESPACE}/{target.step_service_account}": "created",
        f"Role {ARGO_NAMESPACE}/{target.step_service_account}-executor": "created",
        f"RoleBinding {ARGO_NAMESPACE}/{target.step_service_account}-executor": "created",
        f"Role {target.namespace}/{role}": "created",
        f"RoleBinding {target.namespace}/{role}": "created",
        f"Secret {ARGO_NAMESPACE}/{target.btp_secret_name}": "created",
    }
    assert first.namespace_ours
    assert namespace_labels(access, target.namespace) == {
        "kubernetes.io/metadata.name": target.namespace,
        LABEL_MANAGED_BY: target.daemon,
        LABEL_ONBOARDING: target.onboarding,
    }

    second = await prepare(access, target)

    assert set(actions(second).values()) == {"unchanged"}
    assert not second.changed
    assert "csecret-8d2f" not in repr(second) + "".join(map(str, second.changes))


async def test_btp_secret_is_updated_when_its_data_changes(
    access: KubeAccess, target: Target
) -> None:
    await prepare(access, target)
    rotated = {**BTP, "client-secret": "csecret-rotated"}

    changed = await prepare(access, target, btp=rotated)

    key = f"Secret {ARGO_NAMESPACE}/{target.btp_secret_name}"
    assert actions(changed)[key] == "updated"
    secret = k8s.CoreV1Api(access.api_client()).read_namespaced_secret(
        target.btp_secret_name, ARGO_NAMESPACE
    )
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    assert data == rotated
    assert (secret.metadata.labels or {})[LABEL_MANAGED_BY] == target.daemon  # type: ignore[union-attr]
    assert actions(await prepare(access, target, btp=rotated))[key] == "unchanged"


async def test_release_removes_what_prepare_created_and_a_namespace_of_ours(
    access: KubeAccess, target: Target
) -> None:
    await prepare(access, target)
    role = step_role_name(target.step_service_account, target.onboarding)

    released = await release(access, target)

    assert actions(released) == {
        f"RoleBinding {target.namespace}/{role}": "deleted",
        f"Role {target.namespace}/{role}": "deleted",
        f"Namespace /{target.namespace}": "deleted",
    }
    assert namespace_labels(access, target.namespace) is None
    # shared by every onboarding of the cluster: kept
    k8s.CoreV1Api(access.api_client()).read_namespaced_service_account(
        target.step_service_account, ARGO_NAMESPACE
    )
    again = await release(access, target)
    assert set(actions(again).values()) <= {"absent"}


async def test_a_foreign_namespace_is_used_and_left_in_place(
    access: KubeAccess, target: Target
) -> None:
    core = k8s.CoreV1Api(access.api_client())
    core.create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=target.namespace, labels={"team": "a"}))
    )

    prepared = await prepare(access, target)

    assert not prepared.namespace_ours
    assert actions(prepared)[f"Namespace /{target.namespace}"] == "kept"
    assert namespace_labels(access, target.namespace) == {
        "kubernetes.io/metadata.name": target.namespace,
        "team": "a",
    }

    released = await release(access, target)

    assert actions(released)[f"Namespace /{target.namespace}"] == "kept"
    role = step_role_name(target.step_service_account, target.onboarding)
    assert actions(released)[f"Role {target.namespace}/{role}"] == "deleted"
    assert namespace_labels(access, target.namespace) is not None


async def test_our_namespace_stays_while_another_onboarding_of_ours_uses_it(
    access: KubeAccess, target: Target
) -> None:
    await prepare(access, target)
    other = Target(**{**target.__dict__, "onboarding": target.onboarding + "-2"})
    await prepare(access, other)

    first = await release(access, target)
    assert actions(first)[f"Namespace /{target.namespace}"] == "kept"

    last = await release(access, other)
    assert actions(last)[f"Namespace /{target.namespace}"] == "deleted"


async def test_release_leaves_objects_of_another_onboarding_alone(
    access: KubeAccess, target: Target
) -> None:
    await prepare(access, target)
    role = step_role_name(target.step_service_account, target.onboarding)
    rbac = k8s.RbacAuthorizationV1Api(access.api_client())
    rbac.patch_namespaced_role(
        role, target.namespace, {"metadata": {"labels": {LABEL_ONBOARDING: "someone-else"}}}
    )

    released = await release(access, target)

    assert actions(released)[f"Role {target.namespace}/{role}"] == "kept"
    assert actions(released)[f"Namespace /{target.namespace}"] == "kept"
    rbac.read_namespaced_role(role, target.namespace)


async def step_access(
    access: KubeAccess, cluster: controlplane.Cluster, target: Target, tmp_path: Path
) -> KubeAccess:
    """The cluster as the step pods' ServiceAccount sees it."""
    token = await TokenRequestSource(
        access,
        namespace=ARGO_NAMESPACE,
        service_account=target.step_service_account,
        expiration_seconds=600,
    ).token()
    path = tmp_path / "kubeconfig"
    write_yaml(path, kubeconfig_with_token(cluster, token))
    return KubeAccess(cluster.name, Kubeconfig(path=str(path)))


async def allowed(
    step: KubeAccess, verb: str, resource: str, namespace: str | None, group: str = ""
) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": resource,
                **({"namespace": namespace} if namespace else {}),
            }
        },
    }
    answer = await step.call(
        "review",
        f"{verb} {resource} in {namespace}",
        lambda k: k.authorization.create_self_subject_access_review(
            k8s.V1SelfSubjectAccessReview.model_validate(review), _request_timeout=k.timeout
        ),
    )
    return bool(answer.status and answer.status.allowed)


async def test_step_service_account_reads_secrets_only_in_its_target_namespace(
    access: KubeAccess, cluster_a: controlplane.Cluster, target: Target, tmp_path: Path
) -> None:
    await prepare(access, target)
    step = await step_access(access, cluster_a, target, tmp_path)

    async def can(verb: str, resource: str, namespace: str | None, group: str = "") -> bool:
        return await allowed(step, verb, resource, namespace, group)

    try:
        assert await can("get", "secrets", target.namespace)
        assert await can("create", "secrets", target.namespace)
        assert await can("patch", "deployments", target.namespace, group="apps")
        assert await can("create", "workflowtaskresults", ARGO_NAMESPACE, group="argoproj.io")

        assert not await can("get", "secrets", ARGO_NAMESPACE)
        assert not await can("list", "secrets", "default")
        assert not await can("list", "secrets", None)  # cluster-wide
        assert not await can("delete", "namespaces", None)
        assert not await can("create", "roles", target.namespace, group="rbac.authorization.k8s.io")
        assert not await can("create", "pods", target.namespace)
    finally:
        step.close()


async def test_a_secret_namespace_gets_secrets_only_and_is_released_with_the_onboarding(
    access: KubeAccess, cluster_a: controlplane.Cluster, target: Target, tmp_path: Path
) -> None:
    """The SAP BTP Service Operator's namespace, where create-operator-access writes."""
    operator = f"{target.namespace}-op"
    role = step_role_name(target.step_service_account, target.onboarding)

    try:
        first = await prepare(access, target, None, (operator, target.namespace))
        again = await prepare(access, target, None, (operator, target.namespace))
        step = await step_access(access, cluster_a, target, tmp_path)
        try:
            assert await allowed(step, "create", "secrets", operator)
            assert await allowed(step, "list", "secrets", operator)
            assert await allowed(step, "delete", "secrets", operator)
            assert not await allowed(step, "create", "configmaps", operator)
            assert not await allowed(step, "create", "deployments", operator, group="apps")
        finally:
            step.close()
        released = await release(access, target, secret_namespaces=(operator,))
        gone = namespace_labels(access, operator) is None
    finally:
        try:
            k8s.CoreV1Api(access.api_client()).delete_namespace(operator)
        except ApiException as exc:
            if exc.status != 404:
                raise

    assert {k: v for k, v in actions(first).items() if operator in k} == {
        f"Namespace /{operator}": "created",
        f"Role {operator}/{role}": "created",
        f"RoleBinding {operator}/{role}": "created",
    }
    assert set(actions(again).values()) == {"unchanged"}
    assert gone
    assert {k: v for k, v in actions(released).items() if operator in k} == {
        f"RoleBinding {operator}/{role}": "deleted",
        f"Role {operator}/{role}": "deleted",
        f"Namespace /{operator}": "deleted",
    }


async def test_cluster_targets_take_the_cluster_entrys_settings(
    cluster_a: controlplane.Cluster, target: Target
) -> None:
    entry = Cluster.model_validate(
        {
            "apiVersion": "orchestrator.dev/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": cluster_a.name},
            "spec": {
                "kubeconfig": {"path": str(cluster_a.kubeconfig)},
                "argo": {
                    "namespace": ARGO_NAMESPACE,
                    "serviceAccount": target.step_service_account,
                },
            },
        }
    )
    accesses = KubeAccesses()
    targets = ClusterTargets(accesses, daemon=target.daemon, btp_secret_name=target.btp_secret_name)
    role = step_role_name(target.step_service_account, target.onboarding)
    try:
        lines = await targets.prepare(
            entry, onboarding=target.onboarding, namespace=target.namespace, btp_secret=BTP
        )
        assert f"Role {target.namespace}/{role}: created" in lines
        assert len(lines) == 7
        again = await targets.prepare(
            entry, onboarding=target.onboarding, namespace=target.namespace, btp_secret=BTP
        )
        assert again == []

        released = await targets.release(
            entry, onboarding=target.onboarding, namespace=target.namespace
        )
        assert released == [
            f"RoleBinding {target.namespace}/{role}: deleted",
            f"Role {target.namespace}/{role}: deleted",
            f"Namespace {target.namespace}: deleted",
        ]
    finally:
        accesses.close()
