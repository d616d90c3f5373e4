"""`Fresh`, the rule behind the gateway's snapshot: never served older than its age (counted from
when its read began), nor from a read begun before an invalidation; past half its age refreshed in
the background; past its age waited for, single-flight, bounded, failing closed. Ages run on a
clock the tests move by hand."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aperture.gateway.freshness import Fresh, StateUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    """The database stand-in is a plain function: what it returns is what was read when it began."""

    def __init__(self) -> None:
        self.value = 1
        self.gate = threading.Event()
        self.gate.set()
        self.failure: Exception | None = None
        self.began = threading.Event()

    def __call__(self) -> int:
        value = self.value
        self.began.set()
        self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return value


def fresh(source: Source, clock: Clock, *, max_age_s: float = 1.0, wait_s: float = 5.0) -> Fresh[int]:
    return Fresh(source, max_age_s=max_age_s, wait_s=wait_s, what="test state", monotonic=clock)


def _settled(holder: Fresh[int]) -> None:
    """Wait for the read in flight, if any (progress, not a clock)."""
    future = holder._inflight
    if future is not None:
        future.result(timeout=60)


def test_a_young_value_is_served_as_it_is_and_read_again_near_the_end_of_its_age() -> None:
    source, clock = Source(), Clock()
    holder = fresh(source, clock)
    assert holder.get_blocking() == 1 and holder.reads == 1
    source.value = 2
    clock.now += 0.7
    assert holder.peek() == 1 and holder.reads == 1  # young: nothing read
    clock.now += 0.1
    assert holder.peek() == 1 and holder.reads == 2  # its last quarter: served, read again behind
    _settled(holder)
    assert holder.peek() == 2


def test_a_slow_read_is_begun_earlier() -> None:
    clock = Clock()

    def slow() -> int:
        clock.now += 0.3  # the read takes 0.3 s: the next one begins 0.6 s before the end of the age
        return 1

    holder: Fresh[int] = Fresh(slow, max_age_s=1.0, wait_s=5.0, what="test state", monotonic=clock)
    assert holder.get_blocking() == 1 and holder.reads == 1  # began at 100.0, done at 100.3
    clock.now += 0.05
    assert holder.peek() == 1 and holder.reads == 1  # 0.35 s old: not yet
    clock.now += 0.1
    assert holder.peek() == 1 and holder.reads == 2  # 0.45 s old, past 1 - 2 x 0.3: read again
    _settled(holder)


def test_a_value_older_than_its_age_is_never_served() -> None:
    source, clock = Source(), Clock()
    holder = fresh(source, clock)
    assert holder.get_blocking() == 1
    source.value = 2
    clock.now += 30  # an idle period
    assert holder.peek() is None
    source.gate.clear()

    async def scenario() -> int:
        waiting = asyncio.ensure_future(holder.get())
        await asyncio.to_thread(source.began.wait, 60)
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the request waits for the read; it is not served the old value
        source.gate.set()
        return await waiting

    assert asyncio.run(scenario()) == 2


def test_a_read_begun_before_an_invalidation_is_not_served() -> None:
    source, clock = Source(), Clock()
    holder = fresh(source, clock)
    assert holder.get_blocking() == 1
    clock.now += 0.8
    source.gate.clear()
    source.began.clear()
    assert holder.peek() == 1  # a background read begins, and is held
    assert source.began.wait(60)
    source.value = 3  # a change made through this process, after that read began
    holder.invalidate()
    assert holder.peek() is None

    async def scenario() -> int:
        waiting = asyncio.ensure_future(holder.get())
        await asyncio.sleep(0.05)
        source.gate.set()
        return await waiting

    assert asyncio.run(scenario()) == 3 and holder.reads == 3


def test_requests_share_one_read() -> None:
    source, clock = Source(), Clock()
    holder = fresh(source, clock)
    source.gate.clear()

    async def scenario() -> list[int]:
        waiting = [asyncio.ensure_future(holder.get()) for _ in range(50)]
        await asyncio.to_thread(source.began.wait, 60)
        source.gate.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == [1] * 50 and holder.reads == 1


def test_an_age_of_zero_reads_for_every_request_that_finds_the_state_changed() -> None:
    source, clock = Source(), Clock()
    holder = fresh(source, clock, max_age_s=0)
    assert holder.get_blocking() == 1
    source.value = 2
    clock.now += 0.001
    assert holder.get_blocking() == 2 and holder.reads == 2


def test_an_unreadable_or_slow_database_fails_closed_and_recovers() -> None:
    source, clock = Source(), Clock()
    holder = fresh(source, clock, wait_s=0.2)
    assert holder.get_blocking() == 1
    clock.now += 30
    source.failure = ConnectionError("the database is away")
    with pytest.raises(StateUnavailable) as error:
        asyncio.run(holder.get())
    assert error.value.http_status == 503 and "ConnectionError" in error.value.message
    with pytest.raises(StateUnavailable):
        holder.get_blocking()
    source.failure = None
    source.value = 5
    source.gate.clear()  # now it hangs: the wait is bounded
    with pytest.raises(StateUnavailable) as error:
        asyncio.run(holder.get())
    assert "within 0.2 s" in error.value.message
    source.gate.set()
    _settled(holder)
    assert asyncio.run(holder.get()) == 5  # the read that was slow lands, and serves
