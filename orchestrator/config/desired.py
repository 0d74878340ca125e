"""The desired state as the daemon runs it, reloaded when the files change.

A reload that fails validation is rejected whole: the previous desired state
keeps running, the problems are logged and counted. The files are read, parsed
and validated in a worker thread (``reload``), so a large or hostile file never
blocks the event loop; only a whole, valid result is applied, on the loop. Offboarding deletes BTP
subaccounts, so two more accidents are caught here rather than acted on:

- a reload that removes a Cluster, or a Pipeline document, which stored
  onboardings still use is invalid like any other (they could be neither
  reconciled nor offboarded: offboarding runs the pipeline's compensations);
- a reload that would offboard more than ``offboard_hold_share`` of the
  file-declared onboardings at once (and more than one) is *held*: the previous
  desired state keeps running until on-call confirms it (``confirm_held``), or
  until a further change of the files no longer removes that many.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.config.configs import DEFAULT_PIPELINE, Onboarding
from orchestrator.config.loading import (
    ConfigRules,
    DesiredState,
    ParsedFiles,
    directory_digest,
    load_directory,
)
from orchestrator.errors import ConfigError, ConfigProblem, Conflict, OrchestratorError
from orchestrator.metrics import Metrics
from orchestrator.records import OnboardingRecord, Source, State

log = logging.getLogger(__name__)

#: cluster name -> names of the stored onboardings on it that are not Deleted
InUse = Callable[[], dict[str, list[str]]]

#: the file-declared onboardings the store holds (not Deleted, not offboarding), as
#: documents rebuilt from their stored specs
Declared = Callable[[], dict[str, OnboardingRecord]]

#: onboardings named in one problem at most; the rest are counted
NAMED = 20


@dataclass(frozen=True)
class HeldChange:
    """A valid change of the files, held because it would offboard too many at once."""

    state: DesiredState
    #: the onboardings it would offboard, sorted
    removed: list[str]
    #: file-declared onboardings running when it was held
    declared: int
    since: datetime
    #: fingerprint of the files it was loaded from: confirming needs them unchanged
    digest: str

    @property
    def share(self) -> float:
        return len(self.removed) / self.declared if self.declared else 1.0


def declared_in_files(records: Iterable[OnboardingRecord]) -> dict[str, OnboardingRecord]:
    """The file-declared onboardings that exist (not Deleted, not offboarding)."""
    return {
        record.name: record
        for record in records
        if record.source == Source.FILE and record.state != State.DELETED and not record.offboarding
    }


def as_document(record: OnboardingRecord) -> Onboarding:
    """A stored onboarding as the document that declared it."""
    return Onboarding.model_validate(
        {
            "apiVersion": "orchestrator.dev/v1alpha1",
            "kind": "Onboarding",
            "metadata": {"name": record.name},
            "spec": record.spec,
        }
    )


def clusters_in_use(records: Iterable[OnboardingRecord]) -> dict[str, list[str]]:
    """Cluster name -> the stored onboardings on it that are not Deleted, sorted."""
    return _in_use(records, lambda record: record.cluster)


def pipelines_in_use(records: Iterable[OnboardingRecord]) -> dict[str, list[str]]:
    """Pipeline name -> the stored onboardings that run it and are not Deleted, sorted
    (an onboarding still needs its pipeline's compensations to be offboarded)."""
    return _in_use(records, lambda record: str(record.spec.get("pipeline") or DEFAULT_PIPELINE))


def _in_use(
    records: Iterable[OnboardingRecord], key: Callable[[OnboardingRecord], str]
) -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for record in records:
        if record.state != State.DELETED:
            used.setdefault(key(record), []).append(record.name)
    return {name: sorted(names) for name, names in used.items()}


def clusters_still_used(
    missing: Iterable[str],
    in_use: Mapping[str, list[str]],
    *,
    sources: Mapping[str, str],
    fallback: str,
    kind: str = "Cluster",
) -> list[ConfigProblem]:
    """A problem for each cluster (or other ``kind`` of document) in ``missing`` that
    stored onboardings still use.

    ``sources`` locates where each was declared (``file#index``); ``fallback`` is the
    file named for one it does not know.
    """
    problems = []
    for name in sorted(missing):
        names = in_use.get(name)
        if not names:
            continue
        file, document = fallback, None
        if (where := sources.get(f"{kind}/{name}")) is not None:
            file, _, position = where.rpartition("#")
            document = f"document {position} ({kind} {name})"
        listed = ", ".join(names[:NAMED])
        if len(names) > NAMED:
            listed += f" and {len(names) - NAMED} more"
        problems.append(
            ConfigProblem(
                file,
                f"{kind.lower()} {name!r} is not declared, but stored onboardings still use it:"
                f" {listed}; keep it declared until they are Deleted",
                document,
            )
        )
    return problems


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Loaded:
    """The files as read in the worker thread: a desired state or why not."""

    digest: str
    state: DesiredState | None = None
    error: ConfigError | None = None


class DesiredStateSource:
    #: bumped by every change of ``state``: what was decided for a generation holds
    #: until the next one
    generation: int = 0
    _state: DesiredState

    @property
    def state(self) -> DesiredState:
        return self._state

    @state.setter
    def state(self, state: DesiredState) -> None:
        self._state = state
        self.generation += 1

    def __init__(
        self,
        directory: Path,
        *,
        metrics: Metrics,
        offboard_hold_share: float = 0.25,
        in_use: InUse | None = None,
        pipelines_in_use: InUse | None = None,
        declared: Declared | None = None,
        clock: Callable[[], datetime] = _now,
        rules: ConfigRules | None = None,
        load: bool = True,
    ) -> None:
        if not 0 < offboard_hold_share <= 1:
            raise ValueError(f"offboard_hold_share must be in (0, 1], not {offboard_hold_share}")
        self.directory = directory
        self.offboard_hold_share = offboard_hold_share
        self.rules = rules or ConfigRules()
        self._metrics = metrics
        self._in_use = in_use
        self._pipelines_in_use = pipelines_in_use
        self._declared = declared
        self._clock = clock
        self._digest = ""
        #: what each file parsed to at the last load: a reload parses only those changed
        self._parsed = ParsedFiles()
        self.state = DesiredState()
        self.last_error: ConfigError | None = None
        self.held: HeldChange | None = None
        #: set once the files were first loaded: until then ``state`` is empty
        self.loaded = asyncio.Event()
        if load:
            self._load_first()
            self.loaded.set()

    async def load(self) -> None:
        """The first load of the files, for a source made with ``load=False``; read in a
        worker thread while the API already serves the store. Raises ConfigError (the
        daemon refuses to start)."""
        await asyncio.to_thread(self._load_first)
        self.loaded.set()

    def _load_first(self) -> None:
        # touches nothing the loop reads but ``state``, which it replaces whole
        digest = self._fingerprint()
        loaded = load_directory(self.directory, self.rules, parsed=self._parsed)
        self._digest = digest
        self.state = loaded
        self._metrics.config_valid.set(1)
        self._metrics.config_last_success.set(time.time())
        self._metrics.config_offboard_held.set(0)
        self._report_undeclared_clusters()
        if self._declared is not None:
            self._hold_at_start(self._declared)

    async def reload(self) -> bool:
        """Reload when the files changed, reading and validating them in a worker
        thread; True when a new desired state was accepted."""
        return self._apply(await asyncio.to_thread(self._load))

    def reload_if_changed(self) -> bool:
        """``reload``, all of it in the calling thread (for tests and tools)."""
        return self._apply(self._load())

    def _fingerprint(self) -> str:
        return directory_digest(self.directory, max_file_bytes=self.rules.max_file_bytes)

    def _load(self) -> Loaded | None:
        """Read, parse and validate the files when they changed; touches no state, so it
        may run in a worker thread. None when nothing changed."""
        digest = self._fingerprint()
        if digest == self._digest:
            return None
        try:
            state = load_directory(self.directory, self.rules, parsed=self._parsed)
            return Loaded(digest, state=state)
        except ConfigError as error:
            return Loaded(digest, error=error)
        except Exception as error:  # a bug must not leave the old config marked valid
            log.exception("loading the config failed")
            problem = ConfigProblem(
                str(self.directory), f"cannot be loaded: {type(error).__name__}: {str(error)[:300]}"
            )
            return Loaded(digest, error=ConfigError([problem]))

    def _apply(self, loaded: Loaded | None) -> bool:
        """On the loop: run what ``_load`` found, when it is whole and valid."""
        if loaded is None or loaded.digest == self._digest:
            return False
        digest = loaded.digest
        try:
            if loaded.error is not None:
                raise loaded.error
            assert loaded.state is not None
            state = loaded.state
            self._check_kept(state)
        except ConfigError as error:
            self._digest = digest
            self._reject(error)
            return False
        except OrchestratorError as error:  # the store cannot be asked: evaluate it again later
            log.error(
                "config change not evaluated yet: cannot read which clusters and pipelines"
                " are in use",
                extra={"error": str(error)},
            )
            return False
        self._digest = digest
        removed = sorted(set(self.state.onboardings) - set(state.onboardings))
        if self._too_many(removed):
            self._hold(state, removed, digest)
            return False
        self._accept(state)
        return True

    def confirm_held(self) -> HeldChange:
        """Run the held change; raises Conflict when none is held or the files changed since."""
        held = self.held
        if held is None:
            raise Conflict("no config change is held")
        if self._fingerprint() != held.digest:
            raise Conflict(
                "the config files changed since the change was held; the next reload evaluates"
                " them again: look at what is held then, and confirm that"
            )
        self._check_kept(held.state)
        log.warning(
            "held config change confirmed: offboarding",
            extra={"onboardings": held.removed, "declared": held.declared},
        )
        self._accept(held.state)
        return held

    def replace(self, state: DesiredState) -> None:
        """For tests and embedding: run this desired state."""
        self.state = state

    # --- inside -------------------------------------------------------------------

    def _too_many(self, removed: list[str]) -> bool:
        # Removing one onboarding is an ordinary edit, whatever the share.
        declared = len(self.state.onboardings)
        return len(removed) > 1 and len(removed) > self.offboard_hold_share * declared

    def _check_kept(self, state: DesiredState) -> None:
        """Raise ConfigError when ``state`` drops a cluster or a Pipeline document that
        stored onboardings still use."""
        fallback, sources = str(self.directory), self.state.sources
        problems = []
        dropped = set(self.state.clusters) - set(state.clusters)
        if dropped and self._in_use is not None:
            problems = clusters_still_used(
                dropped, self._in_use(), sources=sources, fallback=fallback
            )
        dropped = set(self.state.pipelines) - set(state.pipelines)
        if dropped and self._pipelines_in_use is not None:
            problems += clusters_still_used(
                dropped,
                self._pipelines_in_use(),
                sources=sources,
                fallback=fallback,
                kind="Pipeline",
            )
        if problems:
            raise ConfigError(problems)

    def _hold_at_start(self, declared: Declared) -> None:
        """The same guard across a restart: files that would offboard too many of the
        stored onboardings at once are held, and the stored specs of the removed ones
        keep running until the change is confirmed."""
        try:
            stored = declared()
        except OrchestratorError as error:
            log.warning("cannot read the stored onboardings", extra={"error": str(error)})
            return
        loaded = self.state
        removed = sorted(set(stored) - set(loaded.onboardings))
        if not (len(removed) > 1 and len(removed) > self.offboard_hold_share * len(stored)):
            return
        # only the removed ones become documents: 10,000 of them would cost seconds
        kept = {
            name: as_document(stored[name])
            for name in removed
            if stored[name].cluster in loaded.clusters
        }
        self.state = dataclasses.replace(
            loaded,
            onboardings={**loaded.onboardings, **kept},
            sources={
                **loaded.sources,
                **{f"Onboarding/{name}": "the stored spec (its file is gone)" for name in kept},
            },
        )
        self._hold(loaded, removed, self._digest)

    def _report_undeclared_clusters(self) -> None:
        """At start, stored onboardings on undeclared clusters are logged, not fatal.

        Refusing to start would brick the daemon on an old leftover; those
        onboardings are neither reconciled nor offboarded until the cluster is back.
        """
        if self._in_use is None:
            return
        try:
            in_use = self._in_use()
        except OrchestratorError as error:
            log.warning("cannot read which clusters are in use", extra={"error": str(error)})
            return
        missing = set(in_use) - set(self.state.clusters)
        problems = clusters_still_used(
            missing, in_use, sources=self.state.sources, fallback=str(self.directory)
        )
        if problems:
            log.error(
                "stored onboardings use clusters that are not declared; they are left alone"
                " until the clusters are declared again",
                extra={"problems": [str(p) for p in problems]},
            )

    def _reject(self, error: ConfigError) -> None:
        self.last_error = error
        self._metrics.config_reload_errors.inc()
        self._metrics.config_valid.set(0)
        log.error(
            "config change rejected; the previous desired state keeps running",
            extra={"problems": [str(p) for p in error.problems]},
        )
        if self.held is not None:
            log.warning(
                "the held config change is dropped: the files changed again",
                extra={"onboardings": self.held.removed},
            )
            self._clear_hold()

    def _hold(self, state: DesiredState, removed: list[str], digest: str) -> None:
        replaced = self.held is not None
        self.held = HeldChange(
            state=state,
            removed=removed,
            declared=len(self.state.onboardings),
            since=self._clock(),
            digest=digest,
        )
        self.last_error = None
        self._metrics.config_valid.set(1)  # valid, only not run yet
        self._metrics.config_offboard_held.set(len(removed))
        log.error(
            "config change held: it would offboard more onboardings at once than allowed;"
            " the previous desired state keeps running until it is confirmed"
            " (orchestrator offboard --confirm) or the files are restored",
            extra={
                "onboardings": removed,
                "declared": len(self.state.onboardings),
                "limit": self.offboard_hold_share,
                "replaces_held": replaced,
            },
        )

    def _clear_hold(self) -> None:
        self.held = None
        self._metrics.config_offboard_held.set(0)

    def _accept(self, state: DesiredState) -> None:
        if self.held is not None:
            if state is not self.held.state:
                log.warning(
                    "the held config change is dropped: the files changed again and no longer"
                    " offboard too many at once",
                    extra={"onboardings": self.held.removed},
                )
            self._clear_hold()
        self.state = state
        self.last_error = None
        self._metrics.config_valid.set(1)
        self._metrics.config_last_success.set(time.time())
        log.info(
            "config reloaded",
            extra={"onboardings": len(state.onboardings), "clusters": len(state.clusters)},
        )
