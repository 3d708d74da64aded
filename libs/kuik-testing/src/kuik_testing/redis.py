"""A real `redis-server` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kuik_testing.ports import free_port, wait_for_port
from kuik_testing.server import ServerProcess


@dataclass
class RedisServer(ServerProcess):
    """One throwaway redis-server. `aof=True` keeps writes across `restart()`.

    The process can be stopped, killed and restarted on the same port and data
    directory, which is what the degradation tests need.
    """

    aof: bool = False
    password: str | None = None
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuik-redis-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make install`")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.aof else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL)
        try:
            wait_for_port(self.host, self.port, timeout=10)
        except TimeoutError:
            self.stop()
            log = (self.workdir / "redis.log").read_text(errors="replace")
            raise RuntimeError(f"redis-server did not start: {log[-2000:]}") from None
        return self

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
