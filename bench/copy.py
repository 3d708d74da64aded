"""`kuik copy` against `skopeo copy` between two local docker-registry processes.

Image: a synthetic 2-platform OCI index, 5 layers x 20 MiB per platform (200 MiB of blobs).
Runs, alternated kuik/skopeo, each into a fresh destination registry (so neither tool finds
a blob already there, and skopeo's blob-info cache knows nothing about the new port):

- `--all` (whole index, verbatim): medians and the kuik/skopeo ratio (target <= 0.8), and the
  same copy through `registry.copy` in this process, which separates the copy from the
  CLI's fixed cost (interpreter start-up, imports, teardown);
- `--platform linux/amd64` (kuik; skopeo has no filtered-index mode, its single-platform copy
  `--override-arch amd64` is shown for reference);
- a second `--all` copy into a destination that already holds everything (no layer bytes);
- peak RSS of `kuik copy` on an image with one 1 GiB layer (target < 100 MiB), skopeo's too.

Both tools run as commands (process start-up included), with their wall time from the parent.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kuik_testing.images import push_image, synthetic_image, synthetic_index
from kuik_testing.registry import RegistryServer

MiB = 1024 * 1024
ROUNDS = int(os.environ.get("KUIK_BENCH_ROUNDS", "3"))
KUIK = str(Path(sys.executable).with_name("kuik"))


def _run(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB of the command itself, stdout).

    A child's `ru_maxrss` starts at its parent's RSS at fork time (before exec), so the peak
    comes from `/usr/bin/time -f %M` (a tiny parent) when it exists, else from wait4.
    """
    timer = shutil.which("time", path="/usr/bin")
    with tempfile.NamedTemporaryFile() as peak, tempfile.TemporaryFile() as errors:
        wrapped = [timer, "-q", "-f", "%M", "-o", peak.name, *cmd] if timer else cmd
        started = time.monotonic()
        process = subprocess.Popen(wrapped, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        stdout = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read()
        rss = int(Path(peak.name).read_text().split()[-1]) if timer else usage.ru_maxrss
    if process.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return seconds, rss, stdout.decode()


def _kuik(src: str, dst: str, *extra: str) -> tuple[float, int, dict[str, Any]]:
    seconds, rss, out = _run([KUIK, "copy", src, dst, "--json", *extra])
    return seconds, rss, json.loads(out)


def _skopeo(src: str, dst: str, *extra: str) -> tuple[float, int]:
    seconds, rss, _ = _run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *extra,
            f"docker://{src}",
            f"docker://{dst}",
        ]
    )
    return seconds, rss


def _fresh() -> RegistryServer:
    return RegistryServer().start()


class _Fresh:
    """An empty destination registry for one measurement, removed afterwards."""

    def __enter__(self) -> RegistryServer:
        self.server = _fresh()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.cleanup()


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run() -> dict[str, Any]:
    if shutil.which("skopeo") is None:
        return {"skipped": "skopeo not installed"}
    load_before = os.getloadavg()[0]
    source = _fresh()
    try:
        index = synthetic_index(
            "bench-copy", platforms=("linux/amd64", "linux/arm64"), layers=5, layer_size=20 * MiB
        )
        push_image(source, "bench/app", "v1", index)
        src = f"{source.host}/bench/app:v1"
        blob_bytes = sum(b.size for b in index.blobs)

        kuik_all: list[float] = []
        kuik_inprocess: list[float] = []
        skopeo_all: list[float] = []
        kuik_platform: list[float] = []
        skopeo_single: list[float] = []
        second: dict[str, Any] = {}
        for _ in range(ROUNDS):
            with _Fresh() as destination:
                seconds, _, result = _kuik(src, f"{destination.host}/m/app:v1", "--all")
                assert result["digest"] == index.digest
                assert result["bytesMoved"] == blob_bytes
                kuik_all.append(seconds)
                again, _, repeat = _kuik(src, f"{destination.host}/m/app:v1", "--all")
                second = {"seconds": round(again, 3), "bytes_moved": repeat["bytesMoved"]}
            with _Fresh() as destination:
                skopeo_all.append(_skopeo(src, f"{destination.host}/m/app:v1", "--all")[0])
            with _Fresh() as destination:
                kuik_inprocess.append(_copy_in_process(src, f"{destination.host}/m/app:v1"))
            with _Fresh() as destination:
                seconds, _, result = _kuik(
                    src, f"{destination.host}/m/amd64:v1", "--platform", "linux/amd64"
                )
                kuik_platform.append(seconds)
            with _Fresh() as destination:
                single = ("--override-os", "linux", "--override-arch", "amd64")
                skopeo_single.append(_skopeo(src, f"{destination.host}/m/amd64:v1", *single)[0])

        oras = _oras_comparison(source, index)
        rss = _peak_rss(source)
        kuik_median, skopeo_median = _median(kuik_all), _median(skopeo_all)
        return {
            "image": f"2-platform OCI index, 5 x 20 MiB layers each ({blob_bytes / MiB:.0f} MiB)",
            "rounds": ROUNDS,
            "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "all_kuik_s": kuik_median,
            "all_skopeo_s": skopeo_median,
            "all_ratio": round(kuik_median / skopeo_median, 3),
            "all_kuik_runs": [round(s, 3) for s in kuik_all],
            # the same copy inside an already started Python process: what the CLI's
            # interpreter start-up, imports and teardown add is the difference
            "all_kuik_in_process_s": _median(kuik_inprocess),
            "all_kuik_in_process_ratio": round(_median(kuik_inprocess) / skopeo_median, 3),
            "kuik_cli_fixed_cost_s": round(kuik_median - _median(kuik_inprocess), 3),
            **_import_costs(),
            "all_skopeo_runs": [round(s, 3) for s in skopeo_all],
            "platform_amd64_kuik_s": _median(kuik_platform),
            "single_amd64_skopeo_s": _median(skopeo_single),
            "second_copy_kuik": second,
            **oras,
            **rss,
        }
    finally:
        source.cleanup()


def _import_costs() -> dict[str, float]:
    """Wall time of a process that only imports what `kuik copy` needs, then exits."""
    runs: list[float] = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", "import kuikcore.cli.copy, kuikcore.registry"], check=True
        )
        runs.append(time.monotonic() - started)
    return {"kuik_imports_and_exit_s": _median(runs)}


def _copy_in_process(src: str, dst: str) -> float:
    """`--all` through `registry.copy` in this process (no interpreter start, no imports)."""
    import asyncio

    from kuikcore import registry

    async def copy() -> float:
        async with registry.RegistryClient() as client:
            started = time.monotonic()
            await registry.copy(client, src, dst, all_platforms=True)
            return time.monotonic() - started

    return asyncio.run(copy())


def _oras_comparison(source: RegistryServer, index: Any) -> dict[str, Any]:
    """oras-py (sync, requests) against kuik's client on the same two jobs.

    1. 100 manifest GETs, one after the other (oras) vs one after the other and all at once
       (kuik); 2. one 20 MiB layer between registries: oras can only go through a file
       (`download_blob` then `upload_blob`), kuik streams it (whole single-layer image copied,
       in-process like oras: no CLI start-up on either side).
    """
    import asyncio

    import oras.provider

    from kuikcore.registry import RegistryClient

    ref = f"{source.host}/bench/app:v1"
    count = 100
    registry = oras.provider.Registry(hostname=source.host, insecure=True)
    started = time.monotonic()
    for _ in range(count):
        registry.get_manifest(ref)
    oras_ms = (time.monotonic() - started) * 1000 / count

    async def kuik_reads() -> tuple[float, float]:
        async with RegistryClient() as client:
            started = time.monotonic()
            for _ in range(count):
                await client.get_manifest(ref)
            sequential = time.monotonic() - started
            started = time.monotonic()
            await asyncio.gather(*(client.get_manifest(ref) for _ in range(count)))
            return sequential, time.monotonic() - started

    sequential, concurrent = asyncio.run(kuik_reads())
    layer = index.children[0].layers[0].blob
    destination = _fresh()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            path = registry.download_blob(ref, layer.digest, f"{tmp}/blob")
            target = oras.provider.Registry(hostname=destination.host, insecure=True)
            response = target.upload_blob(
                path,
                f"{destination.host}/oras/blob:v1",
                {
                    "digest": layer.digest,
                    "size": layer.size,
                    "mediaType": "application/octet-stream",
                },
            )
            response.raise_for_status()
            oras_blob = time.monotonic() - started
        single = synthetic_image("bench-oras", layers=1, layer_size=20 * MiB)
        push_image(source, "bench/single", "v1", single)

        kuik_blob = _copy_in_process(
            f"{source.host}/bench/single:v1", f"{destination.host}/k/single:v1"
        )
    finally:
        destination.cleanup()
    return {
        "manifest_get_oras_ms": round(oras_ms, 2),
        "manifest_get_kuik_sequential_ms": round(sequential * 1000 / count, 2),
        "manifest_get_kuik_concurrent_ms": round(concurrent * 1000 / count, 2),
        "blob_20mib_oras_via_file_s": round(oras_blob, 3),
        "image_20mib_kuik_streamed_s": round(kuik_blob, 3),
    }


def _peak_rss(source: RegistryServer) -> dict[str, Any]:
    image = synthetic_image("bench-big", layers=1, layer_size=1024 * MiB)
    push_image(source, "bench/big", "v1", image)
    src = f"{source.host}/bench/big:v1"
    kuik_runs: list[tuple[float, int]] = []
    skopeo_runs: list[tuple[float, int]] = []
    for _ in range(2):
        with _Fresh() as destination:
            seconds, rss, result = _kuik(src, f"{destination.host}/m/big:v1")
            assert result["bytesMoved"] == sum(b.size for b in image.blobs)
            kuik_runs.append((seconds, rss))
        with _Fresh() as destination:
            skopeo_runs.append(_skopeo(src, f"{destination.host}/m/big:v1"))
    seconds = min(s for s, _ in kuik_runs)
    kuik_rss = max(r for _, r in kuik_runs)
    skopeo_seconds = min(s for s, _ in skopeo_runs)
    skopeo_rss = max(r for _, r in skopeo_runs)
    return {
        "big_layer_kuik_peak_rss_mib": round(kuik_rss / 1024, 1),
        "big_layer_kuik_s": round(seconds, 3),
        "big_layer_skopeo_peak_rss_mib": round(skopeo_rss / 1024, 1),
        "big_layer_skopeo_s": round(skopeo_seconds, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
