"""The credentials' Secrets the steps write (the platform's in the target namespace, the
SAP BTP Service Operator's access in its namespace), through the Kubernetes API.

Each call builds its own ``ApiClient`` from the kubeconfig named by
``KUBECONFIG`` (its first file), else from the pod's in-cluster
ServiceAccount; the process-wide default configuration of the kubernetes
client is never loaded or changed. Failures leave as ``TemporaryError``
(unreachable, 429, 5xx) or ``PermanentError`` (refused: RBAC, invalid);
``ApiException`` is not chained (it can hold the request's headers).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError as Urllib3Error

from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.logs import register_secret
from orchestrator.redaction import register_kube_credentials, remote_message

T = TypeVar("T")

SECRET_KEYS = ("username", "password", "sm-url", "platform-id")


@contextmanager
def api_client() -> Iterator[client.ApiClient]:
    """A client of its own for one call: KUBECONFIG if set, else in-cluster."""
    try:
        paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        if paths:
            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=paths[0], persist_config=False
            )
        else:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            api = client.ApiClient(configuration)
    except (ConfigException, OSError) as exc:
        raise PermanentError(
            f"no Kubernetes access (KUBECONFIG or in-cluster): {remote_message(str(exc))}",
            reason="NoKubeconfig",
        ) from None
    # the pod's token (or the kubeconfig's credentials): masked in every log line
    register_kube_credentials(api.configuration)
    try:
        yield api
    finally:
        api.close()


def _kube(what: str, call: Callable[[client.CoreV1Api], T], *, absent_ok: bool = False) -> T | None:
    """Run ``call`` on the core API; ``None`` for a 404 when ``absent_ok``."""
    return kube_call(what, lambda api: call(client.CoreV1Api(api)), absent_ok=absent_ok)


def kube_call(
    what: str, call: Callable[[client.ApiClient], T], *, absent_ok: bool = False
) -> T | None:
    """Run ``call`` with a client of its own; translate the client's failures into the
    project's errors; ``None`` for a 404 when ``absent_ok``."""
    with api_client() as api:
        try:
            return call(api)
        except ApiException as exc:
            status = exc.status or 0
            if status == 404 and absent_ok:
                return None
            message = f"kubernetes: {what}: {status} {remote_message(exc.reason, limit=100)}"
            message = message.rstrip()
            if status in (429,) or status >= 500 or status == 0:
                raise TemporaryError(message, reason="KubernetesUnavailable") from None
            if status == 409:
                raise TemporaryError(message, reason="Conflict") from None
            reason = "KubernetesForbidden" if status in (401, 403) else "KubernetesRejected"
            raise PermanentError(message, reason=reason) from None
        except (Urllib3Error, OSError) as exc:
            raise TemporaryError(
                f"kubernetes: {what}: {type(exc).__name__}", reason="KubernetesUnavailable"
            ) from None


def read_secret(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's data, decoded; ``None`` when there is no such Secret."""
    secret = _kube(
        f"read Secret {namespace}/{name}",
        lambda core: core.read_namespaced_secret(name, namespace),
        absent_ok=True,
    )
    if secret is None:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    for key in ("username", "password"):
        register_secret(data.get(key))
    return data


def secret_metadata(namespace: str, name: str) -> client.V1ObjectMeta | None:
    """The Secret's metadata (labels, annotations), never its data; ``None`` when absent."""
    secret = _kube(
        f"read Secret {namespace}/{name}",
        lambda core: core.read_namespaced_secret(name, namespace),
        absent_ok=True,
    )
    return None if secret is None else secret.metadata


def labelled_secrets(namespace: str, selector: str) -> list[client.V1ObjectMeta]:
    """The metadata of the namespace's Secrets that ``selector`` (a label selector) selects."""
    found = _kube(
        f"list Secrets in {namespace}",
        lambda core: core.list_namespaced_secret(namespace, label_selector=selector),
    )
    items = found.items if found is not None else []
    return [secret.metadata for secret in items if secret.metadata is not None]


def ensure_namespace(namespace: str, *, labels: dict[str, str]) -> None:
    """Create the namespace if it is missing.

    Without the right to read namespaces (RBAC limited to the tenant
    namespaces, which then exist already) this does nothing: the Secret's
    write will say whether the namespace is there.
    """
    try:
        exists = _kube(
            f"read Namespace {namespace}",
            lambda core: core.read_namespace(namespace),
            absent_ok=True,
        )
    except PermanentError as exc:
        if exc.reason == "KubernetesForbidden":
            return
        raise
    if exists is not None:
        return
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace, labels=labels))
    try:
        _kube(f"create Namespace {namespace}", lambda core: core.create_namespace(body))
    except TemporaryError as exc:
        if exc.reason != "Conflict":  # created meanwhile: fine
            raise


def write_secret(
    namespace: str,
    name: str,
    data: dict[str, str],
    *,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> str:
    """Create the Secret, or replace its data; ``"created"`` or ``"updated"``."""
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name, namespace=namespace, labels=labels, annotations=annotations
        ),
        type="Opaque",
        string_data=data,
    )
    existing = _kube(
        f"read Secret {namespace}/{name}",
        lambda core: core.read_namespaced_secret(name, namespace),
        absent_ok=True,
    )
    if existing is None:
        try:
            _kube(
                f"create Secret {namespace}/{name}",
                lambda core: core.create_namespaced_secret(namespace, body),
            )
            return "created"
        except TemporaryError as exc:
            if exc.reason != "Conflict":
                raise
    # ``replace`` drops keys we no longer write, unlike a patch; stringData wins over data.
    body.data = None
    _kube(
        f"replace Secret {namespace}/{name}",
        lambda core: core.replace_namespaced_secret(name, namespace, body),
    )
    return "updated"


def delete_secret(namespace: str, name: str) -> bool:
    """Delete the Secret; ``False`` when it was not there."""
    result = _kube(
        f"delete Secret {namespace}/{name}",
        lambda core: core.delete_namespaced_secret(name, namespace),
        absent_ok=True,
    )
    return result is not None
