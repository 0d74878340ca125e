"""The fake Argo Server itself: it must refuse what Argo's contract refuses."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.argo.conftest import TEMPLATE_NAME, closed_port, template_manifest
from tests.fakes.argo_server import FakeArgoServer, clean_fields, lint_problems, selector_matcher

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer t"}


@pytest.fixture
def server() -> FakeArgoServer:
    fake = FakeArgoServer(token="t")
    fake.install_template(template_manifest())
    return fake


@pytest.fixture
async def http(server: FakeArgoServer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=server.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers=AUTH) as c:
        yield c


def workflow(name: str = "wf-1", **spec: Any) -> dict[str, Any]:
    return {
        "namespace": "argo",
        "workflow": {
            "metadata": {"name": name, "labels": {"a": "1"}},
            "spec": {"workflowTemplateRef": {"name": TEMPLATE_NAME}, **spec},
        },
    }


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "violation"),
    [
        pytest.param("GET", "/api/v1/nothing", {}, None, "no swagger path", id="unknown-path"),
        pytest.param(
            "PATCH", "/api/v1/workflows/argo/wf", {}, None, "not an operation", id="wrong-method"
        ),
        pytest.param(
            "GET",
            "/api/v1/workflows/argo",
            {"labelSelector": "a=b"},
            None,
            "'labelSelector' is not in swagger.json",
            id="unknown-query",
        ),
        pytest.param(
            "GET",
            "/api/v1/workflows/argo",
            {"listOptions.watch": "yes"},
            None,
            "is not a boolean",
            id="bad-boolean",
        ),
        pytest.param(
            "POST",
            "/api/v1/workflows/argo",
            {},
            {"namespace": "argo", "wokflow": {}},
            "'wokflow' was unexpected",
            id="unknown-body-field",
        ),
        pytest.param(
            "POST",
            "/api/v1/workflows/argo",
            {},
            workflow(activeDeadlineSeconds="600"),
            "is not of type 'integer'",
            id="wrong-type-in-workflow",
        ),
        pytest.param(
            "POST",
            "/api/v1/workflows/argo",
            {},
            {"namespace": "argo", "workflow": {"metadata": {"generateName": "x-"}, "spec": {}}},
            "deterministic metadata.name",
            id="generate-name",
        ),
        pytest.param(
            "PUT",
            "/api/v1/workflows/argo/wf-1/stop",
            {},
            {"message": "x", "reason": "y"},
            "'reason' was unexpected",
            id="unknown-stop-field",
        ),
    ],
)
async def test_contract_violations_are_answered_400_and_recorded(
    http: httpx.AsyncClient,
    server: FakeArgoServer,
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
    violation: str,
) -> None:
    response = await http.request(method, path, params=params, json=body)

    assert response.status_code == 400
    assert response.json()["code"] == 3
    assert len(server.violations) == 1
    assert violation in server.violations[0]


async def test_missing_or_wrong_token_is_401_and_forbidden_is_403(
    http: httpx.AsyncClient, server: FakeArgoServer
) -> None:
    no_token = await http.get("/api/v1/workflows/argo", headers={"Authorization": ""})
    wrong = await http.get("/api/v1/workflows/argo", headers={"Authorization": "Bearer x"})
    server.forbidden = True
    forbidden = await http.get("/api/v1/workflows/argo")

    assert [r.status_code for r in (no_token, wrong, forbidden)] == [401, 401, 403]
    assert [r.json()["code"] for r in (no_token, wrong, forbidden)] == [16, 16, 7]
    assert server.violations == []


async def test_a_missing_template_is_404_and_a_missing_argument_400(
    http: httpx.AsyncClient, server: FakeArgoServer
) -> None:
    missing = workflow()
    missing["workflow"]["spec"]["workflowTemplateRef"]["name"] = "nope"
    required = template_manifest("needs-value")
    required["spec"]["arguments"]["parameters"] = [{"name": "x"}]
    server.install_template(required)
    unset = workflow()
    unset["workflow"]["spec"]["workflowTemplateRef"]["name"] = "needs-value"

    first = await http.post("/api/v1/workflows/argo", json=missing)
    second = await http.post("/api/v1/workflows/argo", json=unset)

    assert (first.status_code, first.json()["code"]) == (404, 5)
    assert first.json()["message"] == 'workflowtemplates.argoproj.io "nope" not found'
    assert (second.status_code, second.json()) == (
        400,
        {"code": 3, "message": "spec.arguments.x.value is required"},
    )


async def test_strict_parameters_flags_parameters_the_template_does_not_declare(
    http: httpx.AsyncClient, server: FakeArgoServer
) -> None:
    server.strict_parameters = True
    body = workflow(arguments={"parameters": [{"name": "extra", "value": "1"}]})

    assert (await http.post("/api/v1/workflows/argo", json=body)).status_code == 200
    assert server.violations == [f"{TEMPLATE_NAME} does not declare parameters ['extra']"]


async def test_auto_advance_moves_one_stage_per_interval(
    http: httpx.AsyncClient, server: FakeArgoServer
) -> None:
    server.auto_advance = 10
    await http.post("/api/v1/workflows/argo", json=workflow())
    phases = []
    for _ in range(4):
        server.tick(10)
        phases.append(server.phase("wf-1"))

    assert phases == ["Pending", "Running", "Succeeded", "Succeeded"]

    await http.post("/api/v1/workflows/argo", json=workflow("wf-2"))
    server.tick(25)  # two whole stages at once
    assert server.phase("wf-2") == "Running"


async def test_behaviours_can_be_limited_to_a_number_of_workflows(
    http: httpx.AsyncClient, server: FakeArgoServer
) -> None:
    server.behave("create-subaccount", "fail", message="boom", times=1)
    await http.post("/api/v1/workflows/argo", json=workflow("wf-1"))
    await http.post("/api/v1/workflows/argo", json=workflow("wf-2"))
    server.settle()

    assert (server.phase("wf-1"), server.phase("wf-2")) == ("Failed", "Succeeded")
    assert server.workflow("wf-1")["status"]["message"] == "boom"


async def test_faults_can_target_one_operation(
    http: httpx.AsyncClient, server: FakeArgoServer
) -> None:
    server.fail_next(2, status=502, operation="WorkflowService_ListWorkflows")

    get = await http.get("/api/v1/workflows/argo/nope")
    lists = [(await http.get("/api/v1/workflows/argo")).status_code for _ in range(3)]

    assert get.status_code == 404
    assert lists == [502, 502, 200]


async def test_list_answers_null_items_when_nothing_matches(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/workflows/argo", params={"listOptions.labelSelector": "a=b"})

    assert response.json()["items"] is None  # as Argo's Go server does


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        pytest.param("a=1", {"a": "1"}, True, id="eq"),
        pytest.param("a==1", {"a": "2"}, False, id="double-eq"),
        pytest.param("a!=1", {}, True, id="neq-absent"),
        pytest.param("a in (1, 2),b", {"a": "2", "b": ""}, True, id="in-and-exists"),
        pytest.param("a notin (1,2)", {"a": "1"}, False, id="notin"),
        pytest.param("!b", {"a": "1"}, True, id="not-exists"),
        pytest.param("", {"a": "1"}, True, id="empty"),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert selector_matcher(selector)(labels) is matches


def test_fields_keep_or_drop_paths_like_argo() -> None:
    data = {"metadata": {"rv": "1"}, "items": [{"metadata": {"name": "a", "uid": "u"}, "spec": {}}]}

    assert clean_fields(data, "items.metadata.name") == {"items": [{"metadata": {"name": "a"}}]}
    assert clean_fields(data, "-items.spec,metadata") == {
        "items": [{"metadata": {"name": "a", "uid": "u"}}]
    }


def test_lint_finds_unresolved_parameters() -> None:
    broken = template_manifest()
    broken["spec"]["templates"][0]["container"]["args"] = ["{{workflow.parameters.nope}}"]

    assert lint_problems(template_manifest()) == []
    assert lint_problems(broken) == [
        "templates.main: failed to resolve {{workflow.parameters.nope}}"
    ]


def test_the_standalone_server_serves_https_with_its_token(tmp_path: Path) -> None:
    port = closed_port()
    token_file = tmp_path / "token"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.argo_server",
            "--port",
            str(port),
            "--token-file",
            str(token_file),
            "--tls-dir",
            str(tmp_path / "tls"),
            "--templates",
            str(REPO / "templates"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"https://127.0.0.1:{port}" in banner
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        verify = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.crt"))
        url = f"https://127.0.0.1:{port}/api/v1/workflow-templates/argo"
        for _ in range(200):
            try:
                response = httpx.get(url, headers=headers, verify=verify)
                break
            except httpx.ConnectError:
                time.sleep(0.01)
        assert response.status_code == 200
        names = sorted(t["metadata"]["name"] for t in response.json()["items"])
        assert "orchestrator-create-subaccount" in names
    finally:
        process.terminate()
        process.wait(timeout=10)
