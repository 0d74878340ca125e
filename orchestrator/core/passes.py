"""What the parts of one reconcile pass share: the knobs, the pass's outcome, the clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestrator.core.planning import Limits
from orchestrator.records import SETTLED, OnboardingRecord, State

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
    #: the cluster answered a call in this pass (until then, calls go one at a time)
    answered: bool = False
    submitted: int = 0
    errors: int = 0
    #: why the cluster stopped answering in this pass; the rest of the pass does not call it
    down: str | None = None
    #: the cluster's onboardings per state once the pass is over (for the gauges)
    states: Counter[State] = field(default_factory=Counter)
    #: per unsettled state, when its longest-waiting onboarding entered it
    unsettled_since: dict[State, datetime] = field(default_factory=dict)
    #: whether those two were counted again in this pass (else: as after the last one)
    recounted: bool = True


class Tally:
    """What the state gauges count of one cluster's records, kept as they change: how
    many are in each state, and when each unsettled one entered its state."""

    def __init__(self, records: Iterable[OnboardingRecord] = ()) -> None:
        self.states: Counter[State] = Counter()
        #: per unsettled state: name -> since when it is in that state
        self._since: dict[State, dict[str, datetime]] = {}
        for record in records:
            self.add(record)

    def add(self, record: OnboardingRecord) -> None:
        self.states[record.state] += 1
        if record.state not in SETTLED:
            self._since.setdefault(record.state, {})[record.name] = counted_since(record)

    def remove(self, record: OnboardingRecord) -> None:
        self.states[record.state] -= 1
        if record.state not in SETTLED:
            self._since.get(record.state, {}).pop(record.name, None)

    def unsettled_since(self) -> dict[State, datetime]:
        """Per unsettled state, when its longest-waiting onboarding entered it."""
        return {state: min(since.values()) for state, since in self._since.items() if since}


def counted_since(record: OnboardingRecord) -> datetime:
    """Since when the gauges count the record in its state."""
    return record.state_since or record.updated_at
