"""A failed workflow's message is its failed step's: Argo puts the retry node's verdict
on the workflow ("retryStrategy.expression evaluated to false"), the reason is in the
message of the pod that failed ("Error (exit code 1): <its termination message>")."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from orchestrator.argo import ArgoClient
from orchestrator.argo.client import failure_message
from orchestrator.config.configs import ArgoAccess
from orchestrator.core.planning import exit_code
from orchestrator.records import WorkflowPhase

POD_SAID = "Error (exit code 1): CreationFailed: subaccount 1f2e creation failed: no quota"


def node(node_id: str, kind: str, phase: str, message: str = "", finished: str = "") -> Any:
    return {
        node_id: {
            "id": node_id,
            "type": kind,
            "phase": phase,
            "message": message,
            "finishedAt": finished,
        }
    }


RETRIED = {
    **node("wf", "Retry", "Failed", "No more retries left"),
    **node(
        "wf-1", "Pod", "Failed", "Error (exit code 75): Temporary: BTP 503", "2026-01-01T10:00:00Z"
    ),
    **node("wf-2", "Pod", "Failed", POD_SAID, "2026-01-01T10:01:00Z"),
}


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param(
            {"message": "retryStrategy.expression evaluated to false", "nodes": RETRIED},
            f"{POD_SAID} (retryStrategy.expression evaluated to false)",
            id="the-last-failed-pod-first-argos-verdict-after",
        ),
        pytest.param(
            {"message": POD_SAID, "nodes": node("wf", "Pod", "Failed", POD_SAID)},
            POD_SAID,
            id="a-pod-without-retries-said-it-already",
        ),
        pytest.param(
            {"message": "retryStrategy.expression evaluated to false"},
            "retryStrategy.expression evaluated to false",
            id="without-nodes-argos-message",
        ),
        pytest.param(
            {"message": "", "nodes": node("wf", "Pod", "Succeeded")}, "", id="nothing-failed"
        ),
    ],
)
def test_the_message_of_a_failed_workflow(status: dict[str, Any], message: str) -> None:
    assert failure_message(status) == message


def test_the_exit_code_the_daemon_reads_is_the_failed_pods() -> None:
    status = {"message": "retryStrategy.expression evaluated to false", "nodes": RETRIED}
    assert exit_code(failure_message(status)) == 1  # permanent: no attempt more


async def test_a_failed_workflow_in_a_list_is_read_once_more_with_its_nodes() -> None:
    seen: list[dict[str, str]] = []
    workflow = {
        "metadata": {"name": "wf", "uid": "uid-1", "labels": {}},
        "status": {"phase": "Failed", "message": "retryStrategy.expression evaluated to false"},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        if request.url.path.endswith("/wf"):
            whole = {**workflow, "status": {**workflow["status"], "nodes": RETRIED}}
            return httpx.Response(200, content=json.dumps(whole))
        return httpx.Response(200, content=json.dumps({"items": [workflow]}))

    access = ArgoAccess.model_validate({"server": "http://argo.invalid", "namespace": "argo"})
    client = ArgoClient("c1", access, transport=httpx.MockTransport(answer))
    try:
        for _ in range(2):
            [status] = await client.list("orchestrator.dev/onboarding=team-a")
            assert status.phase == WorkflowPhase.FAILED
            assert status.message is not None
            assert status.message.startswith(POD_SAID)
    finally:
        await client.aclose()
    reads = [params for params in seen if "status.nodes" in params.get("fields", "")]
    assert len(reads) == 1, seen  # once per workflow: a finished one does not change
    assert "status.nodes" not in seen[0]["fields"]  # the list itself stays lean
