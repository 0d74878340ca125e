"""Smoke tests that prove the local control plane itself, on both clusters.

Over the Argo Server REST API, as the daemon talks to it (bearer token, CA
verified): a workflow from a WorkflowTemplate succeeds; a pod labelled to fail
fails with the injected exit code and reason; the delay label keeps a step
Running; a wrong token is refused; the lint endpoint validates templates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.controlplane import cluster as controlplane
from tests.controlplane.kube import Kube
from tests.controlplane.outputs import report_outputs, wait_step_pod
from tests.e2e.argo_api import ArgoAPI, ArgoError

pytestmark = pytest.mark.e2e


def template(
    name: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """A one-step WorkflowTemplate; labels/annotations go on the step's pod."""
    step: dict[str, Any] = {
        "name": "main",
        "container": {"image": "busybox:1.36", "command": ["sh", "-c", "echo hello"]},
    }
    if labels or annotations:
        step["metadata"] = {"labels": labels or {}, "annotations": annotations or {}}
    return {
        "metadata": {"name": name, "labels": {"e2e.orchestrator.dev/suite": "controlplane-smoke"}},
        "spec": {
            "entrypoint": "main",
            "serviceAccountName": "argo-workflow",
            "templates": [step],
        },
    }


@pytest.fixture
def unique() -> str:
    return "smoke-" + uuid.uuid4().hex[:8]


@pytest.fixture
def cleanup(argo: ArgoAPI) -> Iterator[list[tuple[str, str]]]:
    created: list[tuple[str, str]] = []
    yield created
    for kind, name in reversed(created):
        if kind == "workflow":
            argo.delete_workflow(name)
        else:
            argo.delete_template(name)


def run(argo: ArgoAPI, cleanup: list[tuple[str, str]], tmpl: dict[str, Any]) -> str:
    argo.create_template(tmpl)
    cleanup.append(("template", tmpl["metadata"]["name"]))
    workflow = argo.submit(
        tmpl["metadata"]["name"], labels={"e2e.orchestrator.dev/suite": "controlplane-smoke"}
    )
    name = str(workflow["metadata"]["name"])
    cleanup.append(("workflow", name))
    return name


def pod_nodes(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in workflow["status"].get("nodes", {}).values() if n.get("type") == "Pod"]


def test_argo_server_answers_with_token_and_ca(argo: ArgoAPI) -> None:
    assert argo.version()["version"].startswith("v3.6")


def test_workflow_from_template_succeeds(
    argo: ArgoAPI, unique: str, cleanup: list[tuple[str, str]]
) -> None:
    name = run(argo, cleanup, template(unique))

    workflow = argo.wait_finished(name, timeout=60)

    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert [n["phase"] for n in pod_nodes(workflow)] == ["Succeeded"]


def test_fail_label_fails_the_step_with_exit_code_and_reason(
    argo: ArgoAPI, unique: str, cleanup: list[tuple[str, str]]
) -> None:
    tmpl = template(
        unique,
        labels={"kwok.orchestrator.dev/fail": "true"},
        annotations={
            "kwok.orchestrator.dev/exit-code": "3",
            "kwok.orchestrator.dev/reason": "QuotaExceeded",
        },
    )
    name = run(argo, cleanup, tmpl)

    workflow = argo.wait_finished(name, timeout=60)

    assert workflow["status"]["phase"] == "Failed", workflow["status"]
    [node] = pod_nodes(workflow)
    assert node["phase"] == "Failed"
    assert "QuotaExceeded (exit code 3)" in node["message"], node


def test_delay_label_keeps_the_step_running(
    argo: ArgoAPI, unique: str, cleanup: list[tuple[str, str]]
) -> None:
    delay = 8
    name = run(argo, cleanup, template(unique, labels={"kwok.orchestrator.dev/delay": f"{delay}s"}))
    started = time.monotonic()

    time.sleep(4)
    assert argo.get_workflow(name)["status"].get("phase") == "Running"
    workflow = argo.wait_finished(name, timeout=60)

    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    assert time.monotonic() - started >= delay


def test_outputs_wait_for_a_task_result_that_the_harness_can_write(
    argo: ArgoAPI, local_cluster: controlplane.Cluster, unique: str, cleanup: list[tuple[str, str]]
) -> None:
    # kwok runs no executor: a step declaring outputs stays Running until a
    # WorkflowTaskResult reports them; the harness writes it in its place.
    tmpl = template(unique)
    tmpl["spec"]["templates"][0]["outputs"] = {
        "parameters": [{"name": "subaccount-id", "valueFrom": {"path": "/tmp/id"}}]
    }
    name = run(argo, cleanup, tmpl)
    kube = Kube(local_cluster.apiserver_url, local_cluster.pki)
    try:
        pod = wait_step_pod(kube, argo.namespace, name)
        time.sleep(3)  # kwok has completed the pod by now
        assert argo.get_workflow(name)["status"].get("phase") == "Running"

        report_outputs(kube, argo.namespace, name, pod, {"subaccount-id": "sa-123"})
        workflow = argo.wait_finished(name, timeout=60)
    finally:
        kube.close()

    assert workflow["status"]["phase"] == "Succeeded", workflow["status"]
    [node] = pod_nodes(workflow)
    assert node["outputs"]["parameters"][0]["value"] == "sa-123"


def test_wrong_token_is_refused(local_cluster: controlplane.Cluster) -> None:
    intruder = ArgoAPI.from_cluster_file(local_cluster.cluster_yaml, token="not-a-valid-token")
    try:
        with pytest.raises(ArgoError) as refused:
            intruder.get_workflow("anything")
    finally:
        intruder.close()
    assert refused.value.status_code == 401


def test_argo_ca_is_required(local_cluster: controlplane.Cluster) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{local_cluster.argo_url}/api/v1/version", timeout=5)


def test_lint_endpoint_validates_templates(argo: ArgoAPI, unique: str) -> None:
    linted = argo.lint_template(template(unique))
    assert linted["metadata"]["name"] == unique

    broken = template(unique)
    broken["spec"]["entrypoint"] = "no-such-template"
    with pytest.raises(ArgoError) as rejected:
        argo.lint_template(broken)
    assert rejected.value.status_code >= 400
    assert "no-such-template" in rejected.value.message


def test_memory_of_both_clusters_is_reported(
    local_clusters: dict[str, controlplane.Cluster],
) -> None:
    total_kib = 0
    for c in local_clusters.values():
        rows = controlplane.component_status(c)
        assert all(r["healthy"] for r in rows), rows
        total_kib += sum(r["rss_kib"] for r in rows)
    print(f"RSS of both local clusters: {total_kib / 1024:.0f} MiB")
    assert total_kib < 6 * 1024 * 1024


def test_up_again_reuses_every_running_component(
    local_clusters: dict[str, controlplane.Cluster],
) -> None:
    def pids() -> dict[tuple[str, str], int | None]:
        return {
            (c.name, comp): controlplane.running_pid(c, comp)
            for c in local_clusters.values()
            for comp in controlplane.START_ORDER
        }

    before = pids()
    assert controlplane.up(list(local_clusters), templates=False) == 0
    assert pids() == before
    assert all(before.values())
