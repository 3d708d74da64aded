"""The job queue against a real redis-server: de-duplication, lanes, retries, dead letters, and
workers in separate processes (exactly once in effect, kill -9 mid-job, Redis killed mid-run)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from kuik_testing import RedisServer
from kuikcore.coord import (
    EXPEDITE,
    ROUTINE,
    Coord,
    Delivery,
    Enqueued,
    Job,
    JobQueue,
    PermanentJobError,
    QueueFull,
    connect,
)
from tests.integration.coord_processes import PROCESSES


class Copy(Job):
    kind = "copy"
    source: str
    mirror: str = "mirror.example/m"


class Other(Job):
    kind = "other"
    n: int


def make_queue(coord: Coord, **options: Any) -> JobQueue:
    defaults: dict[str, Any] = {"visibility_timeout": 1.0, "retry_base": 0.05, "retry_cap": 0.2}
    return JobQueue(coord, "copies", [Copy], **{**defaults, **options})


async def run_until(
    queue: JobQueue,
    handler: Callable[[Delivery], Awaitable[None]],
    done: Callable[[], Awaitable[bool]],
    *,
    concurrency: int = 4,
    name: str | None = None,
) -> None:
    """Run a worker until `done()` holds (checked between deliveries, never on a clock)."""
    task = asyncio.create_task(queue.run(handler, concurrency=concurrency, name=name))
    try:
        while not await done():
            await asyncio.sleep(0.02)
            if task.done():
                task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def idle(queue: JobQueue) -> bool:
    return (await queue.stats()).idle


# in-process behaviour -------------------------------------------------------------------------


async def test_same_job_is_queued_once_while_pending(coord: Coord) -> None:
    queue = make_queue(coord)
    assert await queue.enqueue(Copy(source="a")) is Enqueued.QUEUED
    assert await queue.enqueue(Copy(source="a")) is Enqueued.DUPLICATE
    assert await queue.enqueue_many([Copy(source="a"), Copy(source="b")]) == [
        Enqueued.DUPLICATE,
        Enqueued.QUEUED,
    ]
    stats = await queue.stats()
    assert stats.lanes[ROUTINE].ready == 2

    seen: list[str] = []

    async def handler(d: Delivery) -> None:
        assert isinstance(d.job, Copy)
        seen.append(d.job.source)

    await run_until(queue, handler, lambda: idle(queue))
    assert sorted(seen) == ["a", "b"]
    # acked: the key is free again, and the acked entries are gone from the stream
    assert await queue.enqueue(Copy(source="a")) is Enqueued.QUEUED
    assert await coord.redis.xlen(queue.stream(ROUTINE)) == 1


async def test_expedite_lane_is_read_first_and_promotion_does_the_work_once(coord: Coord) -> None:
    queue = make_queue(coord)
    await queue.enqueue_many([Copy(source=f"r{i}") for i in range(5)])
    assert await queue.enqueue(Copy(source="r3"), lane=EXPEDITE) is Enqueued.PROMOTED
    assert await queue.enqueue(Copy(source="x"), lane=EXPEDITE) is Enqueued.QUEUED
    # already pending on a higher lane: a routine enqueue is a duplicate
    assert await queue.enqueue(Copy(source="x"), lane=ROUTINE) is Enqueued.DUPLICATE

    order: list[tuple[str, str]] = []

    async def handler(d: Delivery) -> None:
        assert isinstance(d.job, Copy)
        order.append((d.lane, d.job.source))

    await run_until(queue, handler, lambda: idle(queue), concurrency=1)
    assert order[:2] == [(EXPEDITE, "r3"), (EXPEDITE, "x")]
    assert sorted(s for _, s in order) == ["r0", "r1", "r2", "r3", "r4", "x"]


async def test_failures_retry_with_backoff_then_dead_letter_keeps_last_error(coord: Coord) -> None:
    queue = make_queue(coord, max_attempts=3)
    await queue.enqueue_many([Copy(source="flaky"), Copy(source="broken"), Copy(source="fatal")])
    attempts: dict[str, list[int]] = {}

    async def handler(d: Delivery) -> None:
        assert isinstance(d.job, Copy)
        attempts.setdefault(d.job.source, []).append(d.attempt)
        if d.job.source == "flaky" and d.attempt < 2:
            raise RuntimeError(f"flaky failure {d.attempt}")
        if d.job.source == "broken":
            raise RuntimeError(f"still broken at {d.attempt}")
        if d.job.source == "fatal":
            raise PermanentJobError("no configured platform exists")

    await run_until(queue, handler, lambda: idle(queue))
    assert attempts == {"flaky": [0, 1, 2], "broken": [0, 1, 2], "fatal": [0]}
    letters = {d.envelope.payload["source"]: d for d in await queue.dead_letters() if d.envelope}
    assert set(letters) == {"broken", "fatal"}
    assert letters["broken"].error == "still broken at 2"
    assert letters["broken"].envelope is not None
    assert letters["broken"].envelope.attempt == 3
    assert letters["fatal"].error == "no configured platform exists"
    assert (await queue.stats()).dead == 2
    # a dead job is no longer pending: it can be planned again
    assert await queue.enqueue(Copy(source="broken")) is Enqueued.QUEUED


async def test_a_job_is_in_flight_until_acked_and_release_gives_it_back(coord: Coord) -> None:
    queue = make_queue(coord)
    await queue.enqueue(Copy(source="a"))
    async with queue.worker("w1") as w1:
        [delivery] = await w1.fetch(10)
        stats = await queue.stats()
        assert (stats.lanes[ROUTINE].ready, stats.lanes[ROUTINE].in_flight) == (0, 1)
        assert await w1.fetch(10, block=False) == []
        assert await queue.enqueue(Copy(source="a")) is Enqueued.DUPLICATE
        assert await delivery.release()
    async with queue.worker("w2") as w2:
        again: list[Delivery] = []
        while not again:
            again = await w2.fetch(10)
        assert isinstance(again[0].job, Copy)
        assert again[0].attempt == 0
        assert await again[0].ack()
    assert await idle(queue)


async def test_consume_iterates_and_gives_back_what_it_held_when_closed(coord: Coord) -> None:
    queue = make_queue(coord, visibility_timeout=60.0)  # only a release can free an entry fast
    await queue.enqueue_many([Copy(source=str(i)) for i in range(3)])
    acked: list[str] = []
    consumer = queue.consume(batch=2)
    async for delivery in consumer:
        assert isinstance(delivery.job, Copy)
        if len(acked) == 2:
            break  # the third is in hand, unsettled
        await delivery.ack()
        acked.append(delivery.job.source)
    await consumer.aclose()
    stats = await queue.stats()
    assert stats.lanes[ROUTINE].in_flight == 0
    assert stats.lanes[ROUTINE].ready + stats.lanes[ROUTINE].delayed == 1
    rest: list[str] = []

    async def handler(d: Delivery) -> None:
        assert isinstance(d.job, Copy)
        rest.append(d.job.source)

    await run_until(queue, handler, lambda: idle(queue))
    assert sorted(acked + rest) == ["0", "1", "2"]


async def test_reclaimed_entry_cannot_be_settled_by_its_old_owner(coord: Coord) -> None:
    queue = make_queue(coord, visibility_timeout=0.3)
    await queue.enqueue(Copy(source="slow"))
    stale = queue.worker("stale")
    stale.block = 0.1
    [old] = await stale.fetch(1)  # no heartbeat: as if the process froze
    async with queue.worker("fresh") as fresh:
        claimed: list[Delivery] = []
        while not claimed:
            claimed = await fresh.fetch(1)
        assert claimed[0].id == old.id
        assert not await old.ack()  # refused: no longer the owner
        assert old.lost
        assert await claimed[0].ack()
    assert await idle(queue)


async def test_unknown_job_kinds_are_retried_elsewhere_then_dead_lettered(coord: Coord) -> None:
    producer = JobQueue(
        coord, "copies", [Copy, Other], retry_base=0.01, retry_cap=0.02, max_attempts=2
    )
    consumer = make_queue(coord, max_attempts=2)
    await producer.enqueue(Other(n=1))

    async def handler(d: Delivery) -> None:
        raise AssertionError("must not be called with an undecodable job")

    await run_until(consumer, handler, lambda: idle(consumer))
    [letter] = await consumer.dead_letters()
    assert "no job class for kind 'other' version 1" in letter.error


async def test_backlog_bound_refuses_instead_of_trimming(coord: Coord) -> None:
    queue = make_queue(coord, max_backlog=3)
    await queue.enqueue_many([Copy(source=str(i)) for i in range(3)])
    with pytest.raises(QueueFull, match="holds 3 unprocessed jobs"):
        await queue.enqueue(Copy(source="one too many"))
    assert await coord.redis.xlen(queue.stream(ROUTINE)) == 3
    with pytest.raises(TypeError, match="does not accept Other"):
        await queue.enqueue(Other(n=1))


# separate processes ----------------------------------------------------------------------------


def _worker_process(url: str, prefix: str, mode: str, concurrency: int) -> None:
    """A worker in its own process. Modes: `count` (record each completion), `hang` (mark the job
    started, then never finish), `rescue` (as `count`, with a 1 s visibility timeout), `slow` (take a little time per job, record completions as a set)."""

    async def main() -> None:
        coord = connect(url, prefix=prefix, retries=1)
        # long visibility timeout for the exactly-once count: a loaded machine must not cause reclaims
        queue = make_queue(coord, visibility_timeout=30.0 if mode == "count" else 1.0)

        async def handler(d: Delivery) -> None:
            assert isinstance(d.job, Copy)
            if mode == "hang":
                await coord.redis.set(f"{prefix}started", f"{os.getpid()}:{d.job.source}")
                await asyncio.sleep(3600)
            elif mode == "slow":
                await asyncio.sleep(0.005)
                await coord.redis.sadd(f"{prefix}done", d.job.source)
            else:  # count, rescue
                await asyncio.sleep(0.002)  # a little work, so no single process takes it all
                await coord.redis.hincrby(f"{prefix}done", d.job.source, 1)
                await coord.redis.hset(f"{prefix}by", d.job.source, os.getpid())

        await coord.redis.incr(f"{prefix}ready")
        await queue.run(handler, concurrency=concurrency)

    asyncio.run(main())


def spawn_workers(url: str, prefix: str, mode: str, n: int, concurrency: int = 4) -> list[Any]:
    procs = [
        PROCESSES.Process(target=_worker_process, args=(url, prefix, mode, concurrency))
        for _ in range(n)
    ]
    for proc in procs:
        proc.start()
    return procs


def stop(procs: list[Any]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


@pytest.fixture
async def private_coord(redis_server_private: RedisServer) -> AsyncIterator[Coord]:
    coord = connect(redis_server_private.url, prefix="kuik:", retries=10)
    yield coord
    await coord.aclose()


async def wait_for(predicate: Callable[[], Awaitable[bool]], procs: list[Any]) -> None:
    """Poll `predicate`; fail at once if a worker process died on its own."""
    while not await predicate():
        for proc in procs:
            assert proc.exitcode in (None, -signal.SIGKILL), f"worker exited with {proc.exitcode}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_many_worker_processes_do_each_job_exactly_once(
    coord: Coord, redis_server: RedisServer
) -> None:
    queue = make_queue(coord, visibility_timeout=30.0)
    n = 600
    procs = spawn_workers(redis_server.url, coord.keys.prefix, "count", 4)
    try:

        async def all_ready() -> bool:
            return int(await coord.redis.get(f"{coord.keys.prefix}ready") or 0) == 4

        await wait_for(all_ready, procs)
        for start in range(0, n, 100):
            results = await queue.enqueue_many(
                [Copy(source=str(i)) for i in range(start, start + 100)]
            )
            assert set(results) == {Enqueued.QUEUED}
        done_key = f"{coord.keys.prefix}done"

        async def all_done() -> bool:
            return await coord.redis.hlen(done_key) == n and await idle(queue)

        await wait_for(all_done, procs)
        counts = await coord.redis.hgetall(done_key)
        assert {int(v) for v in counts.values()} == {1}
        assert set(counts) == {str(i) for i in range(n)}
        workers = set((await coord.redis.hgetall(f"{coord.keys.prefix}by")).values())
        assert len(workers) > 1  # the work was spread over processes
    finally:
        stop(procs)


@pytest.mark.timeout(60)
async def test_job_of_a_worker_killed_mid_job_is_done_by_another(
    coord: Coord, redis_server: RedisServer
) -> None:
    queue = make_queue(coord)
    prefix = coord.keys.prefix
    await queue.enqueue(Copy(source="big"))
    [hung] = spawn_workers(redis_server.url, prefix, "hang", 1)
    rescuers: list[Any] = []
    try:

        async def started() -> bool:
            return await coord.redis.get(f"{prefix}started") is not None

        await wait_for(started, [hung])
        assert (await queue.stats()).lanes[ROUTINE].in_flight == 1
        os.kill(hung.pid, signal.SIGKILL)
        hung.join()
        rescuers = spawn_workers(redis_server.url, prefix, "rescue", 1)

        async def rescued() -> bool:
            return await coord.redis.hget(f"{prefix}done", "big") == "1" and await idle(queue)

        await wait_for(rescued, rescuers)
        assert await coord.redis.hget(f"{prefix}by", "big") == str(rescuers[0].pid)
    finally:
        stop([hung, *rescuers])


@pytest.mark.timeout(60)
async def test_redis_killed_mid_run_loses_no_job_and_workers_recover(
    private_coord: Coord, redis_server_private: RedisServer
) -> None:
    queue = make_queue(private_coord)
    n = 400
    await queue.enqueue_many([Copy(source=str(i)) for i in range(n)])
    procs = spawn_workers(redis_server_private.url, "kuik:", "slow", 2, concurrency=2)
    try:

        async def some_done() -> bool:
            return await private_coord.redis.scard("kuik:done") >= 50

        await wait_for(some_done, procs)
        redis_server_private.kill()  # SIGKILL: AOF with fsync always keeps every acknowledged write
        redis_server_private.start()

        async def all_done() -> bool:
            return await private_coord.redis.scard("kuik:done") == n and await idle(queue)

        await wait_for(all_done, procs)
        assert await private_coord.redis.smembers("kuik:done") == {str(i) for i in range(n)}
        assert all(proc.is_alive() for proc in procs)  # recovered without a restart
    finally:
        stop(procs)


@pytest.mark.timeout(30)
async def test_redis_back_empty_every_command_recreates_the_groups() -> None:
    """A Redis restarted without persistence has no streams and no consumer groups: the queue
    must not believe they still exist (NOGROUP on stats, acks, heartbeats, reads, enqueues)."""
    server = RedisServer().start()  # no AOF: a restart loses everything
    coord = connect(server.url, prefix="kuik:", retries=10)
    try:
        queue = make_queue(coord)
        await queue.enqueue(Copy(source="before"))
        assert (await queue.stats()).lanes[ROUTINE].ready == 1
        async with queue.worker() as worker:
            [held] = await worker.fetch(1, block=False)
            server.restart()
            await worker.touch()  # its heartbeat: the entry is gone, so it is lost
            assert held.lost
            assert await held.ack() is False  # nothing left to ack, and no NOGROUP either
            assert (await queue.stats()).idle
            server.restart()
            assert await queue.enqueue(Copy(source="after")) is Enqueued.QUEUED
            server.restart()
            assert await queue.enqueue_many([Copy(source="again")], lane=EXPEDITE) == [
                Enqueued.QUEUED
            ]
            [delivery] = await worker.fetch(1, block=False)
            assert isinstance(delivery.job, Copy)
            assert delivery.job.source == "again"
            server.restart()
            assert await delivery.fail("boom") is False  # the retry script sees NOGROUP too
    finally:
        await coord.aclose()
        server.cleanup()


async def consumers(coord: Coord, queue: JobQueue) -> dict[str, int]:
    """Consumer name -> entries it owns, over every lane."""
    found: dict[str, int] = {}
    for lane in queue.lanes:
        for info in await coord.redis.xinfo_consumers(queue.stream(lane), "workers"):
            found[info["name"]] = found.get(info["name"], 0) + int(info["pending"])
    return found


async def test_dead_consumers_are_deleted_once_they_own_nothing(coord: Coord) -> None:
    """Every crashed worker leaves a consumer behind (a new name per process): workers delete
    the idle ones owning no entry, a bounded number at a time, never one that owns entries."""
    queue = make_queue(coord, visibility_timeout=0.3)
    await queue.enqueue_many([Copy(source=str(i)) for i in range(12)])
    await queue.ensure_groups()
    stream = queue.stream(ROUTINE)
    for i in range(12):  # twelve workers each read a job, then were killed
        await coord.redis.xreadgroup("workers", f"crashed-{i}", {stream: ">"}, count=1)
    for i in range(2):  # two more finished their job before dying
        await queue.enqueue(Copy(source=f"acked-{i}"))
        [[_, [(entry_id, _)]]] = await coord.redis.xreadgroup(
            "workers", f"idle-{i}", {stream: ">"}, count=1
        )
        await coord.redis.xack(stream, "workers", entry_id)
    assert len(await consumers(coord, queue)) == 14
    await asyncio.sleep(0.35)

    assert await queue.prune_consumers(limit=1) == 1  # bounded
    assert await queue.prune_consumers() == 1
    left = await consumers(coord, queue)
    assert left == {f"crashed-{i}": 1 for i in range(12)}  # they still own entries: kept

    done: set[str] = set()

    async def handler(delivery: Delivery) -> None:
        assert isinstance(delivery.job, Copy)
        done.add(delivery.job.source)

    async def settled() -> bool:
        # the live worker reclaimed the crashed workers' entries, then deleted them
        return len(done) == 12 and set(await consumers(coord, queue)) == {"live"}

    await run_until(queue, handler, settled, name="live")
