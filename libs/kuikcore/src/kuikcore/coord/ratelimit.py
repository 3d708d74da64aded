"""Shared rate limits: GCRA (generic cell rate algorithm) in one Lua script, per key.

The state is one timestamp per key in Redis (the theoretical arrival time), read against Redis's
own clock, so a budget such as monitoring's `maxPerInterval` per registry holds across replicas,
their clocks and their restarts. With `burst=1` requests are spaced `period / count` apart, so no
window of length `period` ever holds more than `count` of them (upstream's `tick`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from kuikcore.coord.connection import Coord

__all__ = ["RateDecision", "RateLimit", "RateLimiter"]

# KEYS: state. ARGV: emission interval µs, burst, cost, defer µs (-1: a normal request).
# Returns {allowed 0/1, wait µs}. Times in µs fit a Lua double exactly.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local defer = tonumber(ARGV[4])
if defer >= 0 then
  local until_ = now + defer + interval * (burst - 1)
  if until_ > tat then tat = until_ end
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  return {0, string.format('%.0f', tat - now - interval * (burst - 1))}
end
local new_tat = tat + interval * tonumber(ARGV[3])
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, string.format('%.0f', allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, '0'}
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`count` requests per `period` seconds, at most `burst` of them back to back."""

    count: int
    period: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or self.period <= 0 or self.burst < 1:
            raise ValueError(
                f"rate limit needs count >= 1, period > 0 and burst >= 1, got {self.count}/{self.period}s burst {self.burst}"
            )

    @property
    def interval(self) -> float:
        """Seconds between two requests at the sustained rate (upstream's `tick`)."""
        return self.period / self.count


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    wait: float  # seconds until a request may be allowed (0 when allowed)


class RateLimiter:
    """Budgets shared by every process using the same Redis and key (`monitoring:<host>`)."""

    def __init__(self, coord: Coord) -> None:
        self.coord = coord
        self._gcra = coord.redis.register_script(_GCRA)

    async def _call(self, key: str, limit: RateLimit, *, cost: int, defer_us: int) -> RateDecision:
        allowed, wait = await self._gcra(
            keys=[self.coord.keys.rate(key)],
            args=[int(limit.interval * 1_000_000), limit.burst, cost, defer_us],
        )
        return RateDecision(allowed=bool(int(allowed)), wait=max(0.0, int(wait) / 1_000_000))

    async def try_acquire(self, key: str, limit: RateLimit, *, cost: int = 1) -> RateDecision:
        """Spend `cost` from the budget if it allows it now; otherwise say how long to wait."""
        return await self._call(key, limit, cost=cost, defer_us=-1)

    async def acquire(self, key: str, limit: RateLimit, *, max_wait: float | None = None) -> bool:
        """Wait until the budget allows one request and spend it; False if that would take
        longer than `max_wait` seconds."""
        give_up = None if max_wait is None else time.monotonic() + max_wait
        while True:
            decision = await self.try_acquire(key, limit)
            if decision.allowed:
                return True
            if give_up is not None and time.monotonic() + decision.wait > give_up:
                return False
            await asyncio.sleep(decision.wait)

    async def defer(self, key: str, limit: RateLimit, seconds: float) -> None:
        """Allow nothing on `key` for `seconds` (a registry's `Retry-After`), keeping later debt."""
        await self._call(key, limit, cost=0, defer_us=int(seconds * 1_000_000))
