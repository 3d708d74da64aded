"""Values both sides of the job queue share: lane names, the consumer group, what `enqueue`
returns, the stats and dead letters producers read, the raw entry workers read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from kuikcore.coord.job import Envelope

__all__ = [
    "EXPEDITE",
    "GROUP",
    "LANE_NAME",
    "QUEUE_NAME",
    "RESERVED_LANES",
    "ROUTINE",
    "DeadLetter",
    "Enqueued",
    "Entry",
    "LaneStats",
    "QueueStats",
]

#: Queue and lane names are parts of key names: nothing surprising in them, no ':' in a lane.
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
LANE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RESERVED_LANES = frozenset({"dead", "job", "delayed"})

#: (lane, entry id, envelope text, reclaimed from a dead or stuck worker)
Entry = tuple[str, str, str, bool]

EXPEDITE = "expedite"
ROUTINE = "routine"
GROUP = "workers"


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
