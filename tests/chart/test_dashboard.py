"""The Grafana dashboard: the committed JSON is what `kuik_testing.dashboard` generates, and the
chart ships it in a ConfigMap Grafana's sidecar finds. (Its queries run against a real
Prometheus in tests/e2e/test_prometheus.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kuik_testing.dashboard import DASHBOARD_FILE, DASHBOARD_UID, panel_queries, render

from .conftest import NAMESPACE, ChartRenderer

CONFIGMAP = "kuik-kube-image-keeper-dashboard"


def test_committed_dashboard_is_generated() -> None:
    assert DASHBOARD_FILE.read_text() == render(), (
        "stale dashboard: run python -m kuik_testing.dashboard"
    )


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "dashboard.json"
    stale.write_text(render().replace("Copies by result", "Copies"))
    check = [sys.executable, "-m", "kuik_testing.dashboard", "--check", "--output", str(stale)]
    failed = subprocess.run(check, capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert "stale" in failed.stderr
    written = subprocess.run(check[:3] + check[4:], capture_output=True, text=True, check=False)
    assert written.returncode == 0, written.stderr
    assert subprocess.run(check, capture_output=True, check=False).returncode == 0
    assert stale.read_text() == render()


def test_every_area_has_panels_with_queries() -> None:
    dashboard = json.loads(render())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == [
        "Admissions and reroutes",
        "Copies and queue",
        "Availability by registry",
        "Registry health",
    ]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    queried = {title for title, _ in panel_queries(dashboard)}
    assert queried == {p["title"] for p in panels}
    assert {p["datasource"]["uid"] for p in panels} == {"${datasource}"}
    assert [v["type"] for v in dashboard["templating"]["list"]] == ["datasource"]


def test_off_by_default(chart: ChartRenderer) -> None:
    assert not [
        c for c in chart.render().of_kind("ConfigMap") if c["metadata"]["name"] == CONFIGMAP
    ]


def test_configmap_for_the_sidecar(chart: ChartRenderer) -> None:
    rendered = chart.render({"grafanaDashboard": {"enabled": True}})
    configmap = rendered.get("ConfigMap", CONFIGMAP)
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(configmap["data"]["kube-image-keeper.json"])
    assert dashboard == json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == DASHBOARD_UID


def test_sidecar_label_namespace_and_folder_are_settable(chart: ChartRenderer) -> None:
    values = {
        "grafanaDashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "sidecarLabel": "kuik.example/dashboard",
            "sidecarLabelValue": "yes",
            "extraLabels": {"team": "platform"},
            "annotations": {"grafana_folder": "kuik"},
        }
    }
    configmap = chart.render(values).get("ConfigMap", CONFIGMAP)
    metadata = configmap["metadata"]
    assert metadata["namespace"] == "monitoring"
    assert metadata["labels"]["kuik.example/dashboard"] == "yes"
    assert "grafana_dashboard" not in metadata["labels"]
    assert metadata["labels"]["team"] == "platform"
    assert metadata["annotations"] == {"grafana_folder": "kuik"}
