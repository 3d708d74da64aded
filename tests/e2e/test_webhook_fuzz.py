"""Hypothesis throws structure-aware requests at a running kuik-webhook's /mutate.

Whatever comes in (every field of the request with any JSON type, nesting far past the bound,
lone surrogates, huge values, every Content-Encoding and bodies not in theirs, invalid UTF-8, a
body over the limit): only 200 allowed, 400 malformed or 413 too large, never a denial, every
patch applies to the object the webhook read; afterwards /metrics still answers 200, and its
size and the process's memory stay bounded. The routing resources make loopback images
contested (a mirror CR, a replicated set with `discardAlternative`), so the choosing code runs
too. `bench/webhook_soak.py` runs the same bodies >= 10,000 times.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings

from kuik_testing import RegistryServer, objects
from kuik_testing.admission_fuzz import (
    MAX_BODY,
    Poster,
    Sent,
    bodies,
    check_answer,
    fuzz_webhook,
    rss_kib,
)
from kuik_testing.objects import admission_review
from kuik_testing.processes import ServiceProcess

pytestmark = pytest.mark.timeout(300)

EXAMPLES = 250  # ~20 s on a quiet 2-core machine; the soak benchmark runs 10,000+
MAX_RSS_GROWTH_KIB = 24 * 1024  # the identical-admission memory may keep up to 16 MiB of Pods
MAX_METRICS_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def webhook(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServiceProcess, int, RegistryServer]]:
    with fuzz_webhook(tmp_path_factory.mktemp("fuzz")) as running:
        yield running
        process = running[0]
        assert process.running(), process.log_text()[-3000:]
        assert process.get("/healthz")[0] == 200


def test_every_answer_keeps_the_promise(
    webhook: tuple[ServiceProcess, int, RegistryServer],
) -> None:
    process, port, _ = webhook
    poster = Poster(port)
    review = admission_review({"uid": "warm", "operation": "CREATE", "object": {}})
    for _ in range(20):  # warm up: imports, first routes, caches
        warm = Sent(json.dumps(review).encode(), expect=200)
        check_answer(warm, *poster.post(warm))
    before = rss_kib(process.pid)
    counts: Counter[tuple[str, int]] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(sent=bodies())
    def one(sent: Sent) -> None:
        status, raw = poster.post(sent)
        counts[(sent.kind, status)] += 1
        check_answer(sent, status, raw)

    try:
        one()
    finally:
        poster.close()
    status, text = process.get("/metrics")
    assert status == 200, text[-500:]
    assert len(text.encode()) < MAX_METRICS_BYTES, len(text)
    growth = rss_kib(process.pid) - before
    assert growth < MAX_RSS_GROWTH_KIB, f"RSS grew {growth} KiB over {sorted(counts.items())}"
    # the mix reached every kind of answer
    assert {answer for _, answer in counts} == {200, 400, 413}, counts


@pytest.mark.parametrize(
    ("sent", "expect"),
    [
        (Sent(b"[" * 100_000 + b"]" * 100_000), 400),
        (Sent(b'{"request": ' * 5_000 + b"1" + b"}" * 5_000), 400),
        (Sent(b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}), 400),
        (Sent(b"{}", {"Content-Encoding": "snappy"}), 400),
        (Sent(b'{"apiVersion": "\xff"}'), 400),
        (Sent(b" " * (MAX_BODY + 1)), 413),
    ],
)
def test_known_killers_get_an_answer(
    webhook: tuple[ServiceProcess, int, RegistryServer], sent: Sent, expect: int
) -> None:
    """The bodies that made kuik answer 500 (or worse) before, one by one."""
    process, port, _ = webhook
    poster = Poster(port)
    try:
        assert poster.post(sent)[0] == expect
    finally:
        poster.close()
    assert process.get("/metrics")[0] == 200


def test_a_surrogate_operation_leaves_metrics_working(
    webhook: tuple[ServiceProcess, int, RegistryServer],
) -> None:
    process, port, _ = webhook
    body = objects.body(admission_review({"uid": "s", "operation": "\ud800", "object": {}}))
    poster = Poster(port)
    try:
        status, raw = poster.post(Sent(body))
    finally:
        poster.close()
    assert status == 200
    assert json.loads(raw)["response"]["allowed"] is True
    status, text = process.get("/metrics")
    assert status == 200
    assert 'operation="other"' in text


def test_fuzz_fixture_is_contested(webhook: tuple[ServiceProcess, int, RegistryServer]) -> None:
    """The setup really routes: a missing loopback image goes to the mirror or the upstream."""
    _, port, registry = webhook
    obj = objects.pod(objects.container("c", "127.0.0.1:1/old/web:1"), namespace="apps")
    review = objects.review(obj, uid="u")
    poster = Poster(port)
    try:
        response = json.loads(poster.post(Sent(json.dumps(review).encode()))[1])["response"]
    finally:
        poster.close()
    ops = json.loads(base64.b64decode(response["patch"]))
    # CISM before CRIS at equal priority (upstream's type order): the mirror of the upstream
    assert {
        "op": "replace",
        "path": "/spec/containers/0/image",
        "value": f"{registry.host}/m/app/web:1",
    } in ops
