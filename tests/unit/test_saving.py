"""The reconciler's group commit (``saving.Saver``) on a real SQLite store."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.core.saving import Saver, WriterThread
from orchestrator.errors import Conflict, NotLeading, TemporaryError
from orchestrator.records import OnboardingRecord, Source, State, TransitionRecord
from orchestrator.store import SqlStore, open_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'orchestrator.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _record(name: str) -> OnboardingRecord:
    return OnboardingRecord(
        name=name,
        cluster="eu-1",
        namespace=name,
        source=Source.FILE,
        spec={"subdomain": name},
        spec_fingerprint="sha256:0f",
        incarnation="inc-1",
        created_at=T0,
        updated_at=T0,
    )


def _started(name: str) -> TransitionRecord:
    return TransitionRecord(
        onboarding=name,
        from_state=State.PENDING,
        to_state=State.RUNNING,
        trigger="start",
        reason="starting",
        at=T0,
    )


async def test_saves_made_together_are_committed_together(store: SqlStore) -> None:
    records = [store.create(_record(f"team-{index:02d}")) for index in range(40)]
    saver = Saver(store)

    saved = await asyncio.gather(
        *(saver.save(replace(r, state=State.RUNNING), [_started(r.name)]) for r in records)
    )

    assert [s.version for s in saved] == [2] * 40
    assert all(store.get(r.name) == s for r, s in zip(records, saved, strict=True))
    assert all(len(store.history(r.name)) == 1 for r in records)
    assert saver.saves == 40
    # all 40 were queued before the writer first ran: one transaction
    assert saver.commits == 1


async def test_a_conflict_reaches_only_its_own_caller(store: SqlStore) -> None:
    fresh, stale = store.create(_record("fresh")), store.create(_record("stale"))
    store.save(stale)  # now at version 2
    saver = Saver(store)

    outcomes = await asyncio.gather(
        saver.save(replace(fresh, state=State.READY)),
        saver.save(replace(stale, state=State.READY)),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], OnboardingRecord)
    assert outcomes[0].state == State.READY
    assert isinstance(outcomes[1], Conflict)
    assert store.get("stale") == replace(stale, version=2)


class _Unavailable:
    """A store whose database is down: every batch fails."""

    def save_all(
        self,
        batch: Sequence[tuple[OnboardingRecord, Sequence[TransitionRecord]]],
        *,
        epoch: int | None = None,
    ) -> list[OnboardingRecord | Conflict]:
        raise TemporaryError("database down", reason="DatabaseUnavailable")


async def test_a_store_error_reaches_every_caller_of_the_batch_and_the_next_save_works(
    store: SqlStore,
) -> None:
    records = [store.create(_record(name)) for name in ("a", "b")]
    saver = Saver(_Unavailable())  # type: ignore[arg-type]  # only save_all is called

    outcomes = await asyncio.gather(*(saver.save(r) for r in records), return_exceptions=True)

    assert [type(o) for o in outcomes] == [TemporaryError, TemporaryError]
    saver._store = store  # the database is back
    assert (await saver.save(records[0])).version == 2


async def test_each_batch_names_the_fence_epoch_and_a_deposed_leader_saves_nothing(
    store: SqlStore,
) -> None:
    store.claim_leadership(epoch=1, holder="replica-a", at=T0)
    records = [store.create(_record(f"team-{index}")) for index in range(3)]
    fence: list[int] = [1]
    saver = Saver(store, fence=lambda: fence[0])

    first = await saver.save(records[0], [_started("team-0")])
    assert [t.epoch for t in store.history("team-0")] == [1]

    store.claim_leadership(epoch=2, holder="replica-b", at=T0)  # another replica took over
    outcomes = await asyncio.gather(
        *(saver.save(r, [_started(r.name)]) for r in records[1:]), return_exceptions=True
    )
    assert [type(o) for o in outcomes] == [NotLeading, NotLeading]
    assert [store.get(r.name) for r in records[1:]] == records[1:]
    assert store.history("team-1") == []

    def not_leading() -> int:
        raise NotLeading("lease not renewed in time")

    saver = Saver(store, fence=not_leading)
    with pytest.raises(NotLeading, match="not renewed"):
        await saver.save(first, [_started("team-0")])
    assert store.get("team-0") == first


async def test_the_writer_thread_hands_back_results_and_errors_in_order() -> None:
    writer = WriterThread(name="test-writer")
    ran: list[int] = []

    def work(value: int) -> int:
        ran.append(value)
        if value == 2:
            raise TemporaryError("database unavailable", reason="DatabaseUnavailable")
        return value * 10

    first, second, third = (writer.run(functools.partial(work, v)) for v in (1, 2, 3))

    assert await first == 10
    with pytest.raises(TemporaryError, match="unavailable"):
        await second
    assert await third == 30
    assert ran == [1, 2, 3]


async def test_the_writer_thread_ends_when_idle_and_starts_again() -> None:
    writer = WriterThread(name="test-writer", idle=0.05)
    threads: list[str] = []

    def here() -> threading.Thread:
        threads.append(threading.current_thread().name)
        return threading.current_thread()

    first = await writer.run(here)
    for _ in range(100):
        if not first.is_alive():
            break
        await asyncio.sleep(0.01)
    assert not first.is_alive(), "the idle writer thread did not end"

    second = await writer.run(here)

    assert second is not first
    assert threads == ["test-writer", "test-writer"]
    assert threading.current_thread() not in (first, second)


async def test_a_cancelled_wait_leaves_the_writer_thread_working() -> None:
    writer = WriterThread(name="test-writer")
    release = threading.Event()
    slow = writer.run(release.wait)
    slow.cancel()
    release.set()

    assert await writer.run(lambda: "after") == "after"
    assert slow.cancelled()
