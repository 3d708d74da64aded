"""docker-compose.yaml for real: Debian's docker-compose 1.29 against a private dockerd (the
image tests' daemon and kuik image, same xdist group, so nothing is built twice), the stack on
the host network (docker-compose.test.yaml) bound to 127.0.0.1 on free ports; every service
must turn healthy, then the demo scenario runs against it: an image mirrored to registry B, a
killed registry A, the next Pod rerouted by the webhook. Then `down` leaves no container.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuik_testing.demo.scenario import Narrator, Target, run_scenario
from kuik_testing.docker import BASE_IMAGE, DockerDaemon
from kuik_testing.ports import free_port
from kuik_testing.processes import bin_path

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.timeout(900)]

REPO = Path(__file__).parents[2]
SERVICES = ("redis", "registry-a", "registry-b", "replicator", "monitor", "webhook")
PORTS = (
    "REDIS",
    "REGISTRY_A",
    "REGISTRY_B",
    "WEBHOOK",
    "WEBHOOK_METRICS",
    "REPLICATOR_METRICS",
    "MONITOR_METRICS",
)


@pytest.fixture(scope="module")
def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        message = (
            "docker-compose not found: run `make install-docker` (Debian package docker-compose)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"compose tests must run in CI, but: {message}")
        pytest.skip(message)
    return found


class Compose:
    """`docker-compose -p <project> -f docker-compose.yaml -f docker-compose.test.yaml ...`."""

    def __init__(self, binary: str, daemon: DockerDaemon, env: dict[str, str]) -> None:
        self.binary = binary
        self.daemon = daemon
        self.project = f"kuik-test-{uuid.uuid4().hex[:8]}"
        self.env = {**daemon.env, **env, "COMPOSE_PROJECT_NAME": self.project}
        # docker-compose 1.29 builds through the docker CLI when BuildKit is asked for, which
        # needs buildx (not in Debian's docker.io); its own (classic) builder needs nothing.
        self.env.update(DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")

    def __call__(self, *args: str, timeout: float = 300) -> str:
        command = [
            self.binary,
            "-f", str(REPO / "docker-compose.yaml"),
            "-f", str(REPO / "docker-compose.test.yaml"),
            *args,
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def health(self) -> dict[str, str]:
        """service -> health status of its container."""
        found = {}
        for service in SERVICES:
            container = self("ps", "-q", service).strip()
            state = self.daemon.inspect(container)["State"] if container else {}
            found[service] = (state.get("Health") or {}).get("Status", state.get("Status", "none"))
        return found

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return self.daemon.docker("ps", "-aq", "--filter", label).stdout.split()


@pytest.fixture
def compose(
    compose_binary: str,
    docker_daemon: DockerDaemon,
    debian_base_image: str,
    kuik_image: str,
    tmp_path: Path,
) -> Iterator[tuple[Compose, dict[str, int], Path]]:
    ports = {name: free_port() for name in PORTS}
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    env = {
        "KUIK_IMAGE": kuik_image,  # built once for the docker group by the image tests' fixture
        "KUIK_BASE_IMAGE": BASE_IMAGE,
        "KUIK_SUPPORT_IMAGE": "localhost/kuik-support:test",
        "KUIK_BIND": "127.0.0.1",
        "KUIK_CLUSTER_DIR": str(cluster),
        **{f"KUIK_{name}_PORT": str(port) for name, port in ports.items()},
    }
    stack = Compose(compose_binary, docker_daemon, env)
    try:
        yield stack, ports, cluster
    finally:
        stack("down", "--volumes", "--timeout", "10")
    assert stack.containers() == []


def test_stack_turns_healthy_and_reroutes_around_a_killed_registry(
    compose: tuple[Compose, dict[str, int], Path],
) -> None:
    stack, ports, cluster = compose
    assert debian_base_is_used(stack)
    stack("build", "redis", timeout=600)  # the support image; registries share it
    # `net` (owner of the published ports in bridge mode) has no use on the host network
    stack("up", "-d", "--no-build", *SERVICES)
    deadline = time.monotonic() + 180
    health = stack.health()
    while set(health.values()) != {"healthy"} and time.monotonic() < deadline:
        time.sleep(1)
        health = stack.health()
    assert set(health.values()) == {"healthy"}, (health, stack("logs", "--tail", "30"))

    registry_a = f"127.0.0.1:{ports['REGISTRY_A']}"
    target = Target(
        cluster=cluster,
        registry_a=registry_a,
        registry_b=f"127.0.0.1:{ports['REGISTRY_B']}",
        registry_a_url=f"http://{registry_a}",
        webhook_url=f"http://127.0.0.1:{ports['WEBHOOK']}/mutate",
        monitor_url=f"http://127.0.0.1:{ports['MONITOR_METRICS']}",
        kill_registry_a=lambda: stack("kill", "registry-a"),
        status_command=[str(bin_path("kuik")), "status", "--cluster", f"dir:{cluster}"],
    )
    out = io.StringIO()
    try:
        run_scenario(target, Narrator(out), timeout=90)
    except Exception as error:
        raise AssertionError(
            f"{error}\n{out.getvalue()}\n{stack('logs', '--tail', '40')}"
        ) from error
    narrated = out.getvalue()
    mirror = f"127.0.0.1:{ports['REGISTRY_B']}/mirror/demo/web:1.0"
    assert f"web-2 rerouted: {registry_a}/demo/web:1.0 -> {mirror}" in narrated
    # the rerouted Pod as the API server would store it, with kuik's original-images annotation
    stored = (cluster / "pods" / "web-2.yaml").read_text()
    assert mirror in stored
    assert "kuik.enix.io/original-images" in stored
    # registry A stays down (killed, not restarted by its restart policy)
    container = stack("ps", "-q", "registry-a").strip()
    assert stack.daemon.inspect(container)["State"]["Status"] == "exited"


def debian_base_is_used(stack: Compose) -> bool:
    """The compose file builds on KUIK_BASE_IMAGE (no public image pulled)."""
    config = stack("config")
    return (
        f"BASE_IMAGE: {BASE_IMAGE}" in config
        and json.dumps(stack.env["KUIK_IMAGE"])[1:-1] in config
    )
