"""kuik's whole stack as local processes: redis-server, two docker-registry processes (A and B)
and the three services in local mode on one cluster directory.

Everything it starts lives under one work directory and is stopped by `stop()`, which is safe
to call at any point of `start()` and more than once. Ports are free ones unless given
(`make dev` uses fixed ones so that `examples/cluster/` works as written).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kuik_testing.demo.manifests import STACK_CONFIG
from kuik_testing.ports import free_port
from kuik_testing.processes import ServiceProcess
from kuik_testing.redis import RedisServer
from kuik_testing.registry import RegistryServer

__all__ = ["SERVICES", "LocalStack", "Ports"]

SERVICES = ("replicator", "monitor", "webhook")


@dataclass(frozen=True)
class Ports:
    """Where each part listens on 127.0.0.1; 0 = a free port."""

    redis: int = 0
    registry_a: int = 0
    registry_b: int = 0
    webhook: int = 0
    metrics: dict[str, int] = field(default_factory=dict)  # service -> metrics port

    @classmethod
    def fixed(cls) -> Ports:
        """The ports docker-compose publishes and `examples/cluster/` refers to."""
        return cls(6379, 5001, 5002, 9443, {"webhook": 8080, "replicator": 8081, "monitor": 8082})


def _or_free(port: int) -> int:
    return port or free_port()


@dataclass
class LocalStack:
    """The processes of one local kuik installation (see the module docstring)."""

    cluster_dir: Path | None = None  # default: <workdir>/cluster
    ports: Ports = field(default_factory=Ports)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuik-demo-")))
    keep_workdir: bool = False
    redis: RedisServer | None = field(default=None, init=False)
    registry_a: RegistryServer | None = field(default=None, init=False)
    registry_b: RegistryServer | None = field(default=None, init=False)
    services: dict[str, ServiceProcess] = field(default_factory=dict, init=False)
    webhook_port: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.cluster_dir is None:
            self.cluster_dir = self.workdir / "cluster"
        self.cluster_dir.mkdir(parents=True, exist_ok=True)

    @property
    def cluster(self) -> Path:
        assert self.cluster_dir is not None
        return self.cluster_dir

    @property
    def ca_file(self) -> Path:
        """The CA that signed the webhook's serving certificate (what `caBundle` would hold)."""
        return self.workdir / "tls" / "ca.crt"

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}/mutate"

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.services[service].port}"

    def start_servers(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """Redis and the two registries (plain HTTP on loopback, like `docker run registry:2`)."""
        self.redis = RedisServer(port=_or_free(self.ports.redis), workdir=self._dir("redis"))
        self.redis.start()
        on_step(f"redis-server on 127.0.0.1:{self.redis.port}")
        for name in ("a", "b"):
            port = _or_free(getattr(self.ports, f"registry_{name}"))
            server = RegistryServer(port=port, workdir=self._dir(f"registry-{name}"))
            setattr(self, f"registry_{name}", server)
            server.start()
            on_step(f"registry {name.upper()} (docker-registry) on {server.host}")

    def start_services(self, on_step: Callable[[str], None] = lambda _: None) -> None:
        """The three services, in local mode on the cluster directory, each waited ready."""
        assert self.redis is not None
        config = self.workdir / "config.yaml"
        config.write_text(yaml.safe_dump(STACK_CONFIG, sort_keys=False))
        common = [
            "--config", str(config),
            "--cluster", f"dir:{self.cluster}",
            "--redis-url", self.redis.url,
        ]  # fmt: skip
        for service in SERVICES:
            args = list(common)
            if service == "webhook":
                cert, key = self._webhook_certificate()
                self.webhook_port = _or_free(self.ports.webhook)
                args += ["--tls-cert", str(cert), "--tls-key", str(key)]
                args += ["--listen", f"127.0.0.1:{self.webhook_port}"]
            process = ServiceProcess(service, args, log_dir=self._dir("logs"))
            metrics_port = self.ports.metrics.get(service)
            if metrics_port:
                process.port = metrics_port
                process.args[process.args.index("--metrics-listen") + 1] = (
                    f"127.0.0.1:{metrics_port}"
                )
            self.services[service] = process
            process.start()
        for service, process in self.services.items():
            process.wait_ready()
            on_step(f"kuik-{service} ready, metrics on 127.0.0.1:{process.port}")

    def _webhook_certificate(self) -> tuple[Path, Path]:
        import trustme  # dev dependency, like the other test servers' certificates

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        directory = self._dir("tls")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(directory / "tls.key"))
        cert.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
        return directory / "tls.crt", directory / "tls.key"

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stop(self) -> None:
        """Stop everything started so far (services first, SIGTERM then SIGKILL), remove the work
        directory unless `keep_workdir`."""
        for process in reversed(list(self.services.values())):
            with contextlib.suppress(Exception):
                process.stop(grace=8)
        for server in (self.registry_a, self.registry_b, self.redis):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
