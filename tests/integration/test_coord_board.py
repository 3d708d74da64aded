"""The availability board and multi-cluster usage records against a real redis-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ConnectionError

from kuikcore.api import AvailabilityStatus
from kuikcore.coord import AvailabilityBoard, Coord, ImageAvailability, UsageRecords, connect
from kuikcore.testing import RedisServer

NGINX = "docker.io/library/nginx:1.27"
MIRROR = "mirror.example/docker.io/library/nginx:1.27"


async def commands_run(coord: Coord, name: str) -> int:
    stats = await coord.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


async def test_webhook_reads_every_candidate_in_one_round_trip(coord: Coord) -> None:
    board = AvailabilityBoard(coord)
    await board.publish_image(NGINX, AvailabilityStatus.NOT_FOUND, error="manifest unknown")
    await board.publish_image(MIRROR, AvailabilityStatus.AVAILABLE, digest="sha256:" + "a" * 64)
    assert await board.report_registry("mirror.example", reachable=True)

    before = await commands_run(coord, "mget")
    snapshot = await board.read(
        [NGINX, MIRROR, "quay.io/never/checked:1"], ["docker.io", "mirror.example"]
    )
    assert await commands_run(coord, "mget") == before + 1

    nginx = snapshot.images[NGINX]
    assert nginx is not None
    assert (nginx.status, nginx.error) == (AvailabilityStatus.NOT_FOUND, "manifest unknown")
    mirror = snapshot.images[MIRROR]
    assert mirror is not None
    assert mirror.status is AvailabilityStatus.AVAILABLE
    assert mirror.digest == "sha256:" + "a" * 64
    assert snapshot.images["quay.io/never/checked:1"] is None  # missing = unknown
    assert snapshot.registries["docker.io"] is None
    health = snapshot.registries["mirror.example"]
    assert health is not None
    assert health.up
    assert not snapshot.registry_down("docker.io")


async def test_registry_goes_down_after_repeated_failures_and_up_at_first_success(
    coord: Coord,
) -> None:
    board = AvailabilityBoard(coord, down_after=3)
    for _ in range(2):
        assert await board.report_registry(
            "flaky.example", reachable=False, error="connection refused"
        )
    first_down = await board.read(hosts=["flaky.example"])
    assert not first_down.registry_down("flaky.example")
    assert not await board.report_registry("flaky.example", reachable=False, error="i/o timeout")
    assert not await board.report_registry("flaky.example", reachable=False, error="i/o timeout")
    down = (await board.read(hosts=["flaky.example"])).registries["flaky.example"]
    assert down is not None
    assert not down.up
    assert down.consecutive_failures == 4
    assert down.last_error == "i/o timeout"
    assert down.down_since is not None
    since = down.down_since
    assert not await board.report_registry("flaky.example", reachable=False, error="again")
    again = (await board.read(hosts=["flaky.example"])).registries["flaky.example"]
    assert again is not None
    assert again.down_since == since  # down since the first time it went down
    assert await board.report_registry("flaky.example", reachable=True)
    up = (await board.read(hosts=["flaky.example"])).registries["flaky.example"]
    assert up is not None
    assert up.up
    assert up.down_since is None
    assert up.consecutive_failures == 0
    assert up.last_error == "again"  # kept for the record


async def test_entries_expire_into_unknown(coord: Coord) -> None:
    board = AvailabilityBoard(coord, image_ttl=0.1, registry_ttl=0.1)
    await board.publish_images(
        {
            NGINX: ImageAvailability(
                status=AvailabilityStatus.UNREACHABLE,
                checked_at=datetime.now(UTC),
                error="dial tcp",
            )
        }
    )
    await board.report_registry("docker.io", reachable=False, down_after=1)
    assert (await board.read([NGINX], ["docker.io"])).registry_down("docker.io")
    assert 0 < await coord.redis.pttl(coord.keys.board_image(NGINX)) <= 100
    assert 0 < await coord.redis.pttl(coord.keys.board_registry("docker.io")) <= 100
    # Redis's clock expires them: poll
    while await coord.redis.exists(  # noqa: ASYNC110
        coord.keys.board_image(NGINX), coord.keys.board_registry("docker.io")
    ):
        await asyncio.sleep(0.02)
    snapshot = await board.read([NGINX], ["docker.io"])
    assert snapshot.images == {NGINX: None}
    assert snapshot.registries == {"docker.io": None}


async def test_garbage_on_the_board_reads_as_unknown(coord: Coord) -> None:
    board = AvailabilityBoard(coord)
    await coord.redis.set(coord.keys.board_image(NGINX), '{"status": "Exploded", "checked_at": 1}')
    await coord.redis.set(coord.keys.board_registry("docker.io"), "not json")
    snapshot = await board.read([NGINX], ["docker.io"])
    assert snapshot.images[NGINX] is None
    assert snapshot.registries["docker.io"] is None
    # a writer folding into a garbled entry starts it afresh
    assert await board.report_registry("docker.io", reachable=False)


async def test_usage_of_every_cluster_is_visible_to_each(coord: Coord) -> None:
    east, west = UsageRecords(coord, "east"), UsageRecords(coord, "west")
    long_ago = datetime.now(UTC) - timedelta(days=2)
    await east.record([MIRROR, "mirror.example/app:1"], seen_at=long_ago)
    await west.record([MIRROR])
    await east.record([MIRROR], seen_at=long_ago - timedelta(days=1))  # never moves back in time

    assert set(await east.clusters()) == {"east", "west"}
    seen = await west.last_seen([MIRROR, "mirror.example/app:1", "mirror.example/unused:1"])
    assert set(seen[MIRROR]) == {"east", "west"}
    assert abs(seen[MIRROR]["east"] - long_ago) < timedelta(milliseconds=1)
    assert set(seen["mirror.example/app:1"]) == {"east"}
    assert seen["mirror.example/unused:1"] == {}

    # east cleaning up sees west's recent use; west does not count east's old use as recent
    assert await east.used_elsewhere(MIRROR, since=datetime.now(UTC) - timedelta(hours=1)) == [
        "west"
    ]
    assert await west.used_elsewhere(MIRROR, since=datetime.now(UTC) - timedelta(hours=1)) == []
    assert await west.used_elsewhere(MIRROR, since=long_ago) == ["east"]

    await east.forget([MIRROR])
    assert set((await west.last_seen([MIRROR]))[MIRROR]) == {"west"}


async def test_usage_records_are_bounded_by_retention(coord: Coord) -> None:
    records = UsageRecords(coord, "east", retention=3600)
    stale = datetime.now(UTC) - timedelta(hours=2)
    await records.record(["mirror.example/old:1"], seen_at=stale)
    await records.record(["mirror.example/new:1"])  # each write prunes what is past retention
    members = await coord.redis.zrange(coord.keys.usage("east"), 0, -1)
    assert members == ["mirror.example/new:1"]
    assert 0 < await coord.redis.pttl(coord.keys.usage("east")) <= 3600 * 1000
    assert 0 < await coord.redis.pttl(coord.keys.usage_clusters()) <= 3600 * 1000


async def test_read_with_a_deadline_never_waits_on_a_slow_or_dead_redis(
    redis_server_private: RedisServer,
) -> None:
    coord = connect(redis_server_private.url, retries=0)
    board = AvailabilityBoard(coord)
    try:
        await board.publish_image(NGINX, AvailabilityStatus.AVAILABLE)
        assert (await board.read([NGINX], deadline=1.0)).complete
        await coord.redis.client_pause(1000)  # Redis stops answering anyone for a second
        slow = await board.read([NGINX], ["docker.io"], deadline=0.05)
        assert not slow.complete
        assert slow.images == {NGINX: None}
        assert slow.registries == {"docker.io": None}
        redis_server_private.kill()
        dead = await board.read([NGINX], deadline=0.5)
        assert not dead.complete
        with pytest.raises(ConnectionError):
            await board.read([NGINX])  # without a deadline the caller sees the outage
    finally:
        await coord.aclose()
