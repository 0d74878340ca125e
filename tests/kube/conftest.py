"""Fixtures of the Kubernetes adapter's tests: the real local clusters of tests/controlplane.

``local_clusters`` is the session fixture of the e2e layer (it brings both
clusters up, reusing what runs, and stops only what it started); without
built binaries these tests are skipped, and under CI=true they fail.
Every object a test makes has a unique name, so several sessions can share
the clusters.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from orchestrator.config.configs import Kubeconfig
from orchestrator.kube.clients import KubeAccess
from tests.controlplane import cluster as controlplane
from tests.e2e.conftest import local_clusters  # noqa: F401  (the session fixture, re-used)

ARGO_NAMESPACE = "argo"
#: The daemon's identity at Argo Server, made by cluster-up (tests/controlplane).
ARGO_SERVICE_ACCOUNT = "orchestrator"


@pytest.fixture
def unique() -> str:
    return "kt-" + uuid.uuid4().hex[:8]


@pytest.fixture
def cluster_a(
    local_clusters: dict[str, controlplane.Cluster],  # noqa: F811
) -> controlplane.Cluster:
    return local_clusters["local-a"]


@pytest.fixture
async def access(cluster_a: controlplane.Cluster) -> AsyncIterator[KubeAccess]:
    kube = KubeAccess(cluster_a.name, Kubeconfig(path=str(cluster_a.kubeconfig)), timeout=10)
    try:
        yield kube
    finally:
        await kube.aclose()


def kubeconfig_with_token(cluster: controlplane.Cluster, token: str) -> dict[str, object]:
    """The cluster's admin kubeconfig with its user replaced by a bearer token."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "token-user", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "token-user"
    return dict(config)


def write_yaml(path: Path, document: object) -> None:
    """Replace ``path`` atomically, as a re-mounted Secret or ``mv`` would."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(document))
    tmp.replace(path)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
