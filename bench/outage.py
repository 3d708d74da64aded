"""Time to reroute when a registry dies, and to come back when it recovers.

The stack of `tests/e2e/test_outage.py` (local mode, default config, replicator + webhook on one
Redis, ten images on registry A mirrored to B, no monitor). Each round: A killed (connections
refused), then started again on its port; A frozen (SIGSTOP: a black hole that accepts and never
answers), then thawed. After each change, a Pod using the ten images is admitted every 20 ms over a
kept-alive connection until every container is rerouted (or back on its original image); the time
from the change to the first such admission is recorded. Admission latency is recorded too (the
issue's target: under 50 ms while A is known down).

Targets (issue 15): reroute within 1 s of a refusal, 2 s of a black hole; back within 5 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.test_outage import Stack

from kuik_testing import RedisServer, RegistryServer

ROUNDS = 5
POLL = 0.02


def _until(stack: Stack, want: dict[str, str], latencies: list[float]) -> float:
    started = time.monotonic()
    while True:
        got, took = stack.admit()
        latencies.append(took)
        if got == want:
            return time.monotonic() - started
        if time.monotonic() - started > 30:
            raise RuntimeError("no change within 30 s")
        time.sleep(POLL)


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "max_s": round(ordered[-1], 3),
        "min_s": round(ordered[0], 3),
    }


def run() -> dict[str, Any]:
    a, b, redis = RegistryServer().start(), RegistryServer().start(), RedisServer().start()
    stack = Stack(Path(tempfile.mkdtemp(prefix="kuik-bench-outage-")), a, b, redis)
    timings: dict[str, list[float]] = {
        "refused": [],
        "recovered": [],
        "black_hole": [],
        "thawed": [],
    }
    down_latencies: list[float] = []
    try:
        stack.start()
        originals = stack.originals
        rerouted = {name: stack.mirrored(image) for name, image in originals.items()}
        stack.admit()
        steps: list[tuple[str, Callable[[], None], dict[str, str], bool]] = [
            ("refused", a.kill, rerouted, True),
            ("recovered", a.start, originals, False),
            ("black_hole", a.freeze, rerouted, True),
            ("thawed", a.thaw, originals, False),
        ]
        for _ in range(ROUNDS):
            for name, change, want, down in steps:
                time.sleep(3.0)  # settle: every process confirmed the state before the change
                change()
                latencies: list[float] = []
                timings[name].append(_until(stack, want, latencies))
                if down:  # admissions while A is known down
                    for _ in range(20):
                        down_latencies.append(stack.admit()[1])
    finally:
        stack.stop()
        a.thaw()
        for server in (a, b, redis):
            server.cleanup()
    down_ms = sorted(x * 1000 for x in down_latencies)
    return {
        "rounds": ROUNDS,
        "poll_s": POLL,
        **{f"{name}_to_change": _summary(values) for name, values in timings.items()},
        "admission_while_down_ms": {
            "median": round(statistics.median(down_ms), 2),
            "p99": round(down_ms[int(len(down_ms) * 0.99) - 1], 2),
            "max": round(down_ms[-1], 2),
            "count": len(down_ms),
        },
    }
