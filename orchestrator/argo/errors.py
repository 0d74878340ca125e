"""Argo Server answers and transport failures, translated into the project's errors.

Argo Server is a gRPC gateway: an error body is ``{"code": <gRPC code>, "message": ...}``
next to an HTTP status. The status says most of what happens next; the gRPC code
separates the two kinds of HTTP 500 that matter (a validation error that older
servers answer as 500/Unknown, and "already finished" on stop).

Nothing here ever sees a request's headers, so no token can end up in a message;
the server's own words pass through ``remote_message`` (bounded, secrets masked, an
echoed body of ours cut) before they become part of one.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

from orchestrator.argo.connections import Answer, TimedOut, TransportError, Unreachable
from orchestrator.errors import (
    ArgoError,
    ArgoInvalid,
    ArgoRateLimited,
    ArgoUnauthorized,
    ArgoUnavailable,
    WorkflowExists,
    WorkflowNotFound,
)
from orchestrator.redaction import remote_message

# gRPC status codes that Argo Server puts into error bodies.
GRPC_UNKNOWN = 2
GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5
GRPC_ALREADY_EXISTS = 6
GRPC_PERMISSION_DENIED = 7
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_FAILED_PRECONDITION = 9
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16

#: Operations whose 500/Unknown or 500/InvalidArgument answer is a validation error.
VALIDATING_OPERATIONS = frozenset({"submit", "create_template", "update_template", "lint_template"})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def error_body(response: Answer) -> tuple[int | None, str]:
    """The gRPC code and message of an Argo error answer (best effort for non-Argo bodies)."""
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message") or data.get("error") or ""
        return (code if isinstance(code, int) else None), str(message)
    text = response.text.strip()
    return None, text or (response.reason_phrase or f"HTTP {response.status_code}")


def from_response(
    response: Answer,
    *,
    cluster: str,
    operation: str,
    subject: str,
    secrets: tuple[str, ...] = (),
) -> ArgoError:
    """The error an unsuccessful Argo answer means, typed by what happens next."""
    status = response.status_code
    code, raw = error_body(response)
    message = remote_message(raw, secrets=secrets)
    where = f"{operation} {subject}: HTTP {status}"
    if code is not None:
        where += f" (gRPC {code})"
    text = f"{where}: {message}" if message else where
    kwargs: dict[str, Any] = {"cluster": cluster, "status": status, "code": code}

    if status == 404:
        if operation == "submit":
            # Creating a workflow only answers 404 when its WorkflowTemplate (or the
            # namespace) is missing: the daemon re-applies templates, so retry later.
            return ArgoUnavailable(text, reason="TemplateNotFound", **kwargs)
        return WorkflowNotFound(text, **kwargs)
    if status == 409:
        return WorkflowExists(text, **kwargs)
    if status in (400, 422):
        return ArgoInvalid(text, **kwargs)
    if status in (401, 403):
        return ArgoUnauthorized(text, **kwargs)
    if status == 429:
        delay = parse_retry_after(response.headers.get("retry-after"))
        return ArgoRateLimited(text, delay=delay, **kwargs)
    if (
        status == 500
        and operation in VALIDATING_OPERATIONS
        and code in (GRPC_UNKNOWN, GRPC_INVALID_ARGUMENT)
    ):
        return ArgoInvalid(text, **kwargs)
    if status >= 500:
        delay = parse_retry_after(response.headers.get("retry-after"))
        return ArgoUnavailable(text, delay=delay, **kwargs)
    # Any other 4xx: the request itself is wrong; repeating it cannot help.
    return ArgoInvalid(text, **kwargs)


def is_already_finished(response: Answer) -> bool:
    """Whether a failed stop means "the workflow had already finished".

    Argo answers stopping a completed workflow with 500/Internal and
    ``cannot shutdown a completed workflow``; FailedPrecondition is accepted too.
    Other 500s stay errors, so a real server fault is never taken for success.
    """
    code, message = error_body(response)
    if code == GRPC_FAILED_PRECONDITION:
        return True
    return response.status_code == 500 and "completed workflow" in message.lower()


def from_transport(
    exc: TransportError,
    *,
    cluster: str,
    operation: str,
    subject: str,
    server: str,
    secrets: tuple[str, ...] = (),
) -> ArgoUnavailable:
    """The error a failed exchange (no HTTP answer) means: the cluster may come back."""
    detail = remote_message(str(exc) or type(exc).__name__, secrets=secrets)
    where = f"{operation} {subject}: {remote_message(server, secrets=secrets)}"
    if isinstance(exc, TimedOut):
        return ArgoUnavailable(f"{where}: timed out ({detail})", cluster=cluster, reason="Timeout")
    if exc.tls is not None:
        return ArgoUnavailable(
            f"{where}: TLS verification failed: {remote_message(exc.tls)}",
            cluster=cluster,
            reason="TLSVerificationFailed",
        )
    if isinstance(exc, Unreachable):
        return ArgoUnavailable(
            f"{where}: unreachable: {detail}", cluster=cluster, reason="Unreachable"
        )
    return ArgoUnavailable(f"{where}: {detail}", cluster=cluster, reason="Unavailable")
