"""Auth, error mapping, health, metrics, the OpenAPI document, and no token leaks."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.metrics import Metrics

from .conftest import TOKEN
from .fakes import FakeOperations, document

URL = "/api/v1/onboardings"
HELD = "/api/v1/config/held-offboarding"

#: every mutating route, with a body where it takes one
MUTATING = [
    ("PUT", f"{URL}/tenant-a", document("tenant-a")),
    ("DELETE", f"{URL}/tenant-a", None),
    ("POST", f"{URL}/tenant-a/reconcile", None),
    ("POST", f"{URL}/tenant-a/retry", None),
    ("POST", f"{URL}/tenant-a/suspend", None),
    ("POST", f"{URL}/tenant-a/resume", None),
    ("POST", f"{HELD}/confirm", None),
]
MUTATING_IDS = [f"{method} {path.removeprefix(URL)}" for method, path, _ in MUTATING]

READING = [
    "/healthz", "/readyz", "/metrics", URL, f"{URL}/tenant-a", f"{URL}/tenant-a/history", HELD
]  # fmt: skip


@pytest.fixture
def existing(operations: FakeOperations) -> FakeOperations:
    operations.declare(document("tenant-a"), file="clusters/tenants.yaml")
    operations.hold("tenant-a", "tenant-z", declared=3)
    return operations


# --- auth ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), MUTATING, ids=MUTATING_IDS)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong-token",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        "Bearer ",
        "Bearer ünï".encode("latin-1"),
    ],
    ids=["missing", "wrong", "basic-scheme", "longer", "empty", "non-ascii"],
)
def test_mutating_calls_without_the_right_token_are_401(
    client: TestClient,
    existing: FakeOperations,
    method: str,
    path: str,
    body: object,
    header: str | bytes | None,
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    answer = client.request(method, path, json=body, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json()["error"] == "Unauthorized"
    assert existing.acted == []
    assert existing.confirmed == []
    assert existing.records["tenant-a"].version == 1


@pytest.mark.parametrize(("method", "path", "body"), MUTATING, ids=MUTATING_IDS)
def test_mutating_calls_are_refused_when_no_token_is_configured(
    client: TestClient,
    existing: FakeOperations,
    token: list[str | None],
    method: str,
    path: str,
    body: object,
) -> None:
    token[0] = None
    answer = client.request(method, path, json=body, headers={"Authorization": "Bearer "})
    assert answer.status_code == 503
    assert answer.json() == {
        "error": "NoToken",
        "message": "no API token configured; mutating calls are refused",
    }
    assert existing.confirmed == []
    assert existing.records["tenant-a"].version == 1


def test_an_unreadable_token_file_refuses_like_no_token(
    operations: FakeOperations, metrics: Metrics, auth: dict[str, str]
) -> None:
    def unreadable() -> str | None:
        raise FileNotFoundError("/run/secrets/token")

    app = create(operations, metrics, unreadable)
    with TestClient(app) as client:
        answer = client.post(f"{URL}/tenant-a/reconcile", headers=auth)
    assert answer.status_code == 503


def create(operations: FakeOperations, metrics: Metrics, token: object) -> FastAPI:
    from orchestrator.interfaces.api import create_app

    return create_app(operations, metrics=metrics, token=token)  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "path", "body"), MUTATING, ids=MUTATING_IDS)
def test_the_right_token_is_let_through(
    client: TestClient, operations: FakeOperations, auth: dict[str, str], method: str,
    path: str, body: object,
) -> None:  # fmt: skip
    client.put(f"{URL}/tenant-a", json=document("tenant-a"), headers=auth)
    answer = client.request(method, path, json=body, headers=auth)
    assert answer.status_code in (200, 202, 409), answer.text  # 409: e.g. resume while Pending


def test_the_token_is_read_on_each_call_so_it_can_rotate(
    client: TestClient, existing: FakeOperations, token: list[str | None]
) -> None:
    path = f"{URL}/tenant-a/reconcile"
    assert client.post(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    token[0] = "rotated"
    assert client.post(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert client.post(path, headers={"Authorization": "Bearer rotated"}).status_code == 200


@pytest.mark.parametrize("path", READING)
def test_reading_needs_no_token(
    client: TestClient, existing: FakeOperations, token: list[str | None], path: str
) -> None:
    token[0] = None
    assert client.get(path).status_code == 200


# --- errors ----------------------------------------------------------------------


def test_an_unexpected_error_is_500_without_internals(
    client: TestClient, operations: FakeOperations, caplog: pytest.LogCaptureFixture
) -> None:
    operations.broken = RuntimeError("database at postgres://admin:hunter2@db exploded")
    answer = client.get(URL)
    assert answer.status_code == 500
    assert answer.json() == {
        "error": "InternalError",
        "message": "internal error; see the daemon's log",
    }
    assert "hunter2" not in answer.text
    assert "unexpected error answering GET /api/v1/onboardings" in caplog.text


def test_a_temporary_error_is_503_with_retry_after(
    client: TestClient, operations: FakeOperations
) -> None:
    operations.broken = TemporaryError("store is busy", reason="StoreBusy", delay=2.4)
    answer = client.get(f"{URL}/x")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "2"
    assert answer.json() == {"error": "StoreBusy", "message": "store is busy"}


def test_another_error_of_ours_is_500_with_its_reason(
    client: TestClient, operations: FakeOperations
) -> None:
    operations.broken = PermanentError("the store schema is newer than this daemon")
    answer = client.get(URL)
    assert answer.status_code == 500
    assert answer.json()["error"] == "Permanent"


def test_a_wrong_method_is_405_in_the_error_shape(client: TestClient) -> None:
    answer = client.patch(f"{URL}/tenant-a")
    assert answer.status_code == 405
    assert answer.json()["error"] == "MethodNotAllowed"


# --- health and metrics ----------------------------------------------------------


def test_healthz(client: TestClient, operations: FakeOperations) -> None:
    operations.ready = (False, "not the leader")
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_readyz_follows_the_operations(client: TestClient, operations: FakeOperations) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "reason": "leader; desired state loaded"}
    operations.ready = (False, "database unreachable")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "reason": "database unreachable"}


def test_metrics_are_exposed_in_prometheus_text(client: TestClient, metrics: Metrics) -> None:
    metrics.transitions.labels(from_state="Pending", to_state="Running", trigger="start").inc()
    metrics.reconcile_last_success.set(1234.5)
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert "# TYPE orchestrator_transitions_total counter" in text
    assert (
        'orchestrator_transitions_total{from_state="Pending",to_state="Running",'
        'trigger="start"} 1.0' in text
    )
    assert "orchestrator_reconcile_last_success_timestamp_seconds 1234.5" in text


# --- the OpenAPI document --------------------------------------------------------


def test_the_openapi_document_lists_every_route(app: FastAPI, client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["info"]["title"] == "Onboarding orchestrator"
    assert document["info"]["version"]
    listed = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert listed == served
    assert listed == {
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/metrics", "GET"),
        ("/api/v1/clusters", "GET"),
        ("/api/v1/replica", "GET"),
        ("/api/v1/onboardings", "GET"),
        ("/api/v1/onboardings/{name}", "GET"),
        ("/api/v1/onboardings/{name}", "PUT"),
        ("/api/v1/onboardings/{name}", "DELETE"),
        ("/api/v1/onboardings/{name}/history", "GET"),
        ("/api/v1/onboardings/{name}/explain", "GET"),
        ("/api/v1/onboardings/{name}/reconcile", "POST"),
        ("/api/v1/onboardings/{name}/retry", "POST"),
        ("/api/v1/onboardings/{name}/suspend", "POST"),
        ("/api/v1/onboardings/{name}/resume", "POST"),
        ("/api/v1/config/held-offboarding", "GET"),
        ("/api/v1/config/held-offboarding/confirm", "POST"),
    }


def test_the_openapi_document_describes_answers_errors_and_auth(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert {t["name"] for t in document["tags"]} == {
        "onboardings", "on-call", "operations", "config"
    }  # fmt: skip
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    schemas = document["components"]["schemas"]
    assert {"OnboardingView", "TransitionView", "UpsertResult", "ErrorBody", "Onboarding"} <= set(
        schemas
    )
    put = document["paths"]["/api/v1/onboardings/{name}"]["put"]
    assert put["security"] == [{"bearer": []}]
    assert {"200", "201", "401", "409", "422", "503"} <= set(put["responses"])
    assert put["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Onboarding"
    )
    assert "apiVersion" in schemas["Onboarding"]["properties"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            error = operation["responses"].get("500") or operation["responses"].get("503")
            if path.startswith("/api/"):
                assert error, f"{method} {path} documents no error answer"
            if method != "get":
                assert operation.get("security") == [{"bearer": []}], f"{method} {path}"
                assert "401" in operation["responses"]


# --- secrets ---------------------------------------------------------------------


def test_the_token_never_appears_in_an_answer_or_a_log_line(
    client: TestClient, operations: FakeOperations, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    right = {"Authorization": f"Bearer {TOKEN}"}
    wrong = {"Authorization": f"Bearer {TOKEN[:-1]}"}
    answers = [
        client.request(m, p, json=b, headers=h) for m, p, b in MUTATING for h in (right, wrong)
    ]
    answers += [client.get(p, headers=right) for p in READING]
    answers.append(client.get("/openapi.json", headers=right))
    answers.append(client.put(f"{URL}/x", json={"bad": TOKEN[:-1]}, headers=right))
    operations.broken = RuntimeError("boom")
    answers.append(client.post(f"{URL}/tenant-a/retry", headers=right))
    answers.append(client.get(URL, headers=right))
    assert answers[-1].status_code == 500
    assert {a.status_code for a in answers} >= {200, 201, 401, 422, 500}
    for answer in answers:
        seen = answer.text + "".join(f"{k}: {v}" for k, v in answer.headers.items())
        assert TOKEN[:-1] not in seen, answer.request.url
    records = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN[:-1] not in records
    assert "authorization" not in records.lower()


def test_clusters_answers_their_health(client: TestClient, operations: FakeOperations) -> None:
    answer = client.get("/api/v1/clusters")

    assert answer.status_code == 200
    assert [c["name"] for c in answer.json()] == sorted(operations.cluster_names)
    assert all(c["reachable"] is True for c in answer.json())
