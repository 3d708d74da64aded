"""`JobQueue`: one named queue as producers see it (enqueue, stats, dead letters, consumer
pruning), holding the settings and registered scripts its workers share (`worker()` makes one)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, TypeVar

import structlog
from redis.exceptions import ResponseError

from kuikcore.coord.connection import Coord, default_identity
from kuikcore.coord.errors import ConsumerGroupLost, QueueFull
from kuikcore.coord.job import Envelope, Job, JobDecodeError, JobTypes, backoff_delay
from kuikcore.coord.queue import scripts
from kuikcore.coord.queue.consumer import Delivery, Worker
from kuikcore.coord.queue.model import (
    EXPEDITE,
    GROUP,
    LANE_NAME,
    QUEUE_NAME,
    RESERVED_LANES,
    ROUTINE,
    DeadLetter,
    Enqueued,
    LaneStats,
    QueueStats,
)

__all__ = ["JobQueue"]

# one logger name for the whole queue, as before it was split into modules
log = structlog.get_logger("kuikcore.coord.queue")

_T = TypeVar("_T")


class JobQueue:
    """One named queue. Producers `enqueue`; workers use `worker()` (or `consume()`/`run()`)."""

    def __init__(
        self,
        coord: Coord,
        name: str,
        job_types: Iterable[type[Job]],
        *,
        lanes: Sequence[str] = (EXPEDITE, ROUTINE),
        visibility_timeout: float = 60.0,
        max_attempts: int = 5,
        retry_base: float = 1.0,
        retry_cap: float = 300.0,
        max_deliveries: int = 10,
        max_backlog: int = 100_000,
        max_dead: int = 10_000,
        pending_ttl: float = 86_400.0,
    ) -> None:
        if not QUEUE_NAME.fullmatch(name):
            raise ValueError(f"queue name {name!r}: use letters, digits, '.', '_', '-' or ':'")
        if not lanes or len(set(lanes)) != len(lanes):
            raise ValueError(f"queue {name!r}: lanes must be distinct and non-empty, got {lanes!r}")
        for lane in lanes:
            if not LANE_NAME.fullmatch(lane) or lane in RESERVED_LANES:
                raise ValueError(
                    f"queue {name!r}: lane {lane!r} must use letters, digits, '.', '_' or '-' "
                    f"and not be one of {sorted(RESERVED_LANES)}"
                )
        if visibility_timeout <= 0 or retry_base <= 0 or max_attempts < 1 or max_deliveries < 1:
            raise ValueError(
                f"queue {name!r}: visibility_timeout, retry_base, max_attempts and max_deliveries "
                "must be positive"
            )
        self.coord = coord
        self.name = name
        self.types = JobTypes(job_types)
        self.lanes = tuple(lanes)
        self.visibility_timeout = visibility_timeout
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.max_deliveries = max_deliveries
        self.max_backlog = max_backlog
        self.max_dead = max_dead
        self.pending_ttl_ms = int(pending_ttl * 1000)
        redis = coord.redis
        self._enqueue = redis.register_script(scripts.ENQUEUE)
        self._ack_many = redis.register_script(scripts.ACK_MANY)
        self._fail = redis.register_script(scripts.FAIL)
        self._move_due = redis.register_script(scripts.MOVE_DUE)
        self._read = redis.register_script(scripts.READ)
        self._touch = redis.register_script(scripts.TOUCH)
        self._prune = redis.register_script(scripts.PRUNE)

    # keys ----------------------------------------------------------------------------------
    def stream(self, lane: str) -> str:
        return self.coord.keys.lane(self.name, lane)

    def _rank(self, lane: str) -> int:
        try:
            return self.lanes.index(lane)
        except ValueError:
            raise ValueError(
                f"queue {self.name!r} has no lane {lane!r} (lanes: {self.lanes})"
            ) from None

    async def ensure_groups(self) -> None:
        """Create each lane's stream and consumer group (from id 0, so nothing enqueued earlier is skipped)."""
        for lane in self.lanes:
            try:
                await self.coord.redis.xgroup_create(
                    self.stream(lane), GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _with_groups(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run `call`, which needs the consumer groups. When Redis says NOGROUP (it restarted
        without its data, or the stream was deleted), re-create the groups and run it again; a
        second NOGROUP raises `ConsumerGroupLost`, which callers ride out like any outage.

        Every call here is safe to run twice: scripts fail on NOGROUP before writing (enqueue's
        writes done before it are recognised by their token), reads and pipelines only read."""
        try:
            return await call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing, re-creating it", queue=self.name, error=str(exc))
        await self.ensure_groups()
        try:
            return await call()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            raise ConsumerGroupLost(self.name, str(exc)) from exc

    # producing -----------------------------------------------------------------------------
    async def enqueue(self, job: Job, *, lane: str = ROUTINE) -> Enqueued:
        """Queue `job` unless the same job key is already pending; raise `QueueFull` at the bound."""
        return (await self.enqueue_many([job], lane=lane))[0]

    async def enqueue_many(self, jobs: Iterable[Job], *, lane: str = ROUTINE) -> list[Enqueued]:
        """`enqueue` for many jobs, a few hundred per round trip. Jobs refused for the bound
        raise `QueueFull` after the others are queued."""
        rank = self._rank(lane)
        now_ms = int(time.time() * 1000)
        envelopes = []
        for job in jobs:
            if type(job) not in self.types:
                raise TypeError(f"queue {self.name!r} does not accept {type(job).__name__} jobs")
            envelopes.append(Envelope.wrap(job, token=os.urandom(8).hex(), now_ms=now_ms))
        if not envelopes:
            return []
        streams = [self.stream(each) for each in self.lanes]
        results: list[str] = []
        for first in range(0, len(envelopes), scripts.ENQUEUE_CHUNK):
            chunk = envelopes[first : first + scripts.ENQUEUE_CHUNK]
            keys = streams + [self.coord.keys.job(self.name, e.key) for e in chunk]
            args: list[str | int] = [rank, self.pending_ttl_ms, self.max_backlog, GROUP]
            for envelope in chunk:
                args += [envelope.token, envelope.dumps()]
            replies = await self._with_groups(partial(self._enqueue, keys=keys, args=args))
            results += [str(r) for r in replies]
        if "full" in results:
            raise QueueFull(self.name, lane, self.max_backlog)
        return [Enqueued(r) for r in results]

    # inspecting ----------------------------------------------------------------------------
    async def stats(self) -> QueueStats:
        """Depth per lane (ready, in flight, delayed) and dead letters, in one round trip."""
        replies = await self._with_groups(self._stats_replies)
        lanes = {}
        for i, lane in enumerate(self.lanes):
            length, pending, delayed = replies[3 * i : 3 * i + 3]
            in_flight = int(pending["pending"])
            lanes[lane] = LaneStats(
                ready=int(length) - in_flight, in_flight=in_flight, delayed=int(delayed)
            )
        return QueueStats(lanes=lanes, dead=int(replies[-1]))

    async def _stats_replies(self) -> list[Any]:
        async with self.coord.redis.pipeline(transaction=False) as pipe:
            for lane in self.lanes:
                pipe.xlen(self.stream(lane))
                pipe.xpending(self.stream(lane), GROUP)
                pipe.zcard(self.coord.keys.delayed(self.name, lane))
            pipe.xlen(self.coord.keys.dead(self.name))
            return list(await pipe.execute())

    async def dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        entries: Any = await self.coord.redis.xrevrange(
            self.coord.keys.dead(self.name), count=count
        )
        letters = []
        for entry_id, fields in entries:
            raw = fields.get("e", "")
            try:
                envelope: Envelope | None = Envelope.loads(raw)
            except JobDecodeError:
                envelope = None
            letters.append(
                DeadLetter(id=entry_id, error=fields.get("error", ""), envelope=envelope, raw=raw)
            )
        return letters

    async def prune_consumers(
        self, *, idle: float | None = None, limit: int = scripts.PRUNE_LIMIT, keep: str = ""
    ) -> int:
        """Delete up to `limit` consumers that own no entry and were idle at least `idle`
        seconds (default: the visibility timeout), except `keep`; returns how many.

        A crashed worker's entries are reclaimed after the visibility timeout, so by then it owns
        nothing and only its name is left. A live worker deleted while idle is re-created by
        Redis at its next read: nothing is lost either way."""
        idle_ms = int((self.visibility_timeout if idle is None else idle) * 1000)
        streams = [self.stream(lane) for lane in self.lanes]
        call = partial(self._prune, keys=streams, args=[GROUP, idle_ms, limit, keep])
        return int(await self._with_groups(call))

    # consuming -----------------------------------------------------------------------------
    def worker(self, name: str | None = None) -> Worker:
        """A consumer of this queue; use as `async with queue.worker() as w: ...`."""
        return Worker(self, name or default_identity())

    async def consume(
        self, name: str | None = None, *, batch: int = 16
    ) -> AsyncGenerator[Delivery, None]:
        """Deliveries one by one, forever (an async generator); ack or fail each one."""
        async with self.worker(name) as worker:
            async for delivery in worker.deliveries(batch=batch):
                yield delivery

    async def run(
        self,
        handler: Callable[[Delivery], Awaitable[None]],
        *,
        concurrency: int = 4,
        name: str | None = None,
    ) -> None:
        """Run `handler` on deliveries with at most `concurrency` at once, until cancelled."""
        async with self.worker(name) as worker:
            await worker.run(handler, concurrency=concurrency)

    def retry_delay(self, attempt: int) -> float | None:
        """Seconds before the next try after `attempt` failures, or None: dead-letter it."""
        if attempt >= self.max_attempts:
            return None
        return backoff_delay(attempt, base=self.retry_base, cap=self.retry_cap)
