"""The Redis fixture starts a real server that survives restarts when AOF is on."""

import redis.asyncio as aioredis

from kuik_testing import RedisServer


async def test_shared_server_answers(redis_client: aioredis.Redis) -> None:
    await redis_client.set("k", "v")
    assert await redis_client.get("k") == b"v"


async def test_private_server_keeps_data_across_restart(redis_server_private: RedisServer) -> None:
    client = aioredis.Redis.from_url(redis_server_private.url)
    await client.set("survivor", "1")
    await client.aclose()
    redis_server_private.restart()
    client = aioredis.Redis.from_url(redis_server_private.url)
    assert await client.get("survivor") == b"1"
    await client.aclose()
