"""Session fixtures of the end-to-end layer: two local clusters, up for the session.

The clusters are the ones of ``make cluster-up`` (tests/controlplane). A
component already running when the session starts is reused and left
running; whatever the session started, it stops at the end (set
ORCHESTRATOR_E2E_KEEP=1 to keep everything up for a next run).

Binaries must have been built (``make cluster-build``). Without them the e2e
tests are skipped, unless ORCHESTRATOR_E2E_REQUIRE=1 or CI=true, where they
fail instead (but for ORCHESTRATOR_SKIP_CONTROL_PLANE=1, which .ci/run honours too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controlplane import cluster as controlplane
from tests.controlplane.processes import tail
from tests.controlplane.versions import binaries
from tests.e2e.argo_api import ArgoAPI

E2E_DIR = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test against the local clusters of tests/controlplane "
        "(real kube-apiserver, etcd, Argo controller and server; pods simulated by kwok)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _required() -> bool:
    if os.environ.get("ORCHESTRATOR_SKIP_CONTROL_PLANE") == "1":  # .ci/run was told to skip it
        return False
    return os.environ.get("ORCHESTRATOR_E2E_REQUIRE") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def local_clusters(request: pytest.FixtureRequest) -> Iterator[dict[str, controlplane.Cluster]]:
    missing = binaries().missing()
    if missing:
        message = "local control plane not built (make cluster-build); missing: " + ", ".join(
            map(str, missing)
        )
        if _required():
            pytest.fail(message)
        pytest.skip(message)
    clusters = controlplane.resolve(list(controlplane.CLUSTERS))
    before = {
        (c.name, comp): controlplane.running_pid(c, comp)
        for c in clusters
        for comp in controlplane.START_ORDER
    }
    for c in clusters:
        # A cluster that already runs keeps its WorkflowTemplates: another
        # session (or a test that installed modified ones) may rely on them.
        running = all(before[(c.name, comp)] for comp in controlplane.START_ORDER)
        if controlplane.up([c.name], templates=not running) != 0:
            pytest.fail(f"cluster-up of {c.name} failed (see its output above)")
    yield {c.name: c for c in clusters}
    if request.session.testsfailed:
        _print_logs(clusters)
    if os.environ.get("ORCHESTRATOR_E2E_KEEP") == "1":
        return
    for c in clusters:
        for comp in reversed(controlplane.START_ORDER):
            if not before[(c.name, comp)]:
                controlplane.stop(c, comp)


def _print_logs(clusters: list[controlplane.Cluster], lines: int = 25) -> None:
    """The end of each component's log, so that a failure in CI can be read."""
    for c in clusters:
        for comp in controlplane.START_ORDER:
            print(f"\n----- {c.name} {comp}: last {lines} lines of {c.log_file(comp)}")
            print(tail(c.log_file(comp), lines))


@pytest.fixture(scope="session", params=list(controlplane.CLUSTERS))
def local_cluster(
    request: pytest.FixtureRequest, local_clusters: dict[str, controlplane.Cluster]
) -> controlplane.Cluster:
    return local_clusters[request.param]


@pytest.fixture
def argo(local_cluster: controlplane.Cluster) -> Iterator[ArgoAPI]:
    api = ArgoAPI.from_cluster_file(local_cluster.cluster_yaml)
    try:
        yield api
    finally:
        api.close()
