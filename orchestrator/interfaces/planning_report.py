"""``orchestrator plan``: what the daemon would do next for each onboarding.

Reads the config and the database, asks no cluster and changes nothing (a
database that does not exist yet is not created). What the daemon recorded at
its last pass says why an onboarding waits: a back-off, a cluster that did not
answer, a refused edit, a failure waiting for on-call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from orchestrator.config.configs import OnboardingSpec
from orchestrator.config.loading import load_directory, rules_of
from orchestrator.config.settings import Settings
from orchestrator.core import stepplans
from orchestrator.core.passes import utcnow
from orchestrator.core.planning import IN_FLIGHT, Situation, decide, describe, immutable_change
from orchestrator.core.roster import new_record
from orchestrator.interfaces.explaining import cause
from orchestrator.interfaces.views import OnboardingView, state_and_step
from orchestrator.records import SETTLED, OnboardingRecord, Source, State


@dataclass(frozen=True)
class PlanLine:
    onboarding: str
    cluster: str
    state: str
    action: str
    detail: str


def _stored(db_url: str) -> list[OnboardingRecord]:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return []
    from orchestrator.store import open_store

    store = open_store(db_url)
    try:
        return store.list()
    finally:
        store.close()


def plan(settings: Settings) -> list[PlanLine]:
    desired = load_directory(settings.config_dir, rules_of(settings))
    now = utcnow()
    records = {r.name: r for r in _stored(settings.db_url)}
    for name, document in desired.onboardings.items():
        if name not in records:
            records[name] = new_record(document, now, source=Source.FILE)
    busy: dict[str, int] = {}
    for record in records.values():
        if record.state in IN_FLIGHT:
            busy[record.cluster] = busy.get(record.cluster, 0) + 1
    lines: list[PlanLine] = []
    for name in sorted(records):
        record = records[name]
        refused = None
        if record.source == Source.FILE:
            declared = desired.onboardings.get(name)
            spec = declared.spec if declared else None
        elif record.state == State.DELETED or record.offboarding:
            spec = None
        else:
            spec = OnboardingSpec.model_validate(record.spec)
        if spec is not None and (refused := immutable_change(record, spec)) is not None:
            # the same rule as the daemon's: the stored spec keeps running
            spec = OnboardingSpec.model_validate(record.spec)
        cluster = desired.clusters.get(record.cluster)
        limit = cluster.spec.max_concurrent if cluster else 0
        if refused is not None:
            action, detail = "refuse", refused
        elif record.workflow is not None and record.state not in SETTLED:
            action, detail = _in_flight(record, now=now)
        else:
            try:
                plan = stepplans.plan_for(record)
            except stepplans.UnknownPipeline as error:
                lines.append(PlanLine(name, record.cluster, record.state, "wait", str(error)))
                continue
            situation = Situation(
                record=record,
                desired=spec,
                observation=None,
                now=now,
                plan=plan,
                slot_available=busy.get(record.cluster, 0) < limit,
            )
            action, detail = describe(decide(situation))
            if action == "wait":
                detail = _waiting(record, detail, busy=busy.get(record.cluster, 0), limit=limit)
        state = state_and_step(record.state, record.step)
        lines.append(PlanLine(name, record.cluster, state, action, detail))
    return lines


def _in_flight(record: OnboardingRecord, *, now: datetime) -> tuple[str, str]:
    """A step's workflow is in flight: what the last pass found keeps it from moving, if
    anything (a back-off, a cluster that did not answer); else its phase is asked next."""
    if record.next_attempt_at is not None and record.next_attempt_at > now:
        until = record.next_attempt_at.isoformat(timespec="seconds")
        return "wait", f"backing off until {until}: {_first_line(record.last_error)}"
    if record.last_error:
        return "wait", f"the last pass could not go on: {_first_line(record.last_error)}"
    return "check", f"ask Argo for workflow {record.workflow} ({record.step}, in flight)"


def _waiting(record: OnboardingRecord, why: str, *, busy: int, limit: int) -> str:
    """What the onboarding waits for, as ``orchestrator explain`` says it when it says more
    than the planner (a failure's reason, who suspended it, the cluster's slots)."""
    now = utcnow()
    backing_off = record.next_attempt_at is not None and record.next_attempt_at > now
    if record.state == State.PENDING and busy >= limit and not backing_off:
        return (
            f"waits for a free slot: {busy} of {limit} (maxConcurrent) in flight on"
            f" {record.cluster}"
        )
    said = cause(OnboardingView.of(record), now=now)
    return said if said is not None and record.state in SETTLED else why


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else "-"
