"""Whether Redis answers, as a metric and a log line per change, not as readiness.

Readiness says whether a replica can do its job. A monitor replica serves `/status/images` and
its metrics from the cluster view even while Redis is down, so a Redis outage must not take it
out of its Service; but operators still need to see the outage. `watch_health` probes Redis
every few seconds, keeps `kube_image_keeper_redis_up` at 1 or 0 and logs each transition once.
"""

from __future__ import annotations

import asyncio

import structlog
from prometheus_client import CollectorRegistry, Gauge

from kuikcore.coord.connection import Coord

__all__ = ["watch_health"]

log = structlog.get_logger(__name__)

#: Seconds between probes; a probe waits at most 1 s (`Coord.ping`).
PROBE_PERIOD = 5.0


async def watch_health(
    coord: Coord, registry: CollectorRegistry, *, period: float = PROBE_PERIOD
) -> None:
    """Probe Redis forever: `kube_image_keeper_redis_up` (1 answers, 0 not) and one warning
    when it stops answering, one info line when it is back."""
    gauge = Gauge(
        "kube_image_keeper_redis_up",
        "1 when Redis answered this process's last probe (every few seconds), 0 otherwise",
        registry=registry,
    )
    up: bool | None = None
    try:
        while True:
            now_up = await coord.ping()
            gauge.set(1 if now_up else 0)
            if now_up != up:
                if not now_up:
                    log.warning("redis unreachable", redis=coord.settings.redacted())
                elif up is not None:
                    log.info("redis reachable again", redis=coord.settings.redacted())
                up = now_up
            await asyncio.sleep(period)
    finally:
        registry.unregister(gauge)  # a restarted watch registers it again
