"""The chart's PrometheusRule, rendered by real Helm and checked by real promtool (Debian's
prometheus package): valid rules, a unit test that fires every alert (tests/chart/alerts/), the
values that tune it, and only metric names the services export."""

from __future__ import annotations

import re
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from kuik_testing.prometheus import promtool

from .conftest import ChartRenderer
from .rules import FULLNAME, alert_names, rule_groups, write_rule_file

ALERTS = (
    "KuikImagesUnavailable",
    "KuikCopiesFailing",
    "KuikReplicationQueueStuck",
    "KuikReplicationQueueGrowing",
    "KuikWebhookFailingOpen",
    "KuikWebhookDecidingWithoutBoard",
    "KuikRedisUnreachable",
    "KuikRegistryDown",
)
UNIT_TESTS = Path(__file__).parent / "alerts" / "alerts.test.yaml"
REPO = Path(__file__).parents[2]


def test_off_by_default(chart: ChartRenderer) -> None:
    assert chart.render().of_kind("PrometheusRule") == []


def test_rendered_rules_pass_promtool_check(chart: ChartRenderer, tmp_path: Path) -> None:
    groups = rule_groups(chart)
    assert alert_names(groups) == list(ALERTS)
    rules = write_rule_file(groups, tmp_path / "rules.yaml")
    checked = promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_every_alert_is_unit_tested(chart: ChartRenderer, tmp_path: Path) -> None:
    """`promtool test rules` on the rendered rules; and each alert has a case where it fires."""
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    firing = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == set(ALERTS)
    write_rule_file(rule_groups(chart), tmp_path / "rendered-rules.yaml")
    (tmp_path / "alerts.test.yaml").write_text(UNIT_TESTS.read_text())
    result = promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_broken_alert_fails_its_unit_test(chart: ChartRenderer, tmp_path: Path) -> None:
    """The unit tests see a change of threshold: KuikRegistryDown with a longer `for`."""
    groups = rule_groups(chart, alerts={"KuikRegistryDown": {"for": "30m"}})
    write_rule_file(groups, tmp_path / "rendered-rules.yaml")
    (tmp_path / "alerts.test.yaml").write_text(UNIT_TESTS.read_text())
    result = promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "KuikRegistryDown" in result.stdout + result.stderr


def test_values_tune_the_alerts(chart: ChartRenderer) -> None:
    rendered = chart.render(
        {
            "prometheusRule": {
                "enabled": True,
                "extraLabels": {"release": "prometheus"},
                "ruleLabels": {"team": "platform"},
                "alerts": {
                    "KuikRegistryDown": {"for": "10m", "labels": {"severity": "critical"}},
                    "KuikWebhookDecidingWithoutBoard": {"enabled": False},
                },
                "additionalRules": [{"alert": "Mine", "expr": "vector(1) > 2"}],
            }
        }
    )
    rule = rendered.get("PrometheusRule", FULLNAME)
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["metadata"]["labels"]["app.kubernetes.io/component"] == "alerts"
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == ["kube-image-keeper", "kube-image-keeper-additional"]
    names = alert_names(groups)
    assert "KuikWebhookDecidingWithoutBoard" not in names
    assert names[-1] == "Mine"
    by_name = {r["alert"]: r for g in groups for r in g["rules"]}
    assert by_name["KuikRegistryDown"]["for"] == "10m"
    assert by_name["KuikRegistryDown"]["labels"] == {"severity": "critical", "team": "platform"}
    assert by_name["KuikCopiesFailing"]["labels"] == {"severity": "warning", "team": "platform"}
    assert by_name["KuikCopiesFailing"]["for"] == "15m"
    # the alerts' own templates reach Prometheus as written, not eaten by Helm
    assert "{{ $labels.registry }}" in by_name["KuikRegistryDown"]["annotations"]["description"]


def test_an_unknown_alert_name_fails_the_install(chart: ChartRenderer) -> None:
    with pytest.raises(helm.HelmError, match=r"prometheusRule\.alerts\.KuikRegistryDwn: no such"):
        chart.render({"prometheusRule": {"enabled": True, "alerts": {"KuikRegistryDwn": {}}}})


def test_alerts_name_only_exported_metrics(chart: ChartRenderer) -> None:
    """Every metric an alert reads is documented in a service's metrics table (docs/*.md) as a
    name the services export (the e2e test runs the registry-down alert on real scrapes)."""
    documented = set(re.findall(r"kube_image_keeper_[a-z_]+", _docs()))
    for group in rule_groups(chart):
        for rule in group["rules"]:
            for name in set(re.findall(r"kube_image_keeper_[a-z_]+", rule["expr"])):
                assert name in documented, f"{rule['alert']}: {name} is not a documented metric"


def _docs() -> str:
    return "\n".join(
        (REPO / "docs" / f"{name}.md").read_text() for name in ("webhook", "replicator", "monitor")
    )
