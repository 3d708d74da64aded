"""The replicator's Prometheus metrics (names fixed by issue 9, prefix `kube_image_keeper_`)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ReplicatorMetrics"]

_P = "kube_image_keeper_replicator_"
REROUTE_EVENT_RESULTS = ("recorded", "coalesced", "rate_limited", "too_old", "failed")
"""The `result` values of `reroute_events_total` (`reroute_events.EventResult`)."""


@dataclass(frozen=True, slots=True)
class ReplicatorMetrics:
    copies: Counter
    copy_bytes: Counter
    copy_duration: Histogram
    queue_depth: Gauge
    jobs_in_flight: Gauge
    deletions: Counter
    reroute_events: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ReplicatorMetrics:
        metrics = cls._create(registry)
        for result in REROUTE_EVENT_RESULTS:  # every series from the start, 0 until it happens
            metrics.reroute_events.labels(result=result)
        return metrics

    @classmethod
    def _create(cls, registry: CollectorRegistry) -> ReplicatorMetrics:
        return cls(
            copies=Counter(
                _P + "copies",
                "Copy jobs finished, by result (copied, unchanged: already at the destination, "
                "failed)",
                ["result"],
                registry=registry,
            ),
            copy_bytes=Counter(
                _P + "copy_bytes", "Blob bytes uploaded to mirrors", registry=registry
            ),
            copy_duration=Histogram(
                _P + "copy_duration_seconds",
                "Time spent per copy job",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
                registry=registry,
            ),
            queue_depth=Gauge(
                _P + "queue_depth",
                "Copy jobs waiting (ready or delayed for retry), by lane",
                ["lane"],
                registry=registry,
            ),
            jobs_in_flight=Gauge(
                _P + "jobs_in_flight", "Copy jobs this process is running", registry=registry
            ),
            deletions=Counter(
                _P + "deletions",
                "Mirror cleanup attempts, by result (deleted, kept: a check refused it, "
                "deferred: retried later)",
                ["result"],
                registry=registry,
            ),
            reroute_events=Counter(
                _P + "reroute_events",
                "Rerouted Pods seen by the leader, by what became of their Event (recorded, "
                "coalesced: the workload has one, rate_limited, too_old, failed)",
                ["result"],
                registry=registry,
            ),
        )
