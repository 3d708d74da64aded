"""A durable job queue on Redis Streams with one consumer group per queue.

Layout, per queue and lane (`expedite` is read before `routine`):

- a stream holding every job not yet acknowledged; an acknowledged entry is deleted at once
  (XACK + XDEL in one script), so the stream length *is* the backlog and bounding it never trims
  unprocessed work (producers get `QueueFull` instead);
- a ZSET of jobs waiting for their retry time, moved back into the stream when due;
- one string per pending job key (de-duplication), holding `<lane rank>:<enqueue token>:<entry id>`.
  A job enqueued again on a higher-priority lane while pending is *promoted*: its lower-lane entry
  is deleted if no worker has it yet, and any older entry still around (in flight, or waiting for
  a retry) carries a token that no longer matches, so it is dropped when a worker reads it.

Workers own what they read until they ack or fail it; a heartbeat keeps their entries' idle time
low, so only the entries of a dead or stuck worker get idle long enough (the visibility timeout)
for another worker's XAUTOCLAIM. Every script checks ownership first: a worker whose entry was
reclaimed cannot ack or fail it any more. Work must therefore be idempotent: "exactly once in
effect", not exactly-once execution.

Every worker process is a new consumer (its name is unique), so a crashed one stays in the group:
workers periodically delete consumers idle past the visibility timeout that own no entry
(`JobQueue.prune_consumers`), so the group does not grow with every crash.

Nothing here remembers that the consumer groups exist: Redis may come back from a restart without
its data at any time, so every command that needs a group re-creates the groups when Redis answers
NOGROUP and runs again (`JobQueue._with_groups`).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, TypeVar

import structlog
from redis.exceptions import ResponseError

from kuikcore.coord.connection import OUTAGE_ERRORS, Coord, default_identity
from kuikcore.coord.errors import ConsumerGroupLost, PermanentJobError, QueueFull
from kuikcore.coord.job import Envelope, Job, JobDecodeError, JobTypes, backoff_delay

__all__ = [
    "EXPEDITE",
    "ROUTINE",
    "DeadLetter",
    "Delivery",
    "Enqueued",
    "JobQueue",
    "LaneStats",
    "QueueStats",
    "Worker",
]

log = structlog.get_logger(__name__)

#: Queue and lane names are parts of key names: nothing surprising in them, no ':' in a lane.
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_LANE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RESERVED_LANES = frozenset({"dead", "job", "delayed"})

#: (lane, entry id, envelope text, reclaimed from a dead or stuck worker)
_Entry = tuple[str, str, str, bool]
_T = TypeVar("_T")

EXPEDITE = "expedite"
ROUTINE = "routine"
GROUP = "workers"

# Enqueue a batch. KEYS: every lane's stream by rank, then one job key per job.
# ARGV: lane rank, pending ttl ms, backlog bound, group, then (token, envelope) per job.
# The job key holds `<rank>:<token>:<entry id>` (entry id empty while waiting for a retry).
# Returns one of queued / promoted / duplicate / full per job.
_ENQUEUE = """
local lanes = #KEYS - (#ARGV - 4) / 2
local rank = tonumber(ARGV[1])
local target = KEYS[rank + 1]
local bound = tonumber(ARGV[3])
local out = {}
for j = 1, #KEYS - lanes do
  local key, token, envelope = KEYS[lanes + j], ARGV[3 + 2 * j], ARGV[4 + 2 * j]
  local cur = redis.call('GET', key)
  local result = nil
  if cur then
    local held, held_token, id = string.match(cur, '^(%d+):([^:]*):(.*)$')
    if held_token == token then
      result = 'queued'  -- this very call, retried after a lost reply
    elseif tonumber(held) <= rank then
      result = 'duplicate'
    elseif id ~= '' and KEYS[tonumber(held) + 1] then
      -- promotion: drop the lower-lane entry unless a worker already has it
      local older = KEYS[tonumber(held) + 1]
      if #redis.call('XPENDING', older, ARGV[4], id, id, 1) == 0 then redis.call('XDEL', older, id) end
    end
  end
  if not result then
    if bound > 0 and redis.call('XLEN', target) >= bound then
      result = 'full'
    else
      local id = redis.call('XADD', target, '*', 'e', envelope)
      redis.call('SET', key, rank .. ':' .. token .. ':' .. id, 'PX', ARGV[2])
      if cur then result = 'promoted' else result = 'queued' end
    end
  end
  out[j] = result
end
return out
"""
#: Most jobs enqueued by one script call (keeps each call short on the server).
_ENQUEUE_CHUNK = 500

# Shared head of the settle scripts: only the consumer owning the entry may settle it.
_OWNED = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return -1 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local cur = redis.call('GET', KEYS[2])
local mine = cur and string.match(cur, '^%d+:([^:]*)') == ARGV[4]
"""

# KEYS: stream, job key. ARGV: group, id, consumer, token.
# Acks of many entries of one stream at once (concurrent handlers finishing together).
# KEYS: stream, then one job key per entry. ARGV: group, consumer, then (id, token) per entry.
# Returns 1 per entry acked, -1 per entry this consumer no longer owned.
_ACK_MANY = """
local out = {}
for i = 2, #KEYS do
  local id, token = ARGV[2 * i - 1], ARGV[2 * i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p == 0 or p[1][2] ~= ARGV[2] then
    out[i - 1] = -1
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    local cur = redis.call('GET', KEYS[i])
    if cur and string.match(cur, '^%d+:([^:]*)') == token then redis.call('DEL', KEYS[i]) end
    out[i - 1] = 1
  end
end
return out
"""
#: Most entries acked by one script call (keeps each call short on the server).
_ACK_CHUNK = 256

# KEYS: stream, job key, delayed zset, dead stream.
# ARGV: group, id, consumer, token, envelope, delay ms (-1: dead-letter), pending ttl ms,
#       dead bound, lane rank, error.
_FAIL = (
    _OWNED
    + """
if cur and not mine then return 2 end
local delay = tonumber(ARGV[6])
if delay >= 0 then
  local t = redis.call('TIME')
  local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay
  redis.call('ZADD', KEYS[3], due, ARGV[5])
  redis.call('SET', KEYS[2], ARGV[9] .. ':' .. ARGV[4] .. ':', 'PX', ARGV[7])
  return 1
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[5], 'error', ARGV[10])
if mine then redis.call('DEL', KEYS[2]) end
return 3
"""
)

# KEYS: (delayed zset, stream) per lane. ARGV: max entries to move per lane.
_MOVE_DUE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local moved = 0
for i = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
  for _, member in ipairs(due) do
    redis.call('XADD', KEYS[i + 1], '*', 'e', member)
    redis.call('ZREM', KEYS[i], member)
  end
  moved = moved + #due
end
return moved
"""

# Strict lane priority in one round trip: read the first lane, then the next only for what is
# still missing. KEYS: lane streams by rank. ARGV: group, consumer, count.
# Returns {rank, id, envelope} triples (every entry has the single field `e`).
_READ = """
local left = tonumber(ARGV[3])
local out = {}
for rank, stream in ipairs(KEYS) do
  if left <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', stream, '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      local fields, envelope = entry[2], ''
      for f = 1, #fields, 2 do
        if fields[f] == 'e' then envelope = fields[f + 1] end
      end
      table.insert(out, {rank - 1, entry[1], envelope})
      left = left - 1
    end
  end
end
return out
"""

# KEYS: stream. ARGV: group, consumer, ids... Returns the ids this consumer no longer owns.
_TOUCH = """
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""


# Delete dead consumers: idle at least ARGV[2] ms and owning no entry, never ARGV[4] (the caller),
# at most ARGV[3] per call. One script, so no consumer can read an entry between the check and
# the delete (DELCONSUMER would orphan it). KEYS: lane streams. ARGV: group, idle ms, limit, keep.
_PRUNE = """
local left = tonumber(ARGV[3])
local deleted = 0
for _, stream in ipairs(KEYS) do
  for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, ARGV[1])) do
    if left <= 0 then return deleted end
    local f = {}
    for i = 1, #consumer, 2 do f[consumer[i]] = consumer[i + 1] end
    if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) and f['name'] ~= ARGV[4] then
      redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[1], f['name'])
      deleted = deleted + 1
      left = left - 1
    end
  end
end
return deleted
"""
#: Most dead consumers one worker deletes per visibility timeout (bounds the script's work).
_PRUNE_LIMIT = 100


class Enqueued(StrEnum):
    """What `enqueue` did with a job."""

    QUEUED = "queued"  # new (or this very call retried after a lost reply)
    PROMOTED = "promoted"  # was pending on a lower-priority lane: queued again on this one
    DUPLICATE = "duplicate"  # already pending on this lane or a higher one: nothing done


@dataclass(frozen=True, slots=True)
class LaneStats:
    ready: int  # waiting for a worker
    in_flight: int  # read by a worker, not yet acked
    delayed: int  # waiting for a retry time


@dataclass(frozen=True, slots=True)
class QueueStats:
    lanes: dict[str, LaneStats]
    dead: int

    @property
    def idle(self) -> bool:
        """Nothing ready, in flight or delayed on any lane."""
        return all(s.ready == s.in_flight == s.delayed == 0 for s in self.lanes.values())


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    error: str
    envelope: Envelope | None  # None when the entry could not even be decoded
    raw: str


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
        if not _QUEUE_NAME.fullmatch(name):
            raise ValueError(f"queue name {name!r}: use letters, digits, '.', '_', '-' or ':'")
        if not lanes or len(set(lanes)) != len(lanes):
            raise ValueError(f"queue {name!r}: lanes must be distinct and non-empty, got {lanes!r}")
        for lane in lanes:
            if not _LANE_NAME.fullmatch(lane) or lane in _RESERVED_LANES:
                raise ValueError(
                    f"queue {name!r}: lane {lane!r} must use letters, digits, '.', '_' or '-' "
                    f"and not be one of {sorted(_RESERVED_LANES)}"
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
        self._enqueue = redis.register_script(_ENQUEUE)
        self._ack_many = redis.register_script(_ACK_MANY)
        self._fail = redis.register_script(_FAIL)
        self._move_due = redis.register_script(_MOVE_DUE)
        self._read = redis.register_script(_READ)
        self._touch = redis.register_script(_TOUCH)
        self._prune = redis.register_script(_PRUNE)

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
        for first in range(0, len(envelopes), _ENQUEUE_CHUNK):
            chunk = envelopes[first : first + _ENQUEUE_CHUNK]
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
        self, *, idle: float | None = None, limit: int = _PRUNE_LIMIT, keep: str = ""
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

    # settling (called by Delivery) -----------------------------------------------------------
    async def _settle(
        self, delivery: Delivery, *, error: str | None, delay: float | None, counted: bool = True
    ) -> int:
        lane, envelope = delivery.lane, delivery.envelope
        stream = self.stream(lane)
        job_key = self.coord.keys.job(self.name, envelope.key)
        common: list[str | int] = [GROUP, delivery.id, delivery.consumer, envelope.token]
        if error is None:
            return await delivery.worker.ack(delivery)
        keys = [
            stream,
            job_key,
            self.coord.keys.delayed(self.name, lane),
            self.coord.keys.dead(self.name),
        ]
        next_envelope = envelope.failed(error, count=counted)
        delay_ms = -1 if delay is None else int(delay * 1000)
        args: list[str | int] = [
            *common,
            next_envelope.dumps() if envelope.token else delivery.raw,
            delay_ms,
            self.pending_ttl_ms,
            self.max_dead,
            self._rank(lane),
            error,
        ]
        return int(await self._with_groups(partial(self._fail, keys=keys, args=args)))

    def retry_delay(self, attempt: int) -> float | None:
        """Seconds before the next try after `attempt` failures, or None: dead-letter it."""
        if attempt >= self.max_attempts:
            return None
        return backoff_delay(attempt, base=self.retry_base, cap=self.retry_cap)


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
        result = await self.queue._settle(self, error=error, delay=delay, counted=counted)
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
            batch, self._acks = self._acks[:_ACK_CHUNK], self._acks[_ACK_CHUNK:]
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
        entries: list[_Entry] = []
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

    async def _reclaim(self, count: int) -> list[_Entry]:
        """XAUTOCLAIM entries idle past the visibility timeout (their worker died or hung);
        entries delivered too often (they keep killing workers) are dead-lettered instead."""
        redis = self.queue.coord.redis
        idle_ms = int(self.queue.visibility_timeout * 1000)
        claimed: list[_Entry] = []
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

    async def _admit(self, entries: list[_Entry]) -> list[Delivery]:
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
