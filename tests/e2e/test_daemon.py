"""The daemon as a real process on SQLite against the two local clusters.

Real kube-apiserver, Argo controller and Argo Server (bearer tokens, TLS with
its own CA); kwok plays the pods. A failure is injected into one step by
giving that step's template the kwok fail label, in a copy of ``templates/``
the daemon installs on the clusters itself.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.controlplane import cluster as controlplane
from tests.e2e.argo_api import ArgoAPI
from tests.integration.conftest import onboarding_yaml
from tests.support.processes import REPO, DaemonProcess, wait_for

FORWARD = ["create-subaccount", "register-platform", "install-proxy"]
COMPENSATIONS = ["uninstall-proxy", "unregister-platform", "delete-subaccount"]
FAIL = "kwok.orchestrator.dev/fail"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(2)}"


def templates_failing(directory: Path, step: str | None, *, delay: str | None = None) -> Path:
    """A copy of templates/ where ``step``'s pod fails (exit code 3), or is slowed down."""
    directory.mkdir()
    for source in sorted((REPO / "templates").glob("*.yaml")):
        manifest = yaml.safe_load(source.read_text())
        name = manifest["metadata"]["name"]
        for template in manifest["spec"]["templates"]:
            metadata = template.setdefault("metadata", {})
            if step is not None and name == f"orchestrator-{step}":
                metadata.setdefault("labels", {})[FAIL] = "true"
                metadata.setdefault("annotations", {}).update(
                    {
                        "kwok.orchestrator.dev/exit-code": "3",
                        "kwok.orchestrator.dev/reason": "QuotaExceeded",
                    }
                )
            if delay is not None:
                metadata.setdefault("annotations", {})["kwok.orchestrator.dev/delay"] = delay
            # keep the test's failures deterministic: no Argo-level retry of the pod
            template.pop("retryStrategy", None)
        (directory / source.name).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return directory


class Setup:
    def __init__(
        self, tmp: Path, clusters: dict[str, controlplane.Cluster], *, token: str | None = None
    ) -> None:
        self.tmp = tmp
        self.config = tmp / "config"
        self.config.mkdir()
        self.clusters = clusters
        for name, c in clusters.items():
            document = yaml.safe_load(c.cluster_yaml.read_text())
            if token is not None and name == "local-b":
                bad = tmp / "wrong-token"
                bad.write_text(token)
                document["spec"]["argo"]["tokenFile"] = str(bad)
            (self.config / f"cluster-{name}.yaml").write_text(yaml.safe_dump(document))

    def declare(self, name: str, cluster: str) -> None:
        (self.config / f"{name}.yaml").write_text(onboarding_yaml(name, cluster))

    def argo(self, cluster: str) -> ArgoAPI:
        return ArgoAPI.from_cluster_file(self.clusters[cluster].cluster_yaml)


def workflows_of(argo: ArgoAPI, onboarding: str) -> list[dict[str, Any]]:
    """The onboarding's workflows, oldest first."""
    answer = argo.http.get(
        f"/api/v1/workflows/{argo.namespace}",
        params={"listOptions.labelSelector": f"orchestrator.dev/onboarding={onboarding}"},
    )
    answer.raise_for_status()
    items = answer.json().get("items") or []
    return sorted(items, key=lambda w: (w["metadata"]["creationTimestamp"], w["metadata"]["name"]))


def steps_and_phases(argo: ArgoAPI, onboarding: str) -> list[tuple[str, str]]:
    return [
        (w["metadata"]["labels"]["orchestrator.dev/step"], w.get("status", {}).get("phase", ""))
        for w in workflows_of(argo, onboarding)
    ]


@pytest.fixture
def setup(tmp_path: Path, local_clusters: dict[str, controlplane.Cluster]) -> Setup:
    return Setup(tmp_path, local_clusters)


def run_daemon(
    setup: Setup,
    daemons: list[DaemonProcess],
    templates: Path | None = None,
    env: dict[str, str] | None = None,
) -> DaemonProcess:
    """A daemon on the setup's config (its settings in ``env`` on top of the usual)."""
    daemon = DaemonProcess(
        config=setup.config,
        workdir=setup.tmp,
        templates=templates or REPO / "templates",
        env={
            "ORCHESTRATOR_STEP_ATTEMPTS": "1",
            "ORCHESTRATOR_BACKOFF_BASE_SECONDS": "1",
            # the local clusters' kubeconfigs, tokens and CAs; the test's own files
            "ORCHESTRATOR_SECRETS_DIRS": os.pathsep.join(
                [*{str(c.dir.parent) for c in setup.clusters.values()}, str(setup.tmp)]
            ),
            **(env or {}),
        },
    )
    daemons.append(daemon)
    daemon.start()
    return daemon


def test_onboardings_on_both_clusters_reach_ready(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    names = {"local-a": unique("e2e-a"), "local-b": unique("e2e-b")}
    for cluster, name in names.items():
        setup.declare(name, cluster)
    daemon = run_daemon(setup, daemons)

    for name in names.values():
        wait_for(lambda n=name: daemon.state(n) == "Ready", seconds=240, what=f"{name} Ready")

    for cluster, name in names.items():
        with closing(setup.argo(cluster)) as argo:
            assert steps_and_phases(argo, name) == [(s, "Succeeded") for s in FORWARD]


@pytest.mark.parametrize("failing", FORWARD)
def test_an_injected_failure_compensates_in_reverse(
    setup: Setup, daemons: list[DaemonProcess], failing: str
) -> None:
    name = unique("e2e-fail")
    setup.declare(name, "local-a")
    daemon = run_daemon(setup, daemons, templates_failing(setup.tmp / "templates", failing))

    wait_for(lambda: daemon.state(name) == "Failed", seconds=300, what=f"{name} Failed")

    started = FORWARD[: FORWARD.index(failing) + 1]
    undo = COMPENSATIONS[len(COMPENSATIONS) - len(started) :]
    with closing(setup.argo("local-a")) as argo:
        observed = steps_and_phases(argo, name)
    assert observed == [
        *((s, "Succeeded") for s in started[:-1]),
        (failing, "Failed"),
        *((c, "Succeeded") for c in undo),
    ]
    assert "QuotaExceeded (exit code 3)" in (daemon.onboarding(name).get("reason") or "")


def test_sigkill_mid_step_then_restart_makes_no_duplicate_workflow(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    name = unique("e2e-kill")
    setup.declare(name, "local-a")
    slow = templates_failing(setup.tmp / "templates", None, delay="8s")
    daemon = run_daemon(setup, daemons, slow)
    with closing(setup.argo("local-a")) as argo:
        wait_for(lambda: bool(workflows_of(argo, name)), seconds=120, what="the first workflow")
        daemon.kill()
        restarted = run_daemon(setup, daemons, slow)
        wait_for(lambda: restarted.state(name) == "Ready", seconds=300, what=f"{name} Ready")
        assert steps_and_phases(argo, name) == [(s, "Succeeded") for s in FORWARD]


def test_argo_server_restart_mid_flight_changes_no_outcome(
    setup: Setup, daemons: list[DaemonProcess], local_clusters: dict[str, controlplane.Cluster]
) -> None:
    name = unique("e2e-restart")
    setup.declare(name, "local-a")
    daemon = run_daemon(setup, daemons, templates_failing(setup.tmp / "t", None, delay="6s"))
    with closing(setup.argo("local-a")) as argo:
        wait_for(lambda: bool(workflows_of(argo, name)), seconds=120, what="the first workflow")
        assert controlplane.stop(local_clusters["local-a"], "argo-server")
        wait_for(
            lambda: "local-a" in (daemon.onboarding(name).get("last_error") or ""),
            seconds=60,
            what="the daemon to notice the Argo Server is gone",
        )
        assert controlplane.up(["local-a"]) == 0
        restarted = time.time()
        wait_for(lambda: daemon.state(name) == "Ready", seconds=300, what=f"{name} Ready")
        assert steps_and_phases(argo, name) == [(s, "Succeeded") for s in FORWARD]
        # the watch came back: a step finishing after the restart was followed within
        # seconds, not at the periodic pass (30 s)
        done = workflows_of(argo, name)
        reactions = [
            _seconds(after["metadata"]["creationTimestamp"])
            - _seconds(before["status"]["finishedAt"])
            for before, after in itertools.pairwise(done)
            if _seconds(before["status"]["finishedAt"]) > restarted + 5
        ]
        assert reactions, "no step finished after the restart"
        assert max(reactions) < 8, reactions


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_wrong_token_names_the_cluster_and_the_other_cluster_goes_on(
    tmp_path: Path, local_clusters: dict[str, controlplane.Cluster], daemons: list[DaemonProcess]
) -> None:
    setup = Setup(tmp_path, local_clusters, token="not-a-valid-token")
    good, bad = unique("e2e-good"), unique("e2e-bad")
    setup.declare(good, "local-a")
    setup.declare(bad, "local-b")
    daemon = run_daemon(setup, daemons)

    wait_for(lambda: daemon.state(good) == "Ready", seconds=240, what=f"{good} Ready")
    error = daemon.onboarding(bad).get("last_error") or ""
    assert "local-b" in error
    assert "401" in error or "Unauthorized" in error or "nauthenticated" in error
    assert "not-a-valid-token" not in error
    metrics = httpx.get(f"{daemon.api}/metrics").text
    assert 'orchestrator_cluster_reachable{cluster="local-b"} 0.0' in metrics


def test_the_real_argo_server_accepts_every_workflow_template(
    local_clusters: dict[str, controlplane.Cluster],
) -> None:
    with closing(ArgoAPI.from_cluster_file(local_clusters["local-a"].cluster_yaml)) as argo:
        for path in sorted((REPO / "templates").glob("*.yaml")):
            argo.lint_template(yaml.safe_load(path.read_text()))  # raises on a lint error


def test_templates_are_installed_by_the_daemon(setup: Setup, daemons: list[DaemonProcess]) -> None:
    fresh = setup.tmp / "fresh"
    shutil.copytree(REPO / "templates", fresh)
    name = unique("e2e-tmpl")
    setup.declare(name, "local-b")
    daemon = run_daemon(setup, daemons, fresh)
    wait_for(lambda: daemon.state(name) == "Ready", seconds=240, what=f"{name} Ready")
    with closing(setup.argo("local-b")) as argo:
        answer = argo.http.get(f"/api/v1/workflow-templates/{argo.namespace}")
        names = {t["metadata"]["name"] for t in answer.json()["items"]}
    assert {f"orchestrator-{s}" for s in FORWARD + COMPENSATIONS} <= names


# --- cluster entries with only a kubeconfig (issue 5) --------------------------------


def kube_only(setup: Setup, *, broken: str | None = None) -> None:
    """Rewrite the Cluster entries to the minimal form: a kubeconfig, nothing else.

    ``broken`` names a cluster whose kubeconfig points at a closed port.
    """
    for name, c in setup.clusters.items():
        kubeconfig = str(c.cluster_yaml.parent / "kubeconfig")
        if name == broken:
            text = (c.cluster_yaml.parent / "kubeconfig").read_text()
            port = f"127.0.0.1:{c.ports.apiserver}"
            nowhere = setup.tmp / f"kubeconfig-{name}"
            nowhere.write_text(text.replace(port, "127.0.0.1:1"))
            kubeconfig = str(nowhere)
        document = {
            "apiVersion": "orchestrator.dev/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {"kubeconfig": {"path": kubeconfig}, "requestTimeoutSeconds": 5},
        }
        (setup.config / f"cluster-{name}.yaml").write_text(yaml.safe_dump(document))


def namespace_labels(cluster: controlplane.Cluster, namespace: str) -> dict[str, str] | None:
    from kubernetes import client, config

    api = client.CoreV1Api(
        config.new_client_from_config(str(cluster.cluster_yaml.parent / "kubeconfig"))
    )
    try:
        found = api.read_namespace(namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    if found.status.phase == "Terminating":
        return None
    return dict(found.metadata.labels or {})


def test_onboarding_and_offboarding_through_the_kubernetes_api_alone(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    kube_only(setup)
    credentials = setup.tmp / "btp.json"
    credentials.write_text(
        '{"client-id": "id", "client-secret": "e2e-secret-value", "token-url": "https://t",'
        ' "accounts-url": "https://a"}'
    )
    (setup.config / "global-account.yaml").write_text(
        "apiVersion: orchestrator.dev/v1alpha1\nkind: GlobalAccount\nmetadata: {name: acme}\n"
        f"spec: {{credentials: {{file: {credentials}}}}}\n"
    )
    name = unique("e2e-kapi")
    text = onboarding_yaml(name, "local-a").replace(
        "region: eu10,", "region: eu10, globalAccount: acme,"
    )
    (setup.config / f"{name}.yaml").write_text(text)
    daemon = run_daemon(setup, daemons)
    cluster = setup.clusters["local-a"]

    wait_for(lambda: daemon.state(name) == "Ready", seconds=240, what=f"{name} Ready")
    labels = namespace_labels(cluster, name)
    assert labels is not None
    assert labels["orchestrator.dev/onboarding"] == name
    with closing(setup.argo("local-a")) as argo:
        assert steps_and_phases(argo, name) == [(s, "Succeeded") for s in FORWARD]
        workflow = workflows_of(argo, name)[0]
        assert workflow["spec"]["serviceAccountName"] == "orchestrator-steps"
    assert "e2e-secret-value" not in daemon.log.read_text()

    (setup.config / f"{name}.yaml").unlink()
    wait_for(lambda: daemon.state(name) == "Deleted", seconds=240, what=f"{name} Deleted")
    with closing(setup.argo("local-a")) as argo:
        assert [s for s, _ in steps_and_phases(argo, name)][3:] == COMPENSATIONS
    wait_for(
        lambda: namespace_labels(cluster, name) is None,
        seconds=60,
        what="the namespace made for the onboarding to go",
    )


def test_a_kubeconfig_pointing_nowhere_marks_that_cluster_and_the_other_onboards(
    setup: Setup, daemons: list[DaemonProcess]
) -> None:
    kube_only(setup, broken="local-b")
    good, stuck = unique("e2e-ok"), unique("e2e-nowhere")
    setup.declare(good, "local-a")
    setup.declare(stuck, "local-b")
    daemon = run_daemon(setup, daemons)

    wait_for(lambda: daemon.state(good) == "Ready", seconds=240, what=f"{good} Ready")
    health = {c["name"]: c for c in httpx.get(f"{daemon.api}/api/v1/clusters").json()}
    assert health["local-b"]["reachable"] is False
    assert "local-b" in health["local-b"]["reason"]
    assert health["local-a"]["reachable"] is True
    assert "local-b" in (daemon.onboarding(stuck).get("last_error") or "")
