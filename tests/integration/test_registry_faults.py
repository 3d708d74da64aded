"""Failure handling against a REAL registry behind a small fault-injecting reverse proxy.

The proxy forwards every request to a real docker-registry and, for the requests a rule
matches, answers with an injected status (503, 429, 404, 405, 401), adds headers, hangs,
resets the connection, corrupts or cuts a body, or slows it down. The registry itself is
never faked: everything the rules do not touch is its own answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kuik_testing.images import push_image, synthetic_image
from kuik_testing.registry import RegistryServer
from kuikcore.api import AvailabilityStatus
from kuikcore.registry import (
    CheckResult,
    CopyResult,
    Deadline,
    DigestMismatch,
    NotFound,
    QuotaExceeded,
    RegistryClient,
    RegistryError,
    RetryPolicy,
    Unreachable,
    check,
    copy,
)

DIGEST_PATH = re.compile(r"/manifests/sha256:")
TAG_PATH = re.compile(r"/manifests/(?!sha256:)")
BLOB_GET = re.compile(r"/blobs/sha256:")

Action = str  # "status", "hang", "reset", "corrupt", "cut", "slow", "headers"


@dataclass
class Rule:
    pattern: re.Pattern[str]
    action: Action
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None: every matching request
    methods: tuple[str, ...] = ("GET", "HEAD")
    hits: int = 0

    def matches(self, request: web.Request) -> bool:
        if request.method not in self.methods or not self.pattern.search(request.path):
            return False
        return self.times is None or self.hits < self.times


@dataclass
class FaultProxy:
    upstream: str  # http://127.0.0.1:PORT
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None
    port: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, pattern: re.Pattern[str]) -> int:
        return sum(1 for _, path in self.seen if pattern.search(path))

    async def start(self) -> FaultProxy:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self.stopping.set()
        if self.session:
            await self.session.close()
        if self.runner:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path))
        rule = next((r for r in self.rules if r.matches(request)), None)
        if rule is not None:
            rule.hits += 1
            if rule.action == "status":
                return web.Response(status=rule.status, headers=rule.headers)
            if rule.action == "hang":
                await self.stopping.wait()
            if rule.action == "reset":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self.session.request(
            request.method,
            f"{self.upstream}{request.path_qs}",
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            for name, value in upstream.headers.items():
                if name.lower() not in ("transfer-encoding", "connection", "date", "server"):
                    response.headers[name] = value
            if rule is not None and rule.action == "headers":
                response.headers.update(rule.headers)
            await response.prepare(request)
            sent = 0
            async for chunk in upstream.content.iter_chunked(16 * 1024):
                if rule is not None and rule.action == "corrupt" and sent == 0:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                if rule is not None and rule.action == "cut" and sent > 0:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if rule is not None and rule.action == "slow":
                    await asyncio.sleep(0.05)
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response


@pytest.fixture
async def proxy(registry: RegistryServer) -> AsyncIterator[FaultProxy]:
    fault_proxy = await FaultProxy(registry.url).start()
    yield fault_proxy
    await fault_proxy.stop()


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(retry=RetryPolicy(attempts=3, base=0.01, cap=0.05)) as c:
        yield c


@pytest.fixture(scope="module")
def image_tag(registry: RegistryServer) -> str:
    push_image(registry, "faults/app", "v1", synthetic_image("faults", layer_size=200_000))
    return "faults/app:v1"


async def check_through(
    client: RegistryClient, proxy: FaultProxy, ref: str, **kwargs: Any
) -> CheckResult:
    return await check(client, f"{proxy.host}/{ref}", **kwargs)


# --- retries --------------------------------------------------------------------------------


async def test_transient_503_is_retried(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "status", 503, times=2))
    result = await check_through(client, proxy, image_tag, timeout=10)
    assert result.status is AvailabilityStatus.AVAILABLE
    assert proxy.count(TAG_PATH) == 3


async def test_persistent_503_is_unreachable_after_the_retry_budget(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "status", 503))
    result = await check_through(client, proxy, image_tag, timeout=10)
    assert result.status is AvailabilityStatus.UNREACHABLE
    assert result.error is not None
    assert result.error.startswith("registry unreachable: ")
    assert "HTTP 503" in result.error
    assert proxy.count(TAG_PATH) == 3


async def test_connection_reset_is_retried(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "reset", times=1))
    assert (await check_through(client, proxy, image_tag, timeout=10)).available
    assert proxy.count(TAG_PATH) == 2


async def test_429_with_retry_after_within_the_deadline_is_waited_for(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "status", 429, {"Retry-After": "1"}, times=1))
    assert (await check_through(client, proxy, image_tag, timeout=10)).available
    assert proxy.count(TAG_PATH) == 2


async def test_429_with_retry_after_beyond_the_deadline_is_quota_exceeded_at_once(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "status", 429, {"Retry-After": "120"}))
    result = await check_through(client, proxy, image_tag, timeout=2)
    assert result.status is AvailabilityStatus.QUOTA_EXCEEDED
    assert result.retry_after == 120
    assert result.error is not None
    assert result.error.startswith("rate limit exceeded")
    assert proxy.count(TAG_PATH) == 1
    with pytest.raises(QuotaExceeded) as info:
        await client.head_manifest(f"{proxy.host}/{image_tag}", deadline=Deadline.after(2))
    assert info.value.retry_after == 120


async def test_429_without_retry_after_is_not_retried(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "status", 429))
    result = await check_through(client, proxy, image_tag, timeout=10)
    assert result.status is AvailabilityStatus.QUOTA_EXCEEDED
    assert proxy.count(TAG_PATH) == 1


async def test_rate_limit_header_on_success_is_quota_exceeded(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "headers", headers={"RateLimit-Remaining": "0;w=21600"}))
    result = await check_through(client, proxy, image_tag)
    assert result.status is AvailabilityStatus.QUOTA_EXCEEDED
    assert result.error == "rate limit exceeded"


async def test_black_hole_answers_within_the_deadline(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(TAG_PATH, "hang"))
    result = await check_through(client, proxy, image_tag, timeout=0.5)
    assert result.status is AvailabilityStatus.UNREACHABLE
    assert result.error is not None
    assert "deadline exceeded" in result.error


# --- resolveDigest (stale pull-through caches) ------------------------------------------------


async def test_stale_tag_is_detected_only_with_resolve_digest(
    client: RegistryClient, proxy: FaultProxy, image_tag: str
) -> None:
    proxy.rules.append(Rule(DIGEST_PATH, "status", 404))
    plain = await check_through(client, proxy, image_tag)
    assert plain.available
    assert proxy.count(DIGEST_PATH) == 0
    for method in ("HEAD", "GET"):
        result = await check_through(client, proxy, image_tag, method=method, resolve_digest=True)
        assert result.status is AvailabilityStatus.NOT_FOUND
        assert result.error is not None
        assert result.error.startswith(f'tag/digest inconsistency: "{proxy.host}/{image_tag}"')
        assert "does not serve that manifest by digest" in result.error
    assert proxy.count(DIGEST_PATH) == 2


@pytest.mark.parametrize(
    ("rule", "method", "status"),
    [
        (Rule(DIGEST_PATH, "status", 405), "HEAD", AvailabilityStatus.AVAILABLE),
        (Rule(DIGEST_PATH, "status", 405), "GET", AvailabilityStatus.UNREACHABLE),
        (Rule(DIGEST_PATH, "status", 501), "HEAD", AvailabilityStatus.AVAILABLE),
        (Rule(DIGEST_PATH, "status", 401), "HEAD", AvailabilityStatus.INVALID_AUTH),
        (
            Rule(DIGEST_PATH, "status", 429, {"RateLimit-Remaining": "0;w=60"}),
            "HEAD",
            AvailabilityStatus.QUOTA_EXCEEDED,
        ),
    ],
)
async def test_digest_path_answers(
    client: RegistryClient,
    proxy: FaultProxy,
    image_tag: str,
    rule: Rule,
    method: str,
    status: AvailabilityStatus,
) -> None:
    proxy.rules.append(rule)
    result = await check_through(client, proxy, image_tag, method=method, resolve_digest=True)
    assert result.status is status
    assert proxy.count(DIGEST_PATH) == 1


async def test_digest_reference_is_not_checked_twice(
    client: RegistryClient, proxy: FaultProxy, image_tag: str, registry: RegistryServer
) -> None:
    info = await client.head_manifest(f"{registry.host}/{image_tag}")
    repository = image_tag.split(":")[0]
    result = await check_through(client, proxy, f"{repository}@{info.digest}", resolve_digest=True)
    assert result.available
    assert proxy.count(re.compile("/manifests/")) == 1


# --- copies through faults ------------------------------------------------------------------


async def copy_through(
    client: RegistryClient,
    proxy: FaultProxy,
    image_tag: str,
    destination: RegistryServer,
    **kw: Any,
) -> CopyResult:
    return await copy(client, f"{proxy.host}/{image_tag}", f"{destination.host}/m/app:v1", **kw)


async def assert_not_tagged(client: RegistryClient, destination: RegistryServer) -> None:
    with pytest.raises(NotFound):
        await client.head_manifest(f"{destination.host}/m/app:v1")


async def test_transient_blob_failure_is_retried(
    client: RegistryClient, proxy: FaultProxy, image_tag: str, registry_factory: Any
) -> None:
    destination = registry_factory()
    proxy.rules.append(Rule(BLOB_GET, "status", 502, times=1, methods=("GET",)))
    result = await copy_through(client, proxy, image_tag, destination)
    assert result.blobs_copied == 3


@pytest.mark.parametrize(("action", "error"), [("corrupt", DigestMismatch), ("cut", Unreachable)])
async def test_broken_blob_never_lands_and_the_tag_stays_invisible(
    client: RegistryClient,
    proxy: FaultProxy,
    image_tag: str,
    registry_factory: Any,
    action: str,
    error: type[RegistryError],
) -> None:
    destination = registry_factory()
    proxy.rules.append(Rule(BLOB_GET, action, methods=("GET",)))
    with pytest.raises(error):
        await copy_through(client, proxy, image_tag, destination)
    await assert_not_tagged(client, destination)
    source = await client.get_manifest(f"{proxy.host}/{image_tag}")
    for layer in source.layers:  # a corrupt or partial layer was never committed
        assert await client.blob_size(f"{destination.host}/m/app", layer.digest) is None


async def test_cancelled_copy_leaves_no_tag(
    client: RegistryClient, proxy: FaultProxy, image_tag: str, registry_factory: Any
) -> None:
    destination = registry_factory()
    proxy.rules.append(Rule(BLOB_GET, "slow", methods=("GET",)))
    started = asyncio.Event()

    class Watch:
        def blob_started(self, digest: str, size: int) -> None:
            return

        def blob_advanced(self, digest: str, nbytes: int) -> None:
            started.set()

        def blob_finished(self, digest: str, outcome: str) -> None:
            return

    task = asyncio.create_task(
        copy_through(client, proxy, image_tag, destination, progress=Watch())
    )
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_not_tagged(client, destination)


async def test_copy_deadline(
    client: RegistryClient, proxy: FaultProxy, image_tag: str, registry_factory: Any
) -> None:
    destination = registry_factory()
    proxy.rules.append(Rule(BLOB_GET, "hang", methods=("GET",)))
    with pytest.raises(Unreachable, match="deadline exceeded"):
        await copy_through(client, proxy, image_tag, destination, deadline=Deadline.after(1))
    await assert_not_tagged(client, destination)
