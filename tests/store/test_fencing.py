"""The store's fence: a write of a pass names the leader's epoch, and the database
refuses one whose epoch is no longer the stored leader's (``ports.Store``, "Fencing").

Run against both backends, like the rest of the contract.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from orchestrator.errors import NotLeading
from orchestrator.store import SqlStore, open_store
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
        claimed = threading.Event()

        def claim() -> None:
            new.claim_leadership(epoch=2, holder="replica-b", at=T0)
            claimed.set()

        with old._writing(1):  # a fenced write of epoch 1 between its check and its commit
            thread = threading.Thread(target=claim)
            thread.start()
            time.sleep(0.5)
            assert not claimed.is_set(), "the claim went in while a fenced write was open"
        thread.join(timeout=10)
        assert claimed.is_set()
        with pytest.raises(NotLeading):
            old.create(onboarding("team-a"), [transition("team-a")], epoch=1)
    finally:
        old.close()
        new.close()
