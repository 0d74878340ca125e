"""Waiting for Service Manager's asynchronous operations (``Location`` of a 202)."""

from __future__ import annotations

from orchestrator.btp.servicemanager import ServiceManager
from orchestrator.errors import PermanentError, TemporaryError
from orchestrator.redaction import remote_message
from orchestrator.stepcommands.context import StepContext


def wait_operation(
    ctx: StepContext, sm: ServiceManager, operation: str, *, what: str, reason: str, permanent: bool
) -> None:
    """Poll ``operation`` until it ``succeeded``, or Service Manager forgot it (done).

    ``failed`` raises with Service Manager's own words and ``reason``: permanent
    when running the step again would meet the same (a create the broker
    refused), else transient (a delete, tried again by the next attempt).
    """
    ctx.wait_for(
        what, lambda: finished(sm, operation, what=what, reason=reason, permanent=permanent)
    )


def finished(
    sm: ServiceManager, operation: str, *, what: str, reason: str, permanent: bool
) -> bool | None:
    """True once the operation is over and succeeded; None while it is in progress."""
    state = sm.get_operation(operation)
    if state is None:  # forgotten once done
        return True
    if state.get("state") == "succeeded":
        return True
    if state.get("state") == "failed":
        errors = remote_message(
            "; ".join(
                str(e.get("description") or e.get("error")) for e in state.get("errors") or []
            )
        )
        error = PermanentError if permanent else TemporaryError
        raise error(f"{what} failed: {errors or 'no reason given'}", reason=reason)
    return None
