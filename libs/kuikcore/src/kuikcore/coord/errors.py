"""The coordination layer's errors, so callers branch on a class rather than on Redis's text."""

from __future__ import annotations

from kuikcore.redis_url import InvalidRedisURL

__all__ = [
    "ConsumerGroupLost",
    "CoordError",
    "InvalidRedisURL",
    "LockBusy",
    "LockLost",
    "PermanentJobError",
    "QueueFull",
]


class CoordError(Exception):
    """Base class of every error `kuikcore.coord` raises on its own account."""


class ConsumerGroupLost(CoordError):
    """Redis still says NOGROUP after a queue re-created its consumer groups (it is restarting
    empty, or something deletes the streams): an outage like a lost connection, retried as one."""

    def __init__(self, queue: str, reason: str) -> None:
        super().__init__(f"queue {queue!r}: consumer group missing after re-creating it: {reason}")
        self.queue = queue
        self.reason = reason


class LockBusy(CoordError):
    """A lock (or semaphore) is held by others and could not be acquired in the time allowed."""

    def __init__(self, name: str) -> None:
        super().__init__(f"lock {name!r} is held by another owner")
        self.name = name


class LockLost(CoordError):
    """Ownership of a lock (or lease) ended before the holder finished: its work was stopped."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"lost lock {name!r}: {reason}")
        self.name = name
        self.reason = reason


class QueueFull(CoordError):
    """A lane already holds its bound of unprocessed jobs: the producer should retry later."""

    def __init__(self, queue: str, lane: str, bound: int) -> None:
        super().__init__(
            f"queue {queue!r} lane {lane!r} holds {bound} unprocessed jobs (its bound)"
        )
        self.queue = queue
        self.lane = lane
        self.bound = bound


class PermanentJobError(CoordError):
    """Raised by a job handler when retrying cannot help: the job goes to the dead-letter stream at once."""
