"""The project's own errors, typed by what happens next.

- ``TemporaryError``: retry later, after ``delay`` seconds if the cause said so.
- ``PermanentError``: retrying the same thing cannot help; give up and compensate.
- ``ConfigError``: a desired-state file is wrong; nothing running changes.

Adapters translate their library's exceptions into these at the boundary, so no
``httpx`` or database exception travels further. ``reason`` is a short CamelCase
word that becomes a status reason and a metric label; ``str(error)`` is for
humans and never contains a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


class OrchestratorError(Exception):
    """Base of every error the project raises on purpose."""

    reason: str = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TemporaryError(OrchestratorError):
    """Retry later; ``delay`` is the wait the cause asked for, if any."""

    reason = "Temporary"

    def __init__(
        self, message: str, *, reason: str | None = None, delay: float | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.delay = delay


class PermanentError(OrchestratorError):
    """Retrying the same request cannot succeed."""

    reason = "Permanent"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a desired-state file, located as precisely as known."""

    file: str
    message: str
    document: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.document:
            where += f": {self.document}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class ConfigError(OrchestratorError):
    """The desired state cannot be loaded; ``problems`` lists every error found."""

    reason = "InvalidConfig"

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems) or "invalid configuration")


class NotFound(OrchestratorError):
    """The thing asked for does not exist."""

    reason = "NotFound"


class Conflict(OrchestratorError):
    """The request conflicts with the current state (exists already, changed meanwhile)."""

    reason = "Conflict"


class ChangedMeanwhile(Conflict):
    """The record was saved by someone else since it was read (its version moved on)."""


class NotLeading(OrchestratorError):
    """This replica does not lead (any more): it must not act. Raised before a call to a
    cluster when the lease was not renewed in time, and by the store when a write names
    an epoch that is no longer the leader's (a deposed leader that woke up)."""

    reason = "NotLeading"


class ClusterUnavailable(TemporaryError):
    """A cluster did not answer as it should (down, slow, refusing our credentials):
    every call to it may fail the same way for a while."""

    reason = "ClusterUnavailable"


# --- Workflow engine (Argo) errors -------------------------------------------------


class ArgoError(OrchestratorError):
    """An Argo request failed; names the cluster, never the token."""

    reason = "ArgoError"

    def __init__(
        self,
        message: str,
        *,
        cluster: str,
        status: int | None = None,
        code: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(f"cluster {cluster}: {message}", reason=reason)
        self.cluster = cluster
        self.status = status
        self.code = code


class WorkflowNotFound(ArgoError, NotFound):
    reason = "NotFound"


class WorkflowExists(ArgoError, Conflict):
    reason = "AlreadyExists"


class ArgoUnavailable(ArgoError, ClusterUnavailable):
    """5xx, connection refused, timeout: the cluster may come back."""

    reason = "Unavailable"

    def __init__(
        self,
        message: str,
        *,
        cluster: str,
        status: int | None = None,
        code: int | None = None,
        reason: str | None = None,
        delay: float | None = None,
    ) -> None:
        ArgoError.__init__(self, message, cluster=cluster, status=status, code=code, reason=reason)
        self.delay = delay


class ArgoRateLimited(ArgoUnavailable):
    reason = "RateLimited"


class ArgoUnauthorized(ArgoUnavailable):
    """401/403: the token or RBAC is wrong; retried slowly, since an operator may fix it."""

    reason = "Unauthorized"


class ArgoInvalid(ArgoError, PermanentError):
    """400/422 or Argo's lint failure (500 with gRPC code 2 on create)."""

    reason = "Invalid"


class WatchExpired(TemporaryError):
    """The resourceVersion a watch resumed from is too old (410 Gone): watch afresh."""

    reason = "WatchExpired"
