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

if TYPE_CHECKING:
    from orchestrator.records import OnboardingRecord


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One forward step and its compensation (None: ``compensation: none``)."""

    name: str
    compensation: str | None


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
    """The plan ``record`` runs. The one place that says it: every onboarding runs the
    built-in plan until onboardings name their pipeline (``spec.pipeline``, issue 15)."""
    return SERVICE_BROKER_PROXY
