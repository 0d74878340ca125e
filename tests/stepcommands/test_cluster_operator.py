"""The SAP BTP Service Operator's steps as real processes against the local control plane.

create-operator-access and delete-operator-access write and delete the operator's access
Secret through the real kube-apiserver of cluster local-a; install-operator and
uninstall-operator run the real helm with the stand-in chart tests/charts/sap-btp-operator.
BTP is the test server. Each test has an operator namespace of its own. Run only under the
shared lock: ``flock /tmp/orchestrator-cluster.lock .venv/bin/pytest ...``.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from orchestrator.kube.preparing import STEP_RULES
from orchestrator.stepcommands.cli import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT
from tests.controlplane import cluster as controlplane
from tests.fakes.btp_server import FakeBtp
from tests.stepcommands.conftest import Steps
from tests.stepcommands.test_cluster_steps import (  # noqa: F401  (fixtures)
    CHARTS,
    cluster,
    core,
    install_by_hand,
    kube_steps,
    local_clusters,
    namespace,
    namespaced_kubeconfig,
    release_revisions,
    secret_data,
)

pytestmark = pytest.mark.e2e

KEYS = {"clientid", "clientsecret", "sm_url", "tokenurl", "tokenurlsuffix"}


@pytest.fixture
def operator_ns(core: client.CoreV1Api) -> Iterator[str]:  # noqa: F811
    name = f"op-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(ApiException):
        core.delete_namespace(name)


@dataclass
class Target:
    """One test's cluster side: its steps, the API, the operator's and the tenant's namespace."""

    steps: Steps
    core: client.CoreV1Api
    operator_ns: str
    tenant: str

    @property
    def access_secret(self) -> str:
        return f"{self.tenant}-sap-btp-service-operator"

    def access(self, **more: str) -> dict[str, str]:
        return {"operator_namespace": self.operator_ns, "namespace": self.tenant, **more}

    def secret(self, name: str | None = None) -> dict[str, str] | None:
        return secret_data(self.core, self.operator_ns, name or self.access_secret)


@pytest.fixture
def target(
    kube_steps: Steps,  # noqa: F811
    core: client.CoreV1Api,  # noqa: F811
    operator_ns: str,
    namespace: str,  # noqa: F811
) -> Target:
    return Target(kube_steps, core, operator_ns, namespace)


def chart_flags(operator_ns: str) -> dict[str, str]:
    return {
        "operator_namespace": operator_ns,
        "chart_repo": str(CHARTS),
        "chart_name": "sap-btp-operator",
        "chart_version": "0.1.0",
        "chart_values": '{"manager": {"management_namespace": ""}}',
        "helm_timeout_seconds": "60",
    }


def test_create_writes_the_operators_secret_and_a_second_run_keeps_it(
    target: Target, btp: FakeBtp
) -> None:
    first = target.steps.run("create-operator-access", **target.access())
    stored = target.secret()
    second = target.steps.run("create-operator-access", **target.access())

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), first.stderr + second.stderr
    [instance] = btp.instances_named("team-a-service-operator")
    [binding] = btp.bindings_of(instance["id"])
    assert stored is not None
    assert set(stored) == KEYS
    assert stored["clientsecret"] == binding["credentials"]["clientsecret"]
    token_url = stored["tokenurl"] + stored["tokenurlsuffix"]
    assert token_url == target.steps.runner.url + "/oauth/token"
    meta = target.core.read_namespaced_secret(target.access_secret, target.operator_ns).metadata
    assert meta.labels["orchestrator.dev/onboarding"] == "team-a"
    assert meta.labels["services.cloud.sap.com/managed-by-sap-btp-operator"] == "true"
    assert meta.annotations["orchestrator.dev/service-binding-id"] == binding["id"]
    assert second.outputs["credentials"] == "kept"
    assert target.secret() == stored
    assert (first.actions[0], first.actions[-1]) == ("start", "finish")


def test_a_lost_secret_gets_a_new_binding_and_delete_removes_everything(
    target: Target, btp: FakeBtp
) -> None:
    assert target.steps.run("create-operator-access", **target.access()).code == EXIT_OK
    old = target.secret()
    target.core.delete_namespaced_secret(target.access_secret, target.operator_ns)

    again = target.steps.run("create-operator-access", **target.access())

    assert again.code == EXIT_OK, again.stderr
    assert again.outputs["credentials"] == "regenerated"
    [instance] = btp.instances_named("team-a-service-operator")
    [binding] = btp.bindings_of(instance["id"])
    new = target.secret()
    assert new is not None
    assert old is not None
    assert new["clientsecret"] == binding["credentials"]["clientsecret"] != old["clientsecret"]

    first = target.steps.run("delete-operator-access", **target.access())
    second = target.steps.run("delete-operator-access", **target.access())

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), first.stderr
    assert btp.instances_named("team-a-service-operator") == []
    assert target.secret() is None


def test_a_secret_of_someone_else_is_never_overwritten(target: Target, btp: FakeBtp) -> None:
    name = "sap-btp-service-operator"
    target.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=target.operator_ns))
    )
    target.core.create_namespaced_secret(
        target.operator_ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name), string_data={"clientid": "the-platform-teams"}
        ),
    )

    created = target.steps.run("create-operator-access", **target.access(secret_name=name))
    deleted = target.steps.run("delete-operator-access", **target.access(secret_name=name))

    assert (created.code, deleted.code) == (EXIT_PERMANENT, EXIT_PERMANENT)
    assert "no onboarding" in created.last_message
    assert target.secret(name) == {"clientid": "the-platform-teams"}
    assert btp.instances_named("team-a-service-operator") == []


SERVICE_INSTANCES = ("services.cloud.sap.com", "v1", "serviceinstances")


def ensure_service_instance_crd(api: client.ApiClient) -> None:
    """The operator's ServiceInstance kind, as its chart would install it (schema left open)."""
    extensions = client.ApiextensionsV1Api(api)
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "serviceinstances.services.cloud.sap.com"},
        "spec": {
            "group": "services.cloud.sap.com",
            "scope": "Namespaced",
            "names": {
                "plural": "serviceinstances",
                "singular": "serviceinstance",
                "kind": "ServiceInstance",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    with contextlib.suppress(ApiException):
        extensions.create_custom_resource_definition(body)
    for _ in range(100):
        crd = extensions.read_custom_resource_definition(body["metadata"]["name"])
        conditions = (crd.status.conditions if crd.status else None) or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise AssertionError("the ServiceInstance CRD was not established")


def test_delete_waits_for_the_tenants_service_instances_and_touches_none(
    target: Target, btp: FakeBtp
) -> None:
    assert target.steps.run("create-operator-access", **target.access()).code == EXIT_OK
    api = target.core.api_client
    ensure_service_instance_crd(api)
    objects = client.CustomObjectsApi(api)
    target.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=target.tenant))
    )
    instance = {
        "apiVersion": "services.cloud.sap.com/v1",
        "kind": "ServiceInstance",
        "metadata": {"name": "tenant-db"},
        "spec": {"serviceOfferingName": "postgresql-db", "servicePlanName": "trial"},
    }
    objects.create_namespaced_custom_object(
        *SERVICE_INSTANCES[:2], target.tenant, "serviceinstances", instance
    )

    waiting = target.steps.run("delete-operator-access", **target.access())

    assert waiting.code == EXIT_TRANSIENT, waiting.stderr
    assert "still holds 1 ServiceInstance(s) of the SAP BTP Service Operator (tenant-db)" in (
        waiting.last_message
    )
    assert target.secret() is not None
    assert len(btp.instances_named("team-a-service-operator")) == 1
    # the tenant's object is untouched
    objects.get_namespaced_custom_object(
        *SERVICE_INSTANCES[:2], target.tenant, "serviceinstances", "tenant-db"
    )

    objects.delete_namespaced_custom_object(
        *SERVICE_INSTANCES[:2], target.tenant, "serviceinstances", "tenant-db"
    )
    done = target.steps.run("delete-operator-access", **target.access())

    assert done.code == EXIT_OK, done.stderr
    assert target.secret() is None
    assert btp.instances_named("team-a-service-operator") == []


def test_install_renders_the_chart_without_its_own_credentials_secret_and_upgrades_again(
    target: Target, tmp_path: Path
) -> None:
    assert target.steps.run("create-operator-access", **target.access()).code == EXIT_OK
    access = target.secret()

    first = target.steps.run("install-operator", **chart_flags(target.operator_ns))
    second = target.steps.run("install-operator", **chart_flags(target.operator_ns))

    assert (first.code, second.code) == (EXIT_OK, EXIT_OK), first.stderr + second.stderr
    assert (first.outputs, second.outputs) == (
        {"release": "sap-btp-operator", "revision": "1"},
        {"release": "sap-btp-operator", "revision": "2"},
    )
    config = target.core.read_namespaced_config_map("sap-btp-operator-config", target.operator_ns)
    assert config.data["MANAGEMENT_NAMESPACE"] == target.operator_ns
    # manager.secret.enabled is false: the chart made no Secret of its own (it would have
    # failed without a client id), and ours is as create-operator-access wrote it
    assert target.secret("sap-btp-service-operator") is None
    assert target.secret() == access
    argv = (tmp_path / "helm-calls" / "argv").read_text()
    assert access is not None
    assert all(value not in argv for value in access.values() if len(value) > 12)
    modes = (tmp_path / "helm-calls" / "modes").read_text().split()
    assert set(modes[0::2]) == {"600"}
    assert list((tmp_path / "tmp").iterdir()) == []


def test_uninstall_removes_the_release_unless_another_onboarding_still_uses_it(
    target: Target,
) -> None:
    where = {"operator_namespace": target.operator_ns}
    never = target.steps.run("uninstall-operator", **where)
    assert target.steps.run("install-operator", **chart_flags(target.operator_ns)).code == EXIT_OK
    other = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name="team-b-sap-btp-service-operator",
            labels={
                "orchestrator.dev/onboarding": "team-b",
                "orchestrator.dev/managed-by": "orchestrator",
            },
        ),
        string_data={"clientid": "b"},
    )
    target.core.create_namespaced_secret(target.operator_ns, other)

    kept = target.steps.run("uninstall-operator", **where)
    target.core.delete_namespaced_secret("team-b-sap-btp-service-operator", target.operator_ns)
    removed = target.steps.run("uninstall-operator", **where)

    assert (never.code, kept.code, removed.code) == (EXIT_OK, EXIT_OK, EXIT_OK), kept.stderr
    assert [r.outputs["operator-uninstalled"] for r in (never, kept, removed)] == [
        "absent",
        "kept",
        "uninstalled",
    ]
    with pytest.raises(ApiException):
        target.core.read_namespaced_config_map("sap-btp-operator-config", target.operator_ns)


def test_an_operator_the_orchestrator_did_not_install_is_left_alone(
    target: Target,
    cluster: controlplane.Cluster,  # noqa: F811
) -> None:
    """A platform team's own operator: never upgraded with the pipeline's chart, never
    uninstalled (which would delete every ServiceInstance of the cluster)."""
    install_by_hand(
        cluster, target.operator_ns, chart="sap-btp-operator", values="manager.secret.enabled=false"
    )

    installed = target.steps.run("install-operator", **chart_flags(target.operator_ns))
    removed = target.steps.run("uninstall-operator", operator_namespace=target.operator_ns)

    assert installed.code == EXIT_PERMANENT, installed.stderr
    assert "release sap-btp-operator in namespace" in installed.last_message
    assert "orchestrator.dev/managed-by=orchestrator" in installed.last_message
    assert removed.code == EXIT_OK, removed.stderr
    assert removed.outputs == {"operator-uninstalled": "kept"}
    stored = release_revisions(target.core, target.operator_ns, "sap-btp-operator")
    assert list(stored) == ["1"]  # untouched
    target.core.read_namespaced_config_map("sap-btp-operator-config", target.operator_ns)


def test_the_operator_steps_need_no_more_than_the_rights_the_daemon_grants(
    target: Target,
    cluster: controlplane.Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """In the operator's namespace what the step ServiceAccount gets there (Secrets), plus
    the stand-in chart's ConfigMap; in the tenant's, the daemon's STEP_RULES (with the
    ServiceInstance kind installed, so the count is really asked)."""
    target.steps.env["KUBECONFIG"] = str(
        namespaced_kubeconfig(cluster, target.core, target.operator_ns, tmp_path / "kubeconfig")
    )
    ensure_service_instance_crd(target.core.api_client)
    target.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=target.tenant))
    )
    rbac = client.RbacAuthorizationV1Api(target.core.api_client)
    rbac.create_namespaced_role(target.tenant, {"metadata": {"name": "step"}, "rules": STEP_RULES})
    rbac.create_namespaced_role_binding(
        target.tenant,
        {
            "metadata": {"name": "step"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "step"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "step", "namespace": target.operator_ns}
            ],
        },
    )
    for step, flags in [
        ("create-operator-access", target.access()),
        ("install-operator", chart_flags(target.operator_ns)),
        ("uninstall-operator", {"operator_namespace": target.operator_ns}),
        ("delete-operator-access", target.access()),
    ]:
        run = target.steps.run(step, **flags)
        assert run.code == EXIT_OK, f"{step}: {run.stderr}"


def test_the_whole_profile_and_its_compensations_leave_no_secret_in_any_output(
    target: Target, btp: FakeBtp, tmp_path: Path
) -> None:
    btp.subaccounts.clear()  # create-subaccount makes it this time
    sequence = [
        ("create-subaccount", {}),
        ("create-operator-access", target.access()),
        ("install-operator", chart_flags(target.operator_ns)),
        ("uninstall-operator", {"operator_namespace": target.operator_ns}),
        ("delete-operator-access", target.access()),
        ("delete-subaccount", {}),
    ]
    for step, flags in sequence:
        run = target.steps.run(step, **flags)
        assert run.code == EXIT_OK, f"{step}: {run.stderr}"

    assert btp.subaccounts_with("team-a") == []
    assert btp.instances_named("team-a-service-operator") == []
    assert target.secret() is None
    used = target.steps.secrets()
    assert len(used) >= 3  # client secret, tokens, the binding's client secret
    texts = [run.everything() for run in target.steps.runs]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "helm-calls").iterdir()]
    for text in texts:
        for secret in used:
            assert secret not in text
