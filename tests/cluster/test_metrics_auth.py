"""`metrics.secure`: the health server's guarded endpoints behind a TokenReview and a
SubjectAccessReview, asked through the real kubernetes-asyncio client of the API fake.

/healthz and /readyz stay open (the kubelet probes them without a token); /metrics and the
services' own routes (the monitor's /status/images) need a token the API server accepts whose
user may `get` that path; answers are reused for `ttl` seconds, failures to ask are not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kuik_testing.apiserver import FakeApiServer
from kuikcore.config import load_config
from kuikcore.observe import HealthServer, KubernetesAuthorizer, metrics_registry

SCRAPER = "system:serviceaccount:monitoring:prometheus"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def authorizer(apiserver: FakeApiServer, clock: Clock) -> AsyncIterator[KubernetesAuthorizer]:
    apiserver.add_token("scraper-token", SCRAPER, groups=("system:serviceaccounts",))
    apiserver.add_token("nobody-token", "system:serviceaccount:default:nobody")
    apiserver.allow_non_resource(SCRAPER, "/metrics")
    client = apiserver.api_client()
    yield KubernetesAuthorizer(client, ttl=10.0, clock=clock)
    await client.close()


@pytest.fixture
async def server(authorizer: KubernetesAuthorizer) -> AsyncIterator[HealthServer]:
    health = HealthServer("127.0.0.1:0", metrics_registry("monitor"), authorizer=authorizer)

    async def status(_request: web.Request) -> web.Response:
        return web.json_response({"items": []})

    health.add_route("GET", "/status/images", status)
    await health.start()
    yield health
    await health.stop()


async def _get(
    server: HealthServer, path: str, token: str | None = None
) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{server.port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.text(), resp.headers


async def test_no_token_is_401(server: HealthServer) -> None:
    status, body, headers = await _get(server, "/metrics")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "kube_image_keeper_build_info" not in body
    assert (await _get(server, "/metrics", "not-a-token"))[0] == 401


async def test_the_access_review_decides_403_or_200(
    server: HealthServer, apiserver: FakeApiServer
) -> None:
    status, body, _ = await _get(server, "/metrics", "nobody-token")
    assert status == 403
    assert "system:serviceaccount:default:nobody may not get /metrics" in body
    status, body, _ = await _get(server, "/metrics", "scraper-token")
    assert status == 200
    assert "kube_image_keeper_build_info" in body
    denied, allowed = apiserver.access_reviews
    assert denied["user"] == "system:serviceaccount:default:nobody"
    assert denied["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
    assert (allowed["user"], allowed["uid"]) == (SCRAPER, f"uid-{SCRAPER}")
    assert allowed["groups"] == ["system:serviceaccounts"]


async def test_health_endpoints_stay_open(server: HealthServer) -> None:
    assert (await _get(server, "/healthz"))[:2] == (200, "ok\n")
    assert (await _get(server, "/readyz"))[0] == 200


async def test_service_routes_are_authorized_per_path(
    server: HealthServer, apiserver: FakeApiServer, clock: Clock
) -> None:
    assert (await _get(server, "/status/images", "scraper-token"))[0] == 403
    apiserver.allow_non_resource(SCRAPER, "/status/images")
    clock.now += 11  # the denial is reused until then
    status, body, _ = await _get(server, "/status/images", "scraper-token")
    assert (status, body) == (200, '{"items": []}')
    assert (await _get(server, "/status/nothing", "scraper-token"))[0] == 404


async def test_answers_are_cached_briefly(
    server: HealthServer, authorizer: KubernetesAuthorizer, clock: Clock
) -> None:
    for _ in range(3):
        assert (await _get(server, "/metrics", "scraper-token"))[0] == 200
        assert (await _get(server, "/metrics", "nobody-token"))[0] == 403
    assert authorizer.reviews == 4  # one TokenReview and one SubjectAccessReview per token
    clock.now += 11
    assert (await _get(server, "/metrics", "scraper-token"))[0] == 200
    assert authorizer.reviews == 6


async def test_an_unreachable_api_server_is_503_and_not_cached(
    server: HealthServer, apiserver: FakeApiServer
) -> None:
    apiserver.fail_requests(1, status=500, match="tokenreviews")
    status, body, _ = await _get(server, "/metrics", "scraper-token")
    assert status == 503
    assert "TokenReview: HTTP 500" in body
    assert (await _get(server, "/metrics", "scraper-token"))[0] == 200


def test_secure_is_off_by_default_and_on_from_the_environment() -> None:
    assert load_config(None, env={}).metrics.secure is False
    config = load_config(None, env={"KUIK_METRICS_SECURE": "true"})
    assert config.metrics.secure is True
    assert config.metrics.auth_cache_ttl.total_seconds() == 10
