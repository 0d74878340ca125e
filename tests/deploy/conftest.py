"""Fixtures of the deploy layer: helm, the charts rendered, and local-a's API server.

The charts are rendered and linted with the helm the local control plane
builds (tests/controlplane); without it the layer is skipped, unless CI=true
or ORCHESTRATOR_E2E_REQUIRE=1, where it fails. The tests that talk to a
cluster use the session fixture of the e2e layer (both local clusters up,
reusing what runs) and are marked ``e2e``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controlplane import cluster as controlplane
from tests.controlplane.kube import Kube
from tests.controlplane.versions import binaries
from tests.deploy import prometheus_crds
from tests.deploy.kubeapi import KubeAPI
from tests.e2e.conftest import local_clusters  # noqa: F401  (the session fixture, shared)
from tests.support.processes import REPO

DEPLOY_DIR = Path(__file__).resolve().parent
VALUES_DIR = DEPLOY_DIR / "values"
CHART = REPO / "helm" / "orchestrator"
TARGET_CHART = REPO / "helm" / "orchestrator-target"
CLUSTER_TESTS = ("test_dry_run.py", "test_install.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if path.parent == DEPLOY_DIR and path.name in CLUSTER_TESTS:
            item.add_marker(pytest.mark.e2e)


def required() -> bool:
    if os.environ.get("ORCHESTRATOR_SKIP_CONTROL_PLANE") == "1":
        return False
    return os.environ.get("ORCHESTRATOR_E2E_REQUIRE") == "1" or os.environ.get("CI") == "true"


def skip_or_fail(message: str) -> None:
    if required():
        pytest.fail(message)
    pytest.skip(message)


def valid_values() -> list[Path]:
    """The matrix, and the examples the docs point to."""
    matrix = sorted(p for p in VALUES_DIR.glob("*.yaml") if not p.name.startswith("invalid-"))
    return matrix + sorted((CHART / "examples").glob("*.yaml"))


def invalid_values() -> list[Path]:
    return sorted(VALUES_DIR.glob("invalid-*.yaml"))


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "HELM_CACHE_HOME": "/tmp/orchestrator-helm-cache"}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    def template(
        self,
        chart: Path,
        *values: Path,
        namespace: str = "orchestrator",
        release: str = "orchestrator",
        sets: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        args = ["template", release, str(chart), "--namespace", namespace]
        for path in values:
            args += ["--values", str(path)]
        for assignment in sets:
            args += ["--set", assignment]
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = binaries().helm
    if not binary.exists():
        skip_or_fail(f"helm is not built ({binary}; make cluster-build)")
    return Helm(binary)


@pytest.fixture(scope="session")
def local_a(local_clusters: dict[str, controlplane.Cluster]) -> controlplane.Cluster:  # noqa: F811
    return local_clusters["local-a"]


@pytest.fixture(scope="session")
def admin_a(local_a: controlplane.Cluster) -> Iterator[KubeAPI]:
    api = KubeAPI(local_a)
    yield api
    api.close()


@pytest.fixture(scope="session")
def monitoring_crds(admin_a: KubeAPI) -> Iterator[None]:
    """ServiceMonitor and PrometheusRule served by local-a; removed after if we added them."""
    why = prometheus_crds.missing_tool()
    if why:
        skip_or_fail(why)
    added: list[str] = []
    for path in prometheus_crds.crd_files():
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        if admin_a.get(crd_path) is None:
            answer = admin_a.create(crd)
            assert answer.status_code == 201, answer.text
            added.append(crd_path)
    # served once Established
    bootstrap = Kube(admin_a.cluster.apiserver_url, admin_a.cluster.pki)
    try:
        bootstrap.wait_established([p.rsplit("/", 1)[1] for p in added])
    finally:
        bootstrap.close()
    yield
    for crd_path in added:
        admin_a.delete(crd_path)
