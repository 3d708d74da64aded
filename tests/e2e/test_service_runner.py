"""The shared service runner (`kuikcore.service`) as seen from outside, for every kuik service as a
real process started the way it really runs (local mode on an empty manifest directory, the shared
redis-server, the webhook on TLS): health, readiness, metrics, clean SIGTERM/SIGINT, config, option
and environment errors, precedence, a busy port; then the runner's edge cases through a throwaway
service built on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from kuik_testing import RedisServer, free_port, wait_for_port
from kuik_testing.processes import ServiceProcess

pytestmark = pytest.mark.timeout(120)

SERVICES = ["webhook", "replicator", "monitor"]
STOP_WITHIN = 5.0  # seconds from SIGTERM/SIGINT to exit: Kubernetes' grace, with room to spare

# The readiness checks each service registers on top of the runner's own `startup`.
READINESS = {
    "webhook": {"startup", "cluster"},
    "replicator": {"startup", "cluster", "redis"},
    "monitor": {"startup", "cluster"},  # it serves /status/images without Redis: not a check
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


class Launcher:
    """Starts services for one test, the way they run: every process is stopped at teardown."""

    def __init__(self, root: Path, redis: RedisServer, ca: trustme.CA) -> None:
        self.root = root
        self.cluster = root / "cluster"  # an empty manifest set
        self.cluster.mkdir()
        self.redis = redis
        self.ca = ca
        # Isolates this test's keys on the session's shared redis-server.
        self.prefix = f"kuik-runner-{uuid.uuid4().hex[:8]}:"
        self.processes: list[ServiceProcess] = []

    def argv(self, name: str, *, redis: bool = True, cluster: bool = True) -> list[str]:
        """The options `name` needs to run here, besides the ones a test is about."""
        args = ["--cluster", f"dir:{self.cluster}"] if cluster else []
        if redis:
            args += ["--redis-url", self.redis.url]
        if name == "webhook":
            args += ["--listen", f"127.0.0.1:{free_port()}", *self._tls()]
        return args

    def _tls(self) -> list[str]:
        directory = self.root / "tls"
        if not directory.exists():
            directory.mkdir()
            cert = self.ca.issue_cert("127.0.0.1", "localhost")
            cert.private_key_pem.write_to_path(str(directory / "tls.key"))
            cert.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
        return ["--tls-cert", str(directory / "tls.crt"), "--tls-key", str(directory / "tls.key")]

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        *,
        command: list[str] | None = None,
        metrics_via_env: bool = False,
    ) -> ServiceProcess:
        process = ServiceProcess(
            name,
            args,
            env={"KUIK_REDIS_KEY_PREFIX": self.prefix, **(env or {})},
            log_dir=self.root,
            command=command,
            metrics_via_env=metrics_via_env,
        )
        self.processes.append(process)
        return process.start()

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop(grace=STOP_WITHIN)


@pytest.fixture
def launch(tmp_path: Path, redis_server: RedisServer, ca: trustme.CA) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, redis_server, ca)
    yield launcher
    launcher.stop_all()


def _events(process: ServiceProcess) -> list[dict[str, object]]:
    """The process's log, one JSON object a line (a non-JSON line fails the test)."""
    return [json.loads(line) for line in process.log_text().splitlines() if line.strip()]


def _readiness(body: str) -> dict[str, str]:
    """`/readyz`'s verbose body as {check: "ok" | "failed: reason"}, its verdict line checked."""
    *checks, verdict = body.splitlines()
    assert verdict == "readyz check passed", body
    listed = {}
    for line in checks:
        assert line.startswith(("[+]", "[-]")), body
        name, _, outcome = line[3:].partition(" ")
        listed[name] = outcome
    return listed


def _interrupt(process: ServiceProcess, sig: signal.Signals) -> int:
    os.kill(process.pid, sig)
    return process.wait(timeout=STOP_WITHIN)


def _assert_stopped_by(events: list[dict[str, Any]], sig: str) -> None:
    """One `stopping` line for `sig`, then `service stopped` last. Work under way may still log
    in between (the monitor is ready before Redis answers, so it may be electing itself)."""
    assert [e["signal"] for e in events if e["event"] == "stopping"] == [sig]
    assert events[-1]["event"] == "service stopped"
    assert events[-1]["exit_code"] == 0


# --- every service, running -----------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_service_serves_health_metrics_and_stops_on_sigterm(name: str, launch: Launcher) -> None:
    config = launch.root / "config.yaml"
    config.write_text("monitoring:\n  registries:\n    default:\n      interval: 1h\n")
    service = launch.start(name, ["--config", str(config), *launch.argv(name)])
    service.wait_ready()

    status, body = service.get("/readyz")
    assert status == 200, body
    checks = _readiness(body)
    assert READINESS[name] == checks.keys(), body
    assert set(checks.values()) == {"ok"}, body
    assert service.get("/healthz") == (200, "ok\n")
    status, metrics = service.get("/metrics")
    assert status == 200
    build = [m for m in metrics.splitlines() if m.startswith("kube_image_keeper_build_info{")]
    assert len(build) == 1, metrics
    assert f'service="{name}"' in build[0]

    assert _interrupt(service, signal.SIGTERM) == 0, service.log_text()
    events = _events(service)
    _assert_stopped_by(events, "SIGTERM")
    assert {e["service"] for e in events} == {name}
    starting = next(e for e in events if e["event"] == "service starting")
    assert starting["config"] == str(config)
    if name == "webhook":  # the test really runs the webhook on TLS, as in a cluster
        listening = next(e for e in events if e["event"] == "admission endpoint listening")
        assert listening["tls"] is True


def test_sigint_stops_cleanly_too(launch: Launcher) -> None:
    service = launch.start(
        "monitor", ["--config", "/nonexistent/config.yaml", *launch.argv("monitor")]
    )
    service.wait_ready()
    assert _interrupt(service, signal.SIGINT) == 0, service.log_text()
    events = _events(service)
    assert events[0]["event"] == "config file not found, using built-in defaults"
    assert events[0]["level"] == "warning"
    _assert_stopped_by(events, "SIGINT")


@pytest.mark.parametrize("name", ["replicator", "monitor"])
def test_redis_is_required(name: str, launch: Launcher) -> None:
    service = launch.start(
        name, ["--config", str(launch.root / "none.yaml"), *launch.argv(name, redis=False)]
    )
    assert service.wait() == 1
    events = _events(service)
    failed = next(e for e in events if e["event"] == "cannot start")
    assert f"kuik-{name} needs Redis" in failed["error"]
    assert "redis.url" in failed["error"]
    assert "exception" not in failed  # one clear line, no traceback
    assert events[-1]["event"] == "service stopped"
    assert events[-1]["exit_code"] == 1


# --- configuration, options, environment ----------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_bad_config_exits_1_naming_file_and_key(name: str, launch: Launcher) -> None:
    config = launch.root / "config.yaml"
    config.write_text("monitoring:\n  registries:\n    default:\n      maxPerInterval: 0\n")
    service = launch.start(name, ["--config", str(config), *launch.argv(name)])
    assert service.wait() == 1
    (event,) = _events(service)
    assert event["event"] == "invalid configuration"
    assert event["level"] == "error"
    assert f"{config}: monitoring.registries.default.maxPerInterval: must be > 0" in str(
        event["error"]
    )


def test_cloud_auth_on_a_host_of_no_known_cloud_exits_1(launch: Launcher) -> None:
    config = launch.root / "config.yaml"
    config.write_text("registries:\n  quay.io:\n    cloudAuth: auto\n")
    service = launch.start("webhook", ["--config", str(config), *launch.argv("webhook")])
    assert service.wait() == 1
    (event,) = _events(service)
    assert event["event"] == "invalid configuration"
    assert "registries.quay.io.cloudAuth: auto" in str(event["error"])
    assert "name the cloud" in str(event["error"])


def test_unknown_key_exits_1_with_a_suggestion(launch: Launcher) -> None:
    config = launch.root / "config.yaml"
    config.write_text("routing:\n  activeCheck:\n    timout: 2s\n")
    service = launch.start("webhook", ["--config", str(config), *launch.argv("webhook")])
    assert service.wait() == 1
    assert 'routing.activeCheck.timout: unknown key, did you mean \\"timeout\\"?' in (
        service.log_text()
    )


def test_service_options_are_validated_like_config_keys(launch: Launcher) -> None:
    service = launch.start(
        "replicator",
        ["--config", str(launch.root / "none.yaml"), "--workers", "0", *launch.argv("replicator")],
    )
    assert service.wait() == 1
    assert "mirroring.workers (--workers): must be > 0" in service.log_text()


def test_cli_beats_environment(launch: Launcher) -> None:
    env = {"KUIK_CLUSTER": "nowhere", "KUIK_REDIS_URL": "redis://u:pw-in-env@127.0.0.1:1/0"}
    config = ["--config", str(launch.root / "none.yaml")]
    without_cluster = launch.argv("webhook", redis=False, cluster=False)

    service = launch.start("webhook", [*config, *without_cluster], env)
    assert service.wait() == 1  # the environment's bad cluster is reported with its origin
    assert "cluster (KUIK_CLUSTER): must be" in service.log_text()

    service = launch.start("webhook", [*config, *launch.argv("webhook", redis=False)], env)
    service.wait_ready()
    assert _interrupt(service, signal.SIGTERM) == 0, service.log_text()
    starting = next(e for e in _events(service) if e["event"] == "service starting")
    assert starting["cluster"] == f"dir:{launch.cluster}"
    assert starting["redis"] == "redis://u:[REDACTED]@127.0.0.1:1/0"
    assert "pw-in-env" not in service.log_text()


def test_metrics_listen_from_the_environment(launch: Launcher) -> None:
    service = launch.start(
        "monitor",
        ["--config", str(launch.root / "none.yaml"), *launch.argv("monitor")],
        metrics_via_env=True,
    )
    assert "--metrics-listen" not in service.args
    service.wait_ready()  # on the port named only by KUIK_METRICS_LISTEN
    assert _interrupt(service, signal.SIGTERM) == 0, service.log_text()


def test_busy_metrics_port_exits_1(launch: Launcher) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        service = launch.start(
            "monitor",
            [
                "--config",
                str(launch.root / "none.yaml"),
                *launch.argv("monitor"),
                "--metrics-listen",
                f"127.0.0.1:{port}",
            ],
        )
        assert service.wait() == 1
    event = _events(service)[-1]
    assert event["event"] == "cannot listen"
    assert event["address"] == f"127.0.0.1:{port}"


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
    if mode == "swallows-once":
        ctx.mark_started()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # what Python 3.11's wait_for (under every redis-py command) can do
        await asyncio.sleep(3600)
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


def _probe(launch: Launcher, mode: str) -> ServiceProcess:
    script = launch.root / "probe.py"
    script.write_text(_SCRIPT.format(mode=mode))
    return launch.start(
        "probe",
        [],
        {"KUIK_CONFIG": str(launch.root / "none.yaml")},
        command=[sys.executable, str(script)],
    )


@pytest.mark.parametrize(("mode", "code"), [("raise", 1), ("return", 0)])
def test_run_outcome_sets_the_exit_status(launch: Launcher, mode: str, code: int) -> None:
    process = _probe(launch, mode)
    assert process.wait() == code, process.log_text()
    events = _events(process)
    if mode == "raise":
        failed = next(e for e in events if e["event"] == "service failed")
        assert "RuntimeError: boom" in str(failed["exception"])
    assert events[-1] == {**events[-1], "event": "service stopped", "exit_code": code}


def test_not_ready_until_the_service_says_started(launch: Launcher) -> None:
    process = _probe(launch, "never-ready")
    wait_for_port("127.0.0.1", process.port, timeout=30)
    assert process.get("/readyz") == (503, "[-]startup failed: not ready\nreadyz check failed\n")
    assert process.get("/healthz") == (200, "ok\n")
    assert _interrupt(process, signal.SIGTERM) == 0, process.log_text()


def test_a_lost_cancellation_is_delivered_again(launch: Launcher) -> None:
    process = _probe(launch, "swallows-once")
    process.wait_ready()
    started = time.monotonic()
    assert _interrupt(process, signal.SIGTERM) == 0, process.log_text()
    assert time.monotonic() - started < 3.0  # well before STOP_GRACE's hard exit
    assert _events(process)[-1] == {**_events(process)[-1], "event": "service stopped"}


def test_a_run_that_ignores_cancellation_is_cut_off(launch: Launcher) -> None:
    process = _probe(launch, "stubborn")
    process.wait_ready()  # run() is under way, so it really gets (and ignores) the cancellation
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=15) == 1  # STOP_GRACE (4 s), then a hard exit
    assert _events(process)[-1]["event"] == "service did not stop in time, exiting"
