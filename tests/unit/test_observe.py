"""kuikcore.observe: secret redaction, log output, metrics registry, health server."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import structlog
from aiohttp import web
from prometheus_client import Counter

from kuikcore.observe import (
    REDACTED,
    HealthServer,
    configure_logging,
    get_logger,
    is_sensitive_key,
    metrics_registry,
    redact,
    redact_text,
)

PASSWORD = "hunter2-Sup3rS3cret"


# --- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "redis_password",
        "passwd",
        "token",
        "bearer_token",
        "identitytoken",
        "secret",
        "client_secret",
        "credential_secret",
        "auth",
        "auths",
        "Authorization",
        ".dockerconfigjson",
        ".dockercfg",
        "api-key",
        "apiKey",
        "private_key",
        "credentials",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "event",
        "image",
        "registry",
        "url",
        "secret_name",
        "secretNamespace",
        "token_type",
        "password_file",
        "username",
        "key_prefix",
        1,
    ],
)
def test_keys_that_only_name_a_secret_stay_readable(key: object) -> None:
    assert not is_sensitive_key(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://user:pw@host:6379/0", f"redis://user:{REDACTED}@host:6379/0"),
        ("rediss://:pw@host", f"rediss://:{REDACTED}@host"),
        ("redis+sentinel://u:p%40ss@s1:26379", f"redis+sentinel://u:{REDACTED}@s1:26379"),
        ("https://registry.local/v2/", "https://registry.local/v2/"),
        ("https://user@registry.local/", "https://user@registry.local/"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {REDACTED}"),
        ("got bearer eyJhbGciOiJSUzI1NiJ9.e30.sig", f"got bearer {REDACTED}"),
        ("login with password=abc&user=x", f"login with password={REDACTED}&user=x"),
        ("token: abc123 rest", f"token: {REDACTED} rest"),
        ('{"auths":{"r":{"auth":"dXNlcjpwYXNz"}}}', f'{{"auths":{{"r":{{"auth":"{REDACTED}"}}}}}}'),
        ('{"password": "x y z"}', f'{{"password": "{REDACTED}"}}'),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_structures() -> None:
    secret = {
        "metadata": {"name": "pull", "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319"},
    }
    assert redact(secret) == {
        "metadata": {"name": "pull", "namespace": "ns"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": REDACTED},
    }
    assert redact(["redis://a:b@h", 3, None, True]) == [f"redis://a:{REDACTED}@h", 3, None, True]
    assert redact(None, "password") is None  # nothing to hide, and saying so is useful
    assert redact(b"x", "token") == REDACTED


# --- logging -------------------------------------------------------------------------------------


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", json=True, stream=stream, service="test")
    yield stream
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_kuik_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_logged_password_never_appears(log_stream: io.StringIO) -> None:
    log = get_logger("kuik.test")
    log.info("connecting", url=f"redis://kuik:{PASSWORD}@redis:6379/0", password=PASSWORD)
    log.info("secret read", obj={"data": {".dockerconfigjson": PASSWORD}}, secret=PASSWORD)
    log.info("registry auth", headers={"Authorization": f"Basic {PASSWORD}"})
    logging.getLogger("redis.connection").warning("retrying redis://u:%s@h", PASSWORD)
    try:
        raise ConnectionError(f"cannot reach redis://u:{PASSWORD}@h (password={PASSWORD})")
    except ConnectionError:
        log.exception("redis down")
    output = log_stream.getvalue()
    assert PASSWORD not in output
    lines = _lines(log_stream)
    assert len(lines) == 5
    assert lines[0]["url"] == f"redis://kuik:{REDACTED}@redis:6379/0"
    assert lines[0]["password"] == REDACTED
    assert lines[1]["obj"] == {"data": {".dockerconfigjson": REDACTED}}
    assert lines[1]["secret"] == REDACTED
    assert lines[2]["headers"] == {"Authorization": REDACTED}
    assert lines[3]["event"] == f"retrying redis://u:{REDACTED}@h"
    assert "ConnectionError" in str(lines[4]["exception"])


def test_json_lines_carry_the_standard_fields(log_stream: io.StringIO) -> None:
    get_logger("kuik.webhook").info("rerouted", image="docker.io/library/nginx:1.27")
    logging.getLogger("aiohttp.server").error("foreign %s", "line")
    first, second = _lines(log_stream)
    assert first["event"] == "rerouted"
    assert first["level"] == "info"
    assert first["logger"] == "kuik.webhook"
    assert first["service"] == "test"
    assert first["image"] == "docker.io/library/nginx:1.27"
    assert str(first["timestamp"]).endswith("Z")
    assert (second["event"], second["level"], second["logger"]) == (
        "foreign line",
        "error",
        "aiohttp.server",
    )


def test_level_filters(log_stream: io.StringIO) -> None:
    configure_logging("warning", json=True, stream=log_stream)
    get_logger("kuik.test").info("hidden")
    logging.getLogger("other").info("hidden too")
    get_logger("kuik.test").warning("shown")
    assert [line["event"] for line in _lines(log_stream)] == ["shown"]


def test_console_rendering_is_redacted_too(log_stream: io.StringIO) -> None:
    configure_logging("info", json=False, stream=log_stream)
    get_logger("kuik.test").info("hello", token=PASSWORD)
    text = log_stream.getvalue()
    assert "hello" in text
    assert f"token={REDACTED}" in text
    assert PASSWORD not in text
    assert not text.lstrip().startswith("{")


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level must be one of"):
        configure_logging("verbose")


# --- metrics -------------------------------------------------------------------------------------


def test_registry_has_build_info_and_process_metrics() -> None:
    from prometheus_client import generate_latest

    registry = metrics_registry("replicator")
    text = generate_latest(registry).decode()
    build = [line for line in text.splitlines() if line.startswith("kube_image_keeper_build_info{")]
    assert len(build) == 1
    for label in (
        'service="replicator"',
        'version="0.1.0"',
        "revision=",
        "built=",
        "pythonversion=",
    ):
        assert label in build[0]
    assert build[0].endswith(" 1.0")
    assert "process_resident_memory_bytes" in text
    assert "python_info" in text


def test_build_metadata_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import generate_latest

    monkeypatch.setenv("KUIK_BUILD_REVISION", "abc1234")
    monkeypatch.setenv("KUIK_BUILD_DATE", "2026-11-28T00:00:00Z")
    text = generate_latest(metrics_registry("monitor")).decode()
    assert 'revision="abc1234"' in text
    assert 'built="2026-11-28T00:00:00Z"' in text


def test_registries_are_independent() -> None:
    a, b = metrics_registry("webhook"), metrics_registry("webhook")
    Counter("kube_image_keeper_test_total", "test", registry=a).inc()
    assert a.get_sample_value("kube_image_keeper_test_total") == 1
    assert b.get_sample_value("kube_image_keeper_test_total") is None


# --- health server -------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[HealthServer]:
    health = HealthServer("127.0.0.1:0", metrics_registry("webhook"), check_timeout=0.2)
    await health.start()
    yield health
    await health.stop()


async def _get(
    server: HealthServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{server.port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.text(), resp.headers.get("Content-Type", "")


async def test_healthz_and_empty_readiness(server: HealthServer) -> None:
    assert (await _get(server, "/healthz"))[:2] == (200, "ok\n")
    assert (await _get(server, "/readyz"))[:2] == (200, "readyz check passed\n")


async def test_readiness_fails_then_passes(server: HealthServer) -> None:
    state = {"redis": False}

    async def redis_ready() -> bool:
        return state["redis"]

    async def always() -> bool:
        return True

    server.add_readiness_check("redis", redis_ready)
    server.add_readiness_check("cluster", always)
    status, body, _ = await _get(server, "/readyz")
    assert status == 503
    assert body == "[-]redis failed: not ready\n[+]cluster ok\nreadyz check failed\n"
    assert (await _get(server, "/healthz"))[0] == 200  # liveness never follows readiness

    state["redis"] = True
    status, body, _ = await _get(server, "/readyz")
    assert status == 200
    assert body == "[+]redis ok\n[+]cluster ok\nreadyz check passed\n"


async def test_readiness_reasons_are_redacted_and_bounded(server: HealthServer) -> None:
    async def broken() -> bool:
        raise ConnectionError(f"redis://kuik:{PASSWORD}@redis:6379 refused")

    async def stuck() -> bool:
        await asyncio.sleep(3600)
        return True

    server.add_readiness_check("redis", broken)
    server.add_readiness_check("registry", stuck)
    status, body, _ = await _get(server, "/readyz")
    assert status == 503
    assert PASSWORD not in body
    assert body.splitlines() == [
        f"[-]redis failed: ConnectionError: redis://kuik:{REDACTED}@redis:6379 refused",
        "[-]registry failed: timed out after 0.2s",
        "readyz check failed",
    ]


async def test_duplicate_check_names_are_refused(server: HealthServer) -> None:
    async def ok() -> bool:
        return True

    server.add_readiness_check("redis", ok)
    with pytest.raises(ValueError, match="already registered"):
        server.add_readiness_check("redis", ok)


async def test_metrics_endpoint(server: HealthServer) -> None:
    status, body, content_type = await _get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "kube_image_keeper_build_info{" in body
    assert 'service="webhook"' in body
    status, body, content_type = await _get(
        server, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


async def test_routes_can_be_added_while_serving(server: HealthServer) -> None:
    assert (await _get(server, "/status/images"))[0] == 404

    async def status_images(request: web.Request) -> web.Response:
        return web.json_response({"groupBy": request.query.get("groupBy", "cisa")})

    server.add_route("GET", "/status/images", status_images)
    status, body, _ = await _get(server, "/status/images?groupBy=registry")
    assert (status, json.loads(body)) == (200, {"groupBy": "registry"})
    assert (await _get(server, "/status/images", method="HEAD"))[0] == 200
    assert (await _get(server, "/status/images", method="POST"))[0] == 405
    with pytest.raises(ValueError, match="already registered"):
        server.add_route("get", "/status/images", status_images)
    with pytest.raises(ValueError, match="served by the health server"):
        server.add_route("GET", "/metrics", status_images)


async def test_busy_port_raises_oserror(server: HealthServer) -> None:
    other = HealthServer(f"127.0.0.1:{server.port}", metrics_registry("webhook"))
    with pytest.raises(OSError, match="address already in use"):
        await other.start()
