"""Onboards tenant namespaces onto Kubernetes clusters and SAP BTP.

Each onboarding is a persisted state machine whose steps run as Argo Workflows
on the target cluster, with compensations in reverse when something fails.
"""

__version__ = "0.1.0"

API_GROUP = "orchestrator.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"
