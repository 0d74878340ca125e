"""Kubernetes client failures, translated into the project's errors at this boundary.

``ApiException`` and urllib3 errors never leave ``orchestrator.kube``: they are
turned into the ``KubeError`` family here and raised ``from None`` (an
``ApiException`` holds the response headers, a urllib3 error the request).
Messages name the cluster, the operation and what it acted on, then the HTTP
status and the Status reason; the Status message of the API server follows
through ``remote_message``: an admission webhook may quote the object it
refused (the synced BTP Secret with its data), so it is bounded, known secrets
are masked and an echoed body of ours is cut.

For the ``WorkflowEngine`` port the same failures become ``ArgoError``s with the
reasons ``ArgoClient`` uses (``as_argo_error``), so the daemon cannot tell the
two engines apart by their errors.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from orchestrator.argo.errors import parse_retry_after
from orchestrator.errors import (
    ArgoError,
    ArgoInvalid,
    ArgoRateLimited,
    ArgoUnauthorized,
    ArgoUnavailable,
    ClusterUnavailable,
    Conflict,
    NotFound,
    OrchestratorError,
    PermanentError,
    WorkflowExists,
    WorkflowNotFound,
)
from orchestrator.redaction import remote_message


class KubeError(OrchestratorError):
    """A Kubernetes request failed; names the cluster, never a credential."""

    reason = "KubernetesError"

    def __init__(
        self, message: str, *, cluster: str, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(f"cluster {cluster}: {message}", reason=reason)
        self.cluster = cluster
        self.status = status


class KubeUnavailable(KubeError, ClusterUnavailable):
    """5xx, timeout, connection refused: the cluster may come back."""

    reason = "Unavailable"

    def __init__(
        self,
        message: str,
        *,
        cluster: str,
        status: int | None = None,
        reason: str | None = None,
        delay: float | None = None,
    ) -> None:
        KubeError.__init__(self, message, cluster=cluster, status=status, reason=reason)
        self.delay = delay


class ClusterUnreachable(KubeUnavailable):
    """No answer at all: connection refused, unknown host, TLS failure, timeout."""

    reason = "ClusterUnreachable"


class KubeconfigInvalid(KubeUnavailable):
    """The kubeconfig cannot be read or used; retried, since an operator may fix it."""

    reason = "KubeconfigInvalid"


class KubeUnauthorized(KubeUnavailable):
    """401/403: the credentials or RBAC are wrong; retried slowly, an operator may fix it."""

    reason = "Unauthorized"


class KubeRateLimited(KubeUnavailable):
    reason = "RateLimited"


class KubeNotFound(KubeError, NotFound):
    reason = "NotFound"


class KubeConflict(KubeError, Conflict):
    """409: exists already (create) or changed meanwhile (update)."""

    reason = "AlreadyExists"


class KubeInvalid(KubeError, PermanentError):
    """400/422 and any other 4xx: the request itself is wrong."""

    reason = "Invalid"


def status_message(body: str | None) -> tuple[str | None, str]:
    """The ``reason`` and ``message`` of a Kubernetes ``Status`` answer (best effort)."""
    if not body:
        return None, ""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    reason = data.get("reason")
    return (reason if isinstance(reason, str) else None), str(data.get("message") or "")


def from_api_exception(
    *,
    status: int | None,
    body: str | None,
    headers: Any,
    cluster: str,
    operation: str,
    subject: str,
) -> KubeError:
    """The error an unsuccessful Kubernetes answer means, typed by what happens next."""
    status = status or 0
    k8s_reason, raw = status_message(body)
    where = f"{operation} {subject}: HTTP {status}"
    if k8s_reason:
        where += f" ({remote_message(k8s_reason, limit=64)})"
    message = remote_message(raw)
    text = f"{where}: {message}" if message else where
    retry_after = None
    if headers is not None:
        try:
            retry_after = parse_retry_after(headers.get("Retry-After"))
        except AttributeError:
            retry_after = None
    if status == 404:
        return KubeNotFound(text, cluster=cluster, status=status)
    if status == 409:
        reason = "AlreadyExists" if k8s_reason == "AlreadyExists" else "Conflict"
        return KubeConflict(text, cluster=cluster, status=status, reason=reason)
    if status in (401, 403):
        return KubeUnauthorized(text, cluster=cluster, status=status)
    if status == 429:
        return KubeRateLimited(text, cluster=cluster, status=status, delay=retry_after)
    if status >= 500 or status == 0:
        return KubeUnavailable(text, cluster=cluster, status=status, delay=retry_after)
    return KubeInvalid(text, cluster=cluster, status=status)


def from_transport(exc: Exception, *, cluster: str, operation: str, subject: str) -> KubeError:
    """The error a failed exchange (no HTTP answer) means: the cluster may come back."""
    # urllib3 comes with the kubernetes client, imported with the first access (see clients)
    from urllib3 import exceptions as urllib3_errors

    cause: BaseException = exc
    if isinstance(exc, urllib3_errors.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    where = f"{operation} {subject}"
    if isinstance(cause, urllib3_errors.NewConnectionError):  # before timeouts: it subclasses one
        detail = remote_message(str(cause) or type(cause).__name__)
        return ClusterUnreachable(f"{where}: unreachable: {detail}", cluster=cluster)
    if isinstance(cause, urllib3_errors.TimeoutError | TimeoutError):
        return ClusterUnreachable(
            f"{where}: timed out ({type(cause).__name__})", cluster=cluster, reason="Timeout"
        )
    if isinstance(cause, urllib3_errors.SSLError | ssl.SSLError):
        return ClusterUnreachable(
            f"{where}: TLS failed: {remote_message(str(cause))}",
            cluster=cluster,
            reason="TLSVerificationFailed",
        )
    if isinstance(cause, ConnectionError | urllib3_errors.ProtocolError | OSError):
        detail = remote_message(str(cause) or type(cause).__name__)
        return ClusterUnreachable(f"{where}: unreachable: {detail}", cluster=cluster)
    if isinstance(cause, urllib3_errors.HTTPError):
        return ClusterUnreachable(
            f"{where}: {remote_message(str(cause) or type(cause).__name__)}", cluster=cluster
        )
    return KubeUnavailable(f"{where}: {type(cause).__name__}", cluster=cluster)


#: What the ``ArgoClient`` calls an unreachable server, for the same metric label.
_ARGO_REASONS = {"ClusterUnreachable": "Unreachable", "Conflict": None, "AlreadyExists": None}


def as_argo_error(error: KubeError, *, operation: str) -> ArgoError:
    """The ``ArgoError`` the ``WorkflowEngine`` port raises for a Kubernetes failure."""
    message = str(error).removeprefix(f"cluster {error.cluster}: ")
    reason = _ARGO_REASONS.get(error.reason, error.reason)
    kwargs: dict[str, Any] = {"cluster": error.cluster, "status": error.status}
    if isinstance(error, KubeNotFound):
        if operation == "submit":
            # Creating a Workflow answers 404 only when the namespace or the CRD is missing.
            return ArgoUnavailable(message, reason="TemplateNotFound", **kwargs)
        return WorkflowNotFound(message, **kwargs)
    if isinstance(error, KubeConflict):
        return WorkflowExists(message, **kwargs)
    if isinstance(error, KubeInvalid):
        return ArgoInvalid(message, **kwargs)
    if isinstance(error, KubeUnauthorized):
        return ArgoUnauthorized(message, **kwargs)
    if isinstance(error, KubeRateLimited):
        return ArgoRateLimited(message, delay=error.delay, **kwargs)
    delay = error.delay if isinstance(error, KubeUnavailable) else None
    return ArgoUnavailable(message, reason=reason, delay=delay, **kwargs)
