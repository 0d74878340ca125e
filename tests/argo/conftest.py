"""Fixtures of the Argo adapter's contract tests: the fake Argo Server over real HTTPS."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import ArgoAccess
from orchestrator.errors import ArgoError
from orchestrator.metrics import Metrics
from tests.fakes.argo_server import ArgoServerRunner, FakeArgoServer, TLSFiles, make_tls

TOKEN = "tok-3f9a1c7e5b2d4a68"
CLUSTER = "cluster-a"
TEMPLATE_NAME = "orchestrator-create-subaccount"


def template_manifest(name: str = TEMPLATE_NAME, **labels: str) -> dict[str, Any]:
    """A small WorkflowTemplate in the shape of the ones in templates/."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {
            "name": name,
            "labels": {"orchestrator.dev/step": "create-subaccount", **labels},
        },
        "spec": {
            "entrypoint": "main",
            "arguments": {
                "parameters": [
                    {"name": "onboarding", "value": ""},
                    {"name": "step", "value": "create-subaccount"},
                ]
            },
            "templates": [
                {
                    "name": "main",
                    "inputs": {"parameters": [{"name": "onboarding"}, {"name": "step"}]},
                    "container": {
                        "image": "orchestrator-step:0.1.0",
                        "command": ["orchestrator-step", "create-subaccount"],
                        "args": ["--onboarding", "{{inputs.parameters.onboarding}}"],
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def fake() -> Iterator[FakeArgoServer]:
    server = FakeArgoServer(token=TOKEN)
    yield server
    assert server.violations == [], "requests broke the Argo contract"


@pytest.fixture(scope="session")
def _listener(tls: TLSFiles) -> Iterator[ArgoServerRunner]:
    with ArgoServerRunner(FakeArgoServer(token=TOKEN), tls=tls) as running:
        yield running


@pytest.fixture
def runner(_listener: ArgoServerRunner, fake: FakeArgoServer) -> ArgoServerRunner:
    """The shared HTTPS listener, serving this test's own fake."""
    _listener.fake = fake
    return _listener


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def access(runner: ArgoServerRunner, tls: TLSFiles, token_file: Path, **extra: Any) -> ArgoAccess:
    fields: dict[str, Any] = {
        "server": runner.url,
        "namespace": "argo",
        "tokenFile": str(token_file),
        "caFile": str(tls.ca_file),
        **extra,
    }
    return ArgoAccess.model_validate(fields)


@pytest.fixture
async def client(
    runner: ArgoServerRunner, tls: TLSFiles, token_file: Path, metrics: Metrics
) -> AsyncIterator[ArgoClient]:
    argo = ArgoClient(
        CLUSTER,
        access(runner, tls, token_file, serviceAccount="orchestrator-step"),
        timeout=2.0,
        metrics=metrics,
    )
    yield argo
    await argo.aclose()


@pytest.fixture
def installed(fake: FakeArgoServer) -> FakeArgoServer:
    fake.install_template(template_manifest())
    return fake


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def raised_by(argo: ArgoClient, call: Callable[[ArgoClient], Awaitable[object]]) -> ArgoError:
    """The ArgoError ``call`` raises; closes the client either way."""
    try:
        await call(argo)
    except ArgoError as exc:
        return exc
    finally:
        await argo.aclose()
    raise AssertionError("no ArgoError raised")
