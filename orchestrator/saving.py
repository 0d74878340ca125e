"""The reconciler's writes to the store: off the event loop, and committed together.

Every onboarding of a pass that has something to record calls ``save`` and
waits for it (so the name of a workflow is still stored before its
submission). While one batch is being committed in a worker thread, the saves
that arrive meanwhile queue up and go in the next transaction together: the
more onboardings act at once, the fewer commits per onboarding, and the loop
never waits for the disk.

Each batch is fenced: ``fence()`` names the leader's epoch the store checks the
batch against (None for the only replica), or raises ``NotLeading``, which every
save of the batch then raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.errors import Conflict
from orchestrator.ports import Store
from orchestrator.records import OnboardingRecord, TransitionRecord

#: saves committed in one transaction at most
MAX_BATCH = 256


@dataclass
class _Pending:
    record: OnboardingRecord
    transitions: Sequence[TransitionRecord]
    done: asyncio.Future[OnboardingRecord]


class Saver:
    """Group commit of the reconciler's saves; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = MAX_BATCH,
        fence: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._fence = fence
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        #: transactions committed, and saves in them (for the benchmark and tests)
        self.commits = 0
        self.saves = 0

    async def save(
        self, record: OnboardingRecord, transitions: Sequence[TransitionRecord] = ()
    ) -> OnboardingRecord:
        """What ``Store.save`` does, awaited: the saved record, or ``Conflict`` or the
        store's error raised. The record must not change until this returns."""
        done: asyncio.Future[OnboardingRecord] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(record, tuple(transitions), done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="store-writer")
        return await done

    async def _write(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
            items = [(p.record, p.transitions) for p in batch]
            try:
                epoch = self._fence()
                outcomes = await asyncio.to_thread(self._store.save_all, items, epoch=epoch)
            except Exception as error:
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            except BaseException:
                # cancelled (the loop is closing): so are the saves waiting for it
                for pending in batch + self._queue:
                    pending.done.cancel()
                self._queue.clear()
                raise
            self.commits += 1
            self.saves += len(batch)
            for pending, outcome in zip(batch, outcomes, strict=True):
                if pending.done.done():
                    continue  # its caller was cancelled meanwhile
                if isinstance(outcome, Conflict):
                    pending.done.set_exception(outcome)
                else:
                    pending.done.set_result(outcome)
