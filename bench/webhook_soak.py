"""Webhook soak: the fuzz suite's bodies, >= 10,000 of them, against one kuik-webhook process.

The same structure-aware requests as `tests/e2e/test_webhook_fuzz.py`
(`kuik_testing.admission_fuzz.bodies`: every request field with any JSON type, nesting past
the bound, lone surrogates, huge values, every Content-Encoding and bodies not in theirs,
invalid UTF-8, truncation, over-size bodies) posted one after another over keep-alive
connections to `kuik-webhook` in local mode, where loopback images are contested (a mirror CR, a
replicated set on a refusing port, a real registry). Every answer is held to kuik's promise
(`check_answer`); the soak counts instead of stopping.

Reported: answers by status and by kind of body, denials, promise violations (with the first
few), the process's RSS after warm-up, after the first 1,000 requests and at the end (growth
target < 20 MiB), `/metrics` status every 1,000 requests and its size at the end, requests per second.
`KUIK_SOAK_REQUESTS` overrides the count (default 10,000).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings

from kuik_testing import objects
from kuik_testing.admission_fuzz import (
    Poster,
    Sent,
    bodies,
    check_answer,
    fuzz_webhook,
    rss_kib,
)

REQUESTS = int(os.environ.get("KUIK_SOAK_REQUESTS", "10000"))
BATCH = 1000  # examples per hypothesis run (each run draws fresh random bodies)
WARM_UP = 200
RSS_TARGET_MIB = 20


def _warm_body(uid: int) -> Sent:
    obj = objects.pod(objects.container("c", "127.0.0.1:1/old/web:1"), namespace=None)
    return Sent(objects.body(objects.review(obj, uid=f"warm-{uid}")), expect=200, kind="warm-up")


def run(requests: int = REQUESTS) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    violations: list[str] = []
    denials = 0
    rss: dict[str, float] = {}
    series: list[float] = []  # RSS every 1,000 requests: a plateau is a bound, a slope a leak
    metrics_seen: list[int] = []  # /metrics status every 1,000 requests
    with (
        tempfile.TemporaryDirectory(prefix="kuik-soak-") as tmp,
        fuzz_webhook(Path(tmp)) as (process, port, _),
    ):
        poster = Poster(port)
        for n in range(WARM_UP):
            check_answer(warm := _warm_body(n), *poster.post(warm))
        rss["after_warm_up_mib"] = rss_kib(process.pid) / 1024
        peak = rss["after_warm_up_mib"]
        started = time.monotonic()
        sent = 0

        @settings(
            max_examples=BATCH,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(body=bodies())
        def batch(body: Sent) -> None:
            nonlocal sent, denials, peak
            if sent >= requests:
                return
            status, raw = poster.post(body)
            sent += 1
            statuses[status] += 1
            kinds[f"{body.kind} {status}"] += 1
            if status == 200 and json.loads(raw)["response"].get("allowed") is not True:
                denials += 1
            try:
                check_answer(body, status, raw)
            except (AssertionError, ValueError, KeyError) as exc:
                if len(violations) < 5:
                    violations.append(f"{body.kind}: {type(exc).__name__}: {exc!s:.300}")
                else:
                    violations.append("")
            if sent % 1000 == 0:
                metrics_seen.append(process.get("/metrics")[0])  # answering throughout
                series.append(rss_kib(process.pid) / 1024)
                peak = max(peak, series[-1])
                if sent == 1000:
                    rss["after_1000_mib"] = series[-1]

        while sent < requests:
            batch()
        elapsed = time.monotonic() - started
        poster.close()
        rss["end_mib"] = rss_kib(process.pid) / 1024
        rss["peak_sampled_mib"] = max(peak, rss["end_mib"])
        metrics_status, metrics_text = process.get("/metrics")
        assert process.running(), process.log_text()[-3000:]
    growth = rss["end_mib"] - rss["after_warm_up_mib"]
    return {
        "requests": sent,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(sent / elapsed, 1),
        "answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "answers_by_kind": dict(sorted(kinds.items())),
        "denials": denials,
        "promise_violations": len(violations),
        "first_violations": [v for v in violations if v],
        "rss_mib": {k: round(v, 1) for k, v in rss.items()},
        "rss_every_1000_mib": [round(v, 1) for v in series],
        "rss_growth_mib": round(growth, 1),
        "rss_growth_target_met": growth < RSS_TARGET_MIB,
        "metrics_status": metrics_status,
        "metrics_statuses_every_1000": metrics_seen,
        "metrics_200_throughout": metrics_status == 200 and all(s == 200 for s in metrics_seen),
        "metrics_bytes": len(metrics_text.encode()),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
