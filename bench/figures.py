"""From what the fake and ``/proc`` saw to the figures of issue 10, and the table. Pure."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.fake_argo import STATUS_CHECKS
from orchestrator.core.steps import FORWARD_STEPS

FIRST_STEP = FORWARD_STEPS[0].value
LAST_STEP = FORWARD_STEPS[-1].value
STEP_ORDER = {step.value: index for index, step in enumerate(FORWARD_STEPS)}


@dataclass(frozen=True)
class WorkflowEvent:
    """One workflow as the fake saw it: created (request arrival) and finished."""

    cluster: str
    name: str
    onboarding: str
    step: str
    created: float
    finished: float | None
    phase: str

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> WorkflowEvent:
        return cls(**{key: item[key] for key in cls.__dataclass_fields__})


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between the closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _by_onboarding(events: Iterable[WorkflowEvent]) -> dict[str, list[WorkflowEvent]]:
    grouped: dict[str, list[WorkflowEvent]] = defaultdict(list)
    for event in events:
        if event.step in STEP_ORDER:
            grouped[event.onboarding].append(event)
    for workflows in grouped.values():
        workflows.sort(key=lambda e: e.created)
    return grouped


def reactions(events: Iterable[WorkflowEvent]) -> list[float]:
    """Per finished step that has a next one: the next step's create minus the finish."""
    delays = []
    for workflows in _by_onboarding(events).values():
        for done, following in itertools.pairwise(workflows):
            if done.phase == "Succeeded" and done.finished is not None:
                delays.append(following.created - done.finished)
    return delays


def freed_slot_delays(events: Iterable[WorkflowEvent], max_concurrent: int) -> list[float]:
    """Per cluster, the k-th slot that frees (a last step finishing, in time order) is
    taken by the (max_concurrent + k)-th onboarding to start there: its first create
    minus that finish, while onboardings were still waiting."""
    finishes: dict[str, list[float]] = defaultdict(list)
    starts: dict[str, list[float]] = defaultdict(list)
    for workflows in _by_onboarding(events).values():
        first, last = workflows[0], workflows[-1]
        if first.step == FIRST_STEP:
            starts[first.cluster].append(first.created)
        if last.step == LAST_STEP and last.phase == "Succeeded" and last.finished is not None:
            finishes[last.cluster].append(last.finished)
    delays: list[float] = []
    for cluster, started in starts.items():
        waiting = sorted(started)[max_concurrent:]
        freed = sorted(finishes[cluster])
        delays.extend(s - f for s, f in zip(waiting, freed, strict=False))
    return delays


def completed_steps(events: Iterable[WorkflowEvent], *, until: float) -> int:
    return sum(
        1
        for e in events
        if e.phase == "Succeeded" and e.finished is not None and e.finished <= until
    )


def all_ready_floor(
    *, per_cluster: int, max_concurrent: int, steps: int, step_seconds: float
) -> float:
    """The least time from the first create to the last Ready on one cluster: its
    onboardings in waves of ``max_concurrent``, each through ``steps`` steps in a row,
    with no latency or reaction at all."""
    return math.ceil(per_cluster / max_concurrent) * steps * step_seconds


def operations(requests: Mapping[str, Mapping[str, int]]) -> Counter[str]:
    """Requests per operation, summed over the clusters."""
    total: Counter[str] = Counter()
    for counts in requests.values():
        total.update(counts)
    return total


@dataclass
class Side:
    """One column of the table: what was measured for the daemon or the poller."""

    wall: float | None = None
    reactions: list[float] = field(default_factory=list)
    freed: list[float] = field(default_factory=list)
    steps: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    cpu_per_transition: float | None = None
    settled_cpu: float | None = None
    readyz: float | None = None
    readyz_note: str = ""
    peak_rss: float | None = None
    #: appended to the settled CPU and peak RSS cells (the figures with ``--stored``)
    settled_note: str = ""
    rss_note: str = ""
    notes: list[str] = field(default_factory=list)

    def per_step(self, operations: Iterable[str] | None = None) -> float | None:
        if not self.steps:
            return None
        chosen = self.requests if operations is None else {o: self.requests[o] for o in operations}
        return sum(chosen.values()) / self.steps


GOALS = {
    "wall": "≤ 60 s, and never slower than the poller",
    "reaction": "≤ 0.2 s / ≤ 1 s",
    "freed": "≤ 0.2 s",
    "requests": "≤ 1.1, and status checks ≤ 1/20 of the poller's at 60 s step durations",
    "cpu": "≤ 3 ms",
    "settled": "≤ 0.01 of a core, independent of N",
    "readyz": "≤ 2 s",
    "rss": "≤ 200 MiB at 10,000 onboardings",
}


def _seconds(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f} s"


def _pair(values: Sequence[float]) -> str:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    if p50 is None or p99 is None:
        return "—"
    return f"{p50:.2f} s / {p99:.2f} s"


def _requests(side: Side, baseline: Side | None) -> str:
    total, checks = side.per_step(), side.per_step(STATUS_CHECKS)
    if total is None or checks is None:
        return "—"
    theirs = baseline.per_step(STATUS_CHECKS) if baseline and baseline is not side else None
    ratio = ""
    if theirs and checks:
        ratio = (
            f", 1/{theirs / checks:.1f} of the poller's"
            if theirs >= checks
            else f", {checks / theirs:.1f} times the poller's"
        )
    return f"{total:.2f} (status checks {checks:.2f}{ratio})"


def table(title: str, daemon: Side, poller: Side | None) -> str:
    """The rows of issue 10, daemon | poller | goal, as Markdown."""
    sides = [daemon] + ([poller] if poller else [])

    def row(label: str, goal: str, cell: Any) -> str:
        cells = [cell(side) for side in sides] + ([] if poller else ["(skipped)"])
        return f"| {label} | " + " | ".join(cells) + f" | {goal} |"

    median = percentile
    lines = [
        f"| {title} | daemon | naive poller | goal |",
        "|---|---|---|---|",
        row("all Ready (wall)", GOALS["wall"], lambda s: _seconds(s.wall)),
        row(
            "added reaction, workflow finished → next step submitted, p50 / p99",
            GOALS["reaction"],
            lambda s: _pair(s.reactions),
        ),
        row(
            "freed slot → next onboarding submitted, p50",
            GOALS["freed"],
            lambda s: _seconds(median(s.freed, 50), 2),
        ),
        row(
            "Argo requests per completed step",
            GOALS["requests"],
            lambda s: _requests(s, poller),
        ),
        row(
            "daemon CPU per transition",
            GOALS["cpu"],
            lambda s: "—" if s.cpu_per_transition is None else f"{s.cpu_per_transition:.1f} ms",
        ),
        row(
            "CPU while everything is settled",
            GOALS["settled"],
            lambda s: (
                "—" if s.settled_cpu is None else f"{s.settled_cpu:.3f} of a core{s.settled_note}"
            ),
        ),
        row(
            "start to `/readyz`",
            GOALS["readyz"],
            lambda s: "—" if s.readyz is None else f"{s.readyz:.2f} s{s.readyz_note}",
        ),
        row(
            "peak RSS",
            GOALS["rss"],
            lambda s: "—" if s.peak_rss is None else f"{s.peak_rss:.0f} MiB{s.rss_note}",
        ),
    ]
    return "\n".join(lines)


def requests_table(columns: Mapping[str, tuple[Counter[str], int | None]]) -> str:
    """Requests by operation: one column per phase, with the count per completed step
    where the phase completed steps."""
    names = sorted({op for counts, _ in columns.values() for op in counts})
    header = "| Argo requests by operation | " + " | ".join(columns) + " |"
    lines = [header, "|---|" + "---|" * len(columns)]

    def cell(counts: Counter[str], steps: int | None, operation: str | None) -> str:
        count = sum(counts.values()) if operation is None else counts[operation]
        if steps:
            return f"{count} ({count / steps:.2f}/step)"
        return str(count)

    for operation in [*names, None]:
        label = "**all**" if operation is None else operation
        if operation in STATUS_CHECKS:
            label += " (status check)"
        cells = [cell(counts, steps, operation) for counts, steps in columns.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
