"""The store's fence: a write of a pass names the leader's epoch, and the database
refuses one whose epoch is no longer the stored leader's (``ports.Store``, "Fencing").

Run against both backends, like the rest of the contract.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from orchestrator.errors import NotLeading, TemporaryError
from orchestrator.store import SqlStore, engines, open_store, rows, sql, urls
from orchestrator.store.tables import onboardings
from tests.store.test_store import T0, onboarding, transition


def test_the_first_claim_wins_and_only_a_newer_epoch_replaces_it(store: SqlStore) -> None:
    assert store.leadership() is None
    assert store.claim_leadership(epoch=3, holder="replica-a", at=T0)
    assert not store.claim_leadership(epoch=3, holder="replica-b", at=T0)
    assert not store.claim_leadership(epoch=2, holder="replica-b", at=T0)
    held = store.leadership()
    assert held is not None
    assert (held.epoch, held.holder, held.since) == (3, "replica-a", T0)
    assert held.address is None
    later = T0 + timedelta(seconds=20)
    assert store.claim_leadership(
        epoch=4, holder="replica-b", at=later, address="http://10.0.0.7:8080"
    )
    held = store.leadership()
    assert held is not None
    assert (held.epoch, held.holder, held.since) == (4, "replica-b", later)
    assert held.address == "http://10.0.0.7:8080"


def test_writes_of_the_current_epoch_go_in_with_their_epoch(store: SqlStore) -> None:
    store.claim_leadership(epoch=7, holder="replica-a", at=T0)
    created = store.create(onboarding("team-a"), [transition("team-a")], epoch=7)
    saved = store.save(created, [transition("team-a", trigger="next")], epoch=7)
    [outcome] = store.save_all([(saved, [transition("team-a", trigger="third")])], epoch=7)
    assert not isinstance(outcome, Exception)
    assert outcome.version == 3
    # a write without an epoch (an API call) is not fenced, and says so in the history
    store.save(outcome, [transition("team-a", trigger="api")])
    assert [t.epoch for t in store.history("team-a")] == [7, 7, 7, None]


def test_a_write_of_an_older_epoch_is_refused_and_changes_nothing(store: SqlStore) -> None:
    store.claim_leadership(epoch=1, holder="replica-a", at=T0)
    record = store.create(onboarding("team-a"), [transition("team-a")], epoch=1)
    assert store.claim_leadership(epoch=2, holder="replica-b", at=T0)

    with pytest.raises(NotLeading, match=r"epoch 1.*epoch 2 of replica-b"):
        store.save(record, [transition("team-a", trigger="late")], epoch=1)
    with pytest.raises(NotLeading):
        store.save_all([(record, [transition("team-a", trigger="late")])], epoch=1)
    with pytest.raises(NotLeading):
        store.create(onboarding("team-b"), [transition("team-b")], epoch=1)

    assert store.get("team-a") == record
    assert store.get("team-b") is None
    assert [t.trigger for t in store.history("team-a")] == ["start"]
    # the new leader writes on
    store.save(record, [transition("team-a", trigger="new")], epoch=2)


def test_a_fenced_write_without_any_claim_is_refused(store: SqlStore) -> None:
    with pytest.raises(NotLeading, match="no epoch"):
        store.create(onboarding("team-a"), [transition("team-a")], epoch=1)
    assert store.get("team-a") is None


def test_a_claim_waits_for_the_fenced_write_in_progress(database_url: str) -> None:
    """The deposed leader's write that began before the claim ends before it, never after."""
    old, new = open_store(database_url), open_store(database_url)
    try:
        old.claim_leadership(epoch=1, holder="replica-a", at=T0)
        with old._writing(1):  # a fenced write of epoch 1 between its check and its commit
            thread, claimed = _claim_in_thread(new, epoch=2)
            time.sleep(0.5)
            assert not claimed.is_set(), "the claim went in while a fenced write was open"
        thread.join(timeout=10)
        assert claimed.is_set()
        with pytest.raises(NotLeading):
            old.create(onboarding("team-a"), [transition("team-a")], epoch=1)
    finally:
        old.close()
        new.close()


@pytest.mark.postgres
def test_a_write_left_open_by_a_frozen_replica_does_not_hold_the_claim_off(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader stopped between its fence and its commit (SIGSTOP, a paused VM) holds the
    leadership row: PostgreSQL ends its idle session, the claim goes in, and the frozen
    write never does."""
    monkeypatch.setattr(engines, "POSTGRES_IDLE_IN_TRANSACTION_MS", 300)
    old, new = open_store(postgres_url), open_store(postgres_url)
    try:
        old.claim_leadership(epoch=1, holder="replica-a", at=T0)
        started = time.monotonic()
        waited: list[float] = []

        def write_frozen_then_woken() -> None:
            with old._writing(1) as connection:  # fenced, then frozen: no statement for long
                thread, claimed = _claim_in_thread(new, epoch=2)
                assert claimed.wait(timeout=10), "the claim waited for the frozen write"
                waited.append(time.monotonic() - started)
                thread.join(timeout=10)
                # woken: the write it had under way goes with its session
                connection.execute(onboardings.insert(), rows.onboarding_values(onboarding("x")))

        with pytest.raises(TemporaryError, match="unavailable: terminating connection"):
            write_frozen_then_woken()
        assert 0.3 <= waited[0] < 2.0, waited  # the idle timeout, not the claim's lock timeout
        held = new.leadership()
        assert held is not None
        assert (held.epoch, held.holder) == (2, "replica-b")
        assert new.get("x") is None
        # the woken replica's next fenced write gets a new session, and is refused
        with pytest.raises(NotLeading):
            old.create(onboarding("team-a"), [transition("team-a")], epoch=1)
    finally:
        old.close()
        new.close()


@pytest.mark.postgres
def test_a_claim_gives_up_on_a_row_locked_too_long_and_goes_in_later(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock the idle timeout does not end (a session that is not ours) makes the claim
    fail as temporary within its lock timeout, instead of hanging the candidate."""
    monkeypatch.setattr(sql, "CLAIM_LOCK_TIMEOUT_MS", 300)
    store = open_store(postgres_url)
    libpq = urls.parse(postgres_url).set(drivername="postgresql")
    try:
        store.claim_leadership(epoch=1, holder="replica-a", at=T0)
        with psycopg.connect(libpq.render_as_string(hide_password=False)) as other:
            other.execute("SELECT epoch FROM leadership FOR SHARE")
            started = time.monotonic()
            with pytest.raises(TemporaryError, match=r"stayed locked .* for 0\.3s"):
                store.claim_leadership(epoch=2, holder="replica-b", at=T0)
            assert time.monotonic() - started < 2.0
            other.rollback()
            assert store.claim_leadership(epoch=2, holder="replica-b", at=T0)
    finally:
        store.close()


def _claim_in_thread(store: SqlStore, *, epoch: int) -> tuple[threading.Thread, threading.Event]:
    """A claim of ``epoch`` started in a thread, and the event set once it went in."""
    claimed = threading.Event()

    def claim() -> None:
        if store.claim_leadership(epoch=epoch, holder="replica-b", at=T0):
            claimed.set()

    thread = threading.Thread(target=claim, daemon=True)
    thread.start()
    return thread, claimed
