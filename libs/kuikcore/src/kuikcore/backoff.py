"""Capped exponential backoff with jitter, one formula for everything that retries on a timer
(queue retries, restarts of a service's background loops)."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before try `attempt + 1` after `attempt` failures: capped exponential with
    "equal jitter" (half fixed, half random), so failures of many jobs do not retry in lockstep."""
    if attempt < 1:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return ceiling / 2 + rand() * ceiling / 2
