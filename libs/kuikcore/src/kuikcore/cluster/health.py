"""Whether a service's view of the cluster can do its job, and why not: for `/readyz` and
`/metrics`.

A view is ready once its first listing completed and no informer is stuck on a permanent error
(401, 403, 404: see `kuikcore.cluster.informer`). The reason reaches `/readyz` verbatim
(`[-]cluster failed: cannot list Pod (v1): HTTP 403 (forbidden): ...`), so an operator sees the
missing verb without reading logs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from kuikcore.cluster.informer import Informer
from kuikcore.cluster.interface import ClusterSource
from kuikcore.observe import NAMESPACE

__all__ = ["ClusterCollector", "ClusterNotReady", "cluster_ready"]


class _WithInformers(Protocol):
    @property
    def informers(self) -> Sequence[Informer]: ...


class ClusterNotReady(RuntimeError):
    """Raised by the readiness check with the reason, shown by `/readyz`."""


def _informers(cluster: ClusterSource) -> Sequence[Informer]:
    """The Kubernetes backend's informers; local mode has none."""
    found: _WithInformers | None = cluster if hasattr(cluster, "informers") else None  # type: ignore[assignment]
    return found.informers if found is not None else ()


async def cluster_ready(cluster: ClusterSource) -> bool:
    problems = [i.problem for i in _informers(cluster) if i.problem]
    if problems:
        raise ClusterNotReady("; ".join(problems))
    if not cluster.synced:
        raise ClusterNotReady("the first listing of the cluster is not complete yet")
    return True


class ClusterCollector(Collector):
    """`kube_image_keeper_cluster_request_failures_total{kind,verb,reason}`: failed lists and
    watches by cause (`unauthorized`, `forbidden`, `not_found`, `expired`, `server_error`,
    `network`); every label value comes from code, none from the API server."""

    def __init__(self, cluster: ClusterSource) -> None:
        self.cluster = cluster

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            f"{NAMESPACE}_cluster_request_failures",
            "Failed Kubernetes API lists and watches of this service, by kind, verb and cause.",
            labels=["kind", "verb", "reason"],
        )
        for informer in _informers(self.cluster):
            for (verb, reason), count in sorted(informer.failures.items()):
                family.add_metric([informer.kind, verb, reason], count)
        yield family
