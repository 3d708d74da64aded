"""The three service commands as real processes: health, readiness, metrics, clean SIGTERM, config errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuikcore.testing import free_port, wait_for_port

SERVICES = ["webhook", "replicator", "monitor"]
BIN = Path(sys.executable).parent


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _wait_ready(port: int) -> str:
    """Poll /readyz until 200 (startup takes a moment); returns its body."""
    wait_for_port("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, body
            return body
        time.sleep(0.05)


class Service:
    """One `kuik-<name>` process on a free metrics port, its stderr kept for assertions."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        command = [str(BIN / f"kuik-{name}"), "--log-format", "json", *args]
        if not any(a.startswith("--metrics-listen") for a in args) and not (env or {}).get(
            "KUIK_METRICS_LISTEN"
        ):
            command += ["--metrics-listen", f"127.0.0.1:{self.port}"]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> str:
        return _wait_ready(self.port)

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def started() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in services:
        service.kill()


def _log_events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


# What a real service needs to start alone on a test machine (local mode, free ports), and the
# readiness checks it adds to the runner's.
_READY = {"webhook": "[+]startup ok\n[+]cluster ok\nreadyz check passed\n"}


def _standalone(name: str, tmp_path: Path) -> list[str]:
    if name == "webhook":
        return ["--cluster", f"dir:{tmp_path}", "--listen", f"127.0.0.1:{free_port()}"]
    return []


@pytest.mark.parametrize("name", SERVICES)
def test_service_serves_health_metrics_and_stops_on_sigterm(
    name: str, tmp_path: Path, started: list[Service]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("monitoring:\n  registries:\n    default:\n      interval: 1h\n")
    service = Service(name, ["--config", str(config), *_standalone(name, tmp_path)])
    started.append(service)

    assert service.wait_ready() == _READY.get(name, "[+]startup ok\nreadyz check passed\n")
    assert _get(service.url("/healthz")) == (200, "ok\n")
    status, metrics = _get(service.url("/metrics"))
    assert status == 200
    build = [m for m in metrics.splitlines() if m.startswith("kube_image_keeper_build_info{")]
    assert len(build) == 1
    assert f'service="{name}"' in build[0]

    service.process.send_signal(signal.SIGTERM)
    code, stderr = service.finish(timeout=5)
    assert code == 0, stderr
    events = _log_events(stderr)  # every line is JSON
    assert [e["event"] for e in events][-2:] == ["stopping", "service stopped"]
    assert {e["service"] for e in events} == {name}
    starting = next(e for e in events if e["event"] == "service starting")
    assert starting["config"] == str(config)


def test_sigint_stops_cleanly_too(started: list[Service]) -> None:
    service = Service("monitor", ["--config", "/nonexistent/config.yaml"])
    started.append(service)
    service.wait_ready()
    service.process.send_signal(signal.SIGINT)
    code, stderr = service.finish(timeout=5)
    assert code == 0, stderr
    first = _log_events(stderr)[0]
    assert first["event"] == "config file not found, using built-in defaults"
    assert first["level"] == "warning"


@pytest.mark.parametrize("name", SERVICES)
def test_bad_config_exits_1_naming_file_and_key(name: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("monitoring:\n  registries:\n    default:\n      maxPerInterval: 0\n")
    service = Service(name, ["--config", str(config)])
    code, stderr = service.finish()
    assert code == 1
    assert f"{config}: monitoring.registries.default.maxPerInterval: must be > 0" in stderr
    (event,) = _log_events(stderr)
    assert event["event"] == "invalid configuration"
    assert event["level"] == "error"


def test_unknown_key_exits_1_with_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("routing:\n  activeCheck:\n    timout: 2s\n")
    code, stderr = Service("webhook", ["--config", str(config)]).finish()
    assert code == 1
    assert 'routing.activeCheck.timout: unknown key, did you mean \\"timeout\\"?' in stderr


def test_service_options_are_validated_like_config_keys(tmp_path: Path) -> None:
    code, stderr = Service(
        "replicator", ["--config", str(tmp_path / "none.yaml"), "--workers", "0"]
    ).finish()
    assert code == 1
    assert "mirroring.workers (--workers): must be > 0" in stderr


def test_cli_beats_environment(tmp_path: Path, started: list[Service]) -> None:
    service = Service(
        "webhook",
        ["--config", str(tmp_path / "none.yaml")],
        env={"KUIK_CLUSTER": "nowhere", "KUIK_REDIS_URL": "redis://u:pw-in-env@127.0.0.1:1/0"},
    )
    code, stderr = service.finish()
    assert code == 1  # the environment's bad cluster is reported with its origin
    assert "cluster (KUIK_CLUSTER): must be" in stderr

    service = Service(
        "webhook",
        [
            "--config",
            str(tmp_path / "none.yaml"),
            "--cluster",
            f"dir:{tmp_path}",
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        env={"KUIK_CLUSTER": "nowhere", "KUIK_REDIS_URL": "redis://u:pw-in-env@127.0.0.1:1/0"},
    )
    started.append(service)
    service.wait_ready()
    service.process.send_signal(signal.SIGTERM)
    code, stderr = service.finish(timeout=5)
    assert code == 0
    starting = next(e for e in _log_events(stderr) if e["event"] == "service starting")
    assert starting["cluster"] == f"dir:{tmp_path}"
    assert starting["redis"] == "redis://u:[REDACTED]@127.0.0.1:1/0"
    assert "pw-in-env" not in stderr


def test_metrics_listen_from_the_environment(tmp_path: Path, started: list[Service]) -> None:
    port = free_port()
    service = Service(
        "monitor",
        ["--config", str(tmp_path / "none.yaml")],
        env={"KUIK_METRICS_LISTEN": f"127.0.0.1:{port}"},
    )
    service.port = port
    started.append(service)
    service.wait_ready()
    service.process.send_signal(signal.SIGTERM)
    assert service.finish(timeout=5)[0] == 0


def test_busy_metrics_port_exits_1(tmp_path: Path, started: list[Service]) -> None:
    first = Service("monitor", ["--config", str(tmp_path / "none.yaml")])
    started.append(first)
    first.wait_ready()
    second = Service(
        "monitor",
        ["--config", str(tmp_path / "none.yaml"), "--metrics-listen", f"127.0.0.1:{first.port}"],
    )
    code, stderr = second.finish()
    assert code == 1
    event = _log_events(stderr)[-1]
    assert event["event"] == "cannot listen"
    assert event["address"] == f"127.0.0.1:{first.port}"


# --- the shared runner's edge cases, through a throwaway service built on kuikcore.service ---------

_SCRIPT = """
import asyncio, sys
from kuikcore.service import service_command

async def run(ctx):
    mode = {mode!r}
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "return":
        return
    if mode == "stubborn":
        ctx.mark_started()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # ignores cancellation: the runner must not hang on it
    await asyncio.sleep(3600)  # "never-ready": never calls ctx.mark_started()

service_command("probe", run)()
"""


def _probe(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "probe.py"
    script.write_text(_SCRIPT.format(mode=mode))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--log-format",
            "json",
            "--metrics-listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "KUIK_CONFIG": str(tmp_path / "none.yaml")},
    )
    return process, port


@pytest.mark.parametrize(("mode", "code"), [("raise", 1), ("return", 0)])
def test_run_outcome_sets_the_exit_status(tmp_path: Path, mode: str, code: int) -> None:
    process, _ = _probe(tmp_path, mode)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    events = _log_events(stderr)
    if mode == "raise":
        failed = next(e for e in events if e["event"] == "service failed")
        assert "RuntimeError: boom" in str(failed["exception"])
    assert events[-1] == {**events[-1], "event": "service stopped", "exit_code": code}


def test_not_ready_until_the_service_says_started(tmp_path: Path) -> None:
    process, port = _probe(tmp_path, "never-ready")
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        assert _get(f"http://127.0.0.1:{port}/readyz") == (
            503,
            "[-]startup failed: not ready\nreadyz check failed\n",
        )
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
        assert process.returncode == 0, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_run_that_ignores_cancellation_is_cut_off(tmp_path: Path) -> None:
    process, port = _probe(tmp_path, "stubborn")
    try:
        _wait_ready(port)  # run() is under way, so it really gets (and ignores) the cancellation
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)  # STOP_GRACE (4 s), then a hard exit
        assert process.returncode == 1
        assert _log_events(stderr)[-1]["event"] == "service did not stop in time, exiting"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
