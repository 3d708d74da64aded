"""`kuik copy` against `skopeo copy` between two local docker-registry processes.

Image: a synthetic 2-platform OCI index, 5 layers x 20 MiB per platform (200 MiB of blobs).
Runs, alternated kuik/skopeo, each into a fresh destination registry (so neither tool finds
a blob already there, and skopeo's blob-info cache knows nothing about the new port):

- `--all` (whole index, verbatim): medians and the kuik/skopeo ratio (target <= 0.8);
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
import time
from pathlib import Path
from typing import Any

from kuikcore.testing.images import push_image, synthetic_image, synthetic_index
from kuikcore.testing.registry import RegistryServer

MiB = 1024 * 1024
ROUNDS = int(os.environ.get("KUIK_BENCH_ROUNDS", "3"))
KUIK = str(Path(sys.executable).with_name("kuik"))


def _run(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB of that child alone, stdout)."""
    started = time.monotonic()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    stdout = process.stdout.read()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({process.returncode}): {stderr.decode()[-2000:]}")
    return seconds, usage.ru_maxrss, stdout.decode()


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


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run() -> dict[str, Any]:
    if shutil.which("skopeo") is None:
        return {"skipped": "skopeo not installed"}
    source = _fresh()
    try:
        index = synthetic_index(
            "bench-copy", platforms=("linux/amd64", "linux/arm64"), layers=5, layer_size=20 * MiB
        )
        push_image(source, "bench/app", "v1", index)
        src = f"{source.host}/bench/app:v1"
        blob_bytes = sum(b.size for b in index.blobs)

        kuik_all: list[float] = []
        skopeo_all: list[float] = []
        kuik_platform: list[float] = []
        skopeo_single: list[float] = []
        second: dict[str, Any] = {}
        for _ in range(ROUNDS):
            destination = _fresh()
            try:
                seconds, _, result = _kuik(src, f"{destination.host}/m/app:v1", "--all")
                assert result["digest"] == index.digest and result["bytesMoved"] == blob_bytes
                kuik_all.append(seconds)
                again, _, repeat = _kuik(src, f"{destination.host}/m/app:v1", "--all")
                second = {"seconds": round(again, 3), "bytes_moved": repeat["bytesMoved"]}
                seconds, _, result = _kuik(
                    src, f"{destination.host}/m/amd64:v1", "--platform", "linux/amd64"
                )
                kuik_platform.append(seconds)
            finally:
                destination.cleanup()
            destination = _fresh()
            try:
                skopeo_all.append(_skopeo(src, f"{destination.host}/m/app:v1", "--all")[0])
                skopeo_single.append(
                    _skopeo(
                        src,
                        f"{destination.host}/m/amd64:v1",
                        "--override-os",
                        "linux",
                        "--override-arch",
                        "amd64",
                    )[0]
                )
            finally:
                destination.cleanup()

        rss = _peak_rss(source)
        kuik_median, skopeo_median = _median(kuik_all), _median(skopeo_all)
        return {
            "image": f"2-platform OCI index, 5 x 20 MiB layers each ({blob_bytes / MiB:.0f} MiB)",
            "rounds": ROUNDS,
            "all_kuik_s": kuik_median,
            "all_skopeo_s": skopeo_median,
            "all_ratio": round(kuik_median / skopeo_median, 3),
            "all_kuik_runs": [round(s, 3) for s in kuik_all],
            "all_skopeo_runs": [round(s, 3) for s in skopeo_all],
            "platform_amd64_kuik_s": _median(kuik_platform),
            "single_amd64_skopeo_s": _median(skopeo_single),
            "second_copy_kuik": second,
            **rss,
        }
    finally:
        source.cleanup()


def _peak_rss(source: RegistryServer) -> dict[str, Any]:
    image = synthetic_image("bench-big", layers=1, layer_size=1024 * MiB)
    push_image(source, "bench/big", "v1", image)
    src = f"{source.host}/bench/big:v1"
    destination = _fresh()
    try:
        seconds, kuik_rss, result = _kuik(src, f"{destination.host}/m/big:v1")
        assert result["bytesMoved"] == sum(b.size for b in image.blobs)
    finally:
        destination.cleanup()
    destination = _fresh()
    try:
        skopeo_seconds, skopeo_rss = _skopeo(src, f"{destination.host}/m/big:v1")
    finally:
        destination.cleanup()
    return {
        "big_layer_kuik_peak_rss_mib": round(kuik_rss / 1024, 1),
        "big_layer_kuik_s": round(seconds, 3),
        "big_layer_skopeo_peak_rss_mib": round(skopeo_rss / 1024, 1),
        "big_layer_skopeo_s": round(skopeo_seconds, 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
