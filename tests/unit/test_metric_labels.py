"""Metric labels fed by input stay a bounded set of valid UTF-8 values, so /metrics keeps answering.

One AdmissionReview whose `operation` is a lone surrogate used to make every later /metrics fail
(prometheus_client encodes strictly), and any text became a label child kept for good.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from kuik_monitor.metrics import MonitoringCollector
from kuik_testing.objects import body, cisa, review
from kuik_webhook.chooser import Chooser
from kuik_webhook.handler import AdmissionHandler
from kuik_webhook.metrics import WebhookMetrics
from kuik_webhook.secrets import SecretReader
from kuik_webhook.stale import StaleMirrorReporter
from kuikcore.api import parse_resource
from kuikcore.observe import OTHER, HostLabels, closed, object_name
from kuikcore.registry import RegistryClient
from kuikcore.routing import RoutingOptions


def test_host_labels_keep_valid_hosts_up_to_the_cap() -> None:
    hosts = HostLabels(limit=3)
    assert hosts("docker.io") == "docker.io"
    assert hosts("127.0.0.1:5000") == "127.0.0.1:5000"
    assert hosts("[::1]:5000") == "[::1]:5000"
    assert hosts("fourth.example") == OTHER  # over the cap
    assert hosts("docker.io") == "docker.io"  # known ones stay
    for bad in ("\ud800", "a b", "", "x" * 300, "héllo.example", "a/b", 5, None):
        assert HostLabels()(bad) == OTHER


def test_closed_sets_and_object_names() -> None:
    assert closed("CREATE", {"CREATE"}) == "CREATE"
    assert closed("\ud800", {"CREATE"}) == OTHER
    assert closed(None, {"CREATE"}) == OTHER
    assert object_name("keep-everything.v2") == "keep-everything.v2"
    for bad in ("\ud800", "Upper", "-x", "x" * 254, ""):
        assert object_name(bad) == OTHER


async def _handler(registry: CollectorRegistry, client: RegistryClient) -> AdmissionHandler:
    metrics = WebhookMetrics(registry)
    chooser = Chooser(client, board=None, metrics=metrics, check_timeout=1, cache_ttl=5)
    cluster: Any = object()  # operations other than CREATE/UPDATE never reach the cluster
    reporter = StaleMirrorReporter(None, "", metrics, max_concurrent=0, timeout=1)
    return AdmissionHandler(
        cluster,
        chooser,
        SecretReader(cluster),
        reporter,
        metrics,
        RoutingOptions(),
        deadline=1.0,
    )


async def test_a_surrogate_operation_does_not_break_metrics_and_operations_are_bounded() -> None:
    registry = CollectorRegistry()
    async with RegistryClient() as client:
        handler = await _handler(registry, client)
        answer = await handler.handle(body(review(None, operation="\ud800", uid="u")))
        assert answer.status == 200
        generate_latest(registry)  # raised UnicodeEncodeError before
        before = len(generate_latest(registry))
        for i in range(2000):  # 2,000 distinct 20 KB operations added 41 MiB
            answer = await handler.handle(
                body(review(None, operation=f"{i}" + "x" * 20_000, uid=f"u{i}"))
            )
            assert answer.status == 200
        await handler.chooser.close()
    text = generate_latest(registry).decode()
    assert len(text) - before < 200
    assert 'operation="other",result="skipped"} 2001.0' in text


async def test_reroute_registry_labels_are_valid_hosts_and_capped() -> None:
    registry = CollectorRegistry()
    async with RegistryClient() as client:
        handler = await _handler(registry, client)
        handler._reroute_counter("bad\ud800/app:1", "mirror.local:5000/app:1").inc()
        for i in range(500):
            handler._reroute_counter(f"r{i}.example/app:1", "mirror.local:5000/app:1").inc()
        await handler.chooser.close()
    text = generate_latest(registry).decode()
    rows = [line for line in text.splitlines() if line.startswith("kube_image_keeper_webhook_rer")]
    assert len(rows) <= 2 * (64 + 1) + 2  # _total and _created per child: 64 hosts and `other`
    assert 'from_registry="other",to_registry="mirror.local:5000"' in text


def test_monitor_labels_are_bounded() -> None:
    images = [f"r{i}.example/app:1" for i in range(300)] + ["bad\ud800host/app:1"]
    cisas = [
        parse_resource(cisa("web", images=[{"image": i, "status": "Available"} for i in images])),
        parse_resource(
            cisa(
                "Bad\ud800", images=[{"image": "docker.io/library/nginx:1", "status": "Available"}]
            )
        ),
    ]
    registry = CollectorRegistry()
    registry.register(MonitoringCollector(lambda: cisas, [1.0]))
    text = generate_latest(registry).decode()  # raised UnicodeEncodeError before
    gauges = [line for line in text.splitlines() if line.startswith("kube_image_keeper_mon")]
    assert len(gauges) == 64 + 2  # 64 hosts, `other` for web, one row for the other CISA
    assert 'name="web",original="false",registry="other",status="Available",used="true"} 237.0' in (
        text
    )
    assert 'name="other"' in text
