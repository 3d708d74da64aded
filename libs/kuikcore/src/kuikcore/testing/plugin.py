"""pytest plugin: real Redis and OCI registries for every kuik test suite.

Loaded with `-p kuikcore.testing.plugin` (see the root pyproject's pytest options).
Session-scoped servers are shared; tests that kill or restart a server ask for
the function-scoped variant instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from kuikcore.testing.apiserver import FakeApiServer
from kuikcore.testing.redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests isolate by key prefix or flush."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_server_private() -> Iterator[RedisServer]:
    """A redis-server of the test's own (AOF on), free to be stopped, killed or restarted."""
    server = RedisServer(aof=True).start()
    yield server
    server.cleanup()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on the shared server, with the database flushed before the test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


# ---------------------------------------------------------------------------------------------
# Kubernetes API-server fake (owner: cluster helper; kuikcore.testing.apiserver)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    """A fresh stateful Kubernetes API fake on a loopback port, with fast bookmarks.

    Drive state with its direct methods (`create`, `patch`, `delete`), faults with
    `cut_watches()`, `compact()`, `fail_requests()`, `set_delay()`, `drop_events()`;
    connect with `apiserver.api_client()` or `apiserver.write_kubeconfig(path)`.
    """
    server = await FakeApiServer(bookmark_interval=0.5).start()
    yield server
    await server.stop()
