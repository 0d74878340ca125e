"""Step pods that really run: the daemon onboards tenants on local-a whose step pods the
pod runner (tests/controlplane/podrunner) executes as processes, against the BTP test
server on loopback.

The Cluster document puts the step pods on the runner's node (``spec.steps``:
nodeSelector and toleration); the templates are the shipped ones (retryStrategy,
deadline, termination message policy), installed by the daemon with its default step
image, which is the one image the runner runs. Each pod gets the BTP credentials
through ``secretKeyRef`` from the Secret the daemon synced from the GlobalAccount, and
talks to Kubernetes in-cluster with the step ServiceAccount's token.

One slow scenario with many assertions (CI time): one onboarding reaches Ready with
everything real, one fails at BTP and shows the step's own reason, then the first is
offboarded. A second test proves the runner's own rules with bare workflows, all at
once: a foreign image and an unsupported volume are refused and their workflows end;
activeDeadlineSeconds, Argo's stop and a deletion kill the process.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.configs import DEFAULT_STEP_IMAGE
from tests.controlplane import cluster as controlplane
from tests.controlplane.kube import Kube
from tests.controlplane.podrunner import NODE, STEP_PODS
from tests.e2e.test_daemon import (
    COMPENSATIONS,
    FORWARD,
    Setup,
    run_daemon,
    steps_and_phases,
    unique,
    workflows_of,
)
from tests.fakes.btp_server import BtpServerRunner, FakeBtp
from tests.support.processes import REPO, DaemonProcess, wait_for

ARGO = "argo"
CHART = REPO / "tests" / "charts"
ONBOARDED = "orchestrator.dev/onboarding"


@pytest.fixture
def btp() -> Iterator[BtpServerRunner]:
    """The BTP test server; stopping it fails the test on any contract violation."""
    runner = BtpServerRunner(FakeBtp())
    with runner:
        yield runner


@pytest.fixture
def setup(tmp_path: Path, local_clusters: dict[str, controlplane.Cluster]) -> Setup:
    return Setup(tmp_path, local_clusters)


@pytest.fixture
def kube(local_clusters: dict[str, controlplane.Cluster]) -> Iterator[Kube]:
    c = local_clusters["local-a"]
    api = Kube(c.apiserver_url, c.pki)
    try:
        yield api
    finally:
        api.close()


def steps_on_the_runner(setup: Setup, btp: BtpServerRunner) -> None:
    """local-a's step pods on the runner's node; the BTP test server's credentials."""
    path = setup.config / "cluster-local-a.yaml"
    document = yaml.safe_load(path.read_text())
    document["spec"]["steps"] = STEP_PODS
    path.write_text(yaml.safe_dump(document))
    env = btp.env()
    credentials = setup.tmp / "btp.json"
    credentials.write_text(
        json.dumps(
            {
                "client-id": env["BTP_CLIENT_ID"],
                "client-secret": env["BTP_CLIENT_SECRET"],
                "token-url": env["BTP_TOKEN_URL"],
                "accounts-url": env["BTP_ACCOUNTS_URL"],
            }
        )
    )
    (setup.config / "global-account.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "orchestrator.dev/v1alpha1",
                "kind": "GlobalAccount",
                "metadata": {"name": "test-btp"},
                "spec": {"credentials": {"file": str(credentials)}},
            }
        )
    )


def declare(setup: Setup, name: str) -> None:
    (setup.config / f"{name}.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "orchestrator.dev/v1alpha1",
                "kind": "Onboarding",
                "metadata": {"name": name},
                "spec": {
                    "cluster": "local-a",
                    "namespace": name,
                    "subaccount": {
                        "displayName": f"Tenant {name}",
                        "subdomain": name,
                        "region": "eu10",
                        "admins": ["ops@example.com"],
                        "labels": {"cost-center": ["4711"]},
                        "globalAccount": "test-btp",
                    },
                    "platform": {"name": f"{name}-k8s"},
                    "proxyChart": {
                        "repo": str(CHART),
                        "name": "service-proxy",
                        "version": "0.1.0",
                        "values": {"replicaCount": 2},
                    },
                },
            }
        )
    )


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    found = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if found is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}


def helm_releases(cluster: controlplane.Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = subprocess.run(
        [str(cluster.bins.helm), "list", "--namespace", namespace, "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
    )
    return list(json.loads(listed.stdout or "[]"))


def pods_of(kube: Kube, workflow: str) -> list[dict[str, Any]]:
    found = kube.get(
        f"/api/v1/namespaces/{ARGO}/pods?labelSelector=workflows.argoproj.io/workflow%3D{workflow}"
    )
    return list((found or {}).get("items") or [])


def main_log(kube: Kube, pod: str) -> str:
    """The step's log through the API server (pods/log), as kubectl logs reads it."""
    answer = kube.http.get(
        f"/api/v1/namespaces/{ARGO}/pods/{pod}/log", params={"container": "main"}
    )
    answer.raise_for_status()
    return answer.text


def main_state(pod: dict[str, Any]) -> dict[str, Any]:
    [main] = [s for s in pod["status"]["containerStatuses"] if s["name"] == "main"]
    return dict(main["state"])


def test_a_tenant_is_onboarded_by_step_pods_that_really_run_then_one_fails_at_btp(
    setup: Setup,
    daemons: list[DaemonProcess],
    btp: BtpServerRunner,
    kube: Kube,
    local_clusters: dict[str, controlplane.Cluster],
) -> None:
    cluster = local_clusters["local-a"]
    steps_on_the_runner(setup, btp)
    ready, failing = unique("e2e-run"), unique("e2e-runfail")
    quota = "the global account has no quota left for subaccounts in eu10"
    btp.btp.fail_creation[failing] = quota
    declare(setup, ready)
    declare(setup, failing)
    started = time.monotonic()
    daemon = run_daemon(setup, daemons)

    wait_for(lambda: daemon.state(ready) == "Ready", seconds=300, what=f"{ready} Ready")
    wait_for(lambda: daemon.state(failing) == "Failed", seconds=300, what=f"{failing} Failed")
    print(f"\nReady and Failed after {time.monotonic() - started:.0f}s")

    # --- every effect of the Ready one is real ---------------------------------------------
    [subaccount] = btp.btp.subaccounts_with(ready)
    assert subaccount["state"] == "OK"
    assert subaccount["labels"][ONBOARDED] == [ready]
    assert subaccount["labels"]["cost-center"] == ["4711"]
    assert btp.btp.creates[ready] == 1
    platform = btp.btp.platform_named(f"{ready}-k8s")
    assert platform is not None
    assert platform["labels"][ONBOARDED] == [ready]
    username, password = btp.btp.credentials_of(f"{ready}-k8s") or ("", "")
    # written by the register-platform pod, in-cluster, with the step ServiceAccount's token
    assert secret_data(kube, ready, f"{ready}-k8s-sm-credentials") == {
        "username": username,
        "password": password,
        "sm-url": btp.url,
        "platform-id": platform["id"],
    }
    [release] = helm_releases(cluster, ready)
    assert (release["name"], release["status"], release["chart"]) == (
        "service-proxy",
        "deployed",
        "service-proxy-0.1.0",
    )
    proxy = secret_data(kube, ready, "service-proxy-sm")
    assert proxy == {"user": username, "password": password}
    with closing(setup.argo("local-a")) as argo:
        assert steps_and_phases(argo, ready) == [(s, "Succeeded") for s in FORWARD]
        done = workflows_of(argo, ready)
    for workflow in done:
        [pod] = pods_of(kube, workflow["metadata"]["name"])
        assert pod["spec"]["nodeName"] == NODE
        assert [c["image"] for c in pod["spec"]["containers"] if c["name"] == "main"] == [
            DEFAULT_STEP_IMAGE
        ]
        assert main_state(pod)["terminated"]["exitCode"] == 0
        lines = [json.loads(line) for line in main_log(kube, pod["metadata"]["name"]).splitlines()]
        assert lines[-1]["message"] == "step finished", lines[-1]
        assert btp.btp.client_secret not in json.dumps(lines)

    # --- the failed one: the step's own reason, in get and history ---------------------------
    failed = daemon.onboarding(failing)
    reason = failed.get("reason") or ""
    assert "create-subaccount failed: Error (exit code 1): CreationFailed: subaccount" in reason
    assert quota in reason
    history = daemon.history(failing)
    assert any(quota in (t.get("reason") or "") for t in history), history
    with closing(setup.argo("local-a")) as argo:
        assert steps_and_phases(argo, failing) == [
            ("create-subaccount", "Failed"),
            ("delete-subaccount", "Succeeded"),
        ]
        first = workflows_of(argo, failing)[0]
    # Argo's own verdict is the retry node's; the pod's termination message has the reason
    assert first["status"]["message"] == "retryStrategy.expression evaluated to false"
    [pod] = pods_of(kube, first["metadata"]["name"])
    terminated = main_state(pod)["terminated"]
    assert terminated["exitCode"] == 1
    assert terminated["message"].startswith("CreationFailed: subaccount")
    assert btp.btp.subaccounts_with(failing) == []  # the compensation really deleted it

    # --- offboarding undoes it all, for real -------------------------------------------------
    (setup.config / f"{ready}.yaml").unlink()
    wait_for(lambda: daemon.state(ready) == "Deleted", seconds=300, what=f"{ready} Deleted")
    with closing(setup.argo("local-a")) as argo:
        phases = steps_and_phases(argo, ready)
        assert phases[3:] == [(c, "Succeeded") for c in COMPENSATIONS]
        uninstall = workflows_of(argo, ready)[3]
    [pod] = pods_of(kube, uninstall["metadata"]["name"])
    assert '"outcome": "uninstalled"' in main_log(kube, pod["metadata"]["name"])
    assert btp.btp.subaccounts_with(ready) == []
    assert btp.btp.platform_named(f"{ready}-k8s") is None
    wait_for(
        lambda: kube.get(f"/api/v1/namespaces/{ready}") is None,
        seconds=120,
        what=f"namespace {ready} to go",
    )
    print(f"offboarded after {time.monotonic() - started:.0f}s in all")


# --- the runner's own rules ---------------------------------------------------------------------


def bare_workflow(
    name: str,
    *,
    image: str,
    command: list[str],
    deadline: int | None = None,
    volume: dict[str, Any] | None = None,
) -> Any:
    template: dict[str, Any] = {
        "name": "main",
        "container": {"image": image, "command": command},
    }
    if deadline is not None:
        template["activeDeadlineSeconds"] = deadline
    if volume is not None:
        template["volumes"] = [volume]
        template["container"]["volumeMounts"] = [{"name": volume["name"], "mountPath": "/data"}]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": ARGO},
        "spec": {
            "entrypoint": "main",
            "serviceAccountName": "argo-workflow",
            **STEP_PODS,
            "templates": [template],
        },
    }


def workflow(kube: Kube, name: str) -> dict[str, Any]:
    return kube.get(f"/apis/argoproj.io/v1alpha1/namespaces/{ARGO}/workflows/{name}") or {}


def phase_of(kube: Kube, name: str) -> str:
    return str((workflow(kube, name).get("status") or {}).get("phase") or "")


def running_process(cluster: controlplane.Cluster, pod: dict[str, Any]) -> int | None:
    """The pid of the pod's process while it lives (from the runner's folder of the pod)."""
    meta = pod["metadata"]
    folder = cluster.pod_runner_state / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
    try:
        pid = int((folder / "process").read_text().split()[0])
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def process_of(kube: Kube, cluster: controlplane.Cluster, workflow: str) -> int:
    """The pid of the workflow's step process, once it runs."""
    wait_for(lambda: bool(pods_of(kube, workflow)), seconds=60, what=f"a pod of {workflow}")
    wait_for(
        lambda: running_process(cluster, pods_of(kube, workflow)[0]) is not None,
        seconds=60,
        what=f"the process of {workflow}",
    )
    pid = running_process(cluster, pods_of(kube, workflow)[0])
    assert pid is not None
    return pid


def test_the_runner_refuses_another_image_and_kills_at_the_deadline_on_stop_and_deletion(
    kube: Kube, local_clusters: dict[str, controlplane.Cluster]
) -> None:
    cluster = local_clusters["local-a"]
    foreign, late = unique("runner-foreign"), unique("runner-late")
    stopped, deleted = unique("runner-stop"), unique("runner-del")
    host = unique("runner-hostpath")
    create = f"/apis/argoproj.io/v1alpha1/namespaces/{ARGO}/workflows"
    for body in (
        bare_workflow(foreign, image="busybox:1.36", command=["true"]),
        bare_workflow(
            host,
            image=DEFAULT_STEP_IMAGE,
            command=["true"],
            volume={"name": "host", "hostPath": {"path": "/etc"}},
        ),
        bare_workflow(late, image=DEFAULT_STEP_IMAGE, command=["sleep", "300"], deadline=3),
        bare_workflow(stopped, image=DEFAULT_STEP_IMAGE, command=["sleep", "300"]),
        bare_workflow(deleted, image=DEFAULT_STEP_IMAGE, command=["sleep", "300"]),
    ):
        kube.http.post(create, json=body).raise_for_status()

    # deleted: the runner ends the process, then completes the deletion
    pid = process_of(kube, cluster, deleted)
    pod = pods_of(kube, deleted)[0]
    kube.http.delete(f"/api/v1/namespaces/{ARGO}/pods/{pod['metadata']['name']}")
    wait_for(lambda: not pods_of(kube, deleted), seconds=60, what="the deleted pod to go")
    assert not Path(f"/proc/{pid}").exists()
    # stopped (as the daemon stops a step past its deadline): Argo's controller execs
    # `argoexec kill 15 1` into the pod, which the runner's kubelet API carries out
    pid = process_of(kube, cluster, stopped)
    kube.http.patch(
        f"{create}/{stopped}",
        content=json.dumps({"spec": {"shutdown": "Stop"}}),
        headers={"Content-Type": "application/merge-patch+json"},
    ).raise_for_status()
    wait_for(
        lambda: pods_of(kube, stopped)[0]["status"]["phase"] == "Failed",
        seconds=30,
        what="the stopped pod to end",
    )
    assert main_state(pods_of(kube, stopped)[0])["terminated"]["exitCode"] == 143
    assert not Path(f"/proc/{pid}").exists()

    for name in (foreign, late, host):
        wait_for(lambda n=name: phase_of(kube, n) in ("Failed", "Error"), seconds=120, what=name)
    message = workflow(kube, foreign)["status"]["message"]
    assert "ErrImageNeverPull" in message, message
    assert f'runs only the step image "{DEFAULT_STEP_IMAGE}"' in message
    assert '"busybox:1.36"' in message
    # refused after Argo's wait container started: its task result is completed, so the
    # workflow ends (an incomplete one would hold it Running)
    message = workflow(kube, host)["status"]["message"]
    assert "CreateContainerError" in message, message
    assert "hostPath volumes are not provided by the pod runner" in message
    late_status = workflow(kube, late)["status"]
    assert "longer than the specified deadline" in late_status["message"], late_status
    [late_pod] = pods_of(kube, late)
    assert late_pod["status"]["reason"] == "DeadlineExceeded"
    assert main_state(late_pod)["terminated"]["exitCode"] == 143  # SIGTERM, as a runtime says
    assert running_process(cluster, late_pod) is None
    for name in (foreign, late, stopped, deleted, host):
        kube.http.delete(f"{create}/{name}")
