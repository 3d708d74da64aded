"""One leader per role (`replicator-status`, `monitor-scheduler`, ...) through a fenced Redis lock.

The leader's work runs inside the lock's lease: when the lease is lost (taken over, expired, Redis
unreachable for a whole TTL) the work is cancelled before the TTL ends, so two leaders never act
at once for longer than one renewal period; then campaigning resumes. Stopping (cancellation)
releases the lock, so a standby takes over at once instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from kuikcore.coord.connection import OUTAGE_ERRORS, Coord, default_identity
from kuikcore.coord.errors import LockLost
from kuikcore.coord.lease import LeaseKeeper
from kuikcore.coord.locks import FencedLock

__all__ = ["Leadership", "leader_gauge"]

log = structlog.get_logger(__name__)

_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, Gauge]] = (
    weakref.WeakKeyDictionary()
)


def leader_gauge(service: str, registry: CollectorRegistry = REGISTRY) -> Gauge:
    """`kube_image_keeper_<service>_is_leader{role}`, created once per registry."""
    gauges = _GAUGES.setdefault(registry, {})
    if service not in gauges:
        gauges[service] = Gauge(
            f"kube_image_keeper_{service}_is_leader",
            "1 while this replica leads the role, 0 otherwise",
            ["role"],
            registry=registry,
        )
    return gauges[service]


class Leadership:
    """Campaign for `role` and run the leader's work while elected."""

    def __init__(
        self,
        coord: Coord,
        role: str,
        *,
        service: str,
        ttl: float = 15.0,
        identity: str | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.coord = coord
        self.role = role
        self.ttl = ttl
        self.identity = identity or default_identity()
        self.lock_name = f"leader:{role}"
        self.gauge = leader_gauge(service, registry).labels(role=role)
        self.gauge.set(0)
        self.is_leader = False

    async def leader(self) -> str | None:
        """Identity of the current leader, None when there is none."""
        value = await self.coord.redis.get(self.coord.keys.lock(self.lock_name))
        return None if value is None else str(value)

    async def run(self, work: Callable[[FencedLock], Awaitable[None]]) -> None:
        """Campaign forever; while leader run `work(lock)` (its fence guards writes). When work
        returns, leadership is released and `run` returns; when leadership is lost, work is
        cancelled and campaigning resumes. Exceptions of `work` propagate."""
        while True:
            lock = FencedLock(self.coord, self.lock_name, ttl=self.ttl, blocking=False)
            try:
                elected = await lock.acquire(token=self.identity)
            except OUTAGE_ERRORS as exc:
                log.warning("leader election: redis unavailable", role=self.role, error=str(exc))
                elected = False
            if not elected:
                await asyncio.sleep(self.ttl / 3 * (0.5 + random.random() / 2))
                continue
            try:
                if await self._lead(lock, work):
                    return
            except LockLost as exc:
                log.warning(
                    "leadership lost", role=self.role, identity=self.identity, reason=exc.reason
                )

    async def _lead(self, lock: FencedLock, work: Callable[[FencedLock], Awaitable[None]]) -> bool:
        log.info("elected leader", role=self.role, identity=self.identity, fence=lock.fence)
        self.is_leader = True
        self.gauge.set(1)
        try:
            async with LeaseKeeper(
                lock.lock_name, self.ttl, lock.renew, granted_at=lock.granted_at
            ):
                await work(lock)
            return True
        finally:
            self.is_leader = False
            self.gauge.set(0)
            await lock.release_quietly()
