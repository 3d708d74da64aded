"""Redis coordination for kuik's services: job queue, locks, leadership, availability board,
shared rate limits, semaphores and multi-cluster usage records. Everything takes a `Coord`
(`connect(url, prefix=...)`) and writes only under its key prefix."""

from __future__ import annotations

from kuikcore.coord.board import (
    AvailabilityBoard,
    BoardSnapshot,
    HostReport,
    ImageAvailability,
)
from kuikcore.coord.connection import OUTAGE_ERRORS, Coord, connect, default_identity
from kuikcore.coord.errors import (
    ConsumerGroupLost,
    CoordError,
    InvalidRedisURL,
    LockBusy,
    LockLost,
    PermanentJobError,
    QueueFull,
)
from kuikcore.coord.health import watch_health
from kuikcore.coord.job import Job, backoff_delay
from kuikcore.coord.keys import DEFAULT_PREFIX, KeySpace
from kuikcore.coord.leadership import Leadership, leader_gauge
from kuikcore.coord.lease import LeaseKeeper
from kuikcore.coord.locks import FencedLock, check_fence
from kuikcore.coord.queue import (
    EXPEDITE,
    ROUTINE,
    DeadLetter,
    Delivery,
    Enqueued,
    JobQueue,
    LaneStats,
    QueueStats,
    Worker,
)
from kuikcore.coord.ratelimit import RateDecision, RateLimit, RateLimiter
from kuikcore.coord.semaphore import Semaphore
from kuikcore.coord.usage import UsageRecords
from kuikcore.redis_url import RedisSettings, parse_redis_url, redact_url

__all__ = [
    "DEFAULT_PREFIX",
    "EXPEDITE",
    "OUTAGE_ERRORS",
    "ROUTINE",
    "AvailabilityBoard",
    "BoardSnapshot",
    "ConsumerGroupLost",
    "Coord",
    "CoordError",
    "DeadLetter",
    "Delivery",
    "Enqueued",
    "FencedLock",
    "HostReport",
    "ImageAvailability",
    "InvalidRedisURL",
    "Job",
    "JobQueue",
    "KeySpace",
    "LaneStats",
    "Leadership",
    "LeaseKeeper",
    "LockBusy",
    "LockLost",
    "PermanentJobError",
    "QueueFull",
    "QueueStats",
    "RateDecision",
    "RateLimit",
    "RateLimiter",
    "RedisSettings",
    "Semaphore",
    "UsageRecords",
    "Worker",
    "backoff_delay",
    "check_fence",
    "connect",
    "default_identity",
    "leader_gauge",
    "parse_redis_url",
    "redact_url",
    "watch_health",
]
