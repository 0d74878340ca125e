"""Each cluster's onboardings as this replica last read or saved them, and what the
gauges count of them.

A pass starts here (``Roster.load``): the records are checked against the stored
versions (an index read) and a row is read again only when its version differs, so a
write by another replica or by the API is always seen. Onboardings newly declared in
files are stored here, and those declared anew on another cluster are taken over
while nothing of them exists. Each save of the pass ends here too
(``Roster.stored``), which keeps the cluster's ``Tally`` without counting again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from orchestrator.config.configs import Onboarding
from orchestrator.config.desired import DesiredStateSource
from orchestrator.core.acting import new_incarnation
from orchestrator.core.passes import Tally, counted_since
from orchestrator.core.planning import nothing_exists
from orchestrator.errors import Conflict
from orchestrator.ports import Store
from orchestrator.records import OnboardingRecord, Source, State, TransitionRecord

log = logging.getLogger(__name__)

__all__ = ["Roster", "new_record"]


class Roster:
    def __init__(
        self, *, store: Store, desired: DesiredStateSource, fence: Callable[[], int | None]
    ) -> None:
        self.store = store
        self.desired = desired
        #: the leader's epoch every write names (see ``Reconciler.fence``)
        self.fence = fence
        #: per cluster, its onboardings as this replica last read or saved them (checked
        #: against the stored versions on every pass; never trusted past a mismatch)
        self._cache: dict[str, dict[str, OnboardingRecord]] = {}
        #: per cluster, the desired state's generation its records were last looked over
        #: under (for onboardings declared anew on another cluster)
        self._looked_over: dict[str, int] = {}
        #: the file-declared onboardings per cluster, for the desired state's generation
        self._declared: tuple[int, dict[str, dict[str, Onboarding]]] = (-1, {})
        #: bumped whenever something other than this replica's passes may have written to
        #: the store (see ``written_outside``)
        self._outside_writes = 0
        #: per cluster, ``_outside_writes`` as it was when its stored versions were read
        self._versions_read_at: dict[str, int] = {}
        #: per cluster, what the gauges count of its cached records, kept as its records
        #: are saved; counted anew from the cache after the records were read again
        self._tallies: dict[str, Tally] = {}
        self._recount: set[str] = set()
        #: clusters whose tally changed since it was last asked for
        self._tally_moved: set[str] = set()

    def written_outside(self) -> None:
        """Something other than the passes may have written to the store (an API
        action, a prune): the next pass of every cluster reads the stored versions."""
        self._outside_writes += 1

    def forget(self) -> None:
        """Forget what earlier passes read: another replica may have written since."""
        self._cache.clear()
        self._tallies.clear()
        self._tally_moved.clear()
        self._versions_read_at.clear()
        self._looked_over.clear()

    async def load(
        self, cluster: str, now: datetime, *, woken_by_watch: bool = False
    ) -> list[OnboardingRecord]:
        """The cluster's onboardings as stored (see ``_records``), cached for the next pass.

        A pass the watch alone woke takes the cache as it is when the store answers
        in-process (SQLite, which no other process writes) and nothing but the passes
        wrote since the cluster's versions were last read (the API wakes every pass it
        writes for) under the same desired state: reading the versions again was most
        of such a pass."""
        if (
            woken_by_watch
            and self.store.local
            and cluster in self._cache
            and self._versions_read_at.get(cluster) == self._outside_writes
            and self._looked_over.get(cluster) == self.desired.generation
        ):
            return list(self._cache[cluster].values())
        cached = dict(self._cache.get(cluster, {}))
        if self.store.local:
            current = self._records(cluster, now, cached)
        else:
            current = await asyncio.to_thread(self._records, cluster, now, cached)
        self._cache[cluster] = current
        self._recount.add(cluster)
        return list(current.values())

    def stored(self, saved: OnboardingRecord) -> None:
        """``saved`` is what the store holds now: cache it and move the tally."""
        cached = self._cache.setdefault(saved.cluster, {})
        before = cached.get(saved.name)
        cached[saved.name] = saved
        tally = self._tallies.get(saved.cluster)
        if tally is None or saved.cluster in self._recount:
            return  # counted anew from the cache when next asked for
        if before is None or (before.state, counted_since(before)) != (
            saved.state,
            counted_since(saved),
        ):
            if before is not None:
                tally.remove(before)
            tally.add(saved)
            self._tally_moved.add(saved.cluster)

    def tally(self, cluster: str) -> tuple[Tally, bool]:
        """What the gauges count of the cluster (a record whose save failed counts as
        before), and whether that changed since it was last asked for: counted from the
        cache after the records were read again, else as kept by the saves since."""
        tally = self._tallies.get(cluster)
        if tally is None or cluster in self._recount:
            self._recount.discard(cluster)
            tally = self._tallies[cluster] = Tally(self._cache.get(cluster, {}).values())
            self._tally_moved.add(cluster)
        moved = cluster in self._tally_moved
        self._tally_moved.discard(cluster)
        return tally, moved

    def _records(
        self, cluster: str, now: datetime, cached: Mapping[str, OnboardingRecord]
    ) -> dict[str, OnboardingRecord]:
        """The cluster's stored onboardings, creating those newly declared in files and
        taking over those declared anew here while nothing of them exists elsewhere.

        In a worker thread unless the store answers in-process. Of the ``cached``
        records it reads only the versions, from an index; a row is read again only
        when its version differs (written by the API, another replica, or lost)."""
        self._versions_read_at[cluster] = self._outside_writes  # before: a write meanwhile counts
        versions = self.store.versions(cluster=cluster)
        current = {
            name: record
            for name, record in cached.items()
            if versions.get(name) == record.version and record.cluster == cluster
        }
        # unchanged records under an unchanged desired state were kept last time, and
        # cannot have begun to move to another cluster since
        settled_generation = self._looked_over.get(cluster) == self.desired.generation
        unchanged = set(current) if settled_generation else set()
        changed = versions.keys() - current.keys()
        if changed:
            names = None if len(changed) == len(versions) else changed
            for record in self.store.list(cluster=cluster, names=names):
                current[record.name] = record
        stored: dict[str, OnboardingRecord] = {}
        for name, record in current.items():
            if name in unchanged:
                stored[name] = record
                continue
            moving = self._declared_cluster(record)
            if moving is not None and moving != cluster and nothing_exists(record):
                continue  # the other cluster's pass takes it over
            stored[name] = record
        self._looked_over[cluster] = self.desired.generation
        declared = self._declared_on(cluster)
        missing = [name for name in declared if name not in stored]
        if not missing:
            return stored
        others = {r.name: r for r in self.store.list(names=missing)}
        new = []
        for name in missing:
            document = declared[name]
            other = others.get(name)
            if other is None:
                new.append(document)
            elif nothing_exists(other):
                moved = self._move(other, cluster, now)
                if moved is not None:
                    stored[name] = moved
            # else: something exists on the other cluster; its pass keeps the stored
            # spec running and says why the new cluster is refused
        stored.update((r.name, r) for r in self._create_all(new, now))
        return stored

    def _declared_on(self, cluster: str) -> Mapping[str, Onboarding]:
        """The onboardings the files declare on ``cluster``, by name (indexed once per
        generation)."""
        generation, by_cluster = self._declared
        if generation != self.desired.generation:
            by_cluster = {}
            for name, document in self.desired.state.onboardings.items():
                by_cluster.setdefault(document.spec.cluster, {})[name] = document
            self._declared = (self.desired.generation, by_cluster)
        return by_cluster.get(cluster, {})

    def _declared_cluster(self, record: OnboardingRecord) -> str | None:
        if record.source != Source.FILE:
            return None
        document = self.desired.state.onboardings.get(record.name)
        return document.spec.cluster if document else None

    def _move(
        self, record: OnboardingRecord, cluster: str, now: datetime
    ) -> OnboardingRecord | None:
        """Take over an onboarding declared anew on this cluster (nothing of it exists)."""
        source = record.cluster
        record.cluster = cluster
        record.updated_at = now
        entry = TransitionRecord(
            onboarding=record.name,
            from_state=record.state,
            to_state=record.state,
            trigger="moved",
            reason=f"declared on cluster {cluster} (was {source}; nothing of it existed there)",
            at=now,
        )
        try:
            saved = self.store.save(record, [entry], epoch=self.fence())
        except Conflict:
            return None
        # no longer the other cluster's, even for a pass of it that trusts its cache
        self._cache.get(source, {}).pop(record.name, None)
        self._recount.add(source)
        log.info("onboarding moved", extra={"onboarding": record.name, "cluster": cluster})
        return saved

    def _create_all(self, documents: list[Onboarding], now: datetime) -> list[OnboardingRecord]:
        """Store newly declared onboardings, all in one transaction; when one of them was
        stored meanwhile (the API), each is tried on its own and that one is left out."""
        if not documents:
            return []
        batch = [
            (new_record(d, now, source=Source.FILE), [self._declared_entry(d, now)])
            for d in documents
        ]
        try:
            created = self.store.create_all(batch, epoch=self.fence())
        except Conflict:
            created = []
            for record, history in batch:
                try:
                    created.append(self.store.create(record, history, epoch=self.fence()))
                except Conflict:
                    continue  # stored meanwhile: the next pass reads it
        for record in created:
            log.info(
                "onboarding declared", extra={"onboarding": record.name, "cluster": record.cluster}
            )
        return created

    def _declared_entry(self, document: Onboarding, now: datetime) -> TransitionRecord:
        name = document.metadata.name
        where = self.desired.state.sources.get(f"Onboarding/{name}", "the API")
        return TransitionRecord(
            onboarding=name,
            from_state=State.PENDING,
            to_state=State.PENDING,
            trigger="declared",
            reason=f"declared in {where}",
            at=now,
        )


def new_record(document: Onboarding, now: datetime, *, source: Source) -> OnboardingRecord:
    """A new onboarding's record, as declared (in a file or through the API)."""
    spec = document.spec
    return OnboardingRecord(
        name=document.metadata.name,
        cluster=spec.cluster,
        namespace=spec.namespace,
        source=source,
        spec=spec.model_dump(mode="json", by_alias=True),
        spec_fingerprint=spec.fingerprint(),
        incarnation=new_incarnation(),
        created_at=now,
        updated_at=now,
        state_since=now,
    )
