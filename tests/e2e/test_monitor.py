"""kuik-monitor end to end: real processes in local mode, real Redis, real docker-registry.

Short budgets (interval 2s, maxPerInterval 4: one check per registry every 0.5 s) keep the file
fast. Statuses are read back through a `LocalCluster` on the same directory (what `kubectl` would
show) and through the monitor's own `/status/images` and `/metrics`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import ClientSession, web

from kuik_testing.images import push_image, synthetic_image
from kuik_testing.objects import all_images, cisa, docker_secret, pod
from kuik_testing.processes import ServiceProcess
from kuik_testing.redis import RedisServer
from kuik_testing.registry import RegistryServer, max_in_window
from kuikcore.api import ClusterImageSetAvailability
from kuikcore.cluster import ObjectKey
from kuikcore.cluster.local import LocalCluster
from kuikcore.coord import AvailabilityBoard, connect

pytestmark = [pytest.mark.timeout(150)]

CISA = ClusterImageSetAvailability.KIND
INTERVAL, MAX_PER_INTERVAL = 2.0, 4
T = TypeVar("T")


class Scene:
    """A local-mode directory (CISAs, Pods, Secrets), its config, and the monitors running on it."""

    def __init__(self, root: Path, redis: RedisServer) -> None:
        self.root = root
        self.dir = root / "cluster"
        self.dir.mkdir()
        self.prefix = f"kuik-e2e-{uuid.uuid4().hex[:8]}:"
        self.redis_url = redis.url
        self.config: dict[str, Any] = {
            "monitoring": {
                "registries": {
                    "default": {
                        "interval": f"{INTERVAL:g}s",
                        "maxPerInterval": MAX_PER_INTERVAL,
                        "timeout": "3s",
                    }
                }
            },
            "metrics": {
                "imageLastMonitorAgeMinutes": {
                    "legacy": {"bucketType": "custom", "custom": [1, 60]}
                }
            },
            "redis": {"keyPrefix": self.prefix},
        }
        self.monitors: list[ServiceProcess] = []
        self.view = LocalCluster(self.dir)

    # -- manifests ------------------------------------------------------------------------------
    def write(self, name: str, *docs: dict[str, Any]) -> None:
        (self.dir / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))

    def remove(self, name: str) -> None:
        (self.dir / f"{name}.yaml").unlink()

    def cisa(self, name: str, spec: dict[str, Any] | None = None) -> None:
        self.write(
            f"cisa-{name}", cisa(name, **(spec if spec is not None else {"filter": all_images()}))
        )

    def pod(
        self, namespace: str, name: str, images: list[str], secrets: Sequence[str] = ()
    ) -> None:
        self.write(
            f"pod-{namespace}-{name}",
            pod(*images, namespace=namespace, name=name, pull_secrets=secrets),
        )

    def pull_secret(self, namespace: str, name: str, host: str, user: str, password: str) -> None:
        self.write(
            f"secret-{namespace}-{name}", docker_secret(namespace, name, host, user, password)
        )

    # -- processes ------------------------------------------------------------------------------
    def start_monitor(self) -> ServiceProcess:
        config_path = self.root / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        monitor = ServiceProcess(
            "monitor",
            [
                "--config",
                str(config_path),
                "--cluster",
                f"dir:{self.dir}",
                "--redis-url",
                self.redis_url,
                "--log-level",
                "DEBUG",
            ],
            log_dir=self.root,
        ).start()
        self.monitors.append(monitor)
        monitor.wait_ready()
        return monitor

    # -- reading back ---------------------------------------------------------------------------
    async def images(self, cisa: str) -> dict[str, Any]:
        await self.view.reload()
        resource = self.view.store.resource(CISA, "", cisa)
        if resource is None:
            return {}
        return {i.image: i for i in resource.status.images or ()}

    async def until(
        self, what: str, probe: Callable[[], Awaitable[T | None]], within: float = 30
    ) -> T:
        deadline = time.monotonic() + within
        while True:
            value = await probe()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(m.log_text()[-3000:] for m in self.monitors)
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            await asyncio.sleep(0.1)

    async def status_of(self, cisa: str, image: str, *wanted: str, within: float = 30) -> Any:
        async def probe() -> Any:
            entry = (await self.images(cisa)).get(image)
            return entry if entry is not None and entry.status.value in wanted else None

        return await self.until(f"{image} in {wanted} on {cisa}", probe, within)


@pytest.fixture
async def scene(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Scene]:
    s = Scene(tmp_path, redis_server)
    yield s
    for monitor in s.monitors:
        monitor.stop()


def _http(monitor: ServiceProcess, path: str) -> tuple[int, Any]:
    code, body = monitor.get(path)
    return code, json.loads(body)


def _push(registry: RegistryServer, repository: str, tag: str, seed: str) -> str:
    return push_image(
        registry,
        repository,
        tag,
        synthetic_image(seed, layers=1, layer_size=256),
        username=registry.username,
        password=registry.password,
    )


@pytest.fixture
def registries(
    registry_factory: Callable[..., RegistryServer],
) -> dict[str, RegistryServer]:
    return {
        "main": registry_factory(),
        "doomed": registry_factory(),
        "private": registry_factory(tls=True, username="kuik", password="s3cret"),
    }


async def test_states_board_events_outputs_and_expiry(
    scene: Scene, registries: dict[str, RegistryServer]
) -> None:
    main, doomed, private = registries["main"], registries["doomed"], registries["private"]
    present = f"{main.host}/team/app:1"
    deleted = f"{main.host}/team/old:1"
    digest = _push(main, "team/app", "1", "app")
    old_digest = _push(main, "team/old", "1", "old")
    pinned = f"{main.host}/team/app@{digest}"
    down = [f"{doomed.host}/x/{n}:1" for n in ("a", "b", "c")]
    for n in ("a", "b", "c"):
        _push(doomed, f"x/{n}", "1", n)
    secret_ok = f"{private.host}/p/ok:1"
    secret_wrong = f"{private.host}/p/wrong:1"
    secret_missing = f"{private.host}/p/missing:1"
    for repo in ("p/ok", "p/wrong", "p/missing"):
        _push(private, repo, "1", repo)

    scene.config["registries"] = {private.host: {"caFile": str(private.ca_file)}}
    scene.cisa("all")
    scene.cisa(
        "short", {"unusedImageExpiry": "3s", "filter": {"include": [{"image": ".*/team/app:1"}]}}
    )
    scene.cisa("broken", {"filter": {"include": [{"label": "app in (x"}]}})
    scene.pod("default", "app", [present, deleted, pinned])
    scene.pod("default", "doomed", down)
    scene.pull_secret("team", "good", private.host, "kuik", "s3cret")
    scene.pull_secret("team", "bad", private.host, "kuik", "wrong")
    scene.pod("team", "ok", [secret_ok], ["good"])
    scene.pod("team", "wrong", [secret_wrong], ["bad"])
    scene.pod("other", "missing", [secret_missing], ["absent"])
    monitor = scene.start_monitor()

    # every state a check can give, with upstream's error prefixes
    for image in (present, deleted, pinned, secret_ok, *down):
        entry = await scene.status_of("all", image, "Available")
        assert entry.last_error is None
        assert entry.last_monitor is not None
    wrong = await scene.status_of("all", secret_wrong, "InvalidAuth")
    assert wrong.last_error.startswith("authentication failed: ")
    missing = await scene.status_of("all", secret_missing, "UnavailableSecret")
    assert (
        missing.last_error == "unavailable secret: pod other/missing: secret other/absent not found"
    )
    assert (await scene.images("all"))[present].original is False

    # a CISA whose filter does not compile: InvalidFilter, and that CISA only is left alone
    broken = await scene.until(
        "InvalidFilter event",
        lambda: scene.view.list_events(ObjectKey(CISA, "", "broken")),
    )
    assert [(e["type"], e["reason"], e["action"]) for e in broken] == [
        ("Warning", "InvalidFilter", "ReconcileSkipped")
    ]
    assert broken[0]["note"].startswith("filter is invalid: ")
    assert await scene.images("broken") == {}

    # the manifest goes away -> NotFound, with a Warning Event on the CISA
    with main.client() as client:
        assert client.request("DELETE", f"/v2/team/old/manifests/{old_digest}").status == 202
    gone = await scene.status_of("all", deleted, "NotFound")
    assert gone.last_error.startswith("image not found: ")
    events = await scene.until(
        "ImageUnavailable event",
        lambda: scene.view.list_events(ObjectKey(CISA, "", "all")),
    )
    warnings = [e for e in events if e.get("reason") == "ImageUnavailable"]
    assert warnings, events
    assert warnings[0]["type"] == "Warning"
    assert warnings[0]["note"].startswith(
        f"image {deleted} is no longer available: NotFound: image not found: "
    )

    # the registry dies -> Unreachable, and the board marks the host down for the webhook
    doomed.kill()
    for image in down:
        entry = await scene.status_of("all", image, "Unreachable")
        assert entry.last_error.startswith("registry unreachable: ")
    coord = connect(scene.redis_url, prefix=scene.prefix)
    try:
        board = AvailabilityBoard(coord)
        snapshot = await board.read([present, down[0]], [doomed.host, main.host])
        assert snapshot.registry_down(doomed.host)
        assert not snapshot.registry_down(main.host)
        assert snapshot.images[present] is not None
        assert snapshot.images[present].status.value == "Available"  # type: ignore[union-attr]
        assert snapshot.images[down[0]].status.value == "Unreachable"  # type: ignore[union-attr]
    finally:
        await coord.aclose()

    # /status/images: upstream's shapes, literally
    code, body = _http(monitor, "/status/images")
    assert code == 200
    assert list(body) == ["items", "total"]
    by_key = {(i["cisa"], i["image"]): i for i in body["items"]}
    assert body["total"] == len(body["items"]) == 10
    item = by_key[("all", deleted)]
    assert list(item) == [
        "cisa",
        "image",
        "registry",
        "status",
        "unusedSince",
        "lastError",
        "lastMonitor",
    ]
    assert item["registry"] == main.host
    assert item["status"] == "NotFound"
    assert item["unusedSince"] is None
    assert datetime.strptime(item["lastMonitor"], "%Y-%m-%dT%H:%M:%SZ")
    assert list(by_key[("all", present)]) == [
        "cisa",
        "image",
        "registry",
        "status",
        "unusedSince",
        "lastMonitor",
    ]
    code, grouped = _http(monitor, "/status/images?groupBy=registry")
    assert code == 200
    assert list(grouped) == ["groupBy", "groups", "total"]
    assert grouped["groupBy"] == "registry"
    assert sorted(grouped["groups"]) == sorted({main.host, doomed.host, private.host})
    assert all("registry" not in i for i in grouped["groups"][main.host])
    code, grouped = _http(monitor, "/status/images?groupBy=cisa")
    assert sorted(grouped["groups"]) == ["all", "short"]  # "broken" lists no image
    assert all("cisa" not in i for i in grouped["groups"]["short"])
    assert monitor.get("/status/images?groupBy=pod") == (
        400,
        '{"error":"groupBy must be \\"cisa\\" or \\"registry\\""}',
    )

    # metrics: upstream's names and labels
    metrics = monitor.metrics()
    assert (
        f'kube_image_keeper_monitoring_images{{name="all",original="false",registry="{main.host}",status="NotFound",used="true"}} 1.0'
        in metrics
    )
    assert (
        f'kube_image_keeper_monitoring_images{{name="all",original="false",registry="{doomed.host}",status="Unreachable",used="true"}} 3.0'
        in metrics
    )
    assert (
        f'kube_image_keeper_monitoring_image_last_monitor_age_minutes_bucket{{le="1.0",name="all",registry="{doomed.host}"}} 3.0'
        in metrics
    )
    assert "# TYPE kube_image_keeper_monitoring_image_last_monitor_age_minutes histogram" in metrics
    assert 'kube_image_keeper_monitor_is_leader{role="monitor"} 1.0' in metrics
    assert "kube_image_keeper_build_info{arch=" in metrics

    # Pods go away: unusedSince set; the 3s-expiry CISA drops its entry, the other keeps it
    scene.remove("pod-default-app")
    unused = await scene.until(
        "unusedSince on all",
        lambda: _unused(scene, "all", present),
    )
    assert unused.unused_since is not None
    await scene.until("short emptied", lambda: _emptied(scene, "short"))
    assert (await scene.images("all"))[present].unused_since == unused.unused_since  # set once


async def _unused(scene: Scene, cisa: str, image: str) -> Any:
    entry = (await scene.images(cisa)).get(image)
    return entry if entry is not None and entry.unused_since is not None else None


async def _emptied(scene: Scene, cisa: str) -> bool:
    await scene.view.reload()
    resource = scene.view.store.resource(CISA, "", cisa)
    return (
        resource is not None and resource.status.image_count == 0 and resource.status.images == []
    )


class QuotaProxy:
    """An aiohttp proxy in front of a real registry that answers the next manifest request(s)
    with 429 + Retry-After, and notes when each manifest request arrived."""

    def __init__(self, upstream: RegistryServer, retry_after: int) -> None:
        self.upstream = upstream
        self.retry_after = retry_after
        self.refuse = 0
        self.manifest_arrivals: list[tuple[float, int]] = []
        self.runner: web.AppRunner | None = None
        self.session: ClientSession | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.session = ClientSession(auto_decompress=False)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        is_manifest = "/manifests/" in request.path
        if is_manifest and self.refuse > 0:
            self.refuse -= 1
            self.manifest_arrivals.append((time.time(), 429))
            return web.Response(
                status=429,
                headers={"Retry-After": str(self.retry_after)},
                body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                content_type="application/json",
            )
        assert self.session is not None
        async with self.session.request(
            request.method,
            f"{self.upstream.url}{request.path_qs}",
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            data=await request.read(),
        ) as upstream:
            body = await upstream.read()
            if is_manifest:
                self.manifest_arrivals.append((time.time(), upstream.status))
            headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "connection")
            }
            return web.Response(status=upstream.status, headers=headers, body=body)


async def test_quota_exceeded_honours_retry_after(
    scene: Scene, registry_factory: Callable[..., RegistryServer]
) -> None:
    registry = registry_factory()
    _push(registry, "q/app", "1", "q")
    proxy = QuotaProxy(registry, retry_after=3)
    await proxy.start()
    try:
        proxy.refuse = 1
        image = f"{proxy.host}/q/app:1"
        scene.cisa("all")
        scene.pod("default", "q", [image])
        scene.start_monitor()
        entry = await scene.status_of("all", image, "QuotaExceeded")
        assert entry.last_error.startswith("rate limit exceeded: ")
        await scene.status_of("all", image, "Available")
        refused_at = next(t for t, status in proxy.manifest_arrivals if status == 429)
        later = [t for t, status in proxy.manifest_arrivals if t > refused_at]
        assert later, proxy.manifest_arrivals
        # nothing reached the registry before the time it asked for (tick alone is 0.5 s)
        assert min(later) - refused_at >= 3.0, proxy.manifest_arrivals
    finally:
        await proxy.stop()


def _monitor_checks(registry: RegistryServer, since: int) -> list[float]:
    """When the monitor's manifest requests arrived, from the registry's own request log."""
    return sorted(
        r.arrived
        for r in registry.requests(since=since)
        if r.user_agent.startswith("kuik-monitor") and "/manifests/" in r.path and r.arrived
    )


async def test_budget_holds_across_replicas_failover_and_restart(
    scene: Scene, registry_factory: Callable[..., RegistryServer]
) -> None:
    registry = registry_factory()
    images = []
    for n in range(10):
        _push(registry, f"b/app{n}", "1", f"b{n}")
        images.append(f"{registry.host}/b/app{n}:1")
    scene.cisa("all")
    scene.pod("default", "many", images)
    since = registry.log_offset()
    first = scene.start_monitor()
    second = scene.start_monitor()
    await asyncio.sleep(4)
    # one leader; the standby serves the same images and metrics from the shared statuses
    leaders = [
        'kube_image_keeper_monitor_is_leader{role="monitor"} 1.0' in m.metrics()
        for m in (first, second)
    ]
    assert sorted(leaders) == [False, True]
    served = []
    for m in (first, second):
        code, body = _http(m, "/status/images")
        assert code == 200
        served.append(sorted((i["cisa"], i["image"]) for i in body["items"]))
    assert served[0] == served[1] == sorted(("all", image) for image in images)
    leader, standby = (first, second) if leaders[0] else (second, first)
    leader.stop()  # SIGTERM: leadership released, the standby takes over

    async def took_over() -> bool:
        return 'kube_image_keeper_monitor_is_leader{role="monitor"} 1.0' in standby.metrics()

    await scene.until("the standby to lead", took_over, within=20)
    await asyncio.sleep(3)
    standby.kill()  # no goodbye; a restarted replica leads again at once
    third = scene.start_monitor()
    await asyncio.sleep(4)
    assert third.running()
    times = _monitor_checks(registry, since)
    # every image checked, the budget kept all along: at most maxPerInterval per interval (window
    # shortened by 0.1 s for the registry's own logging jitter)
    assert len(times) >= 10, times
    assert max_in_window(times, INTERVAL - 0.1) <= MAX_PER_INTERVAL, times
    statuses = await scene.images("all")
    assert {e.status.value for e in statuses.values()} == {"Available"}


async def test_budget_survives_restart_even_when_statuses_are_lost(
    scene: Scene, registry_factory: Callable[..., RegistryServer]
) -> None:
    """Only Redis remembers the last check here: the CISA is re-created (empty status) between
    two monitor runs, so the status-derived schedule would check at once."""
    registry = registry_factory()
    images = []
    for n in range(3):
        _push(registry, f"r/app{n}", "1", f"r{n}")
        images.append(f"{registry.host}/r/app{n}:1")
    tick = 5.0
    scene.config["monitoring"]["registries"]["default"].update(interval="10s", maxPerInterval=2)
    scene.cisa("all")
    scene.pod("default", "few", images)
    since = registry.log_offset()
    first = scene.start_monitor()
    await scene.until("a first check", lambda: _checked(scene, "all"))
    first.stop()
    scene.remove("cisa-all")
    await scene.until("CISA gone", lambda: _absent(scene, "all"))
    scene.cisa("all")
    assert await scene.images("all") == {}
    scene.start_monitor()
    await scene.until("a check after the restart", lambda: _checked(scene, "all"), within=20)
    times = _monitor_checks(registry, since)
    assert len(times) == 2, times
    assert times[1] - times[0] >= tick - 0.1, times


async def _checked(scene: Scene, cisa: str) -> bool:
    return any(e.last_monitor is not None for e in (await scene.images(cisa)).values())


async def _absent(scene: Scene, cisa: str) -> bool:
    await scene.view.reload()
    return scene.view.store.resource(CISA, "", cisa) is None


async def test_redis_down_then_back_empty_monitor_stays_ready_and_checks_again(
    tmp_path: Path, registry_factory: Callable[..., RegistryServer]
) -> None:
    """Redis killed, then back EMPTY (no persistence: leadership, budgets and board gone). Ready
    means "can do its job": the monitor stays ready and serving `/status/images` all along, shows
    the outage in `kube_image_keeper_redis_up`, and checks the image of a Pod created during the
    outage within 30 s of Redis's return."""
    redis = RedisServer().start()
    scene = Scene(tmp_path, redis)
    registry = registry_factory()
    before, during = (f"{registry.host}/r/{name}:1" for name in ("before", "during"))
    _push(registry, "r/before", "1", "r-before")
    _push(registry, "r/during", "1", "r-during")
    try:
        scene.cisa("all")
        scene.pod("default", "before", [before])
        monitor = scene.start_monitor()
        await scene.status_of("all", before, "Available")
        assert monitor.sample("kube_image_keeper_redis_up") == 1.0

        redis.kill()
        scene.pod("default", "during", [during])

        async def ready_serving_and_redis_down() -> bool:
            assert monitor.get("/readyz")[0] == 200
            code, body = _http(monitor, "/status/images")
            assert code == 200
            assert before in {item["image"] for item in body["items"]}
            return monitor.sample("kube_image_keeper_redis_up") == 0.0

        await scene.until("redis_up to drop", ready_serving_and_redis_down, within=15)
        await asyncio.sleep(1.0)  # still ready a while later
        assert await ready_serving_and_redis_down()

        redis.start()  # same port, empty
        back = time.monotonic()
        await scene.status_of("all", during, "Available", within=30)
        assert time.monotonic() - back < 30

        async def redis_up() -> bool:
            return monitor.sample("kube_image_keeper_redis_up") == 1.0

        await scene.until("redis_up back to 1", redis_up, within=10)
        coord = connect(scene.redis_url, prefix=scene.prefix)
        try:  # the board lives again in the new Redis
            snapshot = await AvailabilityBoard(coord).read([during], [registry.host])
            assert snapshot.images[during] is not None
        finally:
            await coord.aclose()
        assert monitor.running()
        events = [json.loads(line)["event"] for line in monitor.log_text().splitlines()]
        assert "redis unreachable" in events
        assert "redis reachable again" in events
    finally:
        for process in scene.monitors:
            process.stop()
        redis.cleanup()
