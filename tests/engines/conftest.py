"""Both ``WorkflowEngine`` implementations on the real local cluster local-a.

- ``argo``: ``ArgoClient`` over Argo Server's REST API, with a TokenRequest
  token of ServiceAccount argo/orchestrator (the daemon's identity, whose Role
  is all the daemon may do through Argo);
- ``kube``: ``KubeWorkflowEngine`` on the ``argoproj.io`` resources through
  the Kubernetes API with the cluster's kubeconfig.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import ArgoAccess
from orchestrator.kube.clients import KubeAccess
from orchestrator.kube.tokens import TokenRequestSource
from orchestrator.kube.workflows import KubeWorkflowEngine
from orchestrator.ports import WorkflowEngine
from tests.controlplane import cluster as controlplane
from tests.kube.conftest import (  # noqa: F401  (fixtures re-used)
    ARGO_NAMESPACE,
    ARGO_SERVICE_ACCOUNT,
    access,
    cluster_a,
    local_clusters,
    unique,
)

#: ServiceAccount of the step pods, made by cluster-up.
STEP_SERVICE_ACCOUNT = "argo-workflow"


@pytest.fixture(params=["argo", "kube"])
async def engine(
    request: pytest.FixtureRequest,
    cluster_a: controlplane.Cluster,  # noqa: F811
    access: KubeAccess,  # noqa: F811
) -> AsyncIterator[WorkflowEngine]:
    engine: WorkflowEngine
    if request.param == "argo":
        tokens = TokenRequestSource(
            access,
            namespace=ARGO_NAMESPACE,
            service_account=ARGO_SERVICE_ACCOUNT,
            expiration_seconds=600,
        )
        settings = ArgoAccess(
            server=cluster_a.argo_url,
            namespace=ARGO_NAMESPACE,
            caFile=str(cluster_a.argo_ca),
            serviceAccount=STEP_SERVICE_ACCOUNT,
        )
        engine = ArgoClient(cluster_a.name, settings, timeout=10, token_source=tokens)
    else:
        engine = KubeWorkflowEngine(
            cluster_a.name,
            access,
            namespace=ARGO_NAMESPACE,
            service_account=STEP_SERVICE_ACCOUNT,
            ui_url="https://argo.example.com",
        )
    try:
        yield engine
    finally:
        await engine.aclose()
