"""Upstream's monitoring metrics, computed at scrape time from the CISA statuses (§5).

- `kube_image_keeper_monitoring_images{name,registry,status,used,original}`: gauge, number of
  status images per label set (`used` is true when `unusedSince` is unset).
- `kube_image_keeper_monitoring_image_last_monitor_age_minutes{name,registry}`: histogram of
  `now - lastMonitor` in minutes over the images checked at least once, a fresh snapshot on each
  scrape, with the classic buckets of `metrics.imageLastMonitorAgeMinutes.legacy` (Python's client
  has no native histograms; `bucketType: disabled` leaves only the `+Inf` bucket, as client_golang
  does when only native buckets are configured).

Every replica serves them from its own view of the statuses, so a standby reports the same numbers
as the leader. Labels that come from the cluster are bounded (`kuikcore.observe.labels`): `name`
must be a Kubernetes object name (local mode does not enforce it), `registry` a valid host among
the first `MAX_HOST_LABELS` seen; the rest is counted under `other`.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from kuik_monitor.scheduler import registry_host
from kuikcore.api import ClusterImageSetAvailability
from kuikcore.observe import HostLabels, object_name

__all__ = ["IMAGES_METRIC", "LAST_MONITOR_AGE_METRIC", "MonitoringCollector"]

IMAGES_METRIC = "kube_image_keeper_monitoring_images"
LAST_MONITOR_AGE_METRIC = "kube_image_keeper_monitoring_image_last_monitor_age_minutes"


def _bool(value: bool) -> str:
    return "true" if value else "false"


class MonitoringCollector(Collector):
    """Reads the CISAs through `cisas()` on every scrape."""

    def __init__(
        self,
        cisas: Callable[[], Iterable[ClusterImageSetAvailability]],
        buckets: Sequence[float] | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cisas = cisas
        self.bounds = sorted(buckets or ())
        self.clock = clock
        self.hosts = HostLabels()

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: nothing to check for collisions up front

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        counts: Counter[tuple[str, str, str, str, str]] = Counter()
        ages: dict[tuple[str, str], list[float]] = {}
        for cisa in self.cisas():
            name = object_name(cisa.name)
            for image in cisa.status.images or ():
                host = registry_host(image.image)
                if host is None:
                    continue
                registry = self.hosts(host)
                used = image.unused_since is None
                key = (
                    name,
                    registry,
                    image.status.value,
                    _bool(used),
                    _bool(bool(image.original)),
                )
                counts[key] += 1
                if image.last_monitor is not None:
                    minutes = (now - image.last_monitor).total_seconds() / 60.0
                    ages.setdefault((name, registry), []).append(minutes)

        gauge = GaugeMetricFamily(
            IMAGES_METRIC,
            "Number of monitored image",
            labels=["name", "registry", "status", "used", "original"],
        )
        for labels, count in sorted(counts.items()):
            gauge.add_metric(list(labels), count)
        yield gauge

        histogram = HistogramMetricFamily(
            LAST_MONITOR_AGE_METRIC,
            "Histogram of image last monitor age in minutes.",
            labels=["name", "registry"],
        )
        for (name, registry), values in sorted(ages.items()):
            histogram.add_metric([name, registry], self._buckets(values), sum(values))
        yield histogram

    def _buckets(self, values: list[float]) -> list[tuple[str, float]]:
        values = sorted(values)
        out = [
            (
                floatToGoString(bound),  # type: ignore[no-untyped-call]
                float(bisect.bisect_right(values, bound)),
            )
            for bound in self.bounds
        ]
        out.append(("+Inf", float(len(values))))
        return out
