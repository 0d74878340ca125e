"""Which ``WorkflowEngine`` a cluster gets, and one ``KubeAccess`` per cluster.

- an ``argo.server``: ``ArgoClient`` over Argo Server's REST API, with the
  static token of ``tokenFile``/``tokenEnv``, else with short-lived tokens of
  ``argo.tokenRequest.serviceAccount`` minted through the kubeconfig;
- no ``argo.server``: ``KubeWorkflowEngine`` through the Kubernetes API.

The accesses outlive the engines: ``prepare_target`` and the token source use
the same client as the engine, and a cluster entry whose kubeconfig did not
change keeps its client (and its connections) when its engine is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from orchestrator.argo import ArgoClient
from orchestrator.config.configs import Cluster
from orchestrator.kube.clients import KubeAccess
from orchestrator.kube.tokens import TokenRequestSource
from orchestrator.kube.workflows import KubeWorkflowEngine
from orchestrator.metrics import Metrics
from orchestrator.ports import WorkflowEngine


class KubeAccesses:
    """One ``KubeAccess`` per cluster name, rebuilt when its kubeconfig or timeout changes."""

    def __init__(
        self,
        *,
        management: KubeAccess | None = None,
        default_namespace: str | None = None,
        gate: Callable[[], None] | None = None,
    ) -> None:
        self.management = management
        self.default_namespace = default_namespace
        #: asked before every request to a cluster (not to the management cluster)
        self.gate = gate
        self._accesses: dict[str, KubeAccess] = {}

    def get(self, cluster: Cluster) -> KubeAccess:
        """The access of ``cluster``; raises ``ValueError`` when it has no kubeconfig."""
        name = cluster.metadata.name
        current = self._accesses.get(name)
        if (
            current is not None
            and current.kubeconfig == cluster.spec.kubeconfig
            and current.timeout == cluster.spec.request_timeout_seconds
        ):
            return current
        if current is not None:
            current.close()
        access = KubeAccess.for_cluster(
            cluster,
            management=self.management,
            default_namespace=self.default_namespace,
            gate=self.gate,
        )
        self._accesses[name] = access
        return access

    def find(self, name: str) -> KubeAccess | None:
        return self._accesses.get(name)

    def retain(self, names: Iterable[str]) -> None:
        """Close the accesses of clusters no longer declared."""
        keep = set(names)
        for name in [n for n in self._accesses if n not in keep]:
            self._accesses.pop(name).close()

    def close(self) -> None:
        self.retain(())


def engine_for(cluster: Cluster, *, accesses: KubeAccesses, metrics: Metrics) -> WorkflowEngine:
    """The engine of one cluster entry (see the module's docstring for the choice)."""
    argo = cluster.spec.argo
    if argo.server is None:
        return KubeWorkflowEngine.for_cluster(cluster, accesses.get(cluster), metrics=metrics)
    token_source = None
    if not (argo.token_file or argo.token_env) and cluster.spec.kubeconfig is not None:
        token_source = TokenRequestSource.for_cluster(cluster, accesses.get(cluster))
    return ArgoClient.for_cluster(
        cluster, metrics=metrics, token_source=token_source, gate=accesses.gate
    )
