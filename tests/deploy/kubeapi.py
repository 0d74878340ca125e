"""The Kubernetes REST calls the deploy tests make: discovery, dry runs, tokens, rules reviews.

Spoken over httpx to a local cluster's real kube-apiserver, as its admin
(client certificate) or as a ServiceAccount (bearer token), with the cluster
CA verified.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.controlplane import cluster as controlplane
from tests.controlplane.kube import ssl_context


@dataclass(frozen=True)
class Resource:
    path: str  # /api/v1 or /apis/GROUP/VERSION
    plural: str
    namespaced: bool

    def collection(self, namespace: str | None) -> str:
        if self.namespaced:
            return f"{self.path}/namespaces/{namespace}/{self.plural}"
        return f"{self.path}/{self.plural}"


class KubeAPI:
    """One identity on one local cluster."""

    def __init__(self, cluster: controlplane.Cluster, *, token: str | None = None) -> None:
        self.cluster = cluster
        ca = cluster.pki / "ca.crt"
        if token is None:
            verify = ssl_context(ca, cluster.pki / "admin.crt", cluster.pki / "admin.key")
            headers = {}
        else:
            verify = ssl_context(ca)
            headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(
            base_url=cluster.apiserver_url, verify=verify, headers=headers, timeout=30
        )
        self._resources: dict[tuple[str, str], Resource] = {}

    def close(self) -> None:
        self.http.close()

    # --- discovery and generic calls -----------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            answer = self.http.get(path)
            answer.raise_for_status()
            for item in answer.json()["resources"]:
                if "/" not in item["name"]:
                    self._resources[(api_version, item["kind"])] = Resource(
                        path, item["name"], item["namespaced"]
                    )
        try:
            return self._resources[key]
        except KeyError:
            raise LookupError(f"the API server does not serve {api_version} {kind}") from None

    def object_path(self, obj: dict[str, Any]) -> str:
        resource = self.resource(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        return f"{resource.collection(metadata.get('namespace'))}/{metadata['name']}"

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> httpx.Response:
        resource = self.resource(obj["apiVersion"], obj["kind"])
        params = {"dryRun": "All"} if dry_run else {}
        return self.http.post(
            resource.collection(obj["metadata"].get("namespace")), json=obj, params=params
        )

    def get(self, path: str) -> dict[str, Any] | None:
        answer = self.http.get(path)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def delete(self, path: str, **params: str) -> None:
        answer = self.http.delete(path, params=params)
        if answer.status_code not in (200, 202, 404):
            answer.raise_for_status()

    def wait_gone(self, path: str, *, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while self.get(path) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} still exists after {seconds:g}s")
            time.sleep(0.3)

    # --- namespaces, tokens, reviews --------------------------------------------------

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        }
        answer = self.create(body)
        assert answer.status_code == 201, answer.text

    def delete_namespace(self, name: str) -> None:
        self.delete(f"/api/v1/namespaces/{name}")

    def request_token(self, namespace: str, service_account: str, *, seconds: int = 3600) -> str:
        answer = self.http.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["status"]["token"])

    def rules_review(self, namespace: str) -> dict[str, Any]:
        """What this identity may do in ``namespace`` (a SelfSubjectRulesReview)."""
        answer = self.http.post(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            json={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": namespace},
            },
        )
        assert answer.status_code == 201, answer.text
        status: dict[str, Any] = answer.json()["status"]
        assert not status.get("incomplete"), status.get("evaluationError")
        return status


def token_kubeconfig(cluster: controlplane.Cluster, token: str) -> str:
    """A kubeconfig that reaches ``cluster`` with ``token`` (the CA embedded)."""
    ca = base64.b64encode((cluster.pki / "ca.crt").read_bytes()).decode()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster.name,
                    "cluster": {
                        "server": cluster.apiserver_url,
                        "certificate-authority-data": ca,
                    },
                }
            ],
            "users": [{"name": "identity", "user": {"token": token}}],
            "contexts": [
                {"name": cluster.name, "context": {"cluster": cluster.name, "user": "identity"}}
            ],
            "current-context": cluster.name,
        }
    )


def write_private(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }
