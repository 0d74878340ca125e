"""The reconciler's writes to the store: off the event loop, and committed together.

Every onboarding of a pass that has something to record calls ``save`` and
waits for it (so the name of a workflow is still stored before its
submission). While one batch is being committed in a worker thread, the saves
that arrive meanwhile queue up and go in the next transaction together: the
more onboardings act at once, the fewer commits per onboarding, and the loop
never waits for the disk.

The batches go to one thread of the Saver's own, handed over through a queue: a
thread pool's future per batch cost about twice the CPU per hand-over, and the
hand-over was the largest single cost of a pass. The thread ends when it has had
nothing to do for a while, and is started again on the next save.

Each batch is fenced: ``fence()`` names the leader's epoch the store checks the
batch against (None for the only replica), or raises ``NotLeading``, which every
save of the batch then raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.errors import Conflict
from orchestrator.ports import Store
from orchestrator.records import OnboardingRecord, TransitionRecord

#: saves committed in one transaction at most
MAX_BATCH = 256
#: seconds the writer thread waits for work before it ends
WRITER_IDLE_SECONDS = 30.0

T = TypeVar("T")


class WriterThread:
    """Runs functions one after the other in a thread of its own, for the event loop
    to await; started on demand, ended after ``idle`` seconds without work."""

    def __init__(self, *, name: str, idle: float = WRITER_IDLE_SECONDS) -> None:
        self._name = name
        self._idle = idle
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, function: Callable[[], T]) -> asyncio.Future[T]:
        """``function()`` in the thread; its result or exception through the future."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = function()
            except BaseException as error:  # handed to the awaiting task, not lost
                _settle_soon(loop, done, None, error)
            else:
                _settle_soon(loop, done, result, None)

        with self._lock:
            self._jobs.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
        return done

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:  # ``run`` puts and looks under the same lock
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            job()


def _settle_soon(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[Any],
    result: object,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if done.done():
            return  # its awaiting task was cancelled meanwhile
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    # the loop may have closed meanwhile: then nobody awaits the outcome any more
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


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
        self._thread = WriterThread(name="store-writer")
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
                outcomes = await self._thread.run(
                    functools.partial(self._store.save_all, items, epoch=epoch)
                )
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
