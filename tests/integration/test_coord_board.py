"""The availability board and multi-cluster usage records against a real redis-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.exceptions import ConnectionError

from kuik_testing import RedisServer
from kuikcore.api import AvailabilityStatus
from kuikcore.coord import AvailabilityBoard, Coord, ImageAvailability, UsageRecords, connect
from kuikcore.health import fold
from tests.unit.test_health_state import HYSTERESIS, observe

NGINX = "docker.io/library/nginx:1.27"
MIRROR = "mirror.example/docker.io/library/nginx:1.27"


async def commands_run(coord: Coord, name: str) -> int:
    stats = await coord.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


async def test_webhook_reads_every_candidate_in_one_round_trip(coord: Coord) -> None:
    board = AvailabilityBoard(coord)
    await board.publish_image(NGINX, AvailabilityStatus.NOT_FOUND, error="manifest unknown")
    await board.publish_image(MIRROR, AvailabilityStatus.AVAILABLE, digest="sha256:" + "a" * 64)
    assert (await board.report_registry("mirror.example", reachable=True, by="probe")).up

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


@pytest.mark.parametrize(("name", "seen", "expected"), HYSTERESIS, ids=[c[0] for c in HYSTERESIS])
async def test_the_board_folds_host_health_like_the_pure_rule(
    coord: Coord, name: str, seen: str, expected: list[tuple[bool, bool]]
) -> None:
    board = AvailabilityBoard(coord, up_after=2)
    host = f"host-{abs(hash(name))}.example"
    got = []
    for i, mark in enumerate(seen):
        report = await board.report_registry(
            host, reachable=mark == "+", by="probe", silent=mark == ".", at=100.0 + i
        )
        got.append((report.up, report.transition))
    assert got == expected
    # and what it stored is what the pure rule computes
    state = None
    for i, mark in enumerate(seen):
        state, _ = fold(state, observe(mark, 100.0 + i), up_after=2)
    stored = (await board.read(hosts=[host])).registries[host]
    assert stored is not None
    assert state is not None
    assert (stored.up, stored.confirmed_at, stored.since, stored.successes, stored.silences) == (
        state.up, state.confirmed_at, state.since, state.successes, state.silences,
    )  # fmt: skip


async def test_host_health_keeps_who_saw_it_and_ignores_late_observations(coord: Coord) -> None:
    board = AvailabilityBoard(coord)
    await board.report_registry("flaky.example", reachable=True, by="probe a", at=10.0)
    down = await board.report_registry(
        "flaky.example", reachable=False, by="webhook w-1 (passive)", error="refused", at=12.0
    )
    assert (down.up, down.transition) == (False, True)
    late = await board.report_registry("flaky.example", reachable=True, by="probe a", at=11.0)
    assert (late.up, late.transition) == (False, False)
    health = (await board.read(hosts=["flaky.example"])).registries["flaky.example"]
    assert health is not None
    assert (health.up, health.since, health.by, health.error) == (
        False, 12.0, "webhook w-1 (passive)", "refused",
    )  # fmt: skip
    assert (await board.read(hosts=["flaky.example"])).registry_down("flaky.example")


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
    await board.report_registry("docker.io", reachable=False, by="probe")
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
    report = await board.report_registry("docker.io", reachable=False, by="probe")
    assert (report.up, report.transition) == (False, True)


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
