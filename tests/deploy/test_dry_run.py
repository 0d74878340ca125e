"""Every object the charts render, sent to local-a's real kube-apiserver as a dry run.

The API server validates each object as it would store it (schemas, CRDs of
the Prometheus Operator, RBAC escalation checks, admission) and stores
nothing. The daemon's pod is also checked against Pod Security ``restricted``
in a namespace that enforces it.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import CHART, TARGET_CHART, Helm, valid_values
from tests.deploy.kubeapi import KubeAPI

VALID = [pytest.param(p, id=p.stem) for p in valid_values()]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="module")
def namespace(admin_a: KubeAPI, monitoring_crds: None) -> Iterator[str]:
    """A namespace of local-a that enforces Pod Security ``restricted``."""
    name = f"deploy-dry-{secrets.token_hex(3)}"
    admin_a.create_namespace(name, RESTRICTED)
    yield name
    admin_a.delete_namespace(name)


def dry_run_all(api: KubeAPI, objects: list[dict[str, Any]]) -> None:
    refused = []
    for obj in objects:
        answer = api.create(obj, dry_run=True)
        if answer.status_code != 201:
            refused.append(f"{obj['kind']} {obj['metadata']['name']}: {answer.text}")
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize("values", VALID)
def test_every_rendered_object_passes_a_server_side_dry_run(
    helm: Helm, admin_a: KubeAPI, namespace: str, values: Path
) -> None:
    objects = helm.template(CHART, values, namespace=namespace)
    assert objects
    dry_run_all(admin_a, objects)


def test_the_target_chart_passes_a_server_side_dry_run(helm: Helm, admin_a: KubeAPI) -> None:
    release = f"deploy-dry-{secrets.token_hex(3)}"
    objects = helm.template(
        TARGET_CHART,
        namespace="argo",
        release=release,
        sets=(f"serviceAccount.name={release}", "serviceAccount.tokenSecret=true"),
    )
    assert {o["kind"] for o in objects} >= {"ServiceAccount", "ClusterRole", "Role", "Secret"}
    dry_run_all(admin_a, objects)


def pod_of(objects: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{secrets.token_hex(3)}", "namespace": namespace,
                     "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }  # fmt: skip


@pytest.mark.parametrize("values", VALID)
def test_the_daemons_pod_passes_pod_security_restricted(
    helm: Helm, admin_a: KubeAPI, namespace: str, values: Path
) -> None:
    objects = helm.template(CHART, values, namespace=namespace)
    # admission looks the pod's ServiceAccount up: it must exist for real
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert admin_a.create(account).status_code in (201, 409)
    pod = pod_of(objects, namespace)
    answer = admin_a.create(pod, dry_run=True)
    assert answer.status_code == 201, answer.text

    # the same pod with one container allowed to escalate is refused: the check is live
    loose = copy.deepcopy(pod)
    loose["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    answer = admin_a.create(loose, dry_run=True)
    assert answer.status_code == 403, answer.text
    assert "allowPrivilegeEscalation" in answer.text
