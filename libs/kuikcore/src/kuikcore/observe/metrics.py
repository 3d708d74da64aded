"""One Prometheus registry per process, with the collectors every kuik service exposes.

A private `CollectorRegistry` (not the library's global one) keeps tests and several services in
one interpreter from colliding. Metric names follow upstream: namespace `kube_image_keeper`.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

__all__ = ["NAMESPACE", "build_info", "metrics_registry"]

NAMESPACE = "kube_image_keeper"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_info(service: str, registry: CollectorRegistry) -> Gauge:
    """`kube_image_keeper_build_info` (constant 1), upstream's `manager_build_info` per service.

    `revision` and `built` come from `KUIK_BUILD_REVISION` / `KUIK_BUILD_DATE`, which the container
    image build sets; a development checkout reports "unknown".
    """
    labels = {
        "service": service,
        "version": _version(f"kuik-{service}") if service != "kuik" else _version("kuikcore"),
        "revision": os.environ.get("KUIK_BUILD_REVISION") or "unknown",
        "built": os.environ.get("KUIK_BUILD_DATE") or "unknown",
        "pythonversion": platform.python_version(),
        "os": platform.system().lower(),
        "arch": platform.machine(),
    }
    gauge = Gauge(
        "build_info",
        "Build metadata of this kuik service; always 1.",
        labelnames=list(labels),
        namespace=NAMESPACE,
        registry=registry,
    )
    gauge.labels(**labels).set(1)
    return gauge


def metrics_registry(service: str) -> CollectorRegistry:
    """A fresh registry with process, platform and GC collectors and the build info gauge."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    build_info(service, registry)
    return registry
