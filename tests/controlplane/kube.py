"""A very small Kubernetes REST client for bootstrapping local clusters.

Only what cluster-up needs: server-side apply of a handful of kinds, GET,
and TokenRequest. It speaks to the API server with the admin client
certificate and verifies the cluster CA.
"""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

FIELD_MANAGER = "orchestrator-controlplane"

# (apiVersion, kind) -> (plural, namespaced)
KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Node"): ("nodes", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("argoproj.io/v1alpha1", "WorkflowTemplate"): ("workflowtemplates", True),
    ("argoproj.io/v1alpha1", "ClusterWorkflowTemplate"): ("clusterworkflowtemplates", False),
    ("argoproj.io/v1alpha1", "CronWorkflow"): ("cronworkflows", True),
    ("argoproj.io/v1alpha1", "WorkflowTaskResult"): ("workflowtaskresults", True),
}


def ssl_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Kube:
    def __init__(self, server: str, pki: Path) -> None:
        self.server = server
        ctx = ssl_context(pki / "ca.crt", pki / "admin.crt", pki / "admin.key")
        self.http = httpx.Client(base_url=server, verify=ctx, timeout=30)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def path(obj: dict[str, Any], namespace: str | None = None) -> str:
        api_version, kind = obj["apiVersion"], obj["kind"]
        try:
            plural, namespaced = KINDS[(api_version, kind)]
        except KeyError:
            raise ValueError(
                f"kind {api_version}/{kind} is not known to the bootstrap client"
            ) from None
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        name = obj["metadata"]["name"]
        if namespaced:
            ns = namespace or obj["metadata"].get("namespace") or "default"
            return f"{prefix}/namespaces/{ns}/{plural}/{name}"
        return f"{prefix}/{plural}/{name}"

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        if namespace:
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        response = self.http.patch(
            self.path(obj, namespace),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if response.status_code >= 300:
            raise RuntimeError(
                f"apply {obj['kind']}/{obj['metadata']['name']} failed:"
                f" {response.status_code} {response.text}"
            )
        applied: dict[str, Any] = response.json()
        return applied

    def get(self, path: str) -> dict[str, Any] | None:
        response = self.http.get(path)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def wait_established(self, crd_names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = set(crd_names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                crd = (
                    self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                    or {}
                )
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    pending.discard(name)
            if pending:
                time.sleep(0.5)
        if pending:
            raise RuntimeError(f"CRDs not established after {timeout}s: {sorted(pending)}")

    def wait_for(self, path: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.get(path)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear within {timeout}s")
            time.sleep(0.5)

    def request_token(self, namespace: str, service_account: str, seconds: int) -> str:
        response = self.http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        if response.status_code >= 300:
            raise RuntimeError(
                f"TokenRequest for {namespace}/{service_account} failed: {response.text}"
            )
        return str(response.json()["status"]["token"])
