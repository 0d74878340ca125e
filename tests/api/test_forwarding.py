"""A follower passes a held offboarding's confirmation to the leader, over HTTP, with
the caller's token; the leader here is a second app on a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from orchestrator.interfaces.api import create_app
from orchestrator.interfaces.forwarding import FORWARDED
from orchestrator.interfaces.views import ReplicaView
from orchestrator.metrics import Metrics

from .conftest import TOKEN
from .fakes import FakeOperations
from .servers import Served, serving

CONFIRM = "/api/v1/config/held-offboarding/confirm"


@pytest.fixture
def leader() -> Iterator[tuple[Served, FakeOperations]]:
    operations = FakeOperations()
    operations.replica_view = ReplicaView(replica="leader-1", role="leader", leader="leader-1")

    async def make() -> object:
        return create_app(operations, metrics=Metrics(), token=lambda: TOKEN)

    with serving(make) as served:  # type: ignore[arg-type]
        yield served, operations


def follower_of(url: str | None, operations: FakeOperations) -> None:
    operations.replica_view = ReplicaView(
        replica="follower-1", role="follower", leader="leader-1", epoch=3, leader_url=url
    )


def test_the_confirmation_reaches_the_leader_with_the_callers_token(
    client: TestClient,
    operations: FakeOperations,
    auth: dict[str, str],
    leader: tuple[Served, FakeOperations],
) -> None:
    served, on_leader = leader
    on_leader.hold("tenant-a", "tenant-b", declared=3)
    operations.hold("tenant-a", "tenant-b", declared=3)  # the follower sees the same hold
    follower_of(served.url, operations)

    answer = client.post(CONFIRM, headers={**auth, "X-Request-Id": "req-42"})

    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Forwarded-To"] == "leader-1"
    assert answer.headers["X-Request-Id"] == "req-42"
    assert answer.json()["onboardings"] == ["tenant-a", "tenant-b"]
    assert on_leader.held is None or not on_leader.held.held  # applied on the leader
    assert operations.held is not None
    assert operations.held.held

    wrong = client.post(CONFIRM, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401  # refused by the follower itself, never forwarded


def test_without_the_leaders_address_the_follower_says_so(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    follower_of(None, operations)
    answer = client.post(CONFIRM, headers=auth)
    assert answer.status_code == 409
    assert "call the leader itself" in answer.json()["message"]


def test_an_unreachable_leader_is_a_503_naming_it(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    follower_of("http://127.0.0.1:9", operations)
    answer = client.post(CONFIRM, headers=auth)
    assert answer.status_code == 503
    assert "leader-1 at http://127.0.0.1:9 did not answer" in answer.json()["message"]


def test_a_forwarded_call_is_never_forwarded_again(
    client: TestClient, operations: FakeOperations, auth: dict[str, str]
) -> None:
    operations.hold("tenant-a", "tenant-b", declared=3)
    follower_of("http://127.0.0.1:9", operations)
    answer = client.post(CONFIRM, headers={**auth, FORWARDED: "follower-2"})
    # answered here: this fake applies it; the real Service refuses it on a follower
    assert answer.status_code == 200
    assert "X-Forwarded-To" not in answer.headers
