"""The charts installed for real, and the daemon running with the identities they create.

``helm install`` of the chart into a fresh namespace of local-a and of the
target chart into the Argo namespace of local-a and local-b. The daemon then
runs as a local process as the chart's ServiceAccount (a kubeconfig from a
TokenRequest token): it reads its desired state from the rendered ConfigMap,
the target kubeconfigs and the BTP credentials from Secrets through the
chart's Role, and reaches each target cluster as the target chart's
identity. One onboarding on each cluster must reach Ready; then a
SelfSubjectRulesReview of each identity shows no right the charts' READMEs do
not document.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controlplane import cluster as controlplane
from tests.deploy.conftest import CHART, TARGET_CHART, Helm
from tests.deploy.kubeapi import KubeAPI, secret, token_kubeconfig, write_private
from tests.deploy.rights import Right, documented, rights
from tests.support.processes import DaemonProcess, wait_for

FORWARD = ["create-subaccount", "register-platform", "install-proxy"]
ARGO = "argo"
#: what the daemon makes in the Argo namespace (shared by every onboarding and by
#: other test sessions): removed after the test only when it made them
SHARED = [
    "/api/v1/namespaces/argo/secrets/orchestrator-btp-credentials",
    "/api/v1/namespaces/argo/serviceaccounts/orchestrator-steps",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/argo/roles/orchestrator-steps-executor",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/argo/rolebindings/orchestrator-steps-executor",
] + [
    f"/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtemplates/orchestrator-{step}"
    for step in [*FORWARD, "uninstall-proxy", "unregister-platform", "delete-subaccount"]
]


def onboarding(name: str, cluster: str) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "cluster": cluster,
            "namespace": name,
            "subaccount": {
                "displayName": name,
                "subdomain": name,
                "region": "eu10",
                "globalAccount": "acme",
                "admins": ["ops@example.com"],
            },
            "platform": {"name": f"{name}-k8s"},
            "proxyChart": {"repo": "oci://charts.example.com", "name": "proxy", "version": "1.0.0"},
        },
    }


class Install:
    """What the test installs and makes, undone in reverse by ``close``."""

    def __init__(self, helm: Helm, clusters: dict[str, controlplane.Cluster]) -> None:
        self.helm = helm
        self.clusters = clusters
        self.admins = {name: KubeAPI(c) for name, c in clusters.items()}
        self.stack = ExitStack()
        for api in self.admins.values():
            self.stack.callback(api.close)

    def close(self) -> None:
        self.stack.close()

    def helm_install(
        self, cluster: str, release: str, chart: Path, namespace: str, *args: str
    ) -> None:
        kubeconfig = self.clusters[cluster].kubeconfig
        done = self.helm.run(
            "install", release, str(chart), "--namespace", namespace, *args, kubeconfig=kubeconfig
        )
        assert done.returncode == 0, done.stdout + done.stderr
        self.stack.callback(self._uninstall, release, namespace, kubeconfig)

    def _uninstall(self, release: str, namespace: str, kubeconfig: Path) -> None:
        done = self.helm.run("uninstall", release, "--namespace", namespace, kubeconfig=kubeconfig)
        assert done.returncode == 0, done.stdout + done.stderr

    def identity(self, cluster: str, token: str) -> KubeAPI:
        api = KubeAPI(self.clusters[cluster], token=token)
        self.stack.callback(api.close)
        return api

    def namespace(self, cluster: str, name: str) -> None:
        api = self.admins[cluster]
        api.create_namespace(name)
        self.stack.callback(api.delete_namespace, name)

    def keep_shared_as_found(self) -> None:
        """After the test, delete what the daemon made in the Argo namespace, restore the rest."""
        for name, api in self.admins.items():
            for path in SHARED:
                found = api.get(path)
                if found is None:
                    self.stack.callback(api.delete, path)
                elif path.endswith("/orchestrator-btp-credentials"):
                    self.stack.callback(self._restore_secret, name, path, found)

    def _restore_secret(self, cluster: str, path: str, found: dict[str, Any]) -> None:
        body = {key: found[key] for key in ("apiVersion", "kind", "type", "data") if key in found}
        body["metadata"] = {
            k: v for k, v in found["metadata"].items() if k in ("name", "namespace", "labels")
        }
        answer = self.admins[cluster].http.put(path, json=body)
        assert answer.status_code == 200, answer.text

    def forget_onboarding(self, cluster: str, name: str) -> None:
        """After the test: its workflows and its namespace go (no offboarding run)."""
        api = self.admins[cluster]
        self.stack.callback(api.delete_namespace, name)
        self.stack.callback(
            api.delete,
            f"/apis/argoproj.io/v1alpha1/namespaces/{ARGO}/workflows",
            labelSelector=f"orchestrator.dev/onboarding={name}",
        )


@pytest.fixture
def install(helm: Helm, local_clusters: dict[str, controlplane.Cluster]) -> Iterator[Install]:
    made = Install(helm, local_clusters)
    try:
        yield made
    finally:
        made.close()


def granted(review: dict[str, Any]) -> set[Right]:
    return rights(review["resourceRules"])


def non_resource(review: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (url, verb)
        for rule in review.get("nonResourceRules") or []
        for url in rule["nonResourceURLs"]
        for verb in rule["verbs"]
    }


def test_the_charts_identities_are_enough_to_onboard_on_both_clusters_and_no_more(
    install: Install,
    daemons: list[DaemonProcess],
    monitoring_crds: None,
    tmp_path: Path,
) -> None:
    tag = secrets.token_hex(3)
    release, namespace = f"deploy-{tag}", f"deploy-{tag}"
    identity = f"deploy-{tag}-daemon"  # the daemon's ServiceAccount on each target cluster
    admin_a = install.admins["local-a"]

    # --- the target chart on both clusters; a kubeconfig of its identity in a Secret
    install.namespace("local-a", namespace)
    target_tokens: dict[str, str] = {}
    for name, api in install.admins.items():
        install.helm_install(
            name,
            f"{release}-target",
            TARGET_CHART,
            ARGO,
            "--set",
            f"serviceAccount.name={identity}",
        )
        target_tokens[name] = api.request_token(ARGO, identity)
        target_kubeconfig = token_kubeconfig(install.clusters[name], target_tokens[name])
        answer = admin_a.create(
            secret(namespace, f"kubeconfig-{name}", {"kubeconfig": target_kubeconfig})
        )
        assert answer.status_code == 201, answer.text
    credentials = {
        "client-id": "deploy-client",
        "client-secret": f"deploy-secret-{tag}",
        "token-url": "https://auth.example.com/oauth/token",
        "accounts-url": "https://accounts.example.com",
    }
    assert admin_a.create(secret(namespace, "btp-acme", credentials)).status_code == 201

    # --- the chart, its desired state inline
    names = {"local-a": f"deploy-a-{tag}", "local-b": f"deploy-b-{tag}"}
    values = {
        "config": {
            "clusters": [
                {
                    "name": name,
                    "spec": {
                        "kubeconfig": {
                            "secretRef": {"name": f"kubeconfig-{name}", "key": "kubeconfig"}
                        }
                    },
                }
                for name in install.clusters
            ],
            "globalAccounts": [
                {"name": "acme", "spec": {"credentials": {"secretRef": {"name": "btp-acme"}}}}
            ],
            "onboardings": [onboarding(n, c) for c, n in names.items()],
        },
        "database": {"sqlite": {"persistence": {"enabled": False}}},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    install.helm_install("local-a", release, CHART, namespace, "--values", str(values_file))
    fullname = f"{release}-orchestrator"

    # --- the daemon, as the chart's ServiceAccount, on the ConfigMap it rendered
    management_token = admin_a.request_token(namespace, fullname)
    management = write_private(
        tmp_path / "management-kubeconfig",
        token_kubeconfig(install.clusters["local-a"], management_token),
    )
    config = admin_a.get(f"/api/v1/namespaces/{namespace}/configmaps/{fullname}-config")
    assert config is not None
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for file, text in config["data"].items():
        (config_dir / file).write_text(text)
    install.keep_shared_as_found()
    for cluster, name in names.items():
        install.forget_onboarding(cluster, name)
    daemon = DaemonProcess(
        config=config_dir,
        workdir=tmp_path,
        env={
            "ORCHESTRATOR_MANAGEMENT_KUBECONFIG": str(management),
            "POD_NAMESPACE": namespace,
            # as the chart sets it: the daemon elects itself leader with the chart's rights
            "ORCHESTRATOR_LEASE_NAME": fullname,
            "ORCHESTRATOR_SECRETS_DIRS": str(tmp_path),
        },
    )
    daemons.append(daemon)
    daemon.start()

    for name in names.values():
        wait_for(lambda n=name: daemon.state(n) == "Ready", seconds=240, what=f"{name} Ready")
    for cluster, name in names.items():
        workflows = install.admins[cluster].get(
            f"/apis/argoproj.io/v1alpha1/namespaces/{ARGO}/workflows"
            f"?labelSelector=orchestrator.dev/onboarding={name}"
        )
        assert workflows is not None
        steps = sorted(
            (w["metadata"]["creationTimestamp"], w["metadata"]["labels"]["orchestrator.dev/step"])
            for w in workflows["items"]
        )
        assert [step for _, step in steps] == FORWARD
    assert daemon.role() == "leader"
    lease = admin_a.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{fullname}")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == daemon.get("/api/v1/replica")["replica"]
    log = daemon.log.read_text()
    assert credentials["client-secret"] not in log

    # --- no identity may do more than its chart's README documents
    nobody = f"{release}-nobody"  # bound to nothing: what every identity may do
    account = {"apiVersion": "v1", "kind": "ServiceAccount"}
    account["metadata"] = {"name": nobody, "namespace": namespace}
    assert admin_a.create(account).status_code == 201
    baseline = install.identity("local-a", admin_a.request_token(namespace, nobody))
    everyone = baseline.rules_review(namespace)

    chart = install.identity("local-a", management_token)
    chart_rights = documented(
        CHART / "README.md",
        the_Secrets_named_in_values=["btp-acme", "kubeconfig-local-a", "kubeconfig-local-b"],
        leaderElection_leaseName=[fullname],
    )
    review = chart.rules_review(namespace)
    assert granted(review) - granted(everyone) == chart_rights["releaseNamespace"]
    assert non_resource(review) <= non_resource(everyone)
    assert granted(chart.rules_review("default")) <= granted(everyone)

    target_rights = documented(TARGET_CHART / "README.md", the_ServiceAccount=[identity])
    for cluster, token in target_tokens.items():
        target = install.identity(cluster, token)
        review = target.rules_review(ARGO)
        in_argo = target_rights["cluster"] | target_rights["argoNamespace"]
        assert granted(review) - granted(everyone) == in_argo, cluster
        assert non_resource(review) <= non_resource(everyone)
        review = target.rules_review(names[cluster])
        assert granted(review) - granted(everyone) == target_rights["cluster"], cluster
