"""Keeping a lease (lock, semaphore slot) alive while work runs, and stopping the work when it is lost.

A lease is valid for `ttl` seconds from the moment its last successful renewal was *sent*. The
keeper renews every `ttl / 3`; when Redis says the lease is gone, or when renewals keep failing
until that validity would end, the task holding the lease is cancelled and `LockLost` comes out of
the `async with` block, so a holder never acts past its lease (the same pattern as `asyncio.timeout`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

import structlog

from kuikcore.coord.errors import LockLost

__all__ = ["LeaseKeeper"]

log = structlog.get_logger(__name__)


class LeaseKeeper:
    """`async with LeaseKeeper(...)`: renew in the background, cancel the body on loss."""

    def __init__(
        self,
        name: str,
        ttl: float,
        renew: Callable[[], Awaitable[bool]],
        *,
        granted_at: float,
    ) -> None:
        """`renew()` returns False when the lease is no longer ours; `granted_at` is the
        `time.monotonic()` at which the request that granted the lease was sent."""
        self.name = name
        self.ttl = ttl
        self.renew = renew
        self.valid_until = granted_at + ttl
        self.lost: str | None = None
        self._active = False
        self._host: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._renewer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LeaseKeeper:
        self._host = asyncio.current_task()
        if self._host is None:
            raise RuntimeError("LeaseKeeper must be used inside an asyncio task")
        self._cancelling = self._host.cancelling()
        self._active = True
        self._renewer = asyncio.create_task(self._keep(), name=f"lease-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if self.lost is not None and exc_type is asyncio.CancelledError:
            assert self._host is not None
            if self._host.uncancel() <= self._cancelling:
                raise LockLost(self.name, self.lost) from None

    async def _keep(self) -> None:
        period = self.ttl / 3
        while True:
            await asyncio.sleep(max(0.0, min(period, (self.valid_until - time.monotonic()) / 2)))
            sent = time.monotonic()
            remaining = self.valid_until - sent
            if remaining <= 0:
                self._lose(
                    f"not renewed within its {self.ttl:g}s TTL (Redis unreachable or failing)"
                )
                return
            try:
                async with asyncio.timeout(remaining):
                    still_ours = await self.renew()
            except Exception as exc:
                # an outage, or anything unexpected: keep trying until the lease would end, then
                # stop the holder (a silently dead renewer would let it act past its lease)
                log.warning("lease renewal failed", lease=self.name, error=repr(exc))
                continue
            if not still_ours:
                self._lose("taken over or expired")
                return
            self.valid_until = sent + self.ttl

    def _lose(self, reason: str) -> None:
        self.lost = reason
        log.warning("lease lost", lease=self.name, reason=reason)
        if self._active and self._host is not None:
            self._host.cancel()
