"""pytest plugin: real Redis and OCI registries for every kuik test suite.

Loaded with `-p kuik_testing.plugin` (see the root pyproject's pytest options).
Session-scoped servers are shared; tests that kill or restart a server ask for
the function-scoped variant instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.docker import (
    BASE_IMAGE,
    KUIK_IMAGE,
    DockerDaemon,
    debian_base_tarball,
    docker_missing,
    local_ca_certificates,
)
from kuik_testing.redis import RedisServer
from kuik_testing.registry import RegistryServer
from kuikcore.coord import Coord, connect


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests isolate by key prefix or flush."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_server_private() -> Iterator[RedisServer]:
    """A redis-server of the test's own (AOF on), free to be stopped, killed or restarted."""
    server = RedisServer(aof=True).start()
    yield server
    server.cleanup()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client on the shared server, with the database flushed before the test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


# ---------------------------------------------------------------------------------------------
# Kubernetes API-server fake (owner: cluster helper; kuik_testing.apiserver)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def apiserver() -> AsyncIterator[FakeApiServer]:
    """A fresh stateful Kubernetes API fake on a loopback port, with fast bookmarks.

    Drive state with its direct methods (`create`, `patch`, `delete`), faults with
    `cut_watches()`, `compact()`, `fail_requests()`, `set_delay()`, `drop_events()`;
    connect with `apiserver.api_client()` or `apiserver.write_kubeconfig(path)`.
    """
    server = await FakeApiServer().start()  # bookmarks at kube-apiserver's cadence
    yield server
    await server.stop()


# ---------------------------------------------------------------------------------------------
# Redis coordination layer (owner: coord helper; kuikcore.coord)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
async def coord(redis_server: RedisServer) -> AsyncIterator[Coord]:
    """A `Coord` on the shared redis-server, under a key prefix of the test's own."""
    client = connect(redis_server.url, prefix=f"kuik-test-{os.urandom(4).hex()}:")
    yield client
    await client.aclose()


# ---------------------------------------------------------------------------------------------
# Registries (owner: fixtures helper; kuik_testing.registry, kuik_testing.images)
# Session registries are shared by every test of a worker: use a repository name of the test's
# own, and `log_offset()` before counting requests. Tests that stop, kill or reconfigure a
# registry make their own with `registry_factory`.
# ---------------------------------------------------------------------------------------------

REGISTRY_USERNAME = "kuik"
REGISTRY_PASSWORD = "kuik-test-password"  # a throwaway fixture secret


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """A plain-HTTP docker-registry shared by the session (per xdist worker)."""
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="session")
def registry_tls() -> Iterator[RegistryServer]:
    """An HTTPS docker-registry whose certificate comes from a throwaway CA (`.ca_file`)."""
    with RegistryServer(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def registry_auth() -> Iterator[RegistryServer]:
    """HTTPS plus htpasswd basic auth; credentials in `.username` / `.password`."""
    with RegistryServer(tls=True, username=REGISTRY_USERNAME, password=REGISTRY_PASSWORD) as server:
        yield server


@pytest.fixture
def registry_factory() -> Iterator[Callable[..., RegistryServer]]:
    """`registry_factory(**RegistryServer options)` -> a started registry, torn down after the test."""
    made: list[RegistryServer] = []

    def make(**options: Any) -> RegistryServer:
        server = RegistryServer(**options)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.cleanup()


# ---------------------------------------------------------------------------------------------
# Private Docker daemon and kuik's image (owner: shipping helper; kuik_testing.docker)
# Tests using these mark themselves `xdist_group("docker")` (one daemon, one build per run) and
# `timeout(900)` (the first one pays the image build). Without root or the Debian packages they
# skip, naming what is missing; with CI set they fail instead, since CI must run them.
# ---------------------------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep `--dist loadgroup` grouping (make test uses it) working on pytest >= 9.2.

    pytest-xdist 3.8 groups by appending "@<group>" to `item._nodeid`, but pytest 9.2 derives
    `item.nodeid` from a structured id, so the suffix is lost and every worker would start its
    own dockerd and build. Re-append it where xdist's did not stick (no-op on older pytest).
    """
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest < 9.2: xdist's own suffix works
        return
    for item in items:
        groups = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        nodeid = item.nodeid
        if groups and nodeid.rfind("@") <= nodeid.rfind("]"):
            item._id = NodeId.parse(f"{nodeid}@{'_'.join(sorted(groups))}")


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[DockerDaemon]:
    """Debian's dockerd on a private socket (no bridge, no iptables), stopped by PID after."""
    missing = docker_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"docker tests must run in CI, but: {missing}")
        pytest.skip(missing)
    daemon = DockerDaemon().start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def debian_base_image(docker_daemon: DockerDaemon) -> str:
    """`localhost/debian-base`: mmdebstrap minbase bookworm (cached across runs), imported."""
    return docker_daemon.import_image(debian_base_tarball(), BASE_IMAGE)


@pytest.fixture(scope="session")
def kuik_image(
    request: pytest.FixtureRequest, docker_daemon: DockerDaemon, debian_base_image: str
) -> str:
    """kuik's image built from the repository's Dockerfile on the local Debian base."""
    return docker_daemon.build(
        request.config.rootpath,
        KUIK_IMAGE,
        build_args={"BASE_IMAGE": debian_base_image, "EXTRA_CA_CERTS": local_ca_certificates()},
    )
