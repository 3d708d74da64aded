"""`metrics.secure` end to end: a real `kuik-monitor` process with `KUIK_METRICS_SECURE=true`
and a kubeconfig for the API fake asks it about every scrape, while its probes stay open.
Without the key (the default, and docker-compose's) /metrics answers anyone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from kuik_testing import RedisServer
from kuik_testing.apiserver import FakeApiServer
from kuik_testing.processes import ServiceProcess

pytestmark = pytest.mark.timeout(120)

SCRAPER = "system:serviceaccount:monitoring:prometheus"


async def _get(process: ServiceProcess, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(process.url(path), headers=headers) as response,
    ):
        await response.read()
        return response.status


async def _wait_ready(process: ServiceProcess) -> None:
    """Like `ServiceProcess.wait_ready`, without blocking the loop that serves the API fake."""
    async with asyncio.timeout(60):
        while True:
            if not process.running():
                raise RuntimeError(f"kuik-{process.service} exited:\n{process.log_text()}")
            try:
                if await _get(process, "/readyz") == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


@pytest.fixture
async def monitor_factory() -> AsyncIterator[list[ServiceProcess]]:
    """Processes a test started, stopped after it (off the loop that may serve the API fake)."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        await asyncio.to_thread(process.stop, 5.0)


def _monitor(tmp_path: Path, redis: RedisServer, env: dict[str, str]) -> ServiceProcess:
    cluster = tmp_path / "cluster"
    cluster.mkdir(exist_ok=True)
    return ServiceProcess(
        "monitor",
        ["--cluster", f"dir:{cluster}", "--redis-url", redis.url],
        env={"KUIK_REDIS_KEY_PREFIX": f"kuik-secure-{tmp_path.name}:", **env},
        log_dir=tmp_path,
    )


async def test_monitor_metrics_need_an_authorized_token(
    tmp_path: Path,
    redis_server: RedisServer,
    apiserver: FakeApiServer,
    monitor_factory: list[ServiceProcess],
) -> None:
    apiserver.add_token("scraper", SCRAPER)
    apiserver.add_token("nobody", "system:serviceaccount:default:nobody")
    apiserver.allow_non_resource(SCRAPER, "/metrics")
    kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
    env = {"KUIK_METRICS_SECURE": "true", "KUBECONFIG": str(kubeconfig)}
    process = _monitor(tmp_path, redis_server, env).start()
    monitor_factory.append(process)
    await _wait_ready(process)
    assert await _get(process, "/healthz") == 200
    assert await _get(process, "/metrics") == 401
    assert await _get(process, "/metrics", "nobody") == 403
    assert await _get(process, "/metrics", "scraper") == 200
    assert await _get(process, "/status/images", "scraper") == 403  # granted /metrics only
    assert [r["nonResourceAttributes"]["path"] for r in apiserver.access_reviews] == [
        "/metrics",
        "/metrics",
        "/status/images",
    ]


async def test_metrics_are_open_without_the_key(
    tmp_path: Path, redis_server: RedisServer, monitor_factory: list[ServiceProcess]
) -> None:
    process = _monitor(tmp_path, redis_server, {}).start()
    monitor_factory.append(process)
    await _wait_ready(process)
    assert await _get(process, "/metrics") == 200
    assert await _get(process, "/status/images") == 200
