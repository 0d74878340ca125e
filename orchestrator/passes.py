"""What the parts of one reconcile pass share: the knobs, the pass's outcome, the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestrator.planning import Limits

#: our deadline trails the workflow's own activeDeadlineSeconds by this much
DEADLINE_GRACE = timedelta(seconds=60)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Tuning:
    """The reconciler's knobs (from ``settings.Settings``)."""

    daemon_id: str = "orchestrator"
    step_timeout_seconds: int = 1800
    limits: Limits = field(default_factory=Limits)


@dataclass
class PassResult:
    cluster: str
    examined: int = 0
    listed: bool = False
    submitted: int = 0
    errors: int = 0
    #: why the cluster stopped answering in this pass; the rest of the pass does not call it
    down: str | None = None
