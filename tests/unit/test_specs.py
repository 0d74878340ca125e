"""Which spec an onboarding runs with (``core.specs``): the declared one, the stored one
when a change was refused, none once it is no longer wanted."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from orchestrator.config.configs import DeletionPolicy, OnboardingSpec
from orchestrator.config.desired import DesiredStateSource
from orchestrator.core.specs import Specs
from orchestrator.records import OnboardingRecord, Source, State
from tests.unit.test_planning import CHANGED, ORPHAN, SPEC, record

MOVED_SUBDOMAIN = OnboardingSpec.model_validate(
    {**SPEC.model_dump(by_alias=True), "subaccount": {"displayName": "A",
                                                      "subdomain": "team-b", "region": "eu10"}}
)  # fmt: skip


@dataclass
class Desired:
    """What ``Specs`` reads of the desired state: the declared onboardings and their
    generation."""

    onboardings: dict[str, Any] = field(default_factory=dict)
    generation: int = 1

    @property
    def state(self) -> Any:
        return SimpleNamespace(onboardings=self.onboardings)

    def declare(self, spec: OnboardingSpec) -> None:
        self.onboardings = {"team-a": SimpleNamespace(spec=spec)}
        self.generation += 1


def specs(declared: OnboardingSpec | None) -> tuple[Specs, Desired]:
    desired = Desired()
    if declared is not None:
        desired.declare(declared)
    return Specs(cast(DesiredStateSource, desired)), desired


EXISTS = {"inventory": ["create-subaccount"]}


@pytest.mark.parametrize(
    ("state", "fields", "declared", "runs", "refused"),
    [
        pytest.param(State.READY, EXISTS, SPEC, SPEC, None, id="unchanged"),
        pytest.param(State.READY, EXISTS, CHANGED, CHANGED, None, id="a-mutable-change-runs"),
        pytest.param(State.READY, EXISTS, MOVED_SUBDOMAIN, SPEC, "spec.subaccount.subdomain",
                     id="an-immutable-change-keeps-the-stored-spec"),
        pytest.param(State.PENDING, {}, MOVED_SUBDOMAIN, MOVED_SUBDOMAIN, None,
                     id="any-change-while-nothing-exists"),
        pytest.param(State.READY, EXISTS, None, None, None, id="no-longer-declared"),
    ],
)  # fmt: skip
def test_the_spec_a_file_declared_onboarding_runs_with(
    state: State,
    fields: dict[str, Any],
    declared: OnboardingSpec | None,
    runs: OnboardingSpec | None,
    refused: str | None,
) -> None:
    resolver, _ = specs(declared)
    spec, why = resolver.effective(record(state, **fields))
    assert spec == runs
    if refused is None:
        assert why is None
        assert spec is declared  # the declared object itself, not a copy
    else:
        assert why is not None
        assert why.startswith(f"{refused} cannot change")


def api_record(state: State, **fields: Any) -> OnboardingRecord:
    made = record(state, spec=CHANGED, **fields)
    made.source = Source.API
    return made


def test_an_api_onboarding_runs_its_stored_spec_until_removed() -> None:
    resolver, _ = specs(None)
    assert resolver.effective(api_record(State.READY)) == (CHANGED, None)
    assert resolver.effective(api_record(State.DELETED)) == (None, None)
    assert resolver.effective(api_record(State.READY, offboarding=True)) == (None, None)


def test_whether_the_record_holds_the_declared_spec_follows_each_generation() -> None:
    resolver, desired = specs(SPEC)
    holding_spec = record(State.READY)
    assert resolver.runs_with(holding_spec, SPEC)
    assert resolver.fingerprint(holding_spec, SPEC) == SPEC.fingerprint()
    # an equal spec not declared in the files (made for one call) is never taken as held
    assert not resolver.runs_with(holding_spec, SPEC.model_copy())
    desired.declare(CHANGED)
    assert not resolver.runs_with(holding_spec, CHANGED)
    assert resolver.fingerprint(holding_spec, CHANGED) == CHANGED.fingerprint()
    assert resolver.runs_with(record(State.READY, spec=CHANGED), CHANGED)


def test_a_record_moved_to_another_namespace_does_not_hold_the_spec() -> None:
    resolver, _ = specs(SPEC)
    elsewhere = record(State.READY)
    elsewhere.namespace = "team-b"
    assert not resolver.runs_with(elsewhere, SPEC)


@pytest.mark.parametrize(
    ("spec", "offboards"), [(SPEC, True), (ORPHAN, False)], ids=["delete", "orphan"]
)
def test_removing_the_declaration_offboards_only_under_the_delete_policy(
    spec: OnboardingSpec, offboards: bool
) -> None:
    assert ORPHAN.deletion_policy == DeletionPolicy.ORPHAN
    assert Specs.offboards(record(State.READY, spec=spec)) is offboards
