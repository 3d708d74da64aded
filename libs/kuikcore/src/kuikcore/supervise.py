"""Supervision of a service's background loops: one loop's failure never ends the process.

A service runs a few loops for its whole life (copy workers, a leadership campaign, a queue-depth
gauge, ...). Before this, an exception escaping any of them either ended the process (status 1,
every other loop with it) or killed that loop silently. `Supervisor.run(loop, factory)` instead
logs the failure with its traceback, counts it in `kube_image_keeper_loop_restarts_total{loop}`
and starts the loop again from `factory()` after a capped exponential backoff with jitter, reset
once the loop has run well for a while. Cancellation (shutdown, lost leadership) still stops it,
and a loop that returns is done.

Loop names are the closed set `Loop`, so the metric's label values are known in advance and every
loop a process supervises is exported from 0 before its first failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from kuikcore.backoff import backoff_delay
from kuikcore.observe import NAMESPACE

__all__ = ["Loop", "Supervisor", "call_in_loop", "stop_tasks"]

log = structlog.get_logger("kuikcore.supervise")

_RECANCEL = 0.2  # seconds between cancellations of a task that has not stopped yet


def call_in_loop(
    loop: asyncio.AbstractEventLoop | None, callback: Callable[..., None], *args: Any
) -> None:
    """Run `callback(*args)` in `loop`: now when called from it, else soon and thread-safely
    (cluster change callbacks may come from a backend's worker thread). Nothing without a loop."""
    if loop is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback(*args)
    else:
        loop.call_soon_threadsafe(callback, *args)


async def stop_tasks(*tasks: asyncio.Task[None], within: float = 3.0) -> None:
    """Cancel `tasks` and wait for them, cancelling again every 0.2 s until they are done.

    A cancellation can be lost: Python 3.11's `asyncio.wait_for`, which redis-py awaits on every
    command, returns the reply instead of raising when both arrive together, and the loop around
    it carries on. Being cancelled meanwhile (the runner re-delivers its own stop) does not cut
    the wait short; it is re-raised once the tasks are done or `within` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = {task for task in tasks if not task.done()}
    interrupted: asyncio.CancelledError | None = None
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=min(_RECANCEL, deadline - loop.time()))
        except asyncio.CancelledError as exc:
            interrupted = exc
    if pending:
        log.warning("background tasks did not stop", tasks=sorted(t.get_name() for t in pending))
    if interrupted is not None:
        raise interrupted


class Loop(StrEnum):
    """Every supervised background loop of the three services (the `loop` label's values)."""

    REPLICATOR_WORKERS = "replicator-workers"
    REPLICATOR_LEADERSHIP = "replicator-leadership"
    REPLICATOR_RESULTS = "replicator-results"
    REPLICATOR_QUEUE_DEPTH = "replicator-queue-depth"
    REPLICATOR_REROUTE_EVENTS = "replicator-reroute-events"
    MONITOR_LEADERSHIP = "monitor-leadership"
    MONITOR_TRACKING = "monitor-tracking"
    MONITOR_SCHEDULING = "monitor-scheduling"
    MONITOR_FLUSHING = "monitor-flushing"
    WEBHOOK_CERT_RELOADER = "webhook-cert-reloader"
    REDIS_HEALTH = "redis-health"
    REGISTRY_HEALTH = "registry-health"


class Supervisor:
    """Restarts failed loops with backoff (`base` doubling up to `cap` seconds, equal jitter).

    The backoff starts again from `base` when the failed run had lasted at least `cap` seconds:
    a loop that fails once a day restarts at once, a loop that fails at every start waits `cap`.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        base: float = 0.5,
        cap: float = 30.0,
    ) -> None:
        self.base = base
        self.cap = cap
        self.restarts = Counter(
            "loop_restarts",
            "Background loops restarted after a failure, by loop",
            ["loop"],
            namespace=NAMESPACE,
            registry=registry if registry is not None else CollectorRegistry(),
        )

    async def run(self, loop: Loop, factory: Callable[[], Awaitable[None]]) -> None:
        """Run `factory()` until it returns or this task is cancelled, restarting it on failure."""
        restarts = self.restarts.labels(loop=loop.value)
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await factory()
                return
            except Exception as exc:
                failures = 1 if time.monotonic() - started >= self.cap else failures + 1
                delay = backoff_delay(failures, base=self.base, cap=self.cap)
                restarts.inc()
                log.error(
                    "background loop failed, restarting it",
                    loop=loop.value,
                    failures=failures,
                    restart_in=round(delay, 3),
                    exc_info=exc,
                )
            await asyncio.sleep(delay)
