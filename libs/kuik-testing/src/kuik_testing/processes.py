"""Run a kuik service's console script as a real process, for end-to-end tests and benchmarks.

`ServiceProcess("replicator", ["--cluster", "dir:/x", ...])` starts `kuik-replicator` from the
current virtualenv on a free metrics port, `wait_ready()` polls `/readyz`, `stop()` sends SIGTERM
(then SIGKILL after a grace), `kill()` sends SIGKILL at once, `wait()` waits for a process that
exits by itself (a startup error). Output goes to a log file kept for assertions and for debugging
a failed test (`.log_text()`). `command=` runs another program on the same terms (a throwaway
service script built on `kuikcore.service`); `metrics_via_env=True` hands it the metrics address
through `KUIK_METRICS_LISTEN` instead of `--metrics-listen`. `sample(name, **labels)` reads one
value off `/metrics`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from kuik_testing.ports import free_port

__all__ = ["ServiceProcess", "bin_path"]


def bin_path(name: str) -> Path:
    """A console script of the running virtualenv (`kuik`, `kuik-replicator`, ...)."""
    return Path(sys.executable).parent / name


class ServiceProcess:
    """One `kuik-<service>` process."""

    def __init__(
        self,
        service: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        command: Sequence[str] | None = None,
        metrics_via_env: bool = False,
    ) -> None:
        self.service = service
        self.port = free_port()
        listen = f"127.0.0.1:{self.port}"
        self.args = [
            *(command or [str(bin_path(f"kuik-{service}"))]),
            "--log-format",
            "json",
            *([] if metrics_via_env else ["--metrics-listen", listen]),
            *args,
        ]
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
        if metrics_via_env:
            self.env["KUIK_METRICS_LISTEN"] = listen
        handle, name = tempfile.mkstemp(prefix=f"kuik-{service}-", suffix=".log", dir=log_dir)
        os.close(handle)
        self.log_path = Path(name)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"kuik-{self.service} exited:\n{self.log_text()[-4000:]}")
            try:
                status, _ = self.get("/readyz")
            except OSError:
                status = 0
            if status == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"kuik-{self.service} not ready in {timeout}s:\n{self.log_text()[-4000:]}"
        )

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def sample(self, name: str, **labels: str) -> float | None:
        """The value of one sample on `/metrics` (full name, exact labels), None when absent."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def wait(self, timeout: float = 30.0) -> int:
        """The exit status of a process that ends by itself (raises TimeoutExpired otherwise)."""
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
