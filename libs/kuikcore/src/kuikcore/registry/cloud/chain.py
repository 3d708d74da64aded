"""Cloud credentials per registry host: cached until shortly before expiry, refreshed single-flight.

A token is a secret: it lives in this process's memory only (never logged, exported or put in
Redis; `Credentials` prints redacted). Each opted-in host has one provider (`aws`, `gcp`,
`azure`), whose cloud library is imported on the first exchange, never before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kuikcore.registry.auth import Challenge, Credentials
from kuikcore.registry.errors import InvalidAuth
from kuikcore.registry.transport import Deadline, log

if TYPE_CHECKING:
    from kuikcore.registry.transport import Transport

__all__ = ["CloudAuth", "CloudToken", "Provider"]


@dataclass(frozen=True, slots=True)
class CloudToken:
    """Registry credentials from a cloud identity and when they stop working (epoch seconds)."""

    credentials: Credentials
    expires_at: float | None  # None: the service did not say


class Provider(Protocol):
    """One cloud's exchange for one registry host."""

    cloud: str

    async def token(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> CloudToken: ...

    async def ensure_repository(self, repository: str, deadline: Deadline) -> bool: ...


@dataclass
class _Cached:
    token: CloudToken
    refresh_at: float


@dataclass
class CloudAuth:
    """The transport's `CloudHook`: credentials for the hosts the operator opted in.

    `margin` is how long before expiry a token is refreshed (at most half its lifetime, so
    short-lived tokens are still reused). Concurrent requests for one host share one exchange,
    bounded by `exchange_timeout` rather than by the first caller's deadline: a webhook
    admission that cannot wait for a slow first exchange gives up alone, and the next finds the
    token. A token the service gave already expired (or with no expiry) serves its own request.
    """

    providers: dict[str, Provider]
    margin: float = 300.0
    exchange_timeout: float = 30.0
    clock: Callable[[], float] = time.time
    exchanges: dict[str, int] = field(default_factory=dict)
    """Exchanges done per host (tests, debugging); never the tokens."""
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _inflight: dict[str, asyncio.Task[CloudToken]] = field(default_factory=dict)

    def covers(self, host: str) -> bool:
        return host in self.providers

    def invalidate(self, host: str) -> None:
        self._cache.pop(host, None)

    async def credentials(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> Credentials:
        cached = self._cache.get(host)
        if cached is not None and self.clock() < cached.refresh_at:
            return cached.token.credentials
        task = self._inflight.get(host)
        if task is None:
            bound = Deadline.after(self.exchange_timeout)
            task = asyncio.ensure_future(self._exchange(transport, host, challenge, bound))
            self._inflight[host] = task
            task.add_done_callback(lambda done: self._settled(host, done))
        # shielded: a caller giving up (its deadline) must not cancel the others' exchange
        token = await asyncio.wait_for(asyncio.shield(task), deadline.remaining())
        return token.credentials

    def _settled(self, host: str, task: asyncio.Task[CloudToken]) -> None:
        self._inflight.pop(host, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up before it failed

    async def _exchange(
        self, transport: Transport, host: str, challenge: Challenge, deadline: Deadline
    ) -> CloudToken:
        provider = self.providers[host]
        self.exchanges[host] = self.exchanges.get(host, 0) + 1
        try:
            token = await provider.token(transport, host, challenge, deadline)
        except InvalidAuth:
            raise
        except Exception as exc:  # the cloud library's own errors: say which, never a secret
            raise InvalidAuth(
                f"{provider.cloud} credentials for {host}: {type(exc).__name__}: {exc}"
            ) from exc
        now = self.clock()
        lifetime = None if token.expires_at is None else token.expires_at - now
        if lifetime is not None and lifetime > 0:
            self._cache[host] = _Cached(token, now + lifetime - min(self.margin, lifetime / 2))
        else:
            self._cache.pop(host, None)
        log().info(
            "cloud registry credentials obtained",
            registry=host,
            cloud=provider.cloud,
            expires_in=None if lifetime is None else round(lifetime),
        )
        return token

    async def ensure_repository(self, host: str, repository: str, deadline: Deadline) -> bool:
        """Create `repository` when the host's cloud needs it explicitly (ECR); True if it may now exist."""
        provider = self.providers.get(host)
        if provider is None:
            return False
        try:
            return await provider.ensure_repository(repository, deadline)
        except Exception as exc:
            raise InvalidAuth(
                f"{provider.cloud}: creating repository {repository} on {host}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


async def in_thread(deadline: Deadline, call: Callable[[], Any]) -> Any:
    """A blocking cloud-library call in a worker thread, waited for within the deadline."""
    return await asyncio.wait_for(asyncio.to_thread(call), deadline.remaining())
