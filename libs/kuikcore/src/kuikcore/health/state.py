"""Registry host health as plain data, and the one hysteresis rule every writer applies.

Pure: the board's Lua script (`kuikcore.coord.board`) applies the same rule atomically in Redis;
`tests/unit/test_health_state.py` and `tests/integration/test_coord_board.py` hold both to one table.

The rule: a host goes **down on the first hard failure** (refused, reset, TLS failure, 5xx),
because a Pod admitted with a dead image is stuck for good while a needless reroute costs nothing;
**silence** (a timeout) counts as a failure only the second time in a row (`SILENT_DOWN_AFTER`), since
one late answer is as likely our own stalled process as a dead registry. A host comes back **up after
`up_after` consecutive answers** (default 2), so one lucky answer from a flapping registry does not send
Pods back to it. A host never seen before is up at its first answer: hysteresis guards recoveries,
not discoveries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

__all__ = [
    "DOWN",
    "SILENT_DOWN_AFTER",
    "UP",
    "HostHealth",
    "Knowledge",
    "Observation",
    "Transition",
    "fold",
    "knowledge",
]


class Knowledge(StrEnum):
    """What a reader may conclude about a host right now."""

    UP = "up"
    DOWN = "down"
    UNKNOWN = "unknown"  # never observed, or not confirmed recently enough to act on


UP, DOWN = Knowledge.UP, Knowledge.DOWN
SILENT_DOWN_AFTER = 2  # consecutive timeouts that make an up host down


@dataclass(frozen=True, slots=True)
class Observation:
    """One answer (or non-answer) from a host: a probe, or a failure seen on the way."""

    ok: bool
    at: float  # unix seconds
    by: str  # who saw it: "probe <identity>" or "<service> <operation>"
    error: str | None = None
    silent: bool = False  # a timeout, not a definite failure


@dataclass(frozen=True, slots=True)
class HostHealth:
    """The folded state of one registry host.

    `confirmed_at` is the last observation of either kind: how fresh the knowledge is.
    `since` is the last transition, so knowledge about images on the host that predates it is
    not trusted (the registry may have come back without them). `successes` counts consecutive
    answers while down, `silences` consecutive timeouts while up (the hysteresis counters)."""

    up: bool
    confirmed_at: float
    since: float
    by: str
    error: str | None = None
    successes: int = 0
    silences: int = 0

    def knowledge(self, now: float, fresh_for: float) -> Knowledge:
        return knowledge(self, now, fresh_for)


@dataclass(frozen=True, slots=True)
class Transition:
    """A host changed state: logged once, one Event, counted; never once per probe."""

    host: str
    up: bool
    at: float
    by: str
    error: str | None = None


def knowledge(health: HostHealth | None, now: float, fresh_for: float) -> Knowledge:
    """UP/DOWN only while confirmed within `fresh_for` seconds; otherwise nobody is watching
    the host and readers fall back to checking images themselves."""
    if health is None or now - health.confirmed_at > fresh_for:
        return Knowledge.UNKNOWN
    return Knowledge.UP if health.up else Knowledge.DOWN


def fold(health: HostHealth | None, seen: Observation, *, up_after: int) -> tuple[HostHealth, bool]:
    """(new state, whether it is a transition). Observations older than the state are ignored.

    A host seen for the first time is a transition only when it is down: discovering that a
    registry answers is not news worth a log line or an Event."""
    if up_after < 1:
        raise ValueError(f"up_after must be at least 1, got {up_after}")
    if health is None:
        return HostHealth(seen.ok, seen.at, seen.at, seen.by, seen.error), not seen.ok
    if seen.at < health.confirmed_at:
        return health, False
    if not seen.ok:
        if health.up:
            silences = health.silences + 1 if seen.silent else 0
            if seen.silent and silences < SILENT_DOWN_AFTER:
                return replace(health, confirmed_at=seen.at, silences=silences), False
            return HostHealth(False, seen.at, seen.at, seen.by, seen.error), True
        return replace(health, confirmed_at=seen.at, error=seen.error, successes=0), False
    if health.up:
        return replace(health, confirmed_at=seen.at, silences=0), False
    successes = health.successes + 1
    if successes >= up_after:
        return HostHealth(True, seen.at, seen.at, seen.by), True
    return replace(health, confirmed_at=seen.at, successes=successes), False
