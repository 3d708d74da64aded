"""Per-registry check budgets in Redis, shared by every monitor replica and surviving restarts.

One GCRA rate limit per registry host (`kuikcore.coord.RateLimiter`, key `monitoring:<host>`):
`maxPerInterval` checks per `interval`, spaced one tick apart (burst 1), so no window of one
interval ever holds more than `maxPerInterval` checks, whichever replica made them. A registry
that answered `QuotaExceeded` is deferred in the same Redis state for its `Retry-After` (one
tick when it gave none), so a failover respects the back-off too.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuikcore.config.model import RegistryMonitoring
from kuikcore.coord import RateDecision, RateLimit, RateLimiter

__all__ = ["HEADROOM", "Budget", "budget_key", "rate_limit"]

HEADROOM = 0.05
"""The budget's period is 5% longer than `interval` (checks spaced `tick * 1.05`): the budget is
spent just before a request leaves, but the event loop may still hold one request back while
another goes out at once (a large status being parsed), and a registry counting requests in
windows must never see `maxPerInterval + 1` of them within one `interval` because of that."""


def budget_key(host: str) -> str:
    return f"monitoring:{host}"


def rate_limit(config: RegistryMonitoring) -> RateLimit:
    return RateLimit(
        count=config.max_per_interval, period=config.interval.total_seconds() * (1 + HEADROOM)
    )


@dataclass
class Budget:
    limiter: RateLimiter

    async def try_spend(self, host: str, config: RegistryMonitoring) -> RateDecision:
        """Spend one check of `host`'s budget if it allows one now, else say how long to wait."""
        return await self.limiter.try_acquire(budget_key(host), rate_limit(config))

    async def back_off(
        self, host: str, config: RegistryMonitoring, retry_after: float | None
    ) -> float:
        """No check of `host` for `retry_after` seconds (a tick when None); returns the delay."""
        delay = (
            retry_after
            if retry_after is not None and retry_after > 0
            else config.tick.total_seconds()
        )
        await self.limiter.defer(budget_key(host), rate_limit(config), delay)
        return delay
