"""Registry requests through an HTTP proxy named by the environment (HTTP_PROXY, NO_PROXY).

The proxy is a small forwarding aiohttp server written here (it records what it relays); the
registry behind it is a real docker-registry.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from kuik_testing.images import push_image, synthetic_image
from kuik_testing.registry import RegistryServer
from kuikcore.registry import RegistryClient
from kuikcore.registry.transport import env_proxy

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authorization", "transfer-encoding", "host"}


@dataclass
class ForwardProxy:
    """Relays absolute-form requests (`GET http://host/path`), recording each one."""

    seen: list[tuple[str, str, str | None]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = str(request.url) if request.url.is_absolute() else request.path_qs
        self.seen.append((request.method, target, request.headers.get("Proxy-Authorization")))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                target,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as upstream,
        ):
            body = await upstream.read()
            reply = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=upstream.status, headers=reply, body=body)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    forward = ForwardProxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    forward.port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    yield forward
    await runner.cleanup()


@pytest.fixture
def image_on(registry: RegistryServer) -> str:
    push_image(registry, "proxied/app", "v1", synthetic_image("proxied", layers=1))
    return f"{registry.host}/proxied/app:v1"


async def test_requests_go_through_the_proxy_with_its_credentials(
    proxy: ForwardProxy, image_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://squid:s3cret@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    async with RegistryClient() as client:
        first = await client.get_manifest(image_on)
        again = await client.get_manifest(image_on)
    assert first.digest == again.digest
    manifest_gets = [s for s in proxy.seen if s[0] == "GET" and "/manifests/v1" in s[1]]
    assert len(manifest_gets) == 2
    expected = "Basic " + base64.b64encode(b"squid:s3cret").decode()
    assert all(auth == expected for _, _, auth in manifest_gets)
    assert all(
        target.startswith(f"http://{image_on.split('/')[0]}/v2/") for _, target, _ in manifest_gets
    )


async def test_no_proxy_hosts_go_direct(
    proxy: ForwardProxy, image_on: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    async with RegistryClient() as client:
        await client.get_manifest(image_on)
    assert proxy.seen == []


def test_env_proxy_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://user:pw@proxy.example:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    proxy, headers = env_proxy("https", "registry.example")
    assert str(proxy) == "http://proxy.example:3128"
    assert headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b"user:pw").decode()}
    assert env_proxy("https", "internal.example") == (None, None)
    assert env_proxy("http", "registry.example") == (None, None)
    monkeypatch.setenv("https_proxy", "https://tls-proxy.example:3129")
    assert env_proxy("https", "registry.example") == (None, None)  # as aiohttp: unsupported
