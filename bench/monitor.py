"""kuik-monitor at scale: 10,000 tracked images over 50 registry hosts, budgets that bind.

Real parts only: one `redis-server`, 50 `docker-registry` processes (one per host, distinct
ports; 200 tags of one small image each), the Kubernetes API fake as a process
(`python -m kuik_testing.apiserver`) holding 1,000 Pods of 10 containers and one CISA
selecting them all, and `kuik-monitor --cluster kubernetes` as the leader under measure.

Budgets: every host `interval 20s, maxPerInterval 4` (one check per host every 5 s, 10 checks/s
in all), so a full round of 200 images per host would take 1,000 s: the budget binds throughout.

Reported: the leader's peak RSS (VmHWM), its CPU seconds over a steady-state window extrapolated
to one hour (the run is shorter than an hour: the figure is a linear extrapolation and says so),
and budget adherence from the registries' own request logs: the most monitor manifest requests
any host answered within any window of `interval`, which must be <= maxPerInterval.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from kuik_testing import objects
from kuik_testing.images import push_image, synthetic_image
from kuik_testing.processes import ServiceProcess
from kuik_testing.redis import RedisServer
from kuik_testing.registry import RegistryServer, max_in_window

HOSTS = int(os.environ.get("KUIK_BENCH_MONITOR_HOSTS", "50"))
IMAGES = int(os.environ.get("KUIK_BENCH_MONITOR_IMAGES", "10000"))
CONTAINERS_PER_POD = 10
INTERVAL = 20.0
MAX_PER_INTERVAL = 4
WINDOW = float(os.environ.get("KUIK_BENCH_MONITOR_SECONDS", "120"))
WARMUP_TIMEOUT = 300.0
# Run the monitor from another source tree (e.g. an exported older commit) for before/after
# comparisons on the same machine: its src directories, put ahead of the installed packages.
MONITOR_PYTHONPATH = os.environ.get("KUIK_BENCH_MONITOR_PYTHONPATH", "")


def _start_registries(count: int) -> list[RegistryServer]:
    servers = [RegistryServer() for _ in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: s.start(), servers))
    return servers


def _fill(registry: RegistryServer, tags: int) -> None:
    """One small image, tagged `tags` times (a manifest PUT per tag: the blobs are shared)."""
    image = synthetic_image(f"bench-{registry.port}", layers=1, layer_size=512)
    push_image(registry, "bench/app", "t0", image)
    with registry.client() as client:
        for n in range(1, tags):
            response = client.request(
                "PUT",
                f"/v2/bench/app/manifests/t{n}",
                headers={"Content-Type": image.media_type},
                body=image.manifest_bytes,
            )
            assert response.status == 201, response.status


def _image(registries: list[RegistryServer], index: int) -> str:
    return f"{registries[index % len(registries)].host}/bench/app:t{index // len(registries)}"


class _Api:
    """Object creation on the API fake over plain HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer fake-token"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def _populate(api: _Api, registries: list[RegistryServer]) -> None:
    api.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
    )
    pods = IMAGES // CONTAINERS_PER_POD
    for p in range(pods):
        images = [_image(registries, p * CONTAINERS_PER_POD + c) for c in range(CONTAINERS_PER_POD)]
        api.post(
            "/api/v1/namespaces/bench/pods",
            objects.pod(*images, namespace="bench", name=f"pod-{p}", status={"phase": "Running"}),
        )
    api.post(
        "/apis/kuik.enix.io/v1alpha1/clusterimagesetavailabilities",
        objects.cisa("all", filter=objects.all_images()),
    )


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used so far, peak RSS in bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return cpu, hwm


def _check_times(registry: RegistryServer) -> list[float]:
    """When the monitor's manifest requests arrived, from the registry's own request log."""
    return sorted(
        r.arrived
        for r in registry.requests()
        if r.user_agent.startswith("kuik-monitor") and "/manifests/" in r.path and r.arrived
    )


def _min_gap(times: list[float]) -> float | None:
    return min((b - a for a, b in itertools.pairwise(times)), default=None)


def _scrape(monitor: ServiceProcess, name: str) -> float:
    total = 0.0
    for line in monitor.metrics().splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kuik-bench-monitor-") as tmp:
        root = Path(tmp)
        redis = RedisServer()
        redis.start()
        registries: list[RegistryServer] = []
        apiserver: subprocess.Popen[str] | None = None
        monitor: ServiceProcess | None = None
        try:
            started = time.monotonic()
            registries = _start_registries(HOSTS)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda r: _fill(r, -(-IMAGES // HOSTS)), registries))
            kubeconfig = root / "kubeconfig"
            apiserver = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kuik_testing.apiserver",
                    "--kubeconfig",
                    str(kubeconfig),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # its watch streams complain when clients go away
                text=True,
            )
            assert apiserver.stdout is not None
            api = _Api(apiserver.stdout.readline().strip())
            _populate(api, registries)
            setup_seconds = time.monotonic() - started

            config = {
                "monitoring": {
                    "registries": {
                        "default": {
                            "interval": f"{INTERVAL:g}s",
                            "maxPerInterval": MAX_PER_INTERVAL,
                            "timeout": "5s",
                        }
                    }
                }
            }
            (root / "config.yaml").write_text(yaml.safe_dump(config))
            monitor = ServiceProcess(
                "monitor",
                [
                    "--config",
                    str(root / "config.yaml"),
                    "--cluster",
                    "kubernetes",
                    "--redis-url",
                    redis.url,
                ],
                env={"KUBECONFIG": str(kubeconfig)}
                | ({"PYTHONPATH": MONITOR_PYTHONPATH} if MONITOR_PYTHONPATH else {}),
                log_dir=root,
            ).start()
            monitor.wait_ready(120)
            ready_at = time.monotonic()
            # warm-up: the leader has tracked every image (the status lists them all)
            deadline = time.monotonic() + WARMUP_TIMEOUT
            while _scrape(monitor, "kube_image_keeper_monitoring_images") < IMAGES:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not all images tracked:\n{monitor.log_text()[-3000:]}")
                time.sleep(1.0)
            tracked_after = time.monotonic() - ready_at
            cpu0, _ = _proc_stat(monitor.pid)
            checks0 = sum(len(_check_times(r)) for r in registries)
            t0 = time.monotonic()
            wall0 = time.time()
            time.sleep(WINDOW)
            elapsed = time.monotonic() - t0
            cpu1, hwm = _proc_stat(monitor.pid)
            per_host = [_check_times(r) for r in registries]
            checks = sum(len(t) for t in per_host) - checks0
            # only the window's checks: the first checks after start-up all happened at once
            in_window = [[x for x in t if x >= wall0] for t in per_host]
            worst = max(max_in_window(t, INTERVAL) for t in in_window)
            gaps = [g for t in in_window if (g := _min_gap(t)) is not None]
            checked = _scrape(monitor, "kube_image_keeper_monitoring_images") - sum(
                float(line.rsplit(" ", 1)[1])
                for line in monitor.metrics().splitlines()
                if line.startswith("kube_image_keeper_monitoring_images{")
                and 'status="Scheduled"' in line
            )
            return {
                "hosts": HOSTS,
                "images": IMAGES,
                "budget": f"{MAX_PER_INTERVAL} per {INTERVAL:g}s per host",
                "setup_seconds": round(setup_seconds, 1),
                "tracked_all_after_seconds": round(tracked_after, 1),
                "window_seconds": round(elapsed, 1),
                "checks_in_window": checks,
                "checks_per_second": round(checks / elapsed, 2),
                "budget_checks_per_second": round(HOSTS * MAX_PER_INTERVAL / INTERVAL, 2),
                "images_checked_at_least_once": int(checked),
                "leader_peak_rss_mib": round(hwm / 2**20, 1),
                "leader_cpu_seconds_in_window": round(cpu1 - cpu0, 2),
                "leader_cpu_seconds_per_hour_extrapolated": round(
                    (cpu1 - cpu0) * 3600 / elapsed, 1
                ),
                "max_checks_per_host_per_interval": worst,
                "max_per_interval": MAX_PER_INTERVAL,
                "min_seconds_between_checks_of_a_host": round(min(gaps), 3) if gaps else None,
                "tick_seconds": INTERVAL / MAX_PER_INTERVAL,
                "budget_respected": worst <= MAX_PER_INTERVAL,
                "load_average": os.getloadavg()[0],
                "monitor_pythonpath": MONITOR_PYTHONPATH or None,
            }
        finally:
            if monitor is not None:
                monitor.stop()
            if apiserver is not None:
                apiserver.terminate()
                apiserver.wait(10)
            for registry in registries:
                registry.stop()
                registry.cleanup()
            redis.stop()


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
