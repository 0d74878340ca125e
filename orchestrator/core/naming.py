"""Deterministic workflow names and the labels that identify our workflows."""

from __future__ import annotations

import hashlib

from orchestrator import API_GROUP

LABEL_ONBOARDING = f"{API_GROUP}/onboarding"
LABEL_STEP = f"{API_GROUP}/step"
LABEL_ATTEMPT = f"{API_GROUP}/attempt"
LABEL_MANAGED_BY = f"{API_GROUP}/managed-by"
LABEL_INCARNATION = f"{API_GROUP}/incarnation"

#: Workflow names become pod-name prefixes and label values: keep them short.
MAX_NAME = 63


def workflow_name(onboarding: str, incarnation: str, step: str, attempt: int) -> str:
    """Name of the workflow for one step attempt.

    The same inputs always give the same name, so a resubmission after a crash
    or a lost answer meets ``409 AlreadyExists`` instead of running twice. The
    incarnation keeps a re-created onboarding of the same name from adopting
    its predecessor's workflows. Long names are cut and suffixed with a hash.
    """
    name = f"{onboarding}-{step}-{incarnation}-{attempt}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    tail = f"-{attempt}"
    head = name[: MAX_NAME - len(digest) - len(tail) - 1].rstrip("-")
    return f"{head}-{digest}{tail}"


def workflow_labels(
    *, onboarding: str, incarnation: str, step: str, attempt: int, daemon: str
) -> dict[str, str]:
    return {
        LABEL_ONBOARDING: onboarding,
        LABEL_INCARNATION: incarnation,
        LABEL_STEP: str(step),
        LABEL_ATTEMPT: str(attempt),
        LABEL_MANAGED_BY: daemon,
    }


def in_flight_selector(*, daemon: str, onboardings: list[str]) -> str:
    """Label selector for the workflows of the given onboardings, ours only."""
    names = ",".join(sorted(set(onboardings)))
    return f"{LABEL_MANAGED_BY}={daemon},{LABEL_ONBOARDING} in ({names})"
