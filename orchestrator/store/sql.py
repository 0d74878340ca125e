"""``ports.Store`` on SQLAlchemy Core, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from orchestrator.errors import (
    ChangedMeanwhile,
    Conflict,
    NotLeading,
    PermanentError,
    TemporaryError,
)
from orchestrator.records import Leadership, OnboardingRecord, State, TransitionRecord
from orchestrator.store import engines, failures, migrating, rows, urls
from orchestrator.store.tables import leadership, onboardings, transitions
from orchestrator.store.versions import VersionsReader

log = logging.getLogger(__name__)

#: How long a leader's claim waits for the fenced writes in progress, in milliseconds
#: (PostgreSQL); the candidate tries again at its next attempt after that.
CLAIM_LOCK_TIMEOUT_MS = 2_000
#: names per ``IN (...)`` list, well under every backend's limit of bound parameters
NAMES_PER_QUERY = 500

#: a record to save, the columns its row is set to, and the transitions appended
_Prepared = tuple[OnboardingRecord, dict[str, Any], list[dict[str, object]]]


class _SomeRowChanged(Exception):
    """A batch updated fewer rows than it holds: undone, and tried one row at a time."""


def open_store(url: str) -> SqlStore:
    """The store at ``url``, its schema migrated to the newest revision first.

    ``url`` is ``sqlite:////absolute/path.db`` (the directory is created),
    ``sqlite://`` for a private in-memory database (tests; one thread at a time), or
    ``postgresql://user:password@host:port/database`` (also spelt
    ``postgres://`` or ``postgresql+psycopg://``).

    Raises ``TemporaryError`` (reason ``DatabaseUnavailable``) when the
    database cannot be reached, ``PermanentError`` for a URL it cannot use or
    a schema newer than this code knows. No message contains the password.
    """
    parsed = urls.parse(url)
    engine = engines.make_engine(parsed)
    try:
        with failures.translated(parsed):
            _migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    log.info("store opened at %s", urls.redact(parsed))
    return SqlStore(engine)


def _migrate(engine: Engine) -> None:
    if migrating.at_head(engine):
        return  # the common case, checked without loading Alembic
    from alembic.util.exc import CommandError

    try:
        migrating.upgrade(engine)
    except CommandError as e:
        # Typically a revision this code does not ship: a newer release migrated the database.
        raise PermanentError(
            f"database {urls.redact(engine.url)}: cannot migrate to {migrating.head()}: "
            f"{failures.describe(e, engine.url)}",
            reason="DatabaseSchemaUnknown",
        ) from e


class SqlStore:
    """Onboardings and their history in two tables; see ``ports.Store`` for the contract.

    Safe to share between threads: each call takes its own connection. Its
    statements are built once, here: building one (and its cache key) per call cost
    more than running it.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: SQLite runs in this process: a read is a library call, not a round trip
        self.local = engine.dialect.name == "sqlite"
        self._versions_reader = VersionsReader.for_engine(engine)
        self._insert = insert(onboardings)
        self._append = insert(transitions)
        # compare-and-set: the row changes only if nobody saved it since it was read
        self._update = update(onboardings).where(
            onboardings.c.name == bindparam("b_name"),
            onboardings.c.version == bindparam("b_version"),
        )
        self._get = select(onboardings).where(onboardings.c.name == bindparam("name"))
        self._version_of = select(onboardings.c.version).where(
            onboardings.c.name == bindparam("name")
        )
        self._versions = select(onboardings.c.name, onboardings.c.version).where(
            onboardings.c.cluster == bindparam("cluster")
        )
        self._fence = select(leadership.c.epoch, leadership.c.holder).with_for_update(read=True)
        #: name -> a version of the row and the very spec dict it holds then, as this
        #: store last wrote it: a save of that dict at that version leaves the spec column
        #: as it is (encoding it to JSON was most of a save's cost; a record's spec is
        #: replaced when it changes, never changed in place)
        self._specs_written: dict[str, tuple[int, object]] = {}
        #: ``list`` by which filters are given: (state, cluster, names)
        self._lists = {
            (by_state, by_cluster, by_names): _list_query(by_state, by_cluster, by_names)
            for by_state in (False, True)
            for by_cluster in (False, True)
            for by_names in (False, True)
        }

    def __repr__(self) -> str:
        return f"SqlStore({urls.redact(self._engine.url)!r})"

    def create(
        self,
        record: OnboardingRecord,
        transitions: Sequence[TransitionRecord] = (),
        *,
        epoch: int | None = None,
    ) -> OnboardingRecord:
        return self.create_all([(record, transitions)], epoch=epoch)[0]

    def create_all(
        self,
        batch: Sequence[tuple[OnboardingRecord, Sequence[TransitionRecord]]],
        *,
        epoch: int | None = None,
    ) -> builtins.list[OnboardingRecord]:
        if not batch:
            return []
        values = [
            rows.onboarding_values(record) | {"version": 1, "epoch": epoch} for record, _ in batch
        ]
        history = [v for record, h in batch for v in _history_values(record, h, epoch)]
        with self._writing(epoch) as connection:
            try:
                connection.execute(self._insert, values)
            except IntegrityError as e:
                if failures.is_duplicate_key(e):
                    names = sorted(record.name for record, _ in batch)
                    which = repr(names[0]) if len(names) == 1 else f"of {names}"
                    raise Conflict(f"onboarding {which} exists already") from e
                raise
            self._add_history(connection, history)
        for record, _ in batch:
            self._specs_written[record.name] = (1, record.spec)
        return [replace(record, version=1) for record, _ in batch]

    def get(self, name: str) -> OnboardingRecord | None:
        with failures.translated(self._engine.url), self._engine.connect() as connection:
            row = connection.execute(self._get, {"name": name}).one_or_none()
        return rows.onboarding_from_row(row) if row is not None else None

    def list(
        self,
        *,
        state: State | None = None,
        cluster: str | None = None,
        names: Collection[str] | None = None,
    ) -> builtins.list[OnboardingRecord]:  # the method shadows the builtin here
        query = self._lists[(state is not None, cluster is not None, names is not None)]
        parameters: dict[str, object] = {}
        if state is not None:
            parameters["state"] = State(state).value
        if cluster is not None:
            parameters["cluster"] = cluster
        if names is None:
            chunks: builtins.list[builtins.list[str]] = [[]]
        else:
            wanted = sorted(set(names))
            chunks = [
                wanted[i : i + NAMES_PER_QUERY] for i in range(0, len(wanted), NAMES_PER_QUERY)
            ]
        found: builtins.list[OnboardingRecord] = []
        with failures.translated(self._engine.url), self._engine.connect() as connection:
            for chunk in chunks:
                if names is not None:
                    parameters["names"] = chunk
                found.extend(
                    rows.onboarding_from_row(row) for row in connection.execute(query, parameters)
                )
        return sorted(found, key=lambda record: record.name) if len(chunks) > 1 else found

    def versions(self, *, cluster: str) -> dict[str, int]:
        if self._versions_reader is not None:
            with failures.translated(self._engine.url):
                return self._versions_reader.versions(cluster)
        with failures.translated(self._engine.url), self._engine.connect() as connection:
            result = connection.execute(self._versions, {"cluster": cluster})
            return {name: version for name, version in result}

    def save(
        self,
        record: OnboardingRecord,
        transitions: Sequence[TransitionRecord] = (),
        *,
        epoch: int | None = None,
    ) -> OnboardingRecord:
        outcome = self.save_all([(record, transitions)], epoch=epoch)[0]
        if isinstance(outcome, Conflict):
            raise outcome
        return outcome

    def save_all(
        self,
        batch: Sequence[tuple[OnboardingRecord, Sequence[TransitionRecord]]],
        *,
        epoch: int | None = None,
    ) -> builtins.list[OnboardingRecord | Conflict]:
        names = [record.name for record, _ in batch]
        if len(set(names)) != len(names):
            raise ValueError(f"an onboarding appears twice in one batch: {sorted(names)}")
        prepared = [
            (
                record,
                self._changed_values(record)
                | {
                    "version": record.version + 1,
                    "epoch": epoch,
                    "b_name": record.name,
                    "b_version": record.version,
                },
                _history_values(record, history, epoch),
            )
            for record, history in batch
        ]
        outcomes: builtins.list[OnboardingRecord | Conflict] | None = None
        if len(prepared) > 1:
            outcomes = self._save_together(prepared, epoch)
        if outcomes is None:
            outcomes = self._save_one_by_one(prepared, epoch)
        for outcome in outcomes:
            if not isinstance(outcome, Conflict):
                self._specs_written[outcome.name] = (outcome.version, outcome.spec)
        return outcomes

    def _save_together(
        self, prepared: Sequence[_Prepared], epoch: int | None
    ) -> builtins.list[OnboardingRecord | Conflict] | None:
        """The batch with one statement per set of columns (the driver's executemany),
        or None, with nothing written, when a row changed meanwhile: the count of rows
        updated says that one did, not which."""
        shapes: dict[tuple[str, ...], builtins.list[dict[str, Any]]] = {}
        for _, values, _ in prepared:
            shapes.setdefault(tuple(values), []).append(values)
        try:
            with self._writing(epoch) as connection:
                updated = sum(
                    connection.execute(self._update, rows).rowcount for rows in shapes.values()
                )
                if updated != len(prepared):
                    raise _SomeRowChanged  # rolls back what went in
                self._add_history(connection, [v for _, _, appended in prepared for v in appended])
        except _SomeRowChanged:
            return None
        return [replace(record, version=record.version + 1) for record, _, _ in prepared]

    def _save_one_by_one(
        self, prepared: Sequence[_Prepared], epoch: int | None
    ) -> builtins.list[OnboardingRecord | Conflict]:
        outcomes: builtins.list[OnboardingRecord | Conflict] = []
        history: builtins.list[dict[str, object]] = []
        with self._writing(epoch) as connection:
            for record, values, appended in prepared:
                # a row that changed meanwhile is left as it is; the others still go in
                if connection.execute(self._update, values).rowcount != 1:
                    outcomes.append(ChangedMeanwhile(self._why_not_saved(connection, record)))
                    continue
                outcomes.append(replace(record, version=record.version + 1))
                history.extend(appended)
            self._add_history(connection, history)
        return outcomes

    def _changed_values(self, record: OnboardingRecord) -> dict[str, Any]:
        """The columns to set: all of them, but the spec when the row holds this very
        spec at the version the save is based on (the compare-and-set makes sure)."""
        values = rows.onboarding_values(record)
        written = self._specs_written.get(record.name)
        if written is not None and written[0] == record.version and written[1] is record.spec:
            del values["spec"]
        return values

    def history(self, name: str) -> builtins.list[TransitionRecord]:
        query = (
            select(transitions)
            .where(transitions.c.onboarding == name)
            .order_by(transitions.c.at, transitions.c.id)
        )
        with failures.translated(self._engine.url), self._engine.connect() as connection:
            return [rows.transition_from_row(row) for row in connection.execute(query)]

    def prune(self, *, deleted_before: datetime) -> builtins.list[str]:
        if deleted_before.utcoffset() is None:
            raise ValueError(f"deleted_before={deleted_before.isoformat()} has no time zone")
        # One statement picks and deletes, so a row saved meanwhile is either
        # pruned before that save (which then conflicts) or not at all. The
        # transitions go by their ON DELETE CASCADE: PostgreSQL always
        # enforces it, SQLite because ``engines`` turns its foreign keys on.
        statement = (
            delete(onboardings)
            .where(
                onboardings.c.state == State.DELETED.value,
                onboardings.c.updated_at < deleted_before,
            )
            .returning(onboardings.c.name)
        )
        with failures.translated(self._engine.url), self._engine.begin() as connection:
            pruned = sorted(connection.execute(statement).scalars())
        for name in pruned:
            self._specs_written.pop(name, None)
        if pruned:
            log.info("pruned %d deleted onboardings: %s", len(pruned), ", ".join(pruned))
        return pruned

    def claim_leadership(
        self, *, epoch: int, holder: str, at: datetime, address: str | None = None
    ) -> bool:
        values = {"epoch": epoch, "holder": holder, "since": at, "address": address}
        raised = (
            update(leadership)
            .where(leadership.c.id == 1, leadership.c.epoch < epoch)
            .values(values)
        )
        with failures.translated(self._engine.url), self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # the writes in progress hold the row a moment; one that stalls must not
                # hold the claim (its session ends, see engines.make_engine)
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {CLAIM_LOCK_TIMEOUT_MS}")
            try:
                count = connection.execute(raised).rowcount
            except OperationalError as error:
                if not failures.is_lock_timeout(error):
                    raise
                raise TemporaryError(
                    f"claim of epoch {epoch}: the leadership row stayed locked by a write in"
                    f" progress for {CLAIM_LOCK_TIMEOUT_MS / 1000:g}s (a replica stopped in"
                    " the middle of it?); the claim is tried again",
                    reason="DatabaseUnavailable",
                ) from None
            if count == 1:
                return True
            if connection.execute(select(leadership.c.id)).first() is not None:
                return False  # the stored epoch is this one or newer
            try:
                with connection.begin_nested():
                    connection.execute(insert(leadership).values(id=1, **values))
            except IntegrityError:
                return False  # another replica claimed the first epoch meanwhile
        return True

    def leadership(self) -> Leadership | None:
        with failures.translated(self._engine.url), self._engine.connect() as connection:
            row = connection.execute(select(leadership)).one_or_none()
        if row is None:
            return None
        return Leadership(epoch=row.epoch, holder=row.holder, since=row.since, address=row.address)

    def close(self) -> None:
        if self._versions_reader is not None:
            self._versions_reader.close()
        self._engine.dispose()

    def _add_history(
        self, connection: Connection, history: builtins.list[dict[str, object]]
    ) -> None:
        if history:
            connection.execute(self._append, history)

    def _why_not_saved(self, connection: Connection, record: OnboardingRecord) -> str:
        stored = connection.execute(self._version_of, {"name": record.name}).scalar_one_or_none()
        if stored is None:
            return f"onboarding {record.name!r} does not exist"
        return (
            f"onboarding {record.name!r} was changed meanwhile: "
            f"stored version {stored}, this one read version {record.version}"
        )

    @contextmanager
    def _writing(self, epoch: int | None) -> Iterator[Connection]:
        """A write transaction; with ``epoch``, fenced: it goes in only while that epoch
        is the stored leader's. On PostgreSQL the leadership row is read ``FOR SHARE``:
        a new leader's claim waits for the writes in progress (one left open by a frozen
        replica ends with its session), and every write after the claim sees the new
        epoch and is refused. SQLite has one writer at a time anyway."""
        options = {engines.BEGIN_IMMEDIATE: True} if epoch is not None else {}
        with (
            failures.translated(self._engine.url),
            self._engine.connect().execution_options(**options) as connection,
            connection.begin(),
        ):
            if epoch is not None:
                current = connection.execute(self._fence).one_or_none()
                if current is None or current.epoch != epoch:
                    held = f"epoch {current.epoch} of {current.holder}" if current else "no epoch"
                    raise NotLeading(f"refused a write of epoch {epoch}: the database holds {held}")
            yield connection


def _history_values(
    record: OnboardingRecord, history: Sequence[TransitionRecord], epoch: int | None
) -> list[dict[str, object]]:
    strangers = sorted({t.onboarding for t in history if t.onboarding != record.name})
    if strangers:
        # A transition filed under another onboarding would corrupt that one's history.
        raise ValueError(f"transitions of {strangers} cannot be saved with {record.name!r}")
    return [rows.transition_values(t) | {"epoch": epoch} for t in history]


def _list_query(by_state: bool, by_cluster: bool, by_names: bool) -> Select[Any]:
    query = select(onboardings).order_by(onboardings.c.name)
    if by_state:
        query = query.where(onboardings.c.state == bindparam("state"))
    if by_cluster:
        query = query.where(onboardings.c.cluster == bindparam("cluster"))
    if by_names:
        query = query.where(onboardings.c.name.in_(bindparam("names", expanding=True)))
    return query
