"""docs/install.md's "Metric names" tables against the metrics each service registers, both ways.

Each service's registry is built from the metrics modules its `service.py` wires (nothing started but
the Redis watch, against the real redis-server: the `redis_up` gauge exists while it runs), so a metric
renamed, added or dropped in code fails here until the section says so.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from kuik_monitor.metrics import MonitoringCollector
from kuik_replicator.metrics import ReplicatorMetrics
from kuik_webhook.metrics import WebhookMetrics
from kuikcore.cluster.health import ClusterCollector
from kuikcore.cluster.local import LocalCluster
from kuikcore.coord import Coord, leader_gauge, watch_health
from kuikcore.health.metrics import HealthMetrics
from kuikcore.observe import metrics_registry
from kuikcore.supervise import Supervisor

INSTALL = Path(__file__).parents[2] / "docs" / "install.md"
SERVICES = ("webhook", "replicator", "monitor")
PREFIX = "kube_image_keeper_"


def _registry(service: str, cluster_dir: Path) -> CollectorRegistry:
    """What `kuikcore.service` and the service's own `service.py` register."""
    registry = metrics_registry(service)  # build_info, process and Python collectors
    Supervisor(registry)
    HealthMetrics.of(registry)
    registry.register(ClusterCollector(LocalCluster(cluster_dir)))
    if service == "webhook":
        WebhookMetrics(registry)
    if service == "replicator":
        ReplicatorMetrics.create(registry)
        leader_gauge("replicator", registry)
    if service == "monitor":
        registry.register(MonitoringCollector(list, None))
        leader_gauge("monitor", registry)
    return registry


def _exposed(registry: CollectorRegistry) -> set[str]:
    """Metric names as scraped: counters with `_total`, the rest by family name."""
    return {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}


async def _exposed_by_service(coord: Coord, tmp_path: Path) -> dict[str, set[str]]:
    exposed = {}
    for service in SERVICES:
        registry = _registry(service, tmp_path)
        watch = asyncio.create_task(watch_health(coord, registry))
        try:
            # 1 once Redis answered the first probe; the watch then sleeps, so the cancel below
            # does not land in the middle of a ping
            for _ in range(1000):
                if registry.get_sample_value("kube_image_keeper_redis_up") == 1:
                    break
                await asyncio.sleep(0.01)
            exposed[service] = _exposed(registry)
        finally:
            watch.cancel()
            await asyncio.wait_for(asyncio.gather(watch, return_exceptions=True), 10)
    return exposed


def _tables() -> Iterator[tuple[str, list[str], set[str]]]:
    """(table, kuik names, services) for each row of the section's two tables."""
    section = INSTALL.read_text().split("\n### Metric names\n", 1)[1].split("\n#", 1)[0]
    header: list[str] = []
    for line in section.splitlines():
        if not line.startswith("|") or line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not header or cells[0] in ("Upstream v2", "kuik only"):
            header = cells
            continue
        row = dict(zip(header, cells, strict=True))
        names = re.findall(r"`([a-z_*]+)`", row.get("kuik", row.get("kuik only", "")))
        services = row["Services"]
        wanted = set(SERVICES) if services == "all" else set(filter(None, services.split(", ")))
        yield header[0], names, wanted


def test_section_parses() -> None:
    rows = list(_tables())
    assert {table for table, _, _ in rows} == {"Upstream v2", "kuik only"}
    assert len(rows) >= 25
    unknown = {s for _, _, services in rows for s in services} - set(SERVICES)
    assert unknown == set()


def _documented(exposed: dict[str, set[str]]) -> dict[str, set[str]]:
    """kuik name -> services, from the tables; a `prefix_*` row must match some exposed name."""
    documented: dict[str, set[str]] = {}
    for _, names, services in _tables():
        for name in names:
            if name.endswith("*"):  # a family of standard collectors
                for service in services:
                    assert any(n.startswith(name[:-1]) for n in exposed[service]), (name, service)
                continue
            assert name not in documented, f"{name} documented twice"
            documented[name] = services
    return documented


def _by_name(exposed: dict[str, set[str]]) -> dict[str, set[str]]:
    """kuik name -> the services exporting it."""
    actual: dict[str, set[str]] = {}
    for service, names in exposed.items():
        for name in names:
            if name.startswith(PREFIX):
                actual.setdefault(name, set()).add(service)
    return actual


async def test_documented_metric_names_are_what_the_services_export(
    coord: Coord, tmp_path: Path
) -> None:
    exposed = await _exposed_by_service(coord, tmp_path)
    assert _documented(exposed) == _by_name(exposed)

    # a metric added to a service, or one it no longer exports, is a difference
    replicator = exposed["replicator"] - {"kube_image_keeper_replicator_copies_total"}
    changed = {**exposed, "replicator": replicator | {"kube_image_keeper_surprise_total"}}
    documented, actual = _documented(changed), _by_name(changed)
    assert {n for n in documented.keys() | actual.keys() if documented.get(n) != actual.get(n)} == {
        "kube_image_keeper_surprise_total",
        "kube_image_keeper_replicator_copies_total",
    }
