"""The Argo Workflows adapter: the ``WorkflowEngine`` port over the Argo Server REST API."""

from orchestrator.argo.client import ArgoClient
from orchestrator.argo.templates import load_templates

__all__ = ["ArgoClient", "load_templates"]
