"""The order of an onboarding's steps, as the state machine and the planner need it: pure.

A ``StepPlan`` is what the core knows of a pipeline: its forward steps in order and what
undoes each. Templates, parameters and deadlines are the pipeline's business, not the
core's. A forward step with ``compensation: none`` has nothing to undo, so it never
enters an onboarding's inventory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.errors import Conflict

if TYPE_CHECKING:
    from orchestrator.records import OnboardingRecord


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One forward step and its compensation (None: ``compensation: none``), each with the
    attempts the pipeline gives it (None: the daemon's setting)."""

    name: str
    compensation: str | None
    attempts: int | None = None
    compensation_attempts: int | None = None


class UnknownPipeline(Conflict):
    """A record names a pipeline that is neither built in nor declared in the files: nothing
    is done for it (an on-call action is refused) until the pipeline is declared again."""


@dataclass(frozen=True)
class StepPlan:
    """The forward steps of a pipeline in order, each with what undoes it."""

    name: str
    steps: tuple[PlannedStep, ...]
    _order: dict[str, int] = field(init=False, repr=False, compare=False)
    _undoes: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        compensations = [s.compensation for s in self.steps if s.compensation is not None]
        if not names:
            raise ValueError(f"plan {self.name!r} has no steps")
        if len(set(names + compensations)) != len(names) + len(compensations):
            raise ValueError(f"plan {self.name!r} names a step twice: {names + compensations}")
        # lookups by name: the planner asks these for every onboarding on every pass
        object.__setattr__(self, "_order", {n: i for i, n in enumerate(names)})
        undoes = {s.compensation: s.name for s in self.steps if s.compensation is not None}
        object.__setattr__(self, "_undoes", undoes)

    @property
    def forward(self) -> tuple[str, ...]:
        """The forward steps' names, in order."""
        return tuple(s.name for s in self.steps)

    @property
    def first(self) -> str:
        return self.steps[0].name

    def next_step(self, step: str) -> str | None:
        """The forward step after ``step``, None after the last."""
        index = self._order[step] + 1
        return self.steps[index].name if index < len(self.steps) else None

    def compensation_of(self, step: str) -> str | None:
        """What undoes the forward step ``step``; None when nothing needs undoing."""
        return self.steps[self._order[step]].compensation

    def is_compensation(self, name: str) -> bool:
        return name in self._undoes

    def forward_of(self, compensation: str) -> str:
        """The forward step whose work ``compensation`` undoes."""
        return self._undoes[compensation]

    def has(self, name: str) -> bool:
        """Whether ``name`` is one of its steps or compensations."""
        return name in self._order or name in self._undoes

    def attempts_of(self, name: str) -> int | None:
        """The attempts the pipeline gives the step or compensation ``name``; None: the
        daemon's setting."""
        if name in self._undoes:
            return self.steps[self._order[self._undoes[name]]].compensation_attempts
        return self.steps[self._order[name]].attempts

    def unknown(self, inventory: Iterable[str]) -> list[str]:
        """The inventory's steps this plan does not have (its pipeline changed since)."""
        return [name for name in inventory if name not in self._order]

    def compensations_for(self, inventory: Iterable[str]) -> list[str]:
        """The compensations for every forward step in ``inventory``, latest first.

        A step that timed out may have half-run, so "started" (not "succeeded") is
        what puts a step in the inventory and earns it a compensation.
        """
        started = set(inventory)
        return [
            s.compensation
            for s in reversed(self.steps)
            if s.name in started and s.compensation is not None
        ]

    def inventory_order(self, steps: Iterable[str]) -> list[str]:
        """``steps`` (forward step names) in plan order, each once."""
        wanted = set(steps)
        return [s.name for s in self.steps if s.name in wanted]


#: today's steps (the ``service-broker-proxy`` pipeline). The names are those of the
#: workflows and labels of existing onboardings: they must not change.
SERVICE_BROKER_PROXY = StepPlan(
    name="service-broker-proxy",
    steps=(
        PlannedStep("create-subaccount", compensation="delete-subaccount"),
        PlannedStep("register-platform", compensation="unregister-platform"),
        PlannedStep("install-proxy", compensation="uninstall-proxy"),
    ),
)


def plan_for(record: OnboardingRecord) -> StepPlan:
    """The plan ``record`` runs: that of the pipeline its spec names (``spec.pipeline``,
    default ``service-broker-proxy``). Raises ``UnknownPipeline`` for a pipeline that is not
    declared (any more)."""
    # imported here: the pipelines are built from the config models and the package's data
    from orchestrator.config.pipelines import pipeline_for

    return pipeline_for(record).plan
