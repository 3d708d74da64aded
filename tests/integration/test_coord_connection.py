"""Connecting for real: readiness through an outage, ACL users, TLS with a custom CA, Sentinel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis.exceptions import AuthenticationError, ConnectionError, ReadOnlyError

from kuik_testing import RedisServer
from kuik_testing.ports import free_port, wait_for_port
from kuikcore.coord import ROUTINE, Coord, Enqueued, Job, JobQueue, connect


class Ping(Job):
    kind = "ping"
    n: int


@dataclass
class ConfiguredRedis(RedisServer):
    """A redis-server with extra arguments (ACL users, TLS); `tls` moves the port to TLS only."""

    extra: list[str] = field(default_factory=list)
    tls: bool = False

    def command(self) -> list[str]:
        args = super().command()
        if self.tls:
            at = args.index("--port")
            args[at + 1] = "0"
            args += ["--tls-port", str(self.port)]
        return args + self.extra


async def enqueue_and_read_back(coord: Coord) -> None:
    queue = JobQueue(coord, "probe", [Ping])
    assert await queue.enqueue(Ping(n=1)) is Enqueued.QUEUED
    assert (await queue.stats()).lanes[ROUTINE].ready == 1


async def test_readiness_follows_an_outage_and_the_client_recovers(
    redis_server_private: RedisServer,
) -> None:
    coord = connect(redis_server_private.url, retries=1, socket_timeout=0.5, connect_timeout=0.5)
    try:
        assert await coord.ping()
        await coord.redis.set("kuik:before", "1")
        redis_server_private.kill()
        assert not await coord.ping(within=1.0)
        with pytest.raises(ConnectionError):
            await coord.redis.get("kuik:before")
        redis_server_private.start()
        assert await coord.ping()  # same client, no restart
        assert await coord.redis.get("kuik:before") == "1"
    finally:
        await coord.aclose()


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    server = ConfiguredRedis(
        extra=["--user", "default", "off", "--user", "kuik", "on", ">s3cret-pw", "~kuik:*", "+@all"]
    ).start()
    yield server
    server.cleanup()


async def test_acl_user_confined_to_the_prefix(acl_server: RedisServer) -> None:
    url = f"redis://kuik:s3cret-pw@{acl_server.host}:{acl_server.port}/0"
    coord = connect(url)
    try:
        await enqueue_and_read_back(coord)
    finally:
        await coord.aclose()
    wrong = connect(f"redis://kuik:not-it@{acl_server.host}:{acl_server.port}/0", retries=0)
    try:
        with pytest.raises(AuthenticationError) as info:
            await wrong.redis.ping()
        assert "not-it" not in str(info.value)
        assert not await wrong.ping()
    finally:
        await wrong.aclose()


@pytest.fixture(scope="module")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    where = tmp_path_factory.mktemp("redis-tls")
    paths = {"ca": where / "ca.pem", "cert": where / "cert.pem", "key": where / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


async def test_tls_with_a_custom_ca(tls_material: dict[str, Path]) -> None:
    server = ConfiguredRedis(
        tls=True,
        extra=[
            "--tls-cert-file", str(tls_material["cert"]),
            "--tls-key-file", str(tls_material["key"]),
            "--tls-ca-cert-file", str(tls_material["ca"]),
            "--tls-auth-clients", "no",
        ],
    ).start()  # fmt: skip
    try:
        base = f"rediss://{server.host}:{server.port}/0"
        coord = connect(f"{base}?ssl_ca_certs={tls_material['ca']}")
        try:
            await enqueue_and_read_back(coord)
        finally:
            await coord.aclose()
        # the same server is refused without the CA: verification is on by default
        untrusted = connect(base, retries=0)
        try:
            assert not await untrusted.ping()
        finally:
            await untrusted.aclose()
        # the CA can come from config instead of the URL
        configured = connect(base, ca_file=str(tls_material["ca"]))
        try:
            assert await configured.ping()
        finally:
            await configured.aclose()
    finally:
        server.cleanup()


async def test_sentinel_url_finds_the_master(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor kuik-master {redis_server.host} {redis_server.port} 1\n"
    )
    sentinel = await asyncio.create_subprocess_exec(
        "redis-server", str(conf), "--sentinel",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 10)
        coord = connect(
            f"redis+sentinel://127.0.0.1:{port}/kuik-master", prefix="kuik-sentinel-test:"
        )
        try:
            await enqueue_and_read_back(coord)
            direct = connect(redis_server.url, prefix="kuik-sentinel-test:")
            assert await direct.redis.xlen(direct.keys.lane("probe", ROUTINE)) == 1  # same server
            await direct.redis.delete(direct.keys.lane("probe", ROUTINE))
            await direct.aclose()
        finally:
            await coord.aclose()
    finally:
        sentinel.kill()
        await sentinel.wait()


async def test_sentinel_failover_keeps_the_queue(tmp_path: Path) -> None:
    """The master dies; Sentinel promotes its replica; the same client carries on, with the jobs
    that were replicated before the crash."""
    master = ConfiguredRedis(extra=["--repl-diskless-sync-delay", "0"]).start()
    replica = ConfiguredRedis(extra=["--replicaof", master.host, str(master.port)]).start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor kuik-ha {master.host} {master.port} 1\n"
        "sentinel down-after-milliseconds kuik-ha 300\n"
        "sentinel failover-timeout kuik-ha 2000\n"
    )
    sentinel = await asyncio.create_subprocess_exec(
        "redis-server", str(conf), "--sentinel",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    coord = connect(f"redis+sentinel://127.0.0.1:{port}/kuik-ha", retries=5)
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 10)
        queue = JobQueue(coord, "probe", [Ping])
        await queue.enqueue_many([Ping(n=i) for i in range(10)])
        # the replica has every write before the crash (replication is asynchronous otherwise)
        while await coord.redis.wait(1, 1000) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        master.kill()
        probe = connect(f"redis://127.0.0.1:{port}/0")
        try:
            while True:  # Sentinel's own clock decides: poll until it names the replica
                address: Any = await probe.redis.sentinel_get_master_addr_by_name("kuik-ha")
                if address and int(address[1]) == replica.port:
                    break
                await asyncio.sleep(0.1)
        finally:
            await probe.aclose()
        while True:  # the promoted replica may still be read-only for a moment
            try:
                assert await queue.enqueue(Ping(n=10)) is Enqueued.QUEUED
                break
            except ReadOnlyError:
                await asyncio.sleep(0.1)
        assert (await queue.stats()).lanes[ROUTINE].ready == 11
    finally:
        await coord.aclose()
        sentinel.kill()
        await sentinel.wait()
        replica.cleanup()
        master.cleanup()
