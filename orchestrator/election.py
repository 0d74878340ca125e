"""Leader election on a Lease: which replica acts, and for how long it may.

One loop per replica, on the ``ports.Leases`` port (a ``coordination.k8s.io/v1``
Lease on the management cluster):

- A **candidate** reads the Lease every ``retry`` seconds. It takes the Lease
  when there is none, when nobody holds it (released at a clean stop), or when
  the holder has not renewed it for ``duration`` seconds *as this replica
  observed it*: expiry is measured on this replica's monotonic clock from when
  it saw the Lease change, never by comparing its wall clock with the holder's.
  Taking it raises the Lease's transition count: the new leader's **epoch**.
- The **leader** renews every ``retry`` seconds. It acts only while its last
  successful renewal was *sent* less than ``renew_deadline`` seconds ago
  (``leading``; checked before every call to a cluster and every write of a
  pass). A renewal that fails, hangs or finds another holder ends leadership at
  once: ``on_stopped`` runs, and the replica is a candidate again.

Why a deposed leader stops before another one starts: the others count the
Lease's ``duration`` (15 s) from at most ``retry`` seconds before they saw a
renewal, and a renewal is sent at the latest when they see it; the leader
stops ``renew_deadline`` (10 s) after it sent its last renewal. The difference
(5 s, minus ``retry`` and one request, each bounded by ``retry``) is the
margin. A leader frozen past it (a stopped process, a paused VM) wakes up no
longer ``leading``, and the store refuses its epoch anyway once the new leader
has claimed a newer one.

The defaults are those of the Kubernetes controller runtime: 15 s / 10 s / 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from orchestrator.errors import Conflict, NotLeading, OrchestratorError
from orchestrator.ports import Leases
from orchestrator.records import LeaseRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseTiming:
    """How long a Lease lasts, how long a leader may go without renewing it, how often
    each replica tries (seconds)."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0

    def __post_init__(self) -> None:
        if not self.duration > self.renew_deadline > self.retry > 0:
            raise ValueError(
                f"lease duration ({self.duration:g}s) must be longer than the renew deadline"
                f" ({self.renew_deadline:g}s), which must be longer than the retry period"
                f" ({self.retry:g}s)"
            )


class Gate:
    """What every call to a cluster and every write of a pass asks first: may this
    replica act? Always yes for the only replica (no elector)."""

    def __init__(self, *, on_call: Callable[[], None] | None = None) -> None:
        self.elector: Elector | None = None
        #: the epoch confirmed in the store for the current leadership
        self.epoch: int | None = None
        #: told of every call let through (the metric of the last call to a cluster)
        self.on_call = on_call

    def check(self) -> None:
        if self.elector is not None:
            self.elector.check()
        if self.on_call is not None:
            self.on_call()

    def fence(self) -> int | None:
        """The epoch a write names (None for the only replica); raises ``NotLeading``."""
        if self.elector is None:
            return None
        self.elector.check()
        if self.epoch is None:
            raise NotLeading(f"replica {self.elector.identity} has no confirmed epoch")
        return self.epoch


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Elector:
    """The election loop of one replica; see the module docstring."""

    def __init__(
        self,
        leases: Leases,
        *,
        identity: str,
        timing: LeaseTiming | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.leases = leases
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self._monotonic = monotonic
        self._now = now
        self._jitter = jitter
        #: the epoch of the current (or last) leadership
        self.epoch: int | None = None
        #: the holder this replica last saw (itself while it leads)
        self.holder: str | None = None
        #: when this replica sent its last successful renewal (None: not leading)
        self._renewed_at: float | None = None
        #: the Lease as last seen, when it was seen to change, and when it was last read
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._read_at: float | None = None

    # --- the gate -------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this replica may act now (its lease renewed within the deadline)."""
        renewed = self._renewed_at
        return renewed is not None and self._monotonic() - renewed < self.timing.renew_deadline

    def check(self) -> None:
        """Raise ``NotLeading`` unless this replica may act now."""
        if not self.leading:
            raise NotLeading(f"replica {self.identity} does not lead (any more)")

    # --- the loop -------------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        *,
        on_started: Callable[[int], Awaitable[None]],
        on_stopped: Callable[[str], Awaitable[None]],
    ) -> None:
        """Campaign, lead and campaign again until ``stop``; release the Lease at the end
        when leading, so that another replica takes over at once."""
        while not stop.is_set():
            if not await self._bounded_attempt():
                await self._pause(stop, self._next_try())
                continue
            assert self.epoch is not None
            try:
                await on_started(self.epoch)
            except OrchestratorError as error:
                await self._resign(on_stopped, f"cannot start leading: {error}")
                await self._pause(stop, self.timing.retry)
                continue
            reason = await self._keep(stop)
            if stop.is_set() and self.leading:
                await self._resign(on_stopped, "stopping", release=True)
                return
            await self._resign(on_stopped, reason)

    async def raise_epoch(self, at_least: int) -> int:
        """Raise the held Lease's transition count to ``at_least`` (when a store already
        holds that epoch, e.g. after the Lease was deleted and created anew)."""
        self.check()
        current = await self.leases.get()
        if current is None or current.holder != self.identity:
            raise NotLeading(f"{self.leases.where} is no longer held by {self.identity}")
        updated = await self.leases.update(
            replace(current, transitions=max(current.transitions, at_least))
        )
        self.epoch = updated.transitions
        return self.epoch

    async def _keep(self, stop: asyncio.Event) -> str:
        """Renew until stopped or lost; answers why leadership ended."""
        while True:
            await self._pause(stop, self.timing.retry)
            if stop.is_set():
                return "stopping"
            remaining = self._remaining()
            if remaining <= 0:
                return f"lease not renewed within {self.timing.renew_deadline:g}s"
            try:
                renewed = await asyncio.wait_for(self._attempt(), timeout=remaining)
            except TimeoutError:
                return f"lease renewal got no answer within {self.timing.renew_deadline:g}s"
            if self.holder != self.identity:
                return f"{self.leases.where} is held by {self.holder} now"
            if not renewed and not self.leading:
                return f"lease not renewed within {self.timing.renew_deadline:g}s"

    async def _bounded_attempt(self) -> bool:
        """An attempt of a candidate: one that gets no answer within a retry period fails."""
        try:
            return await asyncio.wait_for(self._attempt(), timeout=self.timing.retry)
        except TimeoutError:
            return False

    async def _attempt(self) -> bool:
        """One read, then a create or update when this replica may hold the Lease."""
        sent = self._monotonic()
        try:
            current = await self.leases.get()
            if current is None:
                taken = await self.leases.create(
                    LeaseRecord(
                        holder=self.identity,
                        duration_seconds=round(self.timing.duration),
                        acquired_at=self._now(),
                        renewed_at=self._now(),
                        transitions=0,
                    )
                )
                return self._took(taken, sent)
            self._observe(current, sent)
            if current.holder and current.holder != self.identity and not self._expired(current):
                return False
            wall = self._now()
            mine = current.holder == self.identity
            taken = await self.leases.update(
                replace(
                    current,
                    holder=self.identity,
                    duration_seconds=round(self.timing.duration),
                    renewed_at=wall,
                    acquired_at=current.acquired_at if mine else wall,
                    transitions=current.transitions if mine else current.transitions + 1,
                )
            )
            return self._took(taken, sent)
        except Conflict:
            return False  # another replica wrote the Lease first: read it again next time
        except OrchestratorError as error:
            log.warning(
                "cannot read or write the leader Lease",
                extra={"lease": self.leases.where, "error": str(error), "reason": error.reason},
            )
            return False

    def _observe(self, current: LeaseRecord, sent: float) -> None:
        """Remember when the Lease was seen to change: at the latest when this read was
        sent, at the earliest one retry period before (the previous read)."""
        if self._observed is None or current.version != self._observed.version:
            previous = self._read_at if self._observed is not None else None
            self._observed_at = max(previous or sent, sent - self.timing.retry)
            self._observed = current
        self._read_at = sent
        self.holder = current.holder or None

    def _expired(self, current: LeaseRecord) -> bool:
        duration = current.duration_seconds or self.timing.duration
        return self._monotonic() >= self._observed_at + duration

    def _took(self, taken: LeaseRecord, sent: float) -> bool:
        self._renewed_at = sent
        self._observed, self._observed_at, self._read_at = taken, sent, sent
        self.holder = self.identity
        self.epoch = taken.transitions
        return True

    async def _resign(
        self, on_stopped: Callable[[str], Awaitable[None]], reason: str, *, release: bool = False
    ) -> None:
        self._renewed_at = None
        if release:
            await self._release()
        await on_stopped(reason)

    async def _release(self) -> None:
        """Hand the Lease back (nobody holds it): the next candidate takes it at once."""
        try:
            current = await self.leases.get()
            if current is not None and current.holder == self.identity:
                await self.leases.update(replace(current, holder="", renewed_at=self._now()))
        except OrchestratorError as error:
            log.warning(
                "cannot release the leader Lease; the others take over once it expires",
                extra={"lease": self.leases.where, "error": str(error)},
            )

    def _remaining(self) -> float:
        if self._renewed_at is None:
            return 0.0
        return self.timing.renew_deadline - (self._monotonic() - self._renewed_at)

    def _next_try(self) -> float:
        """The retry period with a little jitter, but no later than the expiry of the
        holder's lease as observed (so a dead leader is replaced on time)."""
        wait = self.timing.retry * (0.9 + 0.2 * self._jitter())
        if self._observed is not None and self._observed.holder:
            duration = self._observed.duration_seconds or self.timing.duration
            until_expiry = self._observed_at + duration - self._monotonic()
            wait = min(wait, max(until_expiry, 0.0) + 0.05)
        return wait

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
