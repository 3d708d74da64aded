"""A distributed counting semaphore with leases: at most `limit` holders of one name at a time
across every process (e.g. `mirroring.maxConcurrentPerRegistry` copies per registry).

Holders are members of a ZSET scored by their lease's expiry (Redis time); expired leases are
dropped on every acquisition, so a killed worker's slot frees itself after `lease` seconds.
A release also pushes a token on a wake-up list that waiters block on (BLPOP), so a freed slot
is taken at once instead of at the next poll (waiting up to half a second per slot made two
replicas sharing a cap of 4 slower than one alone).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from kuikcore.coord.connection import OUTAGE_ERRORS, Coord
from kuikcore.coord.errors import LockBusy
from kuikcore.coord.lease import LeaseKeeper

__all__ = ["Semaphore"]

# KEYS: zset. ARGV: holder, limit, lease ms, mode ('acquire' | 'renew').
# Returns {1, 0} when held, {0, ms until the earliest lease expires} otherwise.
_SEMAPHORE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held and ARGV[4] == 'renew' then return {0, 0} end
if held or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease)
  return {1, 0}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
"""


class Semaphore:
    """`async with semaphore.slot(): ...` holds one of `limit` slots, renewing its lease."""

    def __init__(self, coord: Coord, name: str, limit: int, *, lease: float = 30.0) -> None:
        if limit < 1:
            raise ValueError(f"semaphore {name!r}: limit must be at least 1, got {limit}")
        self.coord = coord
        self.name = name
        self.limit = limit
        self.lease = lease
        self.key = coord.keys.semaphore(name)
        self.wake_key = coord.keys.semaphore_released(name)
        self._script = coord.redis.register_script(_SEMAPHORE)

    async def _call(self, holder: str, mode: str) -> tuple[bool, float]:
        held, wait = await self._script(
            keys=[self.key], args=[holder, self.limit, int(self.lease * 1000), mode]
        )
        return bool(int(held)), int(wait) / 1000

    async def try_acquire(self, holder: str) -> tuple[bool, float]:
        """(True, 0) when `holder` got (or already had) a slot, else (False, seconds to wait at most)."""
        return await self._call(holder, "acquire")

    async def release(self, holder: str) -> None:
        async with self.coord.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.key, holder)
            pipe.lpush(self.wake_key, holder)
            pipe.ltrim(self.wake_key, 0, self.limit - 1)  # tokens nobody took stay bounded
            pipe.pexpire(self.wake_key, int(self.lease * 1000))
            await pipe.execute()

    async def _wait_for_release(self, seconds: float) -> None:
        """Until a holder releases (a token) or `seconds` pass; Redis blocks, no polling."""
        # a blocking call must end before the client's socket timeout declares Redis dead
        cap = self.coord.settings.socket_timeout / 2
        await self.coord.redis.blpop([self.wake_key], timeout=max(0.01, min(seconds, cap)))

    async def holders(self) -> list[str]:
        """Current holders (expired leases included until the next acquisition drops them)."""
        return [str(h) for h in await self.coord.redis.zrange(self.key, 0, -1)]

    @asynccontextmanager
    async def slot(self, *, max_wait: float | None = None, poll: float = 0.5) -> AsyncIterator[str]:
        """Wait for a slot (at most `max_wait` seconds, else `LockBusy`), hold it while the block
        runs, renewing the lease; the block is cancelled with `LockLost` if the lease is lost."""
        holder = f"{os.getpid()}-{os.urandom(6).hex()}"
        give_up = None if max_wait is None else time.monotonic() + max_wait
        while True:
            granted_at = time.monotonic()
            held, wait = await self.try_acquire(holder)
            if held:
                break
            pause = min(wait, poll) * (0.5 + random.random() / 2)
            if give_up is not None:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise LockBusy(self.name)
                pause = min(pause, left)
            await self._wait_for_release(pause)

        async def renew() -> bool:
            return (await self._call(holder, "renew"))[0]

        try:
            async with LeaseKeeper(
                f"semaphore {self.name}", self.lease, renew, granted_at=granted_at
            ):
                yield holder
        finally:
            with suppress(*OUTAGE_ERRORS):  # the lease expires by itself
                await self.release(holder)
