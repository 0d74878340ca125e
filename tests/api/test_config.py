"""The held mass offboarding: what is held, and its confirmation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from orchestrator.errors import ConfigError, ConfigProblem, Conflict

from .fakes import FakeOperations, document

HELD = "/api/v1/config/held-offboarding"
SINCE = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def held(operations: FakeOperations) -> FakeOperations:
    """Four tenants declared in files; a change removing three of them is held."""
    for name in ("tenant-a", "tenant-b", "tenant-c", "tenant-d"):
        operations.declare(document(name), file=f"clusters/{name}.yaml")
    operations.hold("tenant-b", "tenant-c", "tenant-d", declared=4, since=SINCE)
    return operations


def test_nothing_held_says_so(client: TestClient, operations: FakeOperations) -> None:
    answer = client.get(HELD)

    assert answer.status_code == 200
    assert answer.json() == {
        "held": False,
        "onboardings": [],
        "declared": 0,
        "share": None,
        "limit": 0.25,
        "since": None,
    }


def test_a_held_change_shows_names_since_and_share(
    client: TestClient, held: FakeOperations
) -> None:
    answer = client.get(HELD)

    assert answer.status_code == 200
    assert answer.json() == {
        "held": True,
        "onboardings": ["tenant-b", "tenant-c", "tenant-d"],
        "declared": 4,
        "share": 0.75,
        "limit": 0.25,
        "since": "2026-03-01T09:30:00Z",
    }
    assert held.confirmed == []


def test_confirming_applies_the_held_change(
    client: TestClient, held: FakeOperations, auth: dict[str, str]
) -> None:
    answer = client.post(f"{HELD}/confirm", headers=auth)

    assert answer.status_code == 200
    assert answer.json()["held"] is False
    assert answer.json()["onboardings"] == ["tenant-b", "tenant-c", "tenant-d"]
    assert held.confirmed == [["tenant-b", "tenant-c", "tenant-d"]]
    assert client.get(HELD).json()["held"] is False
    states = {v["name"]: v["state"] for v in client.get("/api/v1/onboardings").json()}
    assert states == {
        "tenant-a": "Pending", "tenant-b": "Deleted", "tenant-c": "Deleted", "tenant-d": "Deleted"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        pytest.param(
            None,
            409,
            {"error": "Conflict", "message": "no config change is held"},
            id="nothing-held",
        ),
        pytest.param(
            Conflict("the config files changed since the change was held"),
            409,
            {"error": "Conflict", "message": "the config files changed since the change was held"},
            id="files-changed",
        ),
        pytest.param(
            ConfigError([ConfigProblem("c.yaml", "cluster 'c2' is not declared, but ...")]),
            422,
            {
                "error": "InvalidConfig",
                "message": "c.yaml: cluster 'c2' is not declared, but ...",
                "problems": ["c.yaml: cluster 'c2' is not declared, but ..."],
            },
            id="cluster-in-use",
        ),
    ],
)
def test_a_refused_confirmation_says_why(
    client: TestClient,
    operations: FakeOperations,
    auth: dict[str, str],
    error: Exception | None,
    status: int,
    body: dict[str, object],
) -> None:
    operations.broken = error
    answer = client.post(f"{HELD}/confirm", headers=auth)

    assert answer.status_code == status
    assert answer.json() == body
    assert operations.confirmed == []


def test_confirming_needs_the_token(client: TestClient, held: FakeOperations) -> None:
    assert client.post(f"{HELD}/confirm").status_code == 401
    assert client.get(HELD).json()["held"] is True


def test_the_openapi_document_describes_the_confirmation(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    confirm = document["paths"][f"{HELD}/confirm"]["post"]
    assert confirm["security"] == [{"bearer": []}]
    assert confirm["tags"] == ["config"]
    assert "files changed" in confirm["responses"]["409"]["description"]
    assert {"200", "401", "409", "422", "503"} <= set(confirm["responses"])
    assert "HeldOffboardingView" in document["components"]["schemas"]
