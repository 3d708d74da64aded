"""Registry health against real registries and a real Redis: probes, hysteresis, one prober
cluster-wide, passive detection, and probing alone while Redis is away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from kuik_testing import RedisServer, RegistryServer, free_port
from kuikcore.coord import AvailabilityBoard, Coord, connect
from kuikcore.health import Knowledge, Transition
from kuikcore.health.keeper import HealthKeeper, HealthSettings
from kuikcore.registry import RegistryClient, RegistryTLS, Unreachable
from kuikcore.registry.probe import probe

pytestmark = pytest.mark.timeout(60)

FAST = HealthSettings(interval=0.1, timeout=0.3, up_after=2)


async def eventually(what: str, check: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until `check()` held."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


class Keepers:
    """Keepers under test, each with its own registry client, all stopped at the end."""

    def __init__(self) -> None:
        self.running: list[tuple[HealthKeeper, RegistryClient, asyncio.Task[None]]] = []

    def start(
        self,
        coord: Coord | None,
        settings: HealthSettings = FAST,
        *,
        identity: str = "k1",
        hosts: tuple[str, ...] = (),
    ) -> tuple[HealthKeeper, list[Transition]]:
        client = RegistryClient()
        seen: list[Transition] = []

        async def record(transition: Transition) -> None:
            seen.append(transition)

        keeper = HealthKeeper(
            client.transport,
            coord=coord,
            settings=settings,
            identity=identity,
            service="test",
            registry=CollectorRegistry(),
            on_transition=record,
        ).attach()
        keeper.want(hosts)
        self.running.append((keeper, client, asyncio.create_task(keeper.run())))
        return keeper, seen

    async def stop(self) -> None:
        for keeper, client, task in self.running:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await keeper.close()
            await client.close()


@pytest.fixture
async def keepers() -> AsyncIterator[Keepers]:
    found = Keepers()
    yield found
    await found.stop()


@pytest.fixture
def doomed() -> RegistryServer:
    server = RegistryServer().start()
    yield server
    server.cleanup()


async def test_a_probe_reads_any_answer_as_up_and_silence_refusal_or_5xx_as_down(
    registry: RegistryServer, registry_auth: RegistryServer, doomed: RegistryServer
) -> None:
    trusted = {registry_auth.host: RegistryTLS(ca_file=str(registry_auth.ca_file))}
    async with RegistryClient(tls=trusted) as client:
        assert (await probe(client.transport, registry.host, 1.0)).ok
        assert (await probe(client.transport, registry_auth.host, 1.0)).ok  # 401 is an answer
        async with RegistryClient() as untrusting:
            untrusted = await probe(untrusting.transport, registry_auth.host, 1.0)
        assert not untrusted.ok  # a TLS failure is down
        assert "TLS certificate verification failed" in (untrusted.error or "")
        doomed.freeze()
        started = time.monotonic()
        silent = await probe(client.transport, doomed.host, 0.3)
        assert not silent.ok
        assert silent.timed_out  # silence: down only at the second in a row
        assert time.monotonic() - started < 1.0
        doomed.thaw()
        doomed.stop()
        refused = await probe(client.transport, doomed.host, 1.0)
        assert not refused.ok
        assert not refused.timed_out  # a definite failure: down at once
        assert "connection failed" in (refused.error or "")

        async def failing(_: web.Request) -> web.Response:
            return web.Response(status=503)

        app = web.Application()
        app.router.add_get("/v2/", failing)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            broken = await probe(client.transport, f"127.0.0.1:{port}", 1.0)
            assert not broken.ok
            assert "HTTP 503" in (broken.error or "")
        finally:
            await runner.cleanup()


async def test_alone_it_marks_down_at_once_and_up_after_two_answers(
    keepers: Keepers, doomed: RegistryServer
) -> None:
    keeper, seen = keepers.start(None, hosts=(doomed.host,))
    await eventually("first probe", lambda: keeper.view.knowledge(doomed.host) is Knowledge.UP)
    assert seen == []  # discovering that a registry answers is no transition
    doomed.stop()
    took = await eventually(
        "marked down", lambda: keeper.view.knowledge(doomed.host) is Knowledge.DOWN
    )
    assert took < 0.5  # one probe interval, refused at once
    doomed.start()
    await eventually("back up", lambda: keeper.view.knowledge(doomed.host) is Knowledge.UP)
    health = keeper.view.get(doomed.host)
    assert health is not None
    await eventually("both transitions reported", lambda: len(seen) == 2)
    assert [t.up for t in seen] == [False, True]
    assert seen[0].error is not None
    assert "(no redis)" in seen[0].by
    assert keeper.metrics.up.labels(registry=doomed.host)._value.get() == 1


async def test_one_prober_for_every_keeper_sharing_redis(
    keepers: Keepers, coord: Coord, doomed: RegistryServer
) -> None:
    settings = HealthSettings(interval=0.2, timeout=0.3)
    first, _ = keepers.start(coord, settings, identity="a", hosts=(doomed.host,))
    second, _ = keepers.start(coord, settings, identity="b", hosts=(doomed.host,))
    third, _ = keepers.start(coord, settings, identity="c", hosts=(doomed.host,))
    views = (first, second, third)
    await eventually("all see it up", lambda: all(
        k.view.knowledge(doomed.host) is Knowledge.UP for k in views
    ))  # fmt: skip
    assert sum(k.is_prober for k in views) == 1
    mark = doomed.log_offset()
    await asyncio.sleep(2.0)
    probes = doomed.count_requests("GET", "/v2/", since=mark)
    # 2 s at one probe per 0.2 s: about 10, not 30
    assert 6 <= probes <= 13, probes
    doomed.stop()
    await eventually("all see it down", lambda: all(
        k.view.knowledge(doomed.host) is Knowledge.DOWN for k in views
    ), within=2.0)  # fmt: skip


async def test_a_failed_connection_marks_the_host_down_everywhere_at_once(
    keepers: Keepers, coord: Coord, doomed: RegistryServer
) -> None:
    slow = HealthSettings(interval=30.0, timeout=0.5)  # no probe will help: only the failure
    watcher, _ = keepers.start(coord, HealthSettings(interval=0.2), identity="w")
    reader, seen = keepers.start(coord, slow, identity="r", hosts=(doomed.host,))
    watcher.want([doomed.host])
    doomed.stop()
    async with RegistryClient() as other:
        other.transport.on_unreachable = reader.report_unreachable
        with pytest.raises(Unreachable):
            await other.head_manifest(f"{doomed.host}/app:1")
    assert reader.view.knowledge(doomed.host) is Knowledge.DOWN  # at once, here
    board = AvailabilityBoard(coord)
    health = None
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        health = (await board.read(hosts=[doomed.host])).registries[doomed.host]
        if health is not None and not health.up:
            break
        await asyncio.sleep(0.01)
    assert health is not None
    assert not health.up
    assert "(passive)" in health.by
    await eventually("one transition", lambda: len(seen) == 1)
    assert not seen[0].up


async def test_while_redis_is_away_each_keeper_probes_for_itself(
    keepers: Keepers, redis_server_private: RedisServer, doomed: RegistryServer
) -> None:
    coord = connect(redis_server_private.url, prefix="away:", retries=1, socket_timeout=0.3)
    try:
        keeper, seen = keepers.start(coord, identity="alone", hosts=(doomed.host,))
        await eventually("up", lambda: keeper.view.knowledge(doomed.host) is Knowledge.UP)
        redis_server_private.stop()
        await asyncio.sleep(0.5)
        doomed.stop()
        took = await eventually(
            "down without redis", lambda: keeper.view.knowledge(doomed.host) is Knowledge.DOWN
        )
        assert took < 2.0
        doomed.start()
        await eventually("up without redis", lambda: keeper.view.knowledge(doomed.host) is (
            Knowledge.UP
        ))  # fmt: skip
        await eventually("both transitions reported", lambda: len(seen) == 2)
        assert [t.up for t in seen] == [False, True]
    finally:
        await coord.aclose()


async def test_hosts_unwanted_for_long_are_forgotten(
    keepers: Keepers, registry: RegistryServer
) -> None:
    now = [1000.0]
    keeper = HealthKeeper(
        RegistryClient().transport,
        coord=None,
        settings=HealthSettings(max_hosts=2, forget_after=60),
        identity="f",
        service="test",
        registry=CollectorRegistry(),
        clock=lambda: now[0],
    )
    keeper.want(["a.example", "b.example"])
    keeper.want(["c.example"])  # over max_hosts: the least recently wanted goes
    assert keeper.wanted == ["b.example", "c.example"]
    now[0] += 30
    keeper.want(["c.example"])
    now[0] += 40
    keeper._forget_old()
    assert keeper.wanted == ["c.example"]
