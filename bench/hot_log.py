"""The webhook's reroute lines in process: what two prepared `rerouting image` lines cost one
admission, batched inside a running loop (as the webhook writes them) and written at once (no
loop: one write and flush per admission, as before batching). Output to a file, as a container's
log is a pipe or file. For a paired run, put another tree's kuikcore first on PYTHONPATH."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from kuikcore.observe import HotLogger, configure_logging

ADMISSIONS = 100_000
YIELD_EVERY = 50  # admissions between two loop iterations, as under load


def _line(hot: HotLogger) -> Any:
    return hot.prepare(
        "rerouting image",
        pod="shop/web-7d9f-abcde",
        container="web",
        original="registry.a/shop/web:1.4",
        image="registry.b/mirror/shop/web:1.4",
        source="ClusterImageSetMirror/keep-everything",
        reason="first available",
        rejected=[{"image": "registry.a/shop/web:1.4", "reason": "NotFound (check)"}],
        dry_run=False,
    )


async def _batched(hot: HotLogger, line: Any) -> float:
    started = time.perf_counter()
    for i in range(ADMISSIONS):
        hot.write(line, line)
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    flush = getattr(hot, "flush", None)  # absent from the code before batching (paired runs)
    if flush is not None:
        flush()
    return (time.perf_counter() - started) / ADMISSIONS * 1e6


def _at_once(hot: HotLogger, line: Any) -> float:
    started = time.perf_counter()
    for _ in range(ADMISSIONS // 5):
        hot.write(line, line)
    return (time.perf_counter() - started) / (ADMISSIONS // 5) * 1e6


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "log").open("w") as out:
        configure_logging("info", json=True, stream=out, service="webhook")
        hot = HotLogger("kuik.webhook")
        line = _line(hot)
        batched = min(asyncio.run(_batched(hot, line)) for _ in range(3))
        at_once = min(_at_once(hot, line) for _ in range(3))
        logging.getLogger().handlers.clear()
    return {
        "admissions": ADMISSIONS,
        "us_per_admission_batched": round(batched, 2),
        "us_per_admission_written_at_once": round(at_once, 2),
    }
