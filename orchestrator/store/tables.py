"""The schema as it stands at the newest migration.

Migrations under ``migrations/versions`` are the history that builds it; a
contract test checks that migrating to head yields exactly these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

#: Kubernetes object names are DNS subdomains: at most 253 characters.
NAME_LENGTH = 253

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC and read back aware, on every backend.

    SQLite keeps no offset, so the value is converted to UTC before it is
    written and marked UTC when read; PostgreSQL returns ``timestamptz`` in the
    session's zone, so it is converted back to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored: give it a zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _name() -> String:
    # The "C" collation makes PostgreSQL order names by code point, as SQLite does.
    return String(NAME_LENGTH).with_variant(String(NAME_LENGTH, collation="C"), "postgresql")


onboardings = Table(
    "onboardings",
    metadata,
    Column("name", _name(), primary_key=True),
    Column("cluster", String(NAME_LENGTH), nullable=False, index=True),
    Column("namespace", String(NAME_LENGTH), nullable=False),
    Column("source", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("spec_fingerprint", String(255), nullable=False),
    Column("incarnation", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("state_since", UTCDateTime),
    Column("suspended_from", String(32)),
    Column("offboarding", Boolean, nullable=False),
    Column("inventory", JSON, nullable=False),
    Column("step", String(NAME_LENGTH)),
    Column("attempt", Integer, nullable=False),
    Column("workflow", String(NAME_LENGTH)),
    Column("workflow_submitted", Boolean, nullable=False),
    Column("step_started_at", UTCDateTime),
    Column("step_deadline", UTCDateTime),
    Column("suspended_at", UTCDateTime),
    Column("vanished", Integer, nullable=False, server_default=text("0")),
    Column("attempt_counters", JSON, nullable=False),
    Column("next_attempt_at", UTCDateTime),
    Column("error_count", Integer, nullable=False),
    Column("last_error", Text),
    Column("reason", Text),
    Column("version", Integer, nullable=False),
    # the leader's epoch of the last write (None: not by a leader's pass)
    Column("epoch", BigInteger),
    # A pass reads its cluster's names and versions from this index alone, and
    # whole rows only for those that changed since it last looked.
    Index("ix_onboardings_cluster_versions", "cluster", "name", "version"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "onboarding",
        _name(),
        ForeignKey("onboardings.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("trigger", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("workflow", String(NAME_LENGTH)),
    # the leader's epoch the transition was recorded under (None: not by a leader)
    Column("epoch", BigInteger),
    # the step being run in from_state and in to_state (None: none, or not recorded)
    Column("from_step", String(NAME_LENGTH)),
    Column("to_step", String(NAME_LENGTH)),
    # History is read per onboarding, oldest first.
    Index("ix_transitions_onboarding", "onboarding", "at"),
)

#: One row: the epoch of the replica that leads, raised by each new leader. Every
#: write of a reconcile pass names its epoch and is refused when it is not this one,
#: so a deposed leader that wakes up cannot record anything.
leadership = Table(
    "leadership",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("holder", String(NAME_LENGTH), nullable=False),
    Column("since", UTCDateTime, nullable=False),
    # where the other replicas reach the leader's API (a forwarded call)
    Column("address", String(2048)),
    CheckConstraint("id = 1", name="one_row"),
)
