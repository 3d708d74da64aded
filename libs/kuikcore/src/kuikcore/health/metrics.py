"""Registry health metrics, the same names in every service (each on its own `/metrics`).

The `registry` label only ever holds hosts of the keeper's bounded target set (`maxHosts`), and a
host's series is removed when the host is forgotten, so input cannot grow the label set.
"""

from __future__ import annotations

import weakref
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kuikcore.observe import NAMESPACE

__all__ = ["HealthMetrics"]

_PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, HealthMetrics] = (
    weakref.WeakKeyDictionary()
)


class HealthMetrics:
    """`registry_up{registry}`, `registry_probe_duration_seconds`, `registry_probes_total{result}`,
    `registry_health_transitions_total{to,by}` (namespace `kube_image_keeper`)."""

    @classmethod
    def of(cls, registry: CollectorRegistry) -> HealthMetrics:
        """One set per Prometheus registry (several keepers in one test process share it)."""
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = cls(registry)
        return found

    def __init__(self, registry: CollectorRegistry) -> None:
        common: dict[str, Any] = {"namespace": NAMESPACE, "registry": registry}
        self.up = Gauge(
            "registry_up",
            "1 while the registry host is known up, 0 while known down (this process's view).",
            labelnames=("registry",), **common,
        )  # fmt: skip
        self.probe_duration = Histogram(
            "registry_probe_duration_seconds", "Duration of one GET /v2/ health probe.",
            buckets=_PROBE_BUCKETS, **common,
        )  # fmt: skip
        self.probes = Counter(
            "registry_probes", "Health probes sent by this process, by result (up, down).",
            labelnames=("result",), **common,
        )  # fmt: skip
        self.transitions = Counter(
            "registry_health_transitions",
            "Registry hosts this process marked down or up, by new state and by what saw it.",
            labelnames=("to", "by"), **common,
        )  # fmt: skip
        for result in ("up", "down"):
            self.probes.labels(result=result)
            for by in ("probe", "passive"):
                self.transitions.labels(to=result, by=by)
