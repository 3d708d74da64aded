"""Render the Helm chart with Helm's own Go SDK (helm-python-sdk), no helm binary needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).parents[2] / "charts" / "kube-image-keeper"
RELEASE = "kuik"
NAMESPACE = "kuik-system"

JSON = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """One `helm template` of the chart: its objects (by kind and name), CRDs and NOTES."""

    objects: list[JSON]
    crds: list[JSON]
    notes: str

    def of_kind(self, kind: str) -> list[JSON]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> JSON:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def component(self, kind: str, component: str) -> JSON:
        found = [
            o
            for o in self.of_kind(kind)
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        assert len(found) == 1, f"{kind} of {component}: {len(found)} rendered"
        return found[0]


class ChartRenderer:
    """Loads the chart afresh for every render: Helm drops disabled subcharts from a loaded
    chart while rendering, so a loaded chart cannot be reused across value sets."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def render(self, values: JSON | None = None) -> Rendered:
        with helm.Chart.load(str(self.path)) as chart:
            manifests = chart.render(
                values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True
            )
            crds = [yaml.safe_load(f["data"]) for f in chart.crds]
        objects: list[JSON] = []
        notes = ""
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                notes = text
                continue
            objects.extend(d for d in yaml.safe_load_all(text) if d)
        return Rendered(objects, crds, notes)


@pytest.fixture(scope="session")
def chart() -> ChartRenderer:
    return ChartRenderer(CHART_DIR)
