"""Fenced locks and leadership against a real redis-server: stale holders are refused, long holds
renew themselves, a lost lock stops its holder's work, leadership fails over between processes."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kuik_testing import RedisServer
from kuikcore.coord import (
    Coord,
    FencedLock,
    Leadership,
    LockBusy,
    LockLost,
    check_fence,
    connect,
)
from tests.integration.coord_processes import PROCESSES


async def until(predicate: Callable[[], Awaitable[object]]) -> None:
    """Poll state that another process (or Redis's clock) changes: no event to wait on."""
    while not await predicate():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def wait_gone(coord: Coord, lock: FencedLock) -> None:
    async def gone() -> bool:
        return not await coord.redis.exists(coord.keys.lock(lock.lock_name))

    await until(gone)


async def test_stale_holder_is_fenced_off_after_its_lock_expired(coord: Coord) -> None:
    a = FencedLock(coord, "gc:mirror/app", ttl=0.2)
    assert await a.acquire()
    assert a.fence == 1
    await a.guarded_set(f"{coord.keys.prefix}status", "written by a")
    # a pauses (no renewal) past its TTL; b takes the lock
    await wait_gone(coord, a)
    b = FencedLock(coord, "gc:mirror/app", ttl=5)
    assert await b.acquire()
    assert b.fence == 2
    with pytest.raises(LockLost, match="fence 1 is stale"):
        await a.guarded_set(f"{coord.keys.prefix}status", "written by a, stale")
    with pytest.raises(LockLost, match="no longer current"):
        await a.check()
    assert not await check_fence(coord, "gc:mirror/app", a.token, 1)
    await b.guarded_set(f"{coord.keys.prefix}status", "written by b")
    await b.check()
    assert await coord.redis.get(f"{coord.keys.prefix}status") == "written by b"
    await a.release_quietly()  # must not free b's lock
    assert await b.owned()


async def test_expired_lock_refuses_writes_even_when_nobody_took_it(coord: Coord) -> None:
    lock = FencedLock(coord, "gc:x", ttl=0.1)
    assert await lock.acquire()
    await wait_gone(coord, lock)
    with pytest.raises(LockLost):
        await lock.guarded_set(f"{coord.keys.prefix}k", "v")
    assert await coord.redis.get(f"{coord.keys.prefix}k") is None


async def test_hold_renews_a_long_operation_and_releases_at_the_end(coord: Coord) -> None:
    lock = FencedLock(coord, "gc:long", ttl=0.5)
    async with lock.hold() as held:
        fence = held.fence
        for _ in range(8):  # more than two TTLs of work
            await asyncio.sleep(0.15)
            await held.check()
        assert held.fence == fence
    assert not await coord.redis.exists(lock.name)


async def test_hold_stops_the_work_when_the_lock_is_taken_over(coord: Coord) -> None:
    lock = FencedLock(coord, "gc:taken", ttl=0.3)
    key = coord.keys.lock("gc:taken")
    stopped = False

    async def work() -> None:
        nonlocal stopped
        async with lock.hold():
            await coord.redis.set(key, "someone-else")  # as if it expired and was taken
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                stopped = True
                raise

    with pytest.raises(LockLost, match="taken over or expired"):
        await work()
    assert stopped
    assert await coord.redis.get(key) == "someone-else"


async def test_hold_stops_the_work_when_redis_is_unreachable_for_a_ttl(
    redis_server_private: RedisServer,
) -> None:
    coord = connect(redis_server_private.url, retries=0, socket_timeout=0.2, connect_timeout=0.2)
    lock = FencedLock(coord, "gc:partitioned", ttl=0.5)

    async def work() -> None:
        async with lock.hold():
            redis_server_private.kill()
            await asyncio.Event().wait()

    try:
        with pytest.raises(LockLost, match=r"not renewed within its 0\.5s TTL"):
            await work()
    finally:
        await coord.aclose()


async def test_busy_lock_is_reported(coord: Coord) -> None:
    holder = FencedLock(coord, "gc:busy", ttl=5)
    assert await holder.acquire()
    with pytest.raises(LockBusy, match="gc:busy"):
        async with FencedLock(coord, "gc:busy", ttl=5, blocking_timeout=0.2).hold():
            pass


async def test_leadership_lost_cancels_work_and_campaign_resumes(coord: Coord) -> None:
    registry = CollectorRegistry()
    leadership = Leadership(
        coord, "replicator-status", service="replicator", ttl=0.3, identity="a", registry=registry
    )
    elections: list[int | None] = []
    cancelled = asyncio.Event()
    reelected = asyncio.Event()

    async def work(lock: FencedLock) -> None:
        elections.append(lock.fence)
        if len(elections) == 2:
            reelected.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def gauge() -> float | None:
        return registry.get_sample_value(
            "kube_image_keeper_replicator_is_leader", {"role": "replicator-status"}
        )

    task = asyncio.create_task(leadership.run(work))
    try:
        await until(lambda: asyncio.sleep(0, bool(elections)))
        assert leadership.is_leader
        assert gauge() == 1
        assert await leadership.leader() == "a"
        key = coord.keys.lock("leader:replicator-status")
        await coord.redis.set(key, "b", px=1000)  # another replica took over
        await cancelled.wait()
        await until(lambda: asyncio.sleep(0, not leadership.is_leader))
        assert gauge() == 0
        await reelected.wait()  # b's lease ran out, a campaigns and wins again
        assert elections[1] is not None
        assert elections[0] is not None
        assert elections[1] > elections[0]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gauge() == 0
    assert not await coord.redis.exists(coord.keys.lock("leader:replicator-status"))


def _leader_process(url: str, prefix: str, name: str) -> None:
    async def main() -> None:
        coord = connect(url, prefix=prefix)
        leadership = Leadership(
            coord, "monitor-scheduler", service="monitor", ttl=1.0, identity=name
        )
        await coord.redis.set(f"{prefix}up:{name}", 1)

        async def work(lock: FencedLock) -> None:
            seconds, micros = await coord.redis.time()
            await coord.redis.rpush(f"{prefix}elections", f"{name} {seconds + micros / 1e6}")
            while True:
                await lock.guarded_set(f"{prefix}owner", name)
                await asyncio.sleep(0.05)

        await leadership.run(work)

    asyncio.run(main())


@pytest.mark.timeout(60)
async def test_leader_failover_between_processes_within_the_ttl(
    coord: Coord, redis_server: RedisServer
) -> None:
    prefix = coord.keys.prefix
    procs: list[Any] = []
    try:
        first = PROCESSES.Process(target=_leader_process, args=(redis_server.url, prefix, "first"))
        first.start()
        procs.append(first)
        await until(lambda: coord.redis.llen(f"{prefix}elections"))
        second = PROCESSES.Process(
            target=_leader_process, args=(redis_server.url, prefix, "second")
        )
        second.start()
        procs.append(second)
        # the standby must not win while the leader lives (it campaigns every TTL/3)
        await until(lambda: coord.redis.exists(f"{prefix}up:second"))
        await asyncio.sleep(0.7)
        assert await coord.redis.llen(f"{prefix}elections") == 1
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        seconds, micros = await coord.redis.time()
        killed_at = seconds + micros / 1e6
        while await coord.redis.llen(f"{prefix}elections") < 2:
            assert second.exitcode is None
            await asyncio.sleep(0.05)
        elections = await coord.redis.lrange(f"{prefix}elections", 0, -1)
        assert [e.split()[0] for e in elections] == ["first", "second"]
        took = float(elections[1].split()[1]) - killed_at
        # the lock expires at most one TTL (1 s) after the kill, and the standby polls every TTL/3;
        # this proves TTL-based failover, not a precise latency (bench territory)
        assert took < 1.0 + 1.0 / 3 + 1.0  # + 1 s of slack for a loaded machine

        async def second_owns() -> bool:
            return await coord.redis.get(f"{prefix}owner") == "second"

        await until(second_owns)
    finally:
        for proc in procs:
            proc.kill()
            proc.join()
