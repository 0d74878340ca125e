"""Leader election (``election.Elector``) against an in-memory Lease that behaves like
the API server's (resourceVersion compare-and-set), on fake and on real short clocks."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from orchestrator.election import Elector, Gate, LeaseTiming
from orchestrator.errors import Conflict, NotLeading, TemporaryError
from orchestrator.records import LeaseRecord

T0 = datetime(2026, 12, 2, tzinfo=UTC)


class MemoryLeases:
    """One Lease: create fails when it exists, update only over the version read."""

    where = "Lease test/orchestrator"

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.writes = 0
        #: replicas whose requests fail (a partition), or hang until released
        self.unreachable: set[str] = set()
        self.hanging = asyncio.Event()
        self.hang: set[str] = set()

    def view(self, identity: str) -> MemoryLeasesView:
        return MemoryLeasesView(self, identity)


class MemoryLeasesView:
    """The shared Lease as one replica reaches it (so a partition can be per replica)."""

    def __init__(self, shared: MemoryLeases, identity: str) -> None:
        self.shared = shared
        self.identity = identity
        self.where = shared.where

    async def _reach(self) -> None:
        if self.identity in self.shared.hang:
            await asyncio.Event().wait()  # never answers (cancelled by a timeout)
        if self.identity in self.shared.unreachable:
            raise TemporaryError("management cluster unreachable", reason="ClusterUnreachable")

    async def get(self) -> LeaseRecord | None:
        await self._reach()
        return self.shared.record

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        await self._reach()
        if self.shared.record is not None:
            raise Conflict("exists")
        return self._store(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        await self._reach()
        if self.shared.record is None or record.version != self.shared.record.version:
            raise Conflict("the Lease changed meanwhile")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.shared.writes += 1
        self.shared.record = replace(record, version=str(self.shared.writes))
        return self.shared.record


def test_timing_must_leave_a_margin() -> None:
    LeaseTiming()  # the defaults: 15 / 10 / 2
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseTiming(duration=10, renew_deadline=10, retry=2)
    with pytest.raises(ValueError, match="retry period"):
        LeaseTiming(duration=15, renew_deadline=2, retry=2)


def test_the_gate_lets_the_only_replica_act_and_a_leader_only_while_its_lease_holds() -> None:
    gate = Gate()
    gate.check()
    assert gate.fence() is None
    clock = [0.0]
    elector = Elector(MemoryLeases().view("a"), identity="a", monotonic=lambda: clock[0])
    gate.elector = elector
    with pytest.raises(NotLeading):
        gate.check()
    assert asyncio.run(elector._attempt())
    with pytest.raises(NotLeading, match="no confirmed epoch"):
        gate.fence()  # leading, but its epoch is not in the store yet
    gate.epoch = elector.epoch
    assert gate.fence() == 0
    clock[0] = 9.9
    gate.check()
    clock[0] = 10.0  # the renew deadline has passed without a renewal
    with pytest.raises(NotLeading):
        gate.check()


class Replicas(RuleBasedStateMachine):
    """Replicas campaign and renew in any order, get paused (a stopped process, a frozen
    VM) and cut off from the API, while time moves: at no instant may two of them be
    allowed to act, and each new leadership has a higher epoch than the one before.

    Requests are instantaneous here; the real margin for their latency is in the
    module docstring of ``election``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.loop = asyncio.new_event_loop()
        self.leases = MemoryLeases()
        self.electors = {
            name: Elector(
                self.leases.view(name),
                identity=name,
                monotonic=lambda: self.now,
                now=lambda: T0 + timedelta(seconds=self.now),
            )
            for name in ("a", "b", "c")
        }
        self.paused: set[str] = set()
        #: when each replica last tried: a running replica tries every retry period
        self.tried = dict.fromkeys(self.electors, 0.0)
        self.epochs: list[tuple[str, int]] = []

    def teardown(self) -> None:
        self.loop.close()

    @rule(name=st.sampled_from("abc"))
    def attempt(self, name: str) -> None:
        if name in self.paused:
            return
        elector = self.electors[name]
        was_leading = elector.leading
        self.loop.run_until_complete(elector._attempt())
        self.tried[name] = self.now
        if elector.leading and not was_leading:
            assert elector.epoch is not None
            self.epochs.append((name, elector.epoch))

    @rule(seconds=st.floats(min_value=0.0, max_value=2.0))
    def time_passes(self, seconds: float) -> None:
        # a running replica does not let a retry period go by without trying
        running = [n for n in self.electors if n not in self.paused]
        latest = min((self.tried[n] for n in running), default=self.now + seconds)
        self.now = max(self.now, min(self.now + seconds, latest + LeaseTiming().retry))

    @rule(seconds=st.floats(min_value=0.0, max_value=2.0), order=st.permutations("abc"))
    def a_round(self, seconds: float, order: list[str]) -> None:
        """A retry period or less goes by, and every running replica tries once."""
        self.time_passes(seconds)
        for name in order:
            self.attempt(name)

    @rule(name=st.sampled_from("abc"))
    def pause(self, name: str) -> None:
        self.paused.add(name)

    @precondition(lambda self: bool(self.paused))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.paused)))
        self.paused.discard(name)
        self.tried[name] = self.now

    @rule(name=st.sampled_from("abc"), cut=st.booleans())
    def partition(self, name: str, cut: bool) -> None:
        (self.leases.unreachable.add if cut else self.leases.unreachable.discard)(name)

    @invariant()
    def at_most_one_may_act(self) -> None:
        acting = [name for name, e in self.electors.items() if e.leading]
        assert len(acting) <= 1, f"{acting} may all act at t={self.now}"

    @invariant()
    def each_leadership_has_a_newer_epoch(self) -> None:
        epochs = [epoch for _, epoch in self.epochs]
        # the same replica renewing after a lapse keeps its epoch; a new holder raises it
        for (before_name, before), (after_name, after) in zip(
            self.epochs, self.epochs[1:], strict=False
        ):
            assert after > before or (after == before and after_name == before_name), epochs


TestReplicas = Replicas.TestCase
TestReplicas.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


# --- the loop, on a real (short) clock ----------------------------------------------

FAST = LeaseTiming(duration=0.6, renew_deadline=0.4, retry=0.05)


async def _run(elector: Elector, stop: asyncio.Event, events: list[str]) -> None:
    async def started(epoch: int) -> None:
        events.append(f"{elector.identity} started {epoch}")

    async def stopped(reason: str) -> None:
        events.append(f"{elector.identity} stopped: {reason}")

    await elector.run(stop, on_started=started, on_stopped=stopped)


async def _until(condition: object, timeout: float = 3.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():  # type: ignore[operator]
        assert loop.time() - start < timeout, "timed out"
        await asyncio.sleep(0.01)
    return loop.time() - start


async def test_a_clean_stop_hands_the_lease_over_at_once() -> None:
    leases = MemoryLeases()
    a = Elector(leases.view("a"), identity="a", timing=FAST)
    b = Elector(leases.view("b"), identity="b", timing=FAST)
    stop_a, stop_b, events = asyncio.Event(), asyncio.Event(), []
    runs = [
        asyncio.create_task(_run(a, stop_a, events)),
        asyncio.create_task(_run(b, stop_b, events)),
    ]
    await _until(lambda: a.leading or b.leading)
    first, second = (a, b) if a.leading else (b, a)
    (stop_a if first is a else stop_b).set()
    took = await _until(lambda: second.leading)
    assert took < FAST.duration  # released: no wait for the lease to expire
    assert not first.leading
    assert second.epoch == 1
    assert f"{first.identity} stopped: stopping" in events
    stop_a.set()
    stop_b.set()
    await asyncio.gather(*runs)
    assert leases.record is not None
    assert leases.record.holder == ""


async def test_a_leader_cut_off_stops_within_the_renew_deadline_before_another_starts() -> None:
    leases = MemoryLeases()
    a = Elector(leases.view("a"), identity="a", timing=FAST)
    stop, events = asyncio.Event(), []
    run_a = asyncio.create_task(_run(a, stop, events))
    await _until(lambda: a.leading)
    b = Elector(leases.view("b"), identity="b", timing=FAST)
    run_b = asyncio.create_task(_run(b, stop, events))
    await asyncio.sleep(0.2)
    assert a.leading
    assert not b.leading

    leases.hang.add("a")  # its renewals get no answer from now on
    cut = asyncio.get_running_loop().time()
    await _until(lambda: not a.leading)
    a_stopped = asyncio.get_running_loop().time() - cut
    await _until(lambda: b.leading)
    b_started = asyncio.get_running_loop().time() - cut
    assert a_stopped <= FAST.renew_deadline + 0.05
    assert a_stopped < b_started
    assert b.epoch == 1
    await _until(
        lambda: any(e.startswith("a stopped: lease renewal got no answer") for e in events)
    )
    stop.set()
    leases.hang.clear()
    await asyncio.gather(run_a, run_b)


async def test_a_replica_that_cannot_start_leading_gives_up_and_tries_again() -> None:
    leases = MemoryLeases()
    a = Elector(leases.view("a"), identity="a", timing=FAST)
    stop, tries = asyncio.Event(), []

    async def started(epoch: int) -> None:
        tries.append(epoch)
        if len(tries) == 1:
            raise TemporaryError("database down", reason="DatabaseUnavailable")

    async def stopped(reason: str) -> None:
        tries.append(reason)  # type: ignore[arg-type]

    run = asyncio.create_task(a.run(stop, on_started=started, on_stopped=stopped))
    await _until(lambda: len(tries) >= 3)
    assert tries[:3] == [0, "cannot start leading: database down", 0]
    assert a.leading
    stop.set()
    await run


async def test_raise_epoch_lifts_the_lease_count_above_the_stored_one() -> None:
    leases = MemoryLeases()
    a = Elector(leases.view("a"), identity="a", timing=FAST)
    assert await a._attempt()
    assert a.epoch == 0
    assert await a.raise_epoch(7) == 7
    assert leases.record is not None
    assert leases.record.transitions == 7
    b = Elector(leases.view("b"), identity="b", timing=FAST)
    with pytest.raises(NotLeading):
        await b.raise_epoch(9)


# --- where the other replicas reach this one -----------------------------------------


@pytest.mark.parametrize(
    ("listen", "pod_ip", "given", "expected"),
    [
        ("127.0.0.1:8080", None, None, "http://127.0.0.1:8080"),
        ("0.0.0.0:8080", None, None, "http://127.0.0.1:8080"),
        ("0.0.0.0:8080", "10.0.0.7", None, "http://10.0.0.7:8080"),
        ("[::]:8080", "fd00::7", None, "http://[fd00::7]:8080"),
        ("0.0.0.0:8080", "10.0.0.7", "https://orchestrator-0.example:8443", "https://orchestrator-0.example:8443"),
    ],
)  # fmt: skip
def test_the_advertised_url(
    monkeypatch: pytest.MonkeyPatch,
    listen: str,
    pod_ip: str | None,
    given: str | None,
    expected: str,
) -> None:
    from orchestrator.config.settings import Settings

    if pod_ip:
        monkeypatch.setenv("POD_IP", pod_ip)
    else:
        monkeypatch.delenv("POD_IP", raising=False)
    assert Settings(listen=listen, advertise_url=given).advertised_url() == expected


def test_lease_settings_are_checked() -> None:
    from pydantic import ValidationError

    from orchestrator.config.settings import Settings

    with pytest.raises(ValidationError, match="lease_name"):
        Settings(lease_name="Not A Name")
    with pytest.raises(ValidationError, match="advertise_url"):
        Settings(advertise_url="10.0.0.7:8080")
