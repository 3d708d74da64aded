"""The chart's alerts as Prometheus sees them: the PrometheusRule's groups, rendered by real
Helm, written out as a plain rule file (what promtool and a Prometheus server load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .conftest import JSON, ChartRenderer

FULLNAME = "kuik-kube-image-keeper"


def rule_groups(chart: ChartRenderer, **prometheus_rule: Any) -> list[JSON]:
    """`spec.groups` of the PrometheusRule rendered with prometheusRule.enabled and these values."""
    rendered = chart.render({"prometheusRule": {"enabled": True, **prometheus_rule}})
    groups: list[JSON] = rendered.get("PrometheusRule", FULLNAME)["spec"]["groups"]
    return groups


def write_rule_file(groups: list[JSON], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def alert_names(groups: list[JSON]) -> list[str]:
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]
