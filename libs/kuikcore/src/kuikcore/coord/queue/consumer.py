"""The consumer side of the job queue: a `Worker` reads lanes in priority order, keeps its
entries alive, reclaims abandoned ones and settles each `Delivery` (ack, retry, dead letter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog

from kuikcore.coord.connection import OUTAGE_ERRORS
from kuikcore.coord.errors import PermanentJobError
from kuikcore.coord.job import Envelope, Job, JobDecodeError
from kuikcore.coord.queue import scripts
from kuikcore.coord.queue.model import GROUP, Entry

if TYPE_CHECKING:
    from kuikcore.coord.queue.producer import JobQueue

__all__ = ["Delivery", "Worker"]

# one logger name for the whole queue, as before it was split into modules
log = structlog.get_logger("kuikcore.coord.queue")


@dataclass(eq=False)
class Delivery:
    """One job handed to one worker. Settle it exactly once: `ack`, `fail` or `release`."""

    queue: JobQueue
    worker: Worker
    lane: str
    id: str
    raw: str
    envelope: Envelope
    job: Job | None
    settled: bool = False
    lost: bool = False  # another worker reclaimed it (this one was too slow): stop if you can

    @property
    def consumer(self) -> str:
        return self.worker.name

    @property
    def attempt(self) -> int:
        """Failures so far (0 on the first try)."""
        return self.envelope.attempt

    async def ack(self) -> bool:
        """The work is done: forget the job. False when this worker no longer owned it."""
        return await self._settle(None, None)

    async def fail(self, error: str, *, retry: bool = True) -> bool:
        """The work failed: retry later with backoff, or dead-letter it after `max_attempts`
        (at once when `retry` is False). `error` is kept with the job."""
        delay = self.queue.retry_delay(self.envelope.attempt + 1) if retry else None
        return await self._settle(error, delay)

    async def release(self) -> bool:
        """Give the job back untouched (shutdown): another worker may take it at once."""
        return await self._settle(self.envelope.error or "released", 0.0, counted=False)

    async def _settle(
        self, error: str | None, delay: float | None, *, counted: bool = True
    ) -> bool:
        if self.settled:
            raise RuntimeError(f"delivery {self.id} of {self.envelope.key!r} is already settled")
        self.settled = True
        self.worker.forget(self)
        if error is None:
            result = await self.worker.ack(self)
        else:
            result = await self.worker.fail(self, error, delay=delay, counted=counted)
        if result == -1:
            self.lost = True
        return result != -1


@dataclass(eq=False)
class Worker:
    """One consumer of a queue: reads lanes in priority order, keeps its entries alive, reclaims
    abandoned ones and moves due retries back into their lanes."""

    queue: JobQueue
    name: str
    block: float = 1.0
    in_flight: dict[tuple[str, str], Delivery] = field(default_factory=dict)
    _heartbeat: asyncio.Task[None] | None = None
    _next_reclaim: float = 0.0
    _next_move: float = 0.0
    _next_prune: float = 0.0
    _reclaim_from: dict[str, str] = field(default_factory=dict)
    _acks: list[tuple[Delivery, asyncio.Future[int]]] = field(default_factory=list)
    _ack_flusher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self.block = min(self.block, self.queue.coord.settings.socket_timeout / 2)
        await self._with_redis(self.queue.ensure_groups)
        self._heartbeat = asyncio.create_task(self._keep_alive(), name=f"heartbeat-{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for delivery in list(self.in_flight.values()):
            try:
                await delivery.release()
            except OUTAGE_ERRORS:
                break  # Redis is gone: the entries are reclaimed after the visibility timeout

    def forget(self, delivery: Delivery) -> None:
        self.in_flight.pop((delivery.lane, delivery.id), None)

    # acknowledging -------------------------------------------------------------------------
    async def ack(self, delivery: Delivery) -> int:
        """Ack through one script call shared by every handler finishing in the same loop turn:
        1 when acked, -1 when this worker no longer owned the entry."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._acks.append((delivery, done))
        if self._ack_flusher is None or self._ack_flusher.done():
            self._ack_flusher = asyncio.create_task(self._flush_acks())
        return await done

    async def _flush_acks(self) -> None:
        await asyncio.sleep(0)  # let handlers finishing in this loop turn join the batch
        while self._acks:
            batch, self._acks = self._acks[: scripts.ACK_CHUNK], self._acks[scripts.ACK_CHUNK :]
            by_lane: dict[str, list[tuple[Delivery, asyncio.Future[int]]]] = {}
            for item in batch:
                by_lane.setdefault(item[0].lane, []).append(item)
            for lane, items in by_lane.items():
                keys = [self.queue.stream(lane)]
                keys += [
                    self.queue.coord.keys.job(self.queue.name, d.envelope.key) for d, _ in items
                ]
                args: list[str] = [GROUP, self.name]
                for d, _ in items:
                    args += [d.id, d.envelope.token]
                try:
                    results = await self.queue._with_groups(
                        partial(self.queue._ack_many, keys=keys, args=args)
                    )
                except Exception as exc:
                    for _, done in items:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_, done), result in zip(items, results, strict=True):
                    if not done.done():
                        done.set_result(int(result))

    async def fail(
        self, delivery: Delivery, error: str, *, delay: float | None, counted: bool = True
    ) -> int:
        """Retry `delivery` after `delay` seconds, or dead-letter it when `delay` is None:
        1 retried, 3 dead-lettered, 2 dropped (superseded), -1 no longer owned."""
        queue, lane, envelope = self.queue, delivery.lane, delivery.envelope
        keys = [
            queue.stream(lane),
            queue.coord.keys.job(queue.name, envelope.key),
            queue.coord.keys.delayed(queue.name, lane),
            queue.coord.keys.dead(queue.name),
        ]
        next_envelope = envelope.failed(error, count=counted)
        delay_ms = -1 if delay is None else int(delay * 1000)
        args: list[str | int] = [
            GROUP,
            delivery.id,
            delivery.consumer,
            envelope.token,
            next_envelope.dumps() if envelope.token else delivery.raw,
            delay_ms,
            queue.pending_ttl_ms,
            queue.max_dead,
            queue._rank(lane),
            error,
        ]
        return int(await queue._with_groups(partial(queue._fail, keys=keys, args=args)))

    async def _with_redis(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Retry `call` through a Redis outage with capped backoff: a worker never dies of one."""
        pause = 0.1
        while True:
            try:
                return await call()
            except OUTAGE_ERRORS as exc:
                log.warning(
                    "redis unavailable, retrying",
                    queue=self.queue.name,
                    error=str(exc),
                    retry_in=pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    # reading -------------------------------------------------------------------------------
    async def fetch(self, count: int, *, block: bool = True) -> list[Delivery]:
        """Up to `count` deliveries: reclaimed ones, then expedite, then routine. Waits up to
        `self.block` seconds when nothing is ready and `block` is set."""
        return list(
            await self._with_redis(
                lambda: self.queue._with_groups(lambda: self._read(count, block))
            )
        )

    async def _read(self, count: int, block: bool) -> list[Delivery]:
        queue = self.queue
        now = time.monotonic()
        if now >= self._next_move:
            self._next_move = now + min(0.5, queue.visibility_timeout / 4)
            keys = []
            for lane in queue.lanes:
                keys += [queue.coord.keys.delayed(queue.name, lane), queue.stream(lane)]
            await queue._move_due(keys=keys, args=[1000])
        entries: list[Entry] = []
        if now >= self._next_reclaim:
            self._next_reclaim = now + queue.visibility_timeout / 2
            entries += await self._reclaim(count)
        if now >= self._next_prune:
            self._next_prune = now + queue.visibility_timeout
            pruned = await queue.prune_consumers(keep=self.name)
            if pruned:
                log.info("deleted dead consumers", queue=queue.name, count=pruned)
        if len(entries) < count:
            streams = [queue.stream(lane) for lane in queue.lanes]
            reply = await queue._read(keys=streams, args=[GROUP, self.name, count - len(entries)])
            entries += [(queue.lanes[int(r)], i, e, False) for r, i, e in reply]
        if not entries and block:
            by_stream = {queue.stream(lane): lane for lane in queue.lanes}
            waited: Any = await queue.coord.redis.xreadgroup(
                GROUP,
                self.name,
                dict.fromkeys(by_stream, ">"),
                count=count,
                block=int(self.block * 1000),
            )
            entries += [
                (by_stream[s], i, f.get("e", ""), False) for s, items in waited for i, f in items
            ]
            entries.sort(key=lambda e: queue._rank(e[0]))
        return await self._admit(entries)

    async def _reclaim(self, count: int) -> list[Entry]:
        """XAUTOCLAIM entries idle past the visibility timeout (their worker died or hung);
        entries delivered too often (they keep killing workers) are dead-lettered instead."""
        redis = self.queue.coord.redis
        idle_ms = int(self.queue.visibility_timeout * 1000)
        claimed: list[Entry] = []
        for lane in self.queue.lanes:
            stream = self.queue.stream(lane)
            start = self._reclaim_from.get(lane, "0-0")
            reply: Any = await redis.xautoclaim(
                stream, GROUP, self.name, idle_ms, start_id=start, count=count
            )
            self._reclaim_from[lane] = reply[0]
            items = [(i, f) for i, f in reply[1] if f is not None]
            for entry_id, fields in items:
                pending = await redis.xpending_range(stream, GROUP, entry_id, entry_id, 1)
                times = int(pending[0]["times_delivered"]) if pending else 0
                log.info(
                    "reclaimed job", queue=self.queue.name, lane=lane, id=entry_id, deliveries=times
                )
                if times > self.queue.max_deliveries:
                    delivery = self._delivery(lane, entry_id, fields.get("e", ""))
                    await delivery.fail(f"abandoned by {times - 1} workers", retry=False)
                else:
                    claimed.append((lane, entry_id, fields.get("e", ""), True))
        return claimed

    def _delivery(self, lane: str, entry_id: str, raw: str) -> Delivery:
        try:
            envelope = Envelope.loads(raw)
        except JobDecodeError:
            envelope = Envelope(kind="", version=0, key="", token="", payload={}, enqueued_at_ms=0)
        delivery = Delivery(self.queue, self, lane, entry_id, raw, envelope, job=None)
        self.in_flight[(lane, entry_id)] = delivery
        return delivery

    async def _admit(self, entries: list[Entry]) -> list[Delivery]:
        """Turn entries into deliveries: drop superseded ones (promoted elsewhere), send the ones
        this process cannot decode back (retry) or to the dead letters.

        Only entries that went through a retry, a release or a reclaim can be superseded (a
        promotion deletes an undelivered first-try entry), so only those cost a look-up."""
        if not entries:
            return []
        deliveries = [self._delivery(lane, i, raw) for lane, i, raw, _ in entries]
        suspects = [
            d
            for d, (_, _, _, reclaimed) in zip(deliveries, entries, strict=True)
            if reclaimed or d.envelope.error is not None
        ]
        superseded: set[int] = set()
        if suspects:
            keys = [self.queue.coord.keys.job(self.queue.name, d.envelope.key) for d in suspects]
            current: list[str | None] = await self.queue.coord.redis.mget(keys)  # type: ignore[assignment]
            for delivery, value in zip(suspects, current, strict=True):
                parts = (value or "").split(":")
                if value is not None and len(parts) > 1 and parts[1] != delivery.envelope.token:
                    superseded.add(id(delivery))
        ready = []
        for delivery in deliveries:
            if not delivery.envelope.token:
                await delivery.fail("malformed envelope", retry=False)
            elif id(delivery) in superseded:
                await delivery.ack()  # superseded by a promotion: the newer entry does the work
            else:
                try:
                    delivery.job = self.queue.types.decode(delivery.envelope)
                except JobDecodeError as exc:
                    await delivery.fail(str(exc), retry=exc.retryable)
                else:
                    ready.append(delivery)
        return ready

    async def deliveries(self, *, batch: int = 16) -> AsyncGenerator[Delivery, None]:
        """Deliveries one by one, forever."""
        while True:
            for delivery in await self.fetch(batch):
                yield delivery

    # keeping entries alive -----------------------------------------------------------------
    async def _keep_alive(self) -> None:
        period = self.queue.visibility_timeout / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.touch()
            except Exception as exc:  # never let the heartbeat die: entries would be reclaimed
                log.warning("heartbeat failed", queue=self.queue.name, error=repr(exc))

    async def touch(self) -> None:
        """Reset the idle time of every entry this worker holds; mark the ones it lost."""
        by_lane: dict[str, list[str]] = {}
        for lane, entry_id in list(self.in_flight):
            by_lane.setdefault(lane, []).append(entry_id)
        for lane, ids in by_lane.items():
            lost = await self.queue._with_groups(
                partial(
                    self.queue._touch, keys=[self.queue.stream(lane)], args=[GROUP, self.name, *ids]
                )
            )
            for entry_id in lost:
                delivery = self.in_flight.pop((lane, entry_id), None)
                if delivery is not None:
                    delivery.lost = True

    # running handlers ----------------------------------------------------------------------
    async def run(
        self, handler: Callable[[Delivery], Awaitable[None]], *, concurrency: int = 4
    ) -> None:
        """Fetch as many deliveries as there are free slots and run `handler` on each: ack on
        return, fail (with retry) on an exception, dead-letter on `PermanentJobError`. Runs until
        cancelled; jobs still running then are released for other workers."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        active: set[asyncio.Task[None]] = set()
        try:
            while True:
                if len(active) >= concurrency:
                    await asyncio.wait(set(active), return_when=asyncio.FIRST_COMPLETED)
                for delivery in await self.fetch(concurrency - len(active)):
                    task = asyncio.create_task(self._handle(delivery, handler))
                    active.add(task)
                    task.add_done_callback(active.discard)
        finally:
            for task in active:
                task.cancel()
            await asyncio.gather(*active, return_exceptions=True)

    async def _handle(
        self, delivery: Delivery, handler: Callable[[Delivery], Awaitable[None]]
    ) -> None:
        try:
            try:
                await handler(delivery)
            except PermanentJobError as exc:
                if not delivery.settled:
                    await delivery.fail(str(exc) or type(exc).__name__, retry=False)
            except asyncio.CancelledError:
                if not delivery.settled:
                    await asyncio.shield(delivery.release())
                raise
            except Exception as exc:
                log.warning(
                    "job failed", queue=self.queue.name, key=delivery.envelope.key, error=repr(exc)
                )
                if not delivery.settled:
                    await delivery.fail(str(exc) or type(exc).__name__)
            else:
                if not delivery.settled:
                    await delivery.ack()
        except Exception as exc:
            # could not settle (Redis down, or refusing the script): the entry stays pending and is
            # reclaimed after the visibility timeout; nobody awaits this task, so say it here
            log.warning(
                "could not settle job",
                queue=self.queue.name,
                key=delivery.envelope.key,
                error=str(exc),
            )
