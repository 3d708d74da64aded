"""One Redis client per process, built from a URL, with deadlines and reconnect-with-backoff on every call.

Services share one `Coord`; every coordination object (queue, lock, board, ...) takes it, so the
pool, the retry policy and the key prefix are decided once.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kuikcore.coord.errors import ConsumerGroupLost
from kuikcore.coord.keys import DEFAULT_PREFIX, KeySpace
from kuikcore.redis_url import RedisSettings, parse_redis_url

__all__ = ["Coord", "connect", "default_identity"]

#: Transient errors every call retries (with backoff) before giving up to its caller.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
#: What a long-running loop catches to survive a Redis outage (then retries with backoff). A Redis
#: that came back empty is one too: its queues' consumer groups are gone until re-created.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, OSError, ConsumerGroupLost)


def default_identity() -> str:
    """A name unique to this process: consumer names, lock owners, leader identity."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass(eq=False)
class Coord:
    """A connected Redis client plus the key space every coordination object writes under."""

    redis: aioredis.Redis
    keys: KeySpace
    settings: RedisSettings

    async def ping(self, within: float = 1.0) -> bool:
        """Readiness probe: True when Redis answers within `within` seconds, never raises."""
        try:
            async with asyncio.timeout(within):
                return bool(await self.redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> Coord:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def connect(
    url: str | RedisSettings,
    *,
    prefix: str = DEFAULT_PREFIX,
    retries: int = 3,
    client_name: str | None = None,
    **overrides: object,
) -> Coord:
    """Build a `Coord` for `url` (nothing is sent until the first call: Redis may still be down).

    `overrides` are `RedisSettings` fields set from config keys rather than the URL (`password`,
    `username`, `ca_file`, `socket_timeout`, ...). Every call waits at most `socket_timeout`, and
    connection errors are retried `retries` times with jittered exponential backoff.
    """
    settings = url if isinstance(url, RedisSettings) else parse_redis_url(url)
    settings = settings.with_overrides(**overrides)
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries)
    common: dict[str, object] = {
        "username": settings.username,
        "password": settings.password,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": retry,
        "retry_on_error": list(TRANSIENT_ERRORS),
        "decode_responses": True,
        "health_check_interval": 15,
        "client_name": client_name,
    }
    if settings.tls:
        common.update(
            ssl=True,
            ssl_ca_certs=settings.ca_file,
            ssl_cert_reqs="required" if settings.verify else "none",
            ssl_check_hostname=settings.check_hostname and settings.verify,
        )
    client: aioredis.Redis
    if settings.sentinel_service is not None:
        sentinel_kwargs = {
            k: v
            for k, v in common.items()
            if k not in {"username", "password", "client_name", "decode_responses"}
        }
        sentinel_kwargs.update(
            username=settings.sentinel_username, password=settings.sentinel_password
        )
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(settings.hosts), sentinel_kwargs=sentinel_kwargs, **common
        )
        client = sentinel.master_for(settings.sentinel_service, db=settings.db)
    else:
        host, port = settings.hosts[0]
        client = aioredis.Redis(host=host, port=port, db=settings.db, **common)  # type: ignore[arg-type]
    return Coord(redis=client, keys=KeySpace(prefix), settings=settings)
