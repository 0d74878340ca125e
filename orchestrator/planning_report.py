"""``orchestrator plan``: what the daemon would do next for each onboarding.

Reads the config and the database, asks no cluster and changes nothing (a
database that does not exist yet is not created).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from orchestrator.configs import OnboardingSpec
from orchestrator.loading import load_directory, rules_of
from orchestrator.planning import IN_FLIGHT, Situation, decide, describe, immutable_change
from orchestrator.reconciling import new_record, utcnow
from orchestrator.records import SETTLED, OnboardingRecord, Source, State
from orchestrator.settings import Settings


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
        if refused is not None:
            action, detail = "refuse", refused
        elif record.workflow is not None and record.state not in SETTLED:
            action, detail = "check", f"look at workflow {record.workflow} ({record.step})"
        else:
            cluster = desired.clusters.get(record.cluster)
            limit = cluster.spec.max_concurrent if cluster else 0
            situation = Situation(
                record=record,
                desired=spec,
                observation=None,
                now=now,
                slot_available=busy.get(record.cluster, 0) < limit,
            )
            action, detail = describe(decide(situation))
        lines.append(PlanLine(name, record.cluster, record.state.value, action, detail))
    return lines
