"""A real Prometheus server (Debian's `prometheus` package) on a free loopback port, and promtool.

`PrometheusServer` scrapes the given targets and evaluates the given rule files every
`interval` (1 s by default, so alerts with a short `for` fire within seconds); tests read what it
sees through its HTTP API (`query`, `alerts`, `wait_for_alert`). `promtool(...)` runs Debian's
promtool. Both are installed by `make install` (scripts/install-system-packages.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kuik_testing.ports import free_port
from kuik_testing.server import ServerProcess

__all__ = ["PrometheusServer", "promtool"]

JSON = dict[str, Any]


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (Debian's prometheus): run `make install`")
    return found


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `promtool ARGS...`; the caller checks `returncode` and reads stdout/stderr."""
    return subprocess.run(
        [_binary("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


@dataclass
class PrometheusServer(ServerProcess):
    """One throwaway Prometheus: `targets` is job name -> ["host:port", ...] scraped on
    `/metrics` over plain HTTP; `rule_files` are loaded as they are."""

    targets: dict[str, list[str]] = field(default_factory=dict)
    rule_files: Sequence[Path] = ()
    interval: str = "1s"
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuik-prom-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config(self) -> JSON:
        """The generated prometheus.yml."""
        return {
            "global": {
                "scrape_interval": self.interval,
                "scrape_timeout": self.interval,
                "evaluation_interval": self.interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in self.targets.items()
            ],
        }

    def start(self) -> PrometheusServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = (self.workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--web.listen-address={self.host}:{self.port}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus did not start: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH and return its `data`; raises on an API error."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as answer:
            body: JSON = json.load(answer)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[JSON]:
        """An instant query now: its vector (or a one-element list for a scalar)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            result: list[JSON] = data["result"]
            return result
        return [{"metric": {}, "value": data["result"]}]

    def alerts(self) -> list[JSON]:
        """Every pending and firing alert."""
        alerts: list[JSON] = self.api("alerts")["alerts"]
        return alerts

    def wait_for_alert(
        self, name: str, state: str = "firing", timeout: float = 60.0, **labels: str
    ) -> JSON:
        """The first alert `name` in `state` whose labels include `labels`, polling until then."""
        deadline = time.monotonic() + timeout
        seen: list[JSON] = []
        while time.monotonic() < deadline:
            seen = self.alerts()
            for alert in seen:
                wanted = {"alertname": name, **labels}
                if alert["state"] == state and wanted.items() <= alert["labels"].items():
                    return alert
            time.sleep(0.5)
        raise TimeoutError(f"no {state} alert {name} {labels} within {timeout:g}s; saw {seen}")

    def wait_scraped(self, timeout: float = 30.0) -> None:
        """Until every target has been scraped successfully once."""
        deadline = time.monotonic() + timeout
        targets: list[JSON] = []
        while time.monotonic() < deadline:
            targets = self.api("targets")["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.3)
        raise TimeoutError(f"targets not all up within {timeout:g}s: {targets}")

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
