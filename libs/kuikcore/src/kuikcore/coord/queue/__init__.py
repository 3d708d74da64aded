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

Modules: `scripts` (the Lua), `model` (values both sides share), `producer` (`JobQueue`),
`consumer` (`Worker`, `Delivery`).
"""

from __future__ import annotations

from kuikcore.coord.queue.consumer import Delivery, Worker
from kuikcore.coord.queue.model import (
    EXPEDITE,
    ROUTINE,
    DeadLetter,
    Enqueued,
    LaneStats,
    QueueStats,
)
from kuikcore.coord.queue.producer import JobQueue

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
