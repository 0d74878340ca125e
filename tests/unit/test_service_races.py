"""An API write that loses the compare-and-set to the daemon's own save reads again."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.errors import ChangedMeanwhile, Conflict
from orchestrator.interfaces.service import CHANGED_TRIES, _again_if_changed


def test_a_write_that_lost_to_the_daemon_is_decided_again_on_the_latest_state() -> None:
    tries: list[int] = []

    async def write() -> str:
        tries.append(len(tries) + 1)
        if len(tries) < 3:
            raise ChangedMeanwhile("onboarding 'a' was changed meanwhile")
        return "saved"

    assert asyncio.run(_again_if_changed(write)) == "saved"
    assert tries == [1, 2, 3]


def test_a_record_that_keeps_changing_is_a_conflict_after_a_few_tries() -> None:
    tries = 0

    async def write() -> None:
        nonlocal tries
        tries += 1
        raise ChangedMeanwhile("onboarding 'a' was changed meanwhile")

    with pytest.raises(ChangedMeanwhile):
        asyncio.run(_again_if_changed(write))
    assert tries == CHANGED_TRIES


def test_another_conflict_is_not_tried_again() -> None:
    tries = 0

    async def write() -> None:
        nonlocal tries
        tries += 1
        raise Conflict("onboarding 'a' is declared in files; remove it there")

    with pytest.raises(Conflict, match="declared in files"):
        asyncio.run(_again_if_changed(write))
    assert tries == 1
