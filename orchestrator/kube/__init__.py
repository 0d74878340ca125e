"""The Kubernetes adapter: one client per cluster from its kubeconfig, short-lived
Argo tokens (TokenRequest), workflows without an Argo Server, and the
preparation of each target cluster for an onboarding's steps.

``ApiException`` and urllib3 errors never leave this package (see ``errors``).
"""

from orchestrator.kube.clients import Apis, KubeAccess
from orchestrator.kube.engines import KubeAccesses, engine_for
from orchestrator.kube.preparing import (
    Change,
    ClusterTargets,
    Preparation,
    Release,
    prepare_target,
    release_target,
)
from orchestrator.kube.tokens import TokenRequestSource
from orchestrator.kube.workflows import KubeWorkflowEngine

__all__ = [
    "Apis",
    "Change",
    "ClusterTargets",
    "KubeAccess",
    "KubeAccesses",
    "KubeWorkflowEngine",
    "Preparation",
    "Release",
    "TokenRequestSource",
    "engine_for",
    "prepare_target",
    "release_target",
]
