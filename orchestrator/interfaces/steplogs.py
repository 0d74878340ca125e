"""The logs of a step's pods, for ``orchestrator logs``: through the cluster's Argo Server
(its workflow log stream) or, for a cluster reached through its Kubernetes API alone,
the pods' own logs there.

The CLI reaches the cluster as the daemon does, with what the daemon's config
directory names (the Argo token and CA, the kubeconfig); whatever stands in the way
is a ``LogsUnavailable`` that says what and where else to look.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx

from orchestrator.argo.credentials import tls_verification
from orchestrator.config.configs import Cluster
from orchestrator.errors import OrchestratorError
from orchestrator.kube.clients import Apis, KubeAccess
from orchestrator.redaction import remote_message

#: the container of a step's pod that runs the step (Argo's own are init and wait)
CONTAINER = "main"
#: the label Argo puts on each pod of a workflow
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"


class LogsUnavailable(Exception):
    """The logs cannot be had from here; the message says why."""


def step_logs(cluster: Cluster, workflow: str) -> Iterator[tuple[str, str]]:
    """(pod, line) of each log line of the workflow's pods, as the cluster gives them."""
    if cluster.spec.argo.server is not None:
        yield from _from_argo_server(cluster, workflow)
    elif cluster.spec.kubeconfig is not None:
        yield from _from_kubernetes(cluster, workflow)
    else:
        raise LogsUnavailable(f"cluster {cluster.metadata.name} names no way to reach it")


def _token(cluster: Cluster) -> str | None:
    argo = cluster.spec.argo
    if argo.token_file is not None:
        try:
            return Path(argo.token_file).read_text(encoding="utf-8").strip() or None
        except OSError as error:
            raise LogsUnavailable(
                f"cannot read the Argo token of cluster {cluster.metadata.name}"
                f" ({argo.token_file}): {error.strerror}"
            ) from None
    if argo.token_env is not None:
        token = os.environ.get(argo.token_env)
        if not token:
            raise LogsUnavailable(
                f"the Argo token of cluster {cluster.metadata.name} is in ${argo.token_env},"
                " which is not set here"
            )
        return token
    if cluster.spec.kubeconfig is not None:
        raise LogsUnavailable(
            f"the daemon mints the Argo token of cluster {cluster.metadata.name} (TokenRequest);"
            " the CLI does not"
        )
    return None


def _from_argo_server(cluster: Cluster, workflow: str) -> Iterator[tuple[str, str]]:
    argo = cluster.spec.argo
    server = str(argo.server).rstrip("/")
    token = _token(cluster)
    try:
        verify = tls_verification(
            ca_file=argo.ca_file, insecure_skip_verify=argo.insecure_skip_verify
        )
    except (OSError, ValueError) as error:
        raise LogsUnavailable(f"the CA of cluster {cluster.metadata.name}: {error}") from None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = f"{server}/api/v1/workflows/{argo.namespace}/{workflow}/log"
    params = {"logOptions.container": CONTAINER}
    secrets = (token,) if token else ()
    try:
        with (
            httpx.Client(verify=verify, timeout=cluster.spec.request_timeout_seconds) as http,
            http.stream("GET", path, params=params, headers=headers) as answer,
        ):
            if not answer.is_success:
                answer.read()
                raise LogsUnavailable(
                    f"the Argo Server of cluster {cluster.metadata.name} answered"
                    f" {answer.status_code}: {_message(answer.text, secrets)}"
                )
            for line in answer.iter_lines():
                entry = _entry(line, secrets)
                if entry is not None:
                    yield entry
    except httpx.HTTPError as error:
        raise LogsUnavailable(
            f"cannot reach the Argo Server of cluster {cluster.metadata.name} ({server}):"
            f" {remote_message(str(error) or type(error).__name__, secrets=secrets)}"
        ) from None


def _message(text: str, secrets: tuple[str, ...]) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        text = str(body["message"])
    return remote_message(text.strip() or "no reason given", secrets=secrets)


def _entry(line: str, secrets: tuple[str, ...]) -> tuple[str, str] | None:
    """One line of Argo's log stream: ``{"result": {"podName": ..., "content": ...}}``."""
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if isinstance(data.get("error"), dict):
        message = remote_message(str(data["error"].get("message", "")), secrets=secrets)
        raise LogsUnavailable(f"the Argo Server stopped the log stream: {message}")
    result = data.get("result")
    if not isinstance(result, dict):
        return None
    return str(result.get("podName") or "-"), str(result.get("content") or "")


def _from_kubernetes(cluster: Cluster, workflow: str) -> Iterator[tuple[str, str]]:
    access = KubeAccess.for_cluster(cluster)
    namespace = cluster.spec.argo.namespace
    try:
        pods = access.call_sync(
            "list_pods",
            workflow,
            lambda k: k.core.list_namespaced_pod(
                namespace, label_selector=f"{WORKFLOW_LABEL}={workflow}", _request_timeout=k.timeout
            ),
        )
        for pod in pods.items:
            name = str(pod.metadata.name) if pod.metadata is not None else ""
            for line in _pod_log(access, name, namespace).splitlines():
                yield name, line
    except OrchestratorError as error:
        raise LogsUnavailable(
            f"the Kubernetes API of cluster {cluster.metadata.name}: {error}"
        ) from None
    finally:
        access.close()


def _pod_log(access: KubeAccess, pod: str, namespace: str) -> str:
    def read(k: Apis) -> str:
        return str(
            k.core.read_namespaced_pod_log(
                pod, namespace, container=CONTAINER, _request_timeout=k.timeout
            )
            or ""
        )

    return access.call_sync("read_pod_log", pod, read)
