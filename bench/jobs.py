"""Job queue throughput: jobs/s through enqueue -> consume -> ack, with 1 and 4 worker processes.

A private redis-server (no persistence, so the number is the queue's, not the disk's); the
producer enqueues in pipelined batches while the workers (separate processes, 16 jobs at once
each, a handler that does nothing) consume; the clock runs from the first enqueue until the queue
is empty with every job acknowledged. Runs are interleaved (1, 4, 1, 4, ...) and the median kept.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import time
from typing import Any

from kuik_testing import RedisServer
from kuikcore.coord import Delivery, Job, JobQueue, connect

JOBS = 20_000
BATCH = 500
CONCURRENCY = 16
ROUNDS = 3
SPAWN = multiprocessing.get_context("spawn")


class BenchJob(Job):
    kind = "bench"
    n: int


def _queue(url: str, name: str) -> tuple[Any, JobQueue]:
    coord = connect(url)
    return coord, JobQueue(coord, name, [BenchJob], visibility_timeout=60)


def _worker(url: str, name: str) -> None:
    async def main() -> None:
        coord, queue = _queue(url, name)
        await coord.redis.incr(f"bench:{name}:ready")

        async def handler(delivery: Delivery) -> None:
            return None

        await queue.run(handler, concurrency=CONCURRENCY)

    asyncio.run(main())


async def _one_run(url: str, workers: int, run: int) -> dict[str, float]:
    name = f"bench-{workers}-{run}"
    coord, queue = _queue(url, name)
    await queue.ensure_groups()
    procs = [SPAWN.Process(target=_worker, args=(url, name), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()
    try:
        # set by the worker processes: nothing to wait on but Redis itself
        while int(await coord.redis.get(f"bench:{name}:ready") or 0) < workers:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # every worker is blocked in XREADGROUP
        start = time.perf_counter()
        for first in range(0, JOBS, BATCH):
            await queue.enqueue_many([BenchJob(n=i) for i in range(first, first + BATCH)])
        enqueued = time.perf_counter()
        while True:
            stats = await queue.stats()
            if stats.idle:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - start
        assert stats.dead == 0, f"{stats.dead} jobs dead-lettered"
        return {
            "jobs_per_s": JOBS / elapsed,
            "enqueue_per_s": JOBS / (enqueued - start),
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(10)
        await coord.aclose()


async def _main() -> dict[str, Any]:
    server = RedisServer().start()
    try:
        runs: dict[int, list[dict[str, float]]] = {1: [], 4: []}
        for run in range(ROUNDS):
            for workers in (1, 4):
                runs[workers].append(await _one_run(server.url, workers, run))
    finally:
        server.cleanup()
    result: dict[str, Any] = {
        "jobs": JOBS,
        "enqueue_batch": BATCH,
        "concurrency_per_worker": CONCURRENCY,
        "rounds": ROUNDS,
        "cpus": os.cpu_count(),
    }
    for workers, samples in runs.items():
        rates = sorted(s["jobs_per_s"] for s in samples)
        result[f"workers_{workers}"] = {
            "jobs_per_s_median": round(statistics.median(rates)),
            "jobs_per_s_runs": [round(r) for r in rates],
            "enqueue_per_s_median": round(statistics.median(s["enqueue_per_s"] for s in samples)),
        }
    return result


def run() -> dict[str, Any]:
    return asyncio.run(_main())
