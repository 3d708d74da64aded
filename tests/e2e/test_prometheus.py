"""The chart's alerts and dashboard on a real Prometheus scraping the real services.

One stack for the module (`make demo`'s: redis-server, registries A and B, the three services in
local mode) and one Prometheus (Debian's package) scraping them every second with the rules the
chart renders (KuikRegistryDown's `for` shortened to 2 s through the chart's own value). The
demo scenario mirrors an image, kills registry A and admits a Pod that is rerouted to B; then
KuikRegistryDown must fire for A, and every dashboard query must return a series.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kuik_testing.dashboard import DASHBOARD_FILE, panel_queries
from kuik_testing.demo.scenario import Narrator, Target, run_scenario
from kuik_testing.demo.stack import SERVICES, LocalStack
from kuik_testing.prometheus import PrometheusServer
from tests.chart.conftest import CHART_DIR, ChartRenderer
from tests.chart.rules import alert_names, rule_groups, write_rule_file

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("prometheus")]

# What Grafana puts in place of $__rate_interval at a 1 s scrape interval, with margin.
RATE_INTERVAL = "1m"


@dataclass
class Observed:
    stack: LocalStack
    prometheus: PrometheusServer
    registry_a: str
    registry_b: str
    alerts: list[str]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    root = tmp_path_factory.mktemp("prometheus")
    groups = rule_groups(ChartRenderer(CHART_DIR), alerts={"KuikRegistryDown": {"for": "2s"}})
    rules = write_rule_file(groups, root / "rules.yaml")
    stack = LocalStack(workdir=root / "stack")
    prometheus: PrometheusServer | None = None
    try:
        stack.start_servers()
        stack.start_services()
        assert stack.registry_a is not None
        assert stack.registry_b is not None
        prometheus = PrometheusServer(
            targets={s: [f"127.0.0.1:{stack.services[s].port}"] for s in SERVICES},
            rule_files=[rules],
            workdir=root / "prometheus",
        ).start()
        prometheus.wait_scraped()
        assert prometheus.alerts() == []  # nothing pending before the scenario
        registry_a = stack.registry_a
        target = Target(
            cluster=stack.cluster,
            registry_a=registry_a.host,
            registry_b=stack.registry_b.host,
            registry_a_url=f"http://{registry_a.host}",
            webhook_url=stack.webhook_url,
            monitor_url=stack.metrics_url("monitor"),
            kill_registry_a=registry_a.kill,
            status_command=["true"],
            webhook_ca=stack.ca_file,
        )
        run_scenario(target, Narrator(io.StringIO()))
        yield Observed(stack, prometheus, registry_a.host, stack.registry_b.host,
                       alert_names(groups))  # fmt: skip
    finally:
        if prometheus is not None:
            prometheus.stop()
        stack.stop()


def test_rules_load_and_evaluate_on_real_scrapes(observed: Observed) -> None:
    groups = observed.prometheus.api("rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert [rule["name"] for rule in rules] == observed.alerts
    assert {rule["health"] for rule in rules} == {"ok"}, [r.get("lastError") for r in rules]


def test_registry_down_fires_for_the_killed_registry(observed: Observed) -> None:
    alert = observed.prometheus.wait_for_alert("KuikRegistryDown", registry=observed.registry_a)
    assert alert["labels"]["severity"] == "warning"
    assert observed.registry_a in alert["annotations"]["description"]
    down = {a["labels"].get("registry") for a in observed.prometheus.alerts()}
    assert observed.registry_b not in down  # the mirror's registry is up


def test_every_dashboard_query_returns_series(observed: Observed) -> None:
    """So no panel names a metric (or a label) the services do not export. A counter the scenario
    created last (the reroute) needs two scrapes before a rate has a value: empty queries are
    asked again for a few seconds."""
    dashboard = json.loads(Path(DASHBOARD_FILE).read_text())
    queries = list(panel_queries(dashboard))
    assert len(queries) >= 15
    empty = queries
    deadline = time.monotonic() + 15
    while empty and time.monotonic() < deadline:
        empty = [
            (title, expr)
            for title, expr in empty
            if not observed.prometheus.query(expr.replace("$__rate_interval", RATE_INTERVAL))
        ]
        time.sleep(0.5)
    assert [f"{title}: {expr}" for title, expr in empty] == []
