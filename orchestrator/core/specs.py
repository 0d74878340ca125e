"""Which spec each onboarding runs with: the one declared for it (in files, or stored
through the API), unless a change of it was refused, and then the stored one."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from orchestrator.config.configs import DeletionPolicy, OnboardingSpec
from orchestrator.config.desired import DesiredStateSource
from orchestrator.core.planning import immutable_change
from orchestrator.records import OnboardingRecord, Source, State

#: declared specs whose dump is kept (the most recently used): more than are ever in
#: flight or offered a slot at once
DUMPS_KEPT = 1024

__all__ = ["Specs"]


class Specs:
    def __init__(self, desired: DesiredStateSource) -> None:
        self.desired = desired
        #: per generation of the desired state, each declared spec's dump (by its id;
        #: the spec is kept with it, so the id cannot be reused meanwhile)
        self._dumped: tuple[int, OrderedDict[int, tuple[OnboardingSpec, dict[str, Any], str]]] = (
            -1,
            OrderedDict(),
        )

    def effective(self, record: OnboardingRecord) -> tuple[OnboardingSpec | None, str | None]:
        """The spec to run and, when the desired one was refused, why.

        A refused change (a field naming an external resource, while something
        exists) never stops the current work: the stored spec keeps running.
        """
        desired = self.desired_for(record)
        if desired is None:
            return None, None
        if self.runs_with(record, desired):
            return desired, None  # nothing differs, so no immutable field either
        problem = immutable_change(record, desired)
        if problem is None:
            return desired, None
        return OnboardingSpec.model_validate(record.spec), problem

    def desired_for(self, record: OnboardingRecord) -> OnboardingSpec | None:
        """The spec declared for the onboarding; None once it is no longer wanted."""
        if record.source == Source.FILE:
            document = self.desired.state.onboardings.get(record.name)
            return document.spec if document else None
        if record.state == State.DELETED or record.offboarding:
            return None
        return OnboardingSpec.model_validate(record.spec)

    def runs_with(self, record: OnboardingRecord, desired: OnboardingSpec) -> bool:
        """Whether the record already holds exactly this file-declared spec (as
        ``planning.take_spec`` compares them). Each declared spec is dumped once per
        generation of the desired state, not once or twice per decision: the dump was a
        tenth of the CPU."""
        if not self._declared(record, desired):
            return False  # a spec made for this call (the API's, a refused change's)
        return self._dump(desired)[0] == record.spec and desired.namespace == record.namespace

    def fingerprint(self, record: OnboardingRecord, desired: OnboardingSpec) -> str:
        """``desired.fingerprint()``, computed once per generation for a declared spec."""
        if not self._declared(record, desired):
            return desired.fingerprint()
        return self._dump(desired)[1]

    @staticmethod
    def offboards(record: OnboardingRecord) -> bool:
        """Whether removing the onboarding's declaration offboards it (its deletion
        policy), rather than leaving what it made in place."""
        policy = record.spec.get("deletionPolicy", DeletionPolicy.DELETE.value)
        return bool(policy == DeletionPolicy.DELETE.value)

    def _declared(self, record: OnboardingRecord, desired: OnboardingSpec) -> bool:
        """Whether ``desired`` is the spec the files declare for the record."""
        document = self.desired.state.onboardings.get(record.name)
        return record.source == Source.FILE and document is not None and document.spec is desired

    def _dump(self, desired: OnboardingSpec) -> tuple[dict[str, Any], str]:
        """A declared spec's dump and fingerprint, memoized for the current generation.

        Bounded: the specs decided again and again are those in flight or waiting for
        a slot; a settled one is dumped once and then left alone (10,000 dumps kept
        would be 30 MiB)."""
        generation, dumped = self._dumped
        if generation != self.desired.generation:
            dumped = OrderedDict()
            self._dumped = (self.desired.generation, dumped)
        entry = dumped.get(id(desired))
        if entry is None or entry[0] is not desired:
            values = desired.model_dump(mode="json", by_alias=True)
            entry = (desired, values, desired.fingerprint())
            dumped[id(desired)] = entry
            if len(dumped) > DUMPS_KEPT:
                dumped.popitem(last=False)
        else:
            dumped.move_to_end(id(desired))
        return entry[1], entry[2]
