"""The explanation of an onboarding, the cause in the list, YAML bodies, the request id,
the HTTP metrics and the audit lines of changing calls."""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from fastapi.testclient import TestClient

from orchestrator.interfaces.apirequests import fingerprint
from orchestrator.metrics import Metrics

from .conftest import TOKEN
from .fakes import UI, FakeOperations, document

URL = "/api/v1/onboardings"
QUOTA = "create-subaccount failed: Error (exit code 1): " + "quota exceeded; " * 20


def with_failed_workflow(operations: FakeOperations, name: str, workflow: str) -> None:
    """The step_failed transition names its workflow, as the daemon's do."""
    transitions = operations.transitions[name]
    for index, transition in enumerate(transitions):
        if transition.trigger == "step_failed":
            transitions[index] = dataclasses.replace(transition, workflow=workflow)


def test_a_failed_onboarding_names_the_step_its_full_reason_and_workflow_link(
    client: TestClient, operations: FakeOperations
) -> None:
    operations.declare(document("tenant-a"), file="clusters/a.yaml")
    operations.fire("tenant-a", "start")
    operations.fire("tenant-a", "step_failed", reason=QUOTA)
    operations.fire("tenant-a", "compensated", reason="delete-subaccount succeeded")
    with_failed_workflow(operations, "tenant-a", "tenant-a-create-subaccount-1")

    answer = client.get(f"{URL}/tenant-a/explain")

    assert answer.status_code == 200
    explanation = answer.json()
    assert explanation["state"] == "Failed"
    assert explanation["waiting_for"] == "on-call"
    assert explanation["summary"] == QUOTA
    assert explanation["failed_step"] == {
        "step": "create-subaccount",
        "reason": QUOTA,
        "at": explanation["failed_step"]["at"],
        "workflow": "tenant-a-create-subaccount-1",
        "workflow_url": f"{UI}/tenant-a-create-subaccount-1",
    }
    assert explanation["hint"] == "fix the cause, then orchestrator retry tenant-a"


def test_a_pending_onboarding_waits_for_a_slot_held_by_those_in_flight(
    client: TestClient, operations: FakeOperations
) -> None:
    operations.declare(document("tenant-a"), file="clusters/a.yaml")
    operations.declare(document("tenant-b"), file="clusters/b.yaml")
    operations.fire("tenant-a", "start")

    explanation = client.get(f"{URL}/tenant-b/explain").json()

    assert explanation["waiting_for"] == "slot"
    assert explanation["slot_holders"] == ["tenant-a"]
    listed = {v["name"]: v["cause"] for v in client.get(URL).json()}
    assert listed["tenant-b"].startswith("waits for a free slot of cluster c1: 1 in flight")
    assert listed["tenant-a"] == "create-subaccount is running (attempt 1)"


def test_a_back_off_says_until_when(client: TestClient, operations: FakeOperations) -> None:
    operations.declare(document("tenant-a"), file="clusters/a.yaml")
    until = datetime.now(UTC) + timedelta(minutes=3)
    operations.update("tenant-a", next_attempt_at=until, last_error="Argo answered 503")

    explanation = client.get(f"{URL}/tenant-a/explain").json()

    assert explanation["waiting_for"] == "backoff"
    assert datetime.fromisoformat(explanation["until"]) == until
    assert explanation["summary"] == "backing off after an error: Argo answered 503"
    assert client.get(f"{URL}/tenant-a").json()["cause"] == explanation["summary"]


def test_suspended_by_on_call_since_when(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    operations.declare(document("tenant-a"), file="clusters/a.yaml")
    assert client.post(f"{URL}/tenant-a/suspend", headers=auth).status_code == 200

    explanation = client.get(f"{URL}/tenant-a/explain").json()

    [caller] = operations.callers  # the address and the token's fingerprint, not the token
    token = auth["Authorization"].removeprefix("Bearer ")
    assert caller == f"testclient, token {fingerprint(token)}"
    assert explanation["waiting_for"] == "suspended"
    assert explanation["by"] == f"on-call, through the API ({caller})"
    assert explanation["since"] is not None
    assert explanation["hint"] == "orchestrator resume tenant-a"


def test_a_ready_onboarding_waits_for_nothing(
    client: TestClient, operations: FakeOperations
) -> None:
    operations.declare(document("tenant-a"), file="clusters/a.yaml")
    operations.fire("tenant-a", "start", "step_succeeded", "step_succeeded", "step_succeeded")

    explanation = client.get(f"{URL}/tenant-a/explain").json()

    assert (explanation["waiting_for"], explanation["summary"]) == ("nothing", "ready")
    assert client.get(f"{URL}/tenant-a").json()["cause"] is None


def test_explain_of_an_unknown_onboarding_is_404(client: TestClient) -> None:
    assert client.get(f"{URL}/nobody/explain").status_code == 404


# --- YAML bodies -------------------------------------------------------------------


@pytest.mark.parametrize("media", ["application/yaml", "application/x-yaml", "text/yaml"])
def test_an_upsert_takes_yaml(
    client: TestClient, operations: FakeOperations, auth: dict[str, str], media: str
) -> None:
    body = yaml.safe_dump(document("tenant-a")).encode()
    answer = client.put(f"{URL}/tenant-a", content=body, headers={**auth, "Content-Type": media})
    assert answer.status_code == 201, answer.text
    assert operations.records["tenant-a"].spec["subaccount"]["subdomain"] == "tenant-a"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"metadata: {name: a}\nmetadata: {name: b}\n", "metadata"),
        (b"---\na: 1\n---\nb: 2\n", "one YAML document is expected, not 2"),
        (b"spec: [unclosed\n", "body"),
        (b"a: &x [*x]\n", "body"),
        (b"\xff\xfe", "not UTF-8"),
        (b"spec: .nan\n", "not valid JSON"),
    ],
    ids=["repeated-key", "two-documents", "broken", "alias-loop", "not-utf8", "nan"],
)
def test_yaml_that_cannot_be_taken_is_422(
    client: TestClient, operations: FakeOperations, auth: dict[str, str], body: bytes, problem: str
) -> None:
    answer = client.put(
        f"{URL}/tenant-a", content=body, headers={**auth, "Content-Type": "application/yaml"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "Invalid"
    assert problem in answer.json()["message"]
    assert operations.records == {}


def test_yaml_is_read_only_after_the_token(client: TestClient) -> None:
    answer = client.put(
        f"{URL}/tenant-a", content=b"{{{{", headers={"Content-Type": "application/yaml"}
    )
    assert answer.status_code == 401


def test_another_media_type_is_415(client: TestClient, auth: dict[str, str]) -> None:
    answer = client.put(
        f"{URL}/tenant-a", content=b"x", headers={**auth, "Content-Type": "text/plain"}
    )
    assert answer.status_code == 415
    assert "application/yaml" in answer.json()["message"]


# --- request id, HTTP metrics, audit lines ------------------------------------------


def test_every_answer_has_a_request_id(client: TestClient, auth: dict[str, str]) -> None:
    ids = {client.get(path).headers["X-Request-Id"] for path in ("/healthz", URL, "/nope")}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert client.post(f"{URL}/x/retry").headers["X-Request-Id"]  # a 401 too
    given = client.get("/healthz", headers={"X-Request-Id": "trace-42.a"})
    assert given.headers["X-Request-Id"] == "trace-42.a"
    odd = client.get("/healthz", headers={"X-Request-Id": "no spaces please"})
    assert odd.headers["X-Request-Id"] != "no spaces please"


def test_http_requests_are_counted_by_route_template(
    client: TestClient, operations: FakeOperations, metrics: Metrics
) -> None:
    operations.declare(document("tenant-a"), file="clusters/a.yaml")
    client.get(f"{URL}/tenant-a")
    client.get(f"{URL}/tenant-a/explain")
    client.get("/no/such/path/abc123")
    client.post(f"{URL}/tenant-a/retry")  # 401
    text = client.get("/metrics").text
    for labels in (
        'method="GET",route="/api/v1/onboardings/{name}",status="200"',
        'method="GET",route="/api/v1/onboardings/{name}/explain",status="200"',
        'method="GET",route="unmatched",status="404"',
        'method="POST",route="/api/v1/onboardings/{name}/retry",status="401"',
    ):
        assert f"orchestrator_http_requests_total{{{labels}}} 1.0" in text, labels
    assert "abc123" not in text


def test_changing_calls_write_an_audit_line_with_the_caller(
    client: TestClient,
    operations: FakeOperations,
    auth: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator")
    client.put(f"{URL}/tenant-a", json=document("tenant-a"), headers=auth)
    client.post(f"{URL}/tenant-a/suspend", headers=auth)
    client.post(f"{URL}/tenant-a/resume", headers=auth)
    client.delete(f"{URL}/tenant-a", headers=auth)
    audits = [r for r in caplog.records if hasattr(r, "action")]
    assert [r.action for r in audits] == ["upsert", "suspend", "resume", "delete"]  # type: ignore[attr-defined]
    for record in audits:
        fields = vars(record)
        assert (fields["onboarding"], fields["cluster"]) == ("tenant-a", "c1")
        assert fields["remote"].startswith("testclient:")
        assert re.fullmatch(r"sha256:[0-9a-f]{12}", fields["token_fingerprint"])
    lines = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert TOKEN not in lines
