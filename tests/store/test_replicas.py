"""What replicas share through the database: the lock of a replica that runs alone,
and (PostgreSQL) the wake notifications a follower sends the leader."""

from __future__ import annotations

import asyncio
import os

import pytest

from orchestrator.errors import PermanentError
from orchestrator.store import open_store, urls
from orchestrator.store.replicas import ExclusiveUse, WakeChannel


def test_a_second_replica_without_election_is_refused(database_url: str) -> None:
    open_store(database_url).close()  # the database exists
    url = urls.parse(database_url)
    first, second = ExclusiveUse(url), ExclusiveUse(url)
    first.acquire()
    try:
        with pytest.raises(PermanentError, match="in use by another") as refused:
            second.acquire()
        assert refused.value.reason == "DatabaseInUse"
        assert url.password is None or url.password not in str(refused.value)
        if url.get_backend_name() == "sqlite":
            assert f"pid {os.getpid()}" in str(refused.value)
    finally:
        first.release()
    second.acquire()  # released: the next one may run
    second.release()


def test_wake_channels_exist_on_postgresql_only(database_url: str) -> None:
    channel = WakeChannel.for_url(urls.parse(database_url))
    assert (channel is not None) == database_url.startswith("postgres")


@pytest.mark.postgres
async def test_a_wake_sent_by_one_replica_reaches_the_listening_one(postgres_url: str) -> None:
    open_store(postgres_url).close()
    channel = WakeChannel(urls.parse(postgres_url))
    woken: asyncio.Queue[str] = asyncio.Queue()
    listening = asyncio.create_task(channel.listen(woken.put_nowait))
    try:
        # LISTEN takes a moment: send until the first one is heard
        for _ in range(50):
            await channel.send("local-a")
            try:
                assert await asyncio.wait_for(woken.get(), timeout=0.2) == "local-a"
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("no wake arrived")
        await channel.send("local-b")
        assert await asyncio.wait_for(woken.get(), timeout=5) == "local-b"
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
