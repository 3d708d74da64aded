"""The small HTTP server every kuik service runs: /metrics, /healthz, /readyz (+ service routes).

- `/healthz` answers 200 as long as the event loop runs: liveness means "not wedged", nothing more,
  so a Redis outage never gets a pod restarted.
- `/readyz` answers 200 only when every registered readiness check passes; checks run
  concurrently, each bounded by `check_timeout`, and the body names each check and why it failed
  (redacted), in the style of the Kubernetes API server's `/readyz?verbose`.
- `/metrics` serves the process's own registry, in OpenMetrics when the scraper asks for it.

An optional `Authorizer` (`kuikcore.observe.authz`, `metrics.secure`) guards `/metrics` and the
extra routes; `/healthz` and `/readyz` stay open, since the kubelet probes them without a token.

Services add their own endpoints with `add_route` at any time (aiohttp freezes its router once
serving, so extra routes go through one catch-all dispatcher keyed by exact method and path).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from kuikcore.config import ListenAddress, parse_listen
from kuikcore.observe.authz import Authorizer
from kuikcore.observe.redact import redact_text

__all__ = ["HealthServer", "ReadinessCheck", "ReadinessResult", "serve_app"]

ReadinessCheck = Callable[[], Awaitable[bool]]


async def serve_app(
    app: web.Application, listen: ListenAddress, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Bind and serve `app`; raises OSError when the address cannot be bound (nothing leaks)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, listen.host or None, listen.port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class ReadinessResult:
    name: str
    ok: bool
    reason: str = ""


class HealthServer:
    """aiohttp app for health and metrics. Routes are added before `start()`; checks at any time."""

    def __init__(
        self,
        listen: ListenAddress | str,
        registry: CollectorRegistry,
        *,
        check_timeout: float = 2.0,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.listen = parse_listen(listen) if isinstance(listen, str) else listen
        self.registry = registry
        self.check_timeout = check_timeout
        self._checks: dict[str, ReadinessCheck] = {}
        self._app = web.Application()
        self._app.router.add_get("/healthz", self._healthz)
        self._app.router.add_get("/readyz", self._readyz)
        self._app.router.add_get("/metrics", self._metrics)
        self._app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._routes: dict[str, dict[str, Handler]] = {}
        self._runner: web.AppRunner | None = None

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        """`check()` returns True when ready; False or an exception means not ready."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve an extra endpoint (exact path) next to the health ones, e.g. /status/images."""
        if path in ("/healthz", "/readyz", "/metrics"):
            raise ValueError(f"{path} is served by the health server itself")
        methods = self._routes.setdefault(path, {})
        if method.upper() in methods:
            raise ValueError(f"route {method.upper()} {path} is already registered")
        methods[method.upper()] = handler

    async def start(self) -> None:
        """Bind and serve; raises OSError when the address cannot be bound."""
        self._runner = await serve_app(self._app, self.listen)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The bound port (useful when listening on port 0)."""
        if self._runner is None:
            raise RuntimeError("the server is not running")
        address = self._runner.addresses[0]
        port: int = address[1]
        return port

    async def readiness(self) -> list[ReadinessResult]:
        """Run every check now, concurrently, in registration order."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run_check(n) for n in names))
        return list(results)

    async def _run_check(self, name: str) -> ReadinessResult:
        try:
            async with asyncio.timeout(self.check_timeout):
                ok = await self._checks[name]()
        except TimeoutError:
            return ReadinessResult(name, False, f"timed out after {self.check_timeout:g}s")
        except Exception as exc:
            reason = redact_text(f"{type(exc).__name__}: {exc}")
            return ReadinessResult(name, False, reason)
        return ReadinessResult(name, True) if ok else ReadinessResult(name, False, "not ready")

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        results = await self.readiness()
        lines = [f"[+]{r.name} ok" if r.ok else f"[-]{r.name} failed: {r.reason}" for r in results]
        ready = all(r.ok for r in results)
        lines.append("readyz check passed" if ready else "readyz check failed")
        return web.Response(text="\n".join(lines) + "\n", status=200 if ready else 503)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        methods = self._routes.get(request.path)
        if methods is None:
            raise web.HTTPNotFound()
        handler = methods.get(request.method)
        if handler is None and request.method == "HEAD":
            handler = methods.get("GET")
        if handler is None:
            raise web.HTTPMethodNotAllowed(request.method, sorted(methods))
        denied = await self._denied(request)
        return denied if denied is not None else await handler(request)

    async def _denied(self, request: web.Request) -> web.Response | None:
        """The refusal to send when an authorizer is set and says no; None to serve."""
        if self.authorizer is None:
            return None
        denial = await self.authorizer.authorize(request)
        if denial is None:
            return None
        headers = {"WWW-Authenticate": 'Bearer realm="kuik"'} if denial.status == 401 else None
        return web.Response(text=denial.reason + "\n", status=denial.status, headers=headers)

    async def _metrics(self, request: web.Request) -> web.Response:
        denied = await self._denied(request)
        if denied is not None:
            return denied
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})
