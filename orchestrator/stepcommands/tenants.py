"""What a tenant made with the SAP BTP Service Operator: never touched by a step, only
counted, so that taking the operator's access away cannot orphan it.

A ``ServiceInstance`` (``services.cloud.sap.com/v1``) in the tenant namespace is an
instance in the onboarding's subaccount, created by the operator with the access
Secret that create-operator-access wrote. Deleting that access first would leave
the operator unable to delete the BTP side: the tenant deletes its instances, then
the compensation goes on.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from orchestrator.stepcommands.secrets import kube_call

GROUP = "services.cloud.sap.com"
VERSION = "v1"


def service_instances(namespace: str) -> list[str]:
    """The names of the namespace's ServiceInstances; none when the operator's CRDs are not
    installed (the API answers 404 for an unknown resource)."""
    found: Any = kube_call(
        f"list ServiceInstances ({GROUP}) in {namespace}",
        lambda api: client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, "serviceinstances"
        ),
        absent_ok=True,
    )
    items = (found or {}).get("items") or []
    return sorted(str((item.get("metadata") or {}).get("name", "")) for item in items)
