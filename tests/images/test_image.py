"""kuik's container image, built for real from the Dockerfile on a local Debian base by a private
dockerd: entry points, non-root and read-only operation, no build tools, the lock file's exact
versions, and each service answering its health probes inside a container.

The first test pays the build (see the `kuik_image` fixture); all share one daemon and one build.
"""

from __future__ import annotations

import json
import os
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from kuik_testing.docker import DockerDaemon, local_ca_certificates
from kuik_testing.ports import free_port
from kuik_testing.redis import RedisServer

pytestmark = [pytest.mark.xdist_group("docker"), pytest.mark.timeout(900)]

REPO = Path(__file__).parents[2]
UID = "65532:65532"
# How the chart runs the containers: non-root, read-only root filesystem, no capabilities.
HARDENED = ("--read-only", f"--user={UID}", "--cap-drop=ALL", "--security-opt=no-new-privileges")
ENTRY_POINTS = {
    "kuik-webhook": "routes Pod images at admission",
    "kuik-replicator": "mirrors images in use",
    "kuik-monitor": "images in use are still available",
    "kuik": "Usage: kuik",
}
SERVICES = ("webhook", "replicator", "monitor")
BUILD_ARGS = {"KUIK_BUILD_REVISION": "0123456789abcdef", "KUIK_BUILD_DATE": "2026-12-04T00:00:00Z"}


@pytest.mark.parametrize("command", sorted(ENTRY_POINTS))
def test_entry_point_help(docker_daemon: DockerDaemon, kuik_image: str, command: str) -> None:
    done = docker_daemon.run(kuik_image, command, "--help", options=[*HARDENED, "--network=none"])
    assert done.returncode == 0, done.stderr
    assert ENTRY_POINTS[command] in done.stdout


def test_image_runs_as_non_root_with_the_services_on_path(
    docker_daemon: DockerDaemon, kuik_image: str
) -> None:
    config = docker_daemon.inspect(kuik_image)["Config"]
    assert config["User"] == UID
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert path.startswith("PATH=/opt/kuik/bin:")
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9443/tcp"}
    done = docker_daemon.run(kuik_image, "id", "-u", options=["--network=none"])
    assert done.stdout.strip() == "65532"


def test_final_stage_has_no_build_tools(docker_daemon: DockerDaemon, kuik_image: str) -> None:
    script = (
        "for tool in gcc cc make pip pip3 uv git apt-get; do command -v $tool || true; done;"
        " ls -d /opt/uv /src /root/.cache/uv 2>/dev/null || true;"
        " ls /usr/local/share/ca-certificates"
    )
    done = docker_daemon.run(kuik_image, "sh", "-c", script, options=["--network=none"])
    assert done.returncode == 0, done.stderr
    found = done.stdout.split()
    # apt-get is the base image's (Debian's own); everything else would come from the build.
    assert [f for f in found if not f.endswith("/apt-get")] == []


def test_installed_versions_are_the_lock_files(
    docker_daemon: DockerDaemon, kuik_image: str
) -> None:
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    done = docker_daemon.run(kuik_image, "python", "-c", script, options=["--network=none"])
    assert done.returncode == 0, done.stderr
    installed = {_normalise(k): v for k, v in json.loads(done.stdout).items()}
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {_normalise(p["name"]): p["version"] for p in lock["package"] if "version" in p}
    assert {"kuikcore", "kuik-webhook", "kuik-replicator", "kuik-monitor", "aiohttp"} <= set(
        installed
    )
    assert {name: v for name, v in installed.items() if locked.get(name) != v} == {}
    # The dev group stays out of the image, and so do the test and demo harnesses.
    assert {
        "pytest",
        "mypy",
        "ruff",
        "helm-python-sdk",
        "oras",
        "kuik-testing",
        "trustme",
    }.isdisjoint(installed)


def test_the_image_ships_only_runtime_code(docker_daemon: DockerDaemon, kuik_image: str) -> None:
    """No API fake, dockerd helper, pytest plugin or demo stack: not as a distribution (above)
    nor as modules anywhere on the interpreter's path."""
    script = (
        "import importlib.util as u, json;"
        "names = ['kuik_testing', 'kuik_testing.demo', 'kuikcore.testing', 'kuikcore.demo',"
        " 'oras', 'pytest', 'kuikcore', 'kuik_webhook'];"
        "print(json.dumps({n: u.find_spec(n.split('.')[0]) is not None and"
        " u.find_spec(n) is not None for n in names}))"
    )
    done = docker_daemon.run(kuik_image, "python", "-c", script, options=["--network=none"])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {
        "kuik_testing": False,
        "kuik_testing.demo": False,
        "kuikcore.testing": False,
        "kuikcore.demo": False,
        "oras": False,
        "pytest": False,
        "kuikcore": True,
        "kuik_webhook": True,
    }


def test_the_cloud_clients_kuik_uses_are_in_the_image(
    docker_daemon: DockerDaemon, kuik_image: str
) -> None:
    """The image keeps botocore's ECR and STS models only (the Dockerfile prunes the rest), and
    the Google and Azure identity libraries: each client kuik builds can be built there."""
    script = (
        "import boto3, google.auth, azure.identity;"
        "[boto3.client(s, region_name='eu-west-3') for s in ('ecr', 'sts')];"
        "import botocore.exceptions as e;"
        "\ntry: boto3.client('s3', region_name='eu-west-3')\n"
        "except e.UnknownServiceError: print('pruned')"
    )
    done = docker_daemon.run(kuik_image, "python", "-c", script, options=["--network=none"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pruned"


@pytest.fixture(scope="module")
def labelled_image(docker_daemon: DockerDaemon, kuik_image: str, debian_base_image: str) -> str:
    """kuik_image again with the release build arguments: every layer comes from the cache."""
    return docker_daemon.build(
        REPO,
        "kuik-test-labels",
        build_args={
            "BASE_IMAGE": debian_base_image,
            "EXTRA_CA_CERTS": local_ca_certificates(),
            **BUILD_ARGS,
        },
    )


def test_oci_labels_say_what_the_image_is(
    docker_daemon: DockerDaemon, kuik_image: str, labelled_image: str
) -> None:
    labels = docker_daemon.inspect(labelled_image)["Config"]["Labels"]
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items()}
    project = tomllib.loads((REPO / "libs/kuikcore/pyproject.toml").read_text())["project"]
    assert oci["revision"] == BUILD_ARGS["KUIK_BUILD_REVISION"]
    assert oci["created"] == BUILD_ARGS["KUIK_BUILD_DATE"]
    assert (oci["title"], oci["licenses"]) == ("kube-image-keeper", project["license"])
    assert oci["source"].startswith("https://")
    assert oci["description"]
    # The default version label is the version the image's binaries report.
    done = docker_daemon.run(kuik_image, "kuik-monitor", "--version", options=["--network=none"])
    assert done.stdout == f"kuik-monitor, version {oci['version']}\n"
    assert oci["version"] == project["version"]
    # The same build arguments set the build_info metric's labels.
    env = docker_daemon.inspect(labelled_image)["Config"]["Env"]
    assert f"KUIK_BUILD_REVISION={BUILD_ARGS['KUIK_BUILD_REVISION']}" in env
    unlabelled = docker_daemon.inspect(kuik_image)["Config"]["Labels"]
    assert unlabelled["org.opencontainers.image.revision"] == ""


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture
def container_name(docker_daemon: DockerDaemon) -> Iterator[str]:
    name = f"kuik-test-{uuid.uuid4().hex[:8]}"
    yield name
    docker_daemon.docker("rm", "--force", name, check=False)


def _wait_http(url: str, timeout: float = 60.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            last = (error.code, error.read().decode(errors="replace"))
        except OSError as error:
            last = (0, str(error))
        time.sleep(0.2)
    return last


@pytest.mark.parametrize("service", SERVICES)
def test_service_answers_health_probes_and_stops_cleanly(
    docker_daemon: DockerDaemon,
    kuik_image: str,
    redis_server: RedisServer,
    tmp_path: Path,
    container_name: str,
    service: str,
) -> None:
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    os.chmod(cluster, 0o777)  # the container's user writes local-mode state under .kuik/
    metrics = free_port()
    args = [
        f"kuik-{service}",
        "--cluster=dir:/cluster",
        f"--redis-url={redis_server.url}",
        f"--metrics-listen=127.0.0.1:{metrics}",
    ]
    mounts = [f"--volume={cluster}:/cluster"]
    if service == "webhook":
        tls = tmp_path / "tls"
        tls.mkdir()
        trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            str(tls / "server.pem")
        )
        os.chmod(tls / "server.pem", 0o644)
        mounts.append(f"--volume={tls}:/tls:ro")
        args += [
            f"--listen=127.0.0.1:{free_port()}",
            "--tls-cert=/tls/server.pem",
            "--tls-key=/tls/server.pem",
        ]
    docker_daemon.docker(
        "run",
        "--detach",
        f"--name={container_name}",
        "--network=host",
        "--tmpfs=/tmp",
        *HARDENED,
        *mounts,
        kuik_image,
        *args,
    )
    base = f"http://127.0.0.1:{metrics}"

    def logs() -> str:
        return docker_daemon.docker("logs", container_name, check=False).stderr

    assert _wait_http(f"{base}/healthz")[0] == 200, logs()
    assert _wait_http(f"{base}/readyz")[0] == 200, logs()
    status, body = _wait_http(f"{base}/metrics")
    assert status == 200
    assert "kube_image_keeper_build_info{" in body
    assert f'service="{service}"' in body
    docker_daemon.docker("stop", "--time=10", container_name)
    state = docker_daemon.inspect(container_name)["State"]
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), logs()
