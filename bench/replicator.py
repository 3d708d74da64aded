"""kuik-replicator on a burst of 50 images, against `skopeo copy` in a serial loop and with `xargs -P4`.

Images: 50 distinct single-platform images sharing 3 base layers (3 x 8 MiB shared + 2 x 2 MiB
unique each: 224 MiB of unique blobs), in one local docker-registry. Each run mirrors all 50 into a
fresh, empty docker-registry; modes are interleaved round by round:

- `skopeo-serial`: `for each image: skopeo copy` (one process per image);
- `skopeo-xargs4`: the same list through `xargs -P4`;
- `kuik-1x4`: one `kuik-replicator` process with 4 workers (local mode, its own Redis prefix);
- `kuik-2x4`: two processes with 4 workers each, shipped defaults: `maxConcurrentPerRegistry` 4,
  so the two share 4 copies at a time (what the cap is for: replicas never flood a registry);
- `kuik-2x4-cap8`: the same with the cap raised to 8, every worker copying at once (no target:
  shows what more concurrency than the machine has cores costs).

skopeo keeps its blob-info cache in `/var/lib/containers/cache` whatever HOME says, so every skopeo
run happens in a private mount namespace (`unshare -m`) with an empty directory bind-mounted there.
kuik time = from writing the 50 Pods until the CR status shows all 50 mirrored (processes already
started and ready, as in a cluster). CPU seconds: the copier (skopeo processes, or the replicator
processes) and each registry, from /proc and rusage. Medians of `KUIK_BENCH_ROUNDS` (default 3).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kuik_testing import objects
from kuik_testing.images import make_layer, push_image, synthetic_image
from kuik_testing.processes import ServiceProcess
from kuik_testing.redis import RedisServer
from kuik_testing.registry import RegistryServer

MiB = 1024 * 1024
ROUNDS = int(os.environ.get("KUIK_BENCH_ROUNDS", "3"))
IMAGES = 50
SKOPEO_CACHE = Path("/var/lib/containers/cache")
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _registry_pid(server: RegistryServer) -> int:
    assert server.process is not None
    return server.process.pid


def _publish(source: RegistryServer) -> list[str]:
    base = [make_layer(f"bench/base/{i}", 8 * MiB) for i in range(3)]
    names = []
    for i in range(IMAGES):
        image = synthetic_image(f"bench-{i}", layers=2, layer_size=2 * MiB, base_layers=base)
        push_image(source, f"burst/app{i}", "1", image)
        names.append(f"burst/app{i}:1")
    return names


def _skopeo(source: RegistryServer, dest: RegistryServer, names: list[str], parallel: int) -> str:
    pairs = "\n".join(f"docker://{source.host}/{n} docker://{dest.host}/m/{n}" for n in names)
    copy = "skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false"
    if parallel > 1:
        return f"printf '%s\\n' '{pairs}' | xargs -P{parallel} -L1 {copy}"
    return f"printf '%s\\n' '{pairs}' | while read src dst; do {copy} $src $dst || exit 1; done"


def run_skopeo(
    source: RegistryServer, names: list[str], parallel: int, work: Path
) -> dict[str, float]:
    with RegistryServer() as dest:
        empty = Path(tempfile.mkdtemp(dir=work))
        script = f"mount --bind {empty} {SKOPEO_CACHE} && {_skopeo(source, dest, names, parallel)}"
        regs = {"source": _registry_pid(source), "dest": _registry_pid(dest)}
        before = {k: _cpu(p) for k, p in regs.items()}
        children = _children_cpu()
        started = time.monotonic()
        subprocess.run(["unshare", "-m", "sh", "-c", script], check=True)
        seconds = time.monotonic() - started
        copier = _children_cpu() - children
        after = {k: _cpu(p) for k, p in regs.items()}
        missing = [
            n
            for n in names
            if dest.count_requests("PUT", rf"/v2/m/{n.split(':')[0]}/manifests/") != 1
        ]
        if missing:
            raise RuntimeError(f"skopeo did not copy {missing[:3]}")
        shutil.rmtree(empty, ignore_errors=True)
    return {
        "seconds": seconds,
        "copier_cpu": copier,
        "source_cpu": after["source"] - before["source"],
        "dest_cpu": after["dest"] - before["dest"],
    }


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StatusWatch:
    """How many mirrors the CR status shows as mirrored, re-read only when the file changed.

    The harness shares the 2 cores with what it measures: parsing the status YAML (pure-Python
    loader) every 20 ms cost ~0.5 core during a run, so it stats first and parses with libyaml.
    """

    def __init__(self, status_file: Path) -> None:
        self.status_file = status_file
        self.seen: tuple[int, int, int] | None = None
        self.mirrored = 0

    def poll(self) -> int:
        try:
            stat = self.status_file.stat()
        except OSError:
            return self.mirrored
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) == self.seen:
            return self.mirrored
        try:
            doc = yaml.load(self.status_file.read_text(), Loader=_LOADER) or {}
        except (OSError, yaml.YAMLError):
            return self.mirrored  # caught mid-write: read again next time
        self.seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        entries = (doc.get("status") or {}).get("matchingImages") or ()
        self.mirrored = sum(
            1 for e in entries for m in e.get("mirrors") or () if m.get("mirroredAt")
        )
        return self.mirrored


def run_kuik(
    source: RegistryServer,
    names: list[str],
    processes: int,
    redis: RedisServer,
    work: Path,
    round_no: int,
    cap: int | None = None,
) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(dir=work))
    cluster = root / "cluster"
    cluster.mkdir()
    prefix = f"bench{round_no}x{processes}c{cap or 0}:"
    mirroring: dict[str, Any] = {
        "platforms": [{"os": "linux", "architecture": "amd64"}],
        "resyncInterval": "30s",
    }
    if cap is not None:
        mirroring["maxConcurrentPerRegistry"] = cap
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump({"redis": {"url": redis.url, "keyPrefix": prefix}, "mirroring": mirroring})
    )
    with RegistryServer() as dest:
        (cluster / "mirror.yaml").write_text(
            yaml.safe_dump(
                objects.cism("burst", objects.mirror(dest.host, "m"), filter=objects.all_images())
            )
        )
        procs = [
            ServiceProcess(
                "replicator",
                ["--config", str(config), "--cluster", f"dir:{cluster}", "--workers", "4"],
                log_dir=root,
            ).start()
            for _ in range(processes)
        ]
        try:
            for proc in procs:
                proc.wait_ready()
            time.sleep(0.5)  # let the first (empty) planning pass settle
            status = (
                cluster
                / ".kuik"
                / "resources"
                / "ClusterImageSetMirror"
                / "_cluster"
                / "burst.yaml"
            )
            regs = {"source": _registry_pid(source), "dest": _registry_pid(dest)}
            before = {k: _cpu(p) for k, p in regs.items()}
            copier_before = sum(_cpu(p.pid) for p in procs)
            pods = [
                objects.pod(
                    objects.container("c", f"{source.host}/{n}"), namespace="bench", name=f"p{i}"
                )
                for i, n in enumerate(names)
            ]
            tmp = cluster / "pods.tmp"
            tmp.write_text(yaml.safe_dump_all(pods))
            watch = _StatusWatch(status)
            started = time.monotonic()
            tmp.rename(cluster / "pods.yaml")
            deadline = started + 600
            while watch.poll() < len(names):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"kuik did not mirror everything:\n{procs[0].log_text()[-3000:]}"
                    )
                time.sleep(0.02)
            seconds = time.monotonic() - started
            copier = sum(_cpu(p.pid) for p in procs) - copier_before
            after = {k: _cpu(p) for k, p in regs.items()}
        finally:
            for proc in procs:
                proc.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "seconds": seconds,
        "copier_cpu": copier,
        "source_cpu": after["source"] - before["source"],
        "dest_cpu": after["dest"] - before["dest"],
    }


def _median(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]} | {
        "runs_seconds": [round(r["seconds"], 2) for r in runs]
    }


def run() -> dict[str, Any]:
    if shutil.which("skopeo") is None or shutil.which("unshare") is None:
        return {"skipped": "needs skopeo and unshare"}
    SKOPEO_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kuik-bench-replicator-"))
    redis = RedisServer().start()
    try:
        with RegistryServer() as source:
            names = _publish(source)
            modes: dict[str, Callable[[int], dict[str, float]]] = {
                "skopeo-serial": lambda r: run_skopeo(source, names, 1, work),
                "skopeo-xargs4": lambda r: run_skopeo(source, names, 4, work),
                "kuik-1x4": lambda r: run_kuik(source, names, 1, redis, work, r),
                "kuik-2x4": lambda r: run_kuik(source, names, 2, redis, work, r),
                "kuik-2x4-cap8": lambda r: run_kuik(source, names, 2, redis, work, r, cap=8),
            }
            results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
            for round_no in range(ROUNDS):
                for mode, fn in modes.items():
                    results[mode].append(fn(round_no))
    finally:
        redis.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    medians = {mode: _median(runs) for mode, runs in results.items()}
    serial = medians["skopeo-serial"]["seconds"]
    xargs = medians["skopeo-xargs4"]["seconds"]
    return {
        "images": IMAGES,
        "unique_blob_mib": 3 * 8 + IMAGES * 2 * 2,
        "rounds": ROUNDS,
        "load_average": os.getloadavg()[0],
        "medians": medians,
        "ratio_kuik_1x4_vs_serial": round(medians["kuik-1x4"]["seconds"] / serial, 2),
        "ratio_kuik_1x4_vs_xargs4": round(medians["kuik-1x4"]["seconds"] / xargs, 2),
        "ratio_kuik_2x4_vs_serial": round(medians["kuik-2x4"]["seconds"] / serial, 2),
        "ratio_kuik_2x4_vs_xargs4": round(medians["kuik-2x4"]["seconds"] / xargs, 2),
        "ratio_kuik_2x4_cap8_vs_serial": round(medians["kuik-2x4-cap8"]["seconds"] / serial, 2),
        "ratio_kuik_2x4_cap8_vs_xargs4": round(medians["kuik-2x4-cap8"]["seconds"] / xargs, 2),
    }
