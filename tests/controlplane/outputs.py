"""Play the part of Argo's executor for step outputs, which kwok cannot.

Under kwok no executor runs, so nothing reports a step's output parameters.
Since Argo v3.6.11 a step whose template declares outputs stays Running until
a ``WorkflowTaskResult`` reports them. A test that needs outputs calls
``report_outputs`` for the step's pod: it writes the WorkflowTaskResult the
executor would have written, and the controller then completes the step with
those values.
"""

from __future__ import annotations

import time
from typing import Any

from .kube import Kube

WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
COMPLETED_LABEL = "workflows.argoproj.io/report-outputs-completed"
NODE_ID_ANNOTATION = "workflows.argoproj.io/node-id"
NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"


def step_pods(kube: Kube, namespace: str, workflow: str) -> list[dict[str, Any]]:
    pods = kube.get(
        f"/api/v1/namespaces/{namespace}/pods?labelSelector={WORKFLOW_LABEL}%3D{workflow}"
    )
    items: list[dict[str, Any]] = (pods or {}).get("items", [])
    return items


def wait_step_pod(
    kube: Kube, namespace: str, workflow: str, *, node_name: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """A pod of the workflow (the one of that node name, if given), once it exists."""
    deadline = time.monotonic() + timeout
    while True:
        for pod in step_pods(kube, namespace, workflow):
            annotations = pod["metadata"].get("annotations", {})
            if node_name is None or annotations.get(NODE_NAME_ANNOTATION) == node_name:
                return pod
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pod of workflow {namespace}/{workflow} after {timeout}s")
        time.sleep(0.5)


def report_outputs(
    kube: Kube, namespace: str, workflow: str, pod: dict[str, Any], parameters: dict[str, str]
) -> dict[str, Any]:
    """Write the WorkflowTaskResult of a step pod with these output parameters."""
    wf = kube.get(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows/{workflow}")
    if wf is None:
        raise LookupError(f"workflow {namespace}/{workflow} not found")
    node_id = pod["metadata"]["annotations"][NODE_ID_ANNOTATION]
    result = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTaskResult",
        "metadata": {
            "name": node_id,
            "namespace": namespace,
            "labels": {WORKFLOW_LABEL: workflow, COMPLETED_LABEL: "true"},
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "name": workflow,
                    "uid": wf["metadata"]["uid"],
                }
            ],
        },
        "outputs": {"parameters": [{"name": k, "value": v} for k, v in parameters.items()]},
    }
    return kube.apply(result)
