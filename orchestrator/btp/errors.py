"""BTP errors, typed by what happens next (see ``orchestrator.errors``).

The transport raises these and nothing else: no httpx exception leaves the
adapter, and none is chained (it holds the request, and with it the bearer
token). Messages name the service, the method, the path and BTP's own error
text, never a credential.
"""

from __future__ import annotations

from orchestrator.errors import (
    Conflict,
    NotFound,
    OrchestratorError,
    PermanentError,
    TemporaryError,
)


class BtpError(OrchestratorError):
    """A BTP request failed; ``status`` is the HTTP status when there was an answer."""

    reason = "BtpError"

    def __init__(
        self, message: str, *, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.status = status


class BtpUnavailable(BtpError, TemporaryError):
    """429, 5xx, a timeout or a refused connection: worth trying again later."""

    reason = "BtpUnavailable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        delay: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        BtpError.__init__(self, message, status=status, reason=reason)
        self.delay = delay
        #: the request may have been carried out although no answer said so
        self.ambiguous = ambiguous


class BtpRejected(BtpError, PermanentError):
    """400, 401, 403, 422 and the other answers that the same request would get again."""

    reason = "BtpRejected"


class BtpNotFound(BtpRejected, NotFound):
    reason = "NotFound"


class BtpConflict(BtpRejected, Conflict):
    reason = "Conflict"


class BtpUnprocessable(BtpRejected):
    """422: Service Manager's answer while a platform's proxy is still connected."""

    reason = "Unprocessable"
