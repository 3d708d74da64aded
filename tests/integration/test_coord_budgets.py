"""Shared budgets against a real redis-server: a GCRA rate limit that holds across processes and
restarts, Retry-After deferral, and the per-registry copy semaphore with expiring leases."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kuik_testing import RedisServer
from kuikcore.coord import Coord, LockBusy, LockLost, RateLimit, RateLimiter, Semaphore, connect
from tests.integration.coord_processes import PROCESSES


def _spend_budget(
    url: str, prefix: str, key: str, count: int, period: float, seconds: float
) -> None:
    """Once told to go, try to check a registry as often as possible for `seconds`; report how
    many checks the shared budget allowed, and when this process first and last asked."""

    async def main() -> None:
        coord = connect(url, prefix=prefix)
        limiter = RateLimiter(coord)
        limit = RateLimit(count=count, period=period)
        await coord.redis.incr(f"{prefix}ready")
        while not await coord.redis.exists(f"{prefix}go"):  # noqa: ASYNC110 - set by another process
            await asyncio.sleep(0.01)
        allowed = denied = 0
        first = time.time()
        while time.time() < first + seconds:
            decision = await limiter.try_acquire(key, limit)
            if decision.allowed:
                allowed += 1
            else:
                denied += 1
                await asyncio.sleep(min(decision.wait, 0.01))
        last = time.time()
        await coord.redis.rpush(f"{prefix}report", f"{allowed} {denied} {first} {last}")
        await coord.aclose()

    asyncio.run(main())


@pytest.mark.timeout(60)
async def test_rate_limit_holds_across_two_processes(
    coord: Coord, redis_server: RedisServer
) -> None:
    prefix = coord.keys.prefix
    key = "monitoring:registry.example"
    count, period = 10, 1.0  # one check every 100 ms
    procs: list[Any] = [
        PROCESSES.Process(
            target=_spend_budget, args=(redis_server.url, prefix, key, count, period, 1.5)
        )
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    try:
        while int(await coord.redis.get(f"{prefix}ready") or 0) < 2:
            assert all(p.exitcode is None for p in procs)
            await asyncio.sleep(0.02)
        await coord.redis.set(f"{prefix}go", 1)
        while await coord.redis.llen(f"{prefix}report") < 2:
            assert all(p.exitcode in (None, 0) for p in procs)
            await asyncio.sleep(0.05)
    finally:
        for proc in procs:
            proc.join(10)
    reports = [r.split() for r in await coord.redis.lrange(f"{prefix}report", 0, -1)]
    allowed = sum(int(r[0]) for r in reports)
    denied = sum(int(r[1]) for r in reports)
    span = max(float(r[3]) for r in reports) - min(float(r[2]) for r in reports)
    # GCRA with burst 1 spaces allowed checks 100 ms apart in Redis time, whoever asks;
    # two independent budgets would have allowed about twice this
    assert allowed <= span * count / period + 1
    assert all(int(r[0]) >= 1 for r in reports)  # both processes got their share
    assert denied > allowed  # two greedy processes were held back, together


async def test_rate_limit_survives_a_new_limiter_and_connection(
    coord: Coord, redis_server: RedisServer
) -> None:
    limit = RateLimit(count=1, period=3600)
    first = await RateLimiter(coord).try_acquire("monitoring:hub", limit)
    assert first.allowed
    # a restarted replica: new process state, new connection, same Redis
    other = connect(redis_server.url, prefix=coord.keys.prefix)
    try:
        decision = await RateLimiter(other).try_acquire("monitoring:hub", limit)
        assert not decision.allowed
        assert 3590 < decision.wait <= 3600
        assert await RateLimiter(other).acquire("monitoring:hub", limit, max_wait=0.1) is False
    finally:
        await other.aclose()
    assert (await RateLimiter(coord).try_acquire("monitoring:other", limit)).allowed  # per key


async def test_burst_allows_back_to_back_then_spaces(coord: Coord) -> None:
    limiter = RateLimiter(coord)
    limit = RateLimit(count=3, period=3600, burst=3)
    results = [(await limiter.try_acquire("k", limit)).allowed for _ in range(5)]
    assert results == [True, True, True, False, False]


async def test_retry_after_defers_the_whole_budget(coord: Coord) -> None:
    limiter = RateLimiter(coord)
    limit = RateLimit(count=100, period=1)
    assert (await limiter.try_acquire("monitoring:quota", limit)).allowed
    await limiter.defer("monitoring:quota", limit, 120)
    decision = await limiter.try_acquire("monitoring:quota", limit)
    assert not decision.allowed
    assert 119 < decision.wait <= 120
    # a short deferral never shortens a longer one
    await limiter.defer("monitoring:quota", limit, 1)
    assert (await limiter.try_acquire("monitoring:quota", limit)).wait > 118


async def test_acquire_waits_for_its_turn(coord: Coord) -> None:
    limiter = RateLimiter(coord)
    limit = RateLimit(count=20, period=1)  # 50 ms apart
    for _ in range(3):
        assert await limiter.acquire("k2", limit)
    assert not (await limiter.try_acquire("k2", limit)).allowed


async def test_semaphore_caps_holders_and_frees_a_dead_holders_slot(coord: Coord) -> None:
    sem = Semaphore(coord, "copies:registry.example", limit=2, lease=0.3)
    assert (await sem.try_acquire("worker-a"))[0]
    assert (await sem.try_acquire("worker-b"))[0]
    held, wait = await sem.try_acquire("worker-c")
    assert not held
    assert 0 < wait <= 0.3
    assert (await sem.try_acquire("worker-a"))[0]  # a holder renewing is not a new holder
    # worker-a and worker-b die without releasing: their leases run out and free the slots
    async with sem.slot(max_wait=5) as holder:
        assert holder in await sem.holders()
        assert len(await sem.holders()) <= 2
    assert holder not in await sem.holders()


async def test_semaphore_slot_renews_and_times_out(coord: Coord) -> None:
    sem = Semaphore(coord, "copies:busy.example", limit=1, lease=0.5)
    async with sem.slot() as holder:
        await asyncio.sleep(1.2)  # more than two leases long: renewal keeps it
        assert await sem.holders() == [holder]
        with pytest.raises(LockBusy):
            async with sem.slot(max_wait=0.2):
                pass
    assert await sem.holders() == []


async def test_semaphore_waiter_takes_a_released_slot_at_once(coord: Coord) -> None:
    """A waiter blocks on the release, not on its poll: with a 30 s poll (and the holder's lease
    30 s away) it still gets the slot right after the release."""
    sem = Semaphore(coord, "copies:wake.example", limit=1, lease=30)
    took: list[float] = []

    async def waiter() -> None:
        async with sem.slot(max_wait=20, poll=30):
            took.append(time.monotonic())

    holder = "holder-a"
    assert (await sem.try_acquire(holder))[0]
    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.3)
    assert not took  # still waiting while the slot is held
    released = time.monotonic()
    await sem.release(holder)
    await asyncio.wait_for(task, 20)
    assert took[0] - released < 2.0  # a poll would have slept ~15-30 s
    assert await coord.redis.llen(sem.wake_key) <= sem.limit


async def test_semaphore_slot_lost_stops_the_copy(coord: Coord) -> None:
    sem = Semaphore(coord, "copies:lost.example", limit=1, lease=0.3)

    async def copy() -> None:
        async with sem.slot():
            await coord.redis.delete(coord.keys.semaphore("copies:lost.example"))
            await asyncio.Event().wait()

    with pytest.raises(LockLost):
        await copy()
