"""A small Argo Server REST client for the end-to-end tests.

It loads a ``Cluster`` document (as ``cluster-up`` writes it) and talks to
the Argo Server with the bearer token and CA named there, as the daemon does.
It is test scaffolding, deliberately independent of the daemon's own client,
so that the harness can be proven on its own.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

FINISHED = {"Succeeded", "Failed", "Error"}


class ArgoError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text}
        self.code = body.get("code")
        self.message = body.get("message", "")
        super().__init__(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} code={self.code} {self.message}"
        )


class ArgoAPI:
    def __init__(self, server: str, namespace: str, token: str, ca_file: Path) -> None:
        self.namespace = namespace
        self.http = httpx.Client(
            base_url=server,
            verify=ssl.create_default_context(cafile=str(ca_file)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    @classmethod
    def from_cluster_file(cls, path: Path, *, token: str | None = None) -> ArgoAPI:
        doc = yaml.safe_load(path.read_text())
        argo = doc["spec"]["argo"]
        return cls(
            argo["server"],
            argo["namespace"],
            token if token is not None else Path(argo["tokenFile"]).read_text().strip(),
            Path(argo["caFile"]),
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise ArgoError(response)
        body: dict[str, Any] = response.json() if response.content else {}
        return body

    def version(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/version")

    def create_template(self, template: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/api/v1/workflow-templates/{self.namespace}",
            json={"namespace": self.namespace, "template": template},
        )

    def lint_template(self, template: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/api/v1/workflow-templates/{self.namespace}/lint",
            json={"namespace": self.namespace, "template": template},
        )

    def delete_template(self, name: str) -> None:
        try:
            self._call("DELETE", f"/api/v1/workflow-templates/{self.namespace}/{name}")
        except ArgoError as exc:
            if exc.status_code != 404:
                raise

    def submit(
        self,
        template_name: str,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        parameters: list[str] | None = None,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if name:
            options["name"] = name
        if labels:
            options["labels"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if parameters:
            options["parameters"] = parameters
        return self._call(
            "POST",
            f"/api/v1/workflows/{self.namespace}/submit",
            json={
                "namespace": self.namespace,
                "resourceKind": "WorkflowTemplate",
                "resourceName": template_name,
                "submitOptions": options,
            },
        )

    def get_workflow(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/workflows/{self.namespace}/{name}")

    def delete_workflow(self, name: str) -> None:
        try:
            self._call("DELETE", f"/api/v1/workflows/{self.namespace}/{name}")
        except ArgoError as exc:
            if exc.status_code != 404:
                raise

    def wait_finished(self, name: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            workflow = self.get_workflow(name)
            if workflow.get("status", {}).get("phase") in FINISHED:
                return workflow
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"workflow {name} not finished after {timeout}s: {workflow.get('status', {})}"
                )
            time.sleep(0.5)
