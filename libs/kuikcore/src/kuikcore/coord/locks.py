"""Distributed locks with fencing tokens: redis-py's `Lock`, plus a counter bumped atomically on
every acquisition, so a holder that lost its lock (paused, partitioned) is refused when it writes.

Used for garbage collection per destination repository and, through `Leadership`, for leaders.
A fence only protects what checks it: Redis writes go through `guarded_set`, and code acting on
systems that cannot check fences (a registry DELETE) calls `check()` right before acting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, LockNotOwnedError

from kuikcore.coord.connection import OUTAGE_ERRORS, Coord
from kuikcore.coord.errors import LockBusy, LockLost
from kuikcore.coord.lease import LeaseKeeper

__all__ = ["FencedLock", "check_fence"]

#: Fence counters outlive any lock by far; they expire only when their lock is long unused.
FENCE_TTL_MS = 30 * 86_400 * 1000

# KEYS: lock, fence. ARGV: token, ttl ms, fence ttl ms. Returns the new fence, or 0 when held.
_ACQUIRE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  -- this very call, retried after a lost reply: the lock is already ours
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return fence
end
return 0
"""

# KEYS: lock, fence. ARGV: token, fence. 1 when this token holds the lock with this fence.
_CHECK = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then return 1 end
return 0
"""

# KEYS: lock, fence, target. ARGV: token, fence, value, px (0: no expiry).
_GUARDED_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[3], ARGV[3])
end
return 1
"""


_RELEASE_ERRORS: tuple[type[Exception], ...] = (LockError, *OUTAGE_ERRORS)


class FencedLock(Lock):
    """redis-py's asyncio `Lock` whose acquisition also hands out a fencing token (`fence`).

    `hold()` acquires, renews the TTL in the background, and cancels the block with `LockLost`
    if the lock is lost, so long operations need no manual `extend()`."""

    def __init__(
        self,
        coord: Coord,
        name: str,
        *,
        ttl: float = 30.0,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        sleep: float = 0.1,
    ) -> None:
        super().__init__(
            coord.redis,
            coord.keys.lock(name),
            timeout=ttl,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
            thread_local=False,
        )
        self.coord = coord
        self.lock_name = name
        self.ttl = ttl
        self.fence_key = coord.keys.fence(name)
        self.fence: int | None = None
        self.granted_at = 0.0
        self._acquire_script = coord.redis.register_script(_ACQUIRE)
        self._check_script = coord.redis.register_script(_CHECK)
        self._guarded_set = coord.redis.register_script(_GUARDED_SET)

    async def do_acquire(self, token: str | bytes) -> bool:
        self.granted_at = time.monotonic()
        fence = await self._acquire_script(
            keys=[self.name, self.fence_key],
            args=[token, int(self.ttl * 1000), FENCE_TTL_MS],
        )
        if int(fence) == 0:
            return False
        self.fence = int(fence)
        return True

    @property
    def token(self) -> str:
        raw = self.local.token
        if raw is None:
            raise LockLost(self.lock_name, "not acquired")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def check(self) -> None:
        """Raise `LockLost` unless this holder still owns the lock with its fence: call it right
        before acting on anything that cannot check fences itself."""
        current = self.fence is not None and await self._check_script(
            keys=[self.name, self.fence_key], args=[self.token, self.fence]
        )
        if not current:
            raise LockLost(self.lock_name, f"fence {self.fence} is no longer current")

    async def guarded_set(self, key: str, value: str, *, px: int | None = None) -> None:
        """SET `key` only while this holder's fence is current (atomically); `LockLost` otherwise."""
        if self.fence is None:
            raise LockLost(self.lock_name, "not acquired")
        done = await self._guarded_set(
            keys=[self.name, self.fence_key, key],
            args=[self.token, self.fence, value, px or 0],
        )
        if not int(done):
            raise LockLost(self.lock_name, f"write to {key!r} refused: fence {self.fence} is stale")

    async def renew(self) -> bool:
        """Reset the TTL; False when the lock is no longer ours."""
        try:
            await self.reacquire()
        except LockNotOwnedError:
            return False
        return True

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[FencedLock]:
        """Acquire (raising `LockBusy` when it cannot), keep renewing, release at the end.
        If the lock is lost meanwhile, the block is cancelled and `LockLost` raised."""
        if not await self.acquire():
            raise LockBusy(self.lock_name)
        try:
            async with LeaseKeeper(
                self.lock_name, self.ttl, self.renew, granted_at=self.granted_at
            ):
                yield self
        finally:
            await self.release_quietly()

    async def release_quietly(self) -> None:
        """Release if still ours; a lock already lost or an unreachable Redis is not an error here
        (the TTL frees it)."""
        with suppress(*_RELEASE_ERRORS):
            await self.release()


async def check_fence(coord: Coord, name: str, token: str, fence: int) -> bool:
    """True when lock `name` is held by `token` with fencing token `fence` (current)."""
    script = coord.redis.register_script(_CHECK)
    return bool(
        int(await script(keys=[coord.keys.lock(name), coord.keys.fence(name)], args=[token, fence]))
    )
