from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from orchestrator.interfaces.api import create_app
from orchestrator.metrics import Metrics

from .fakes import FakeOperations, Swap

TOKEN = "tok-9f8e7d6c5b4a-never-shown"


class Harness:
    def __init__(self) -> None:
        self.operations = Swap(None)
        self.metrics = Swap(None)
        self.token: list[str | None] = [None]
        self.app = create_app(
            self.operations,
            metrics=self.metrics,  # type: ignore[arg-type]
            token=lambda: self.token[0],
        )


@pytest.fixture(scope="session")
def harness() -> Harness:
    # building the app takes longer than most tests, so it is built once
    return Harness()


@pytest.fixture
def operations(harness: Harness) -> FakeOperations:
    harness.operations.current = FakeOperations()
    return harness.operations.current  # type: ignore[no-any-return]


@pytest.fixture
def metrics(harness: Harness) -> Metrics:
    harness.metrics.current = Metrics()
    return harness.metrics.current  # type: ignore[no-any-return]


@pytest.fixture
def token(harness: Harness) -> list[str | None]:
    """The configured token; tests may replace ``token[0]`` (None: not configured)."""
    harness.token[0] = TOKEN
    return harness.token


@pytest.fixture
def app(harness: Harness, operations: FakeOperations, metrics: Metrics, token: object) -> FastAPI:
    return harness.app


@pytest.fixture(scope="session")
def session_client(harness: Harness) -> Iterator[TestClient]:
    with TestClient(harness.app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(session_client: TestClient, app: FastAPI) -> TestClient:
    return session_client


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
