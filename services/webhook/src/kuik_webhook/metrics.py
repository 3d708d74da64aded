"""The webhook's Prometheus metrics (namespace `kube_image_keeper`, subsystem `webhook`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from kuikcore.observe import NAMESPACE, HostLabels, closed

__all__ = ["AUDIT_RESULTS", "OPERATIONS", "RESULTS", "WebhookMetrics"]

OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
"""The AdmissionReview operations; any other `operation` text is counted as `other`."""
RESULTS = frozenset({"rerouted", "unchanged", "skipped", "error", "malformed", "audited"})
AUDIT_RESULTS = frozenset({"rerouted", "unchanged"})

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class WebhookMetrics:
    """`admissions_total{operation,result}`, `reroutes_total{from_registry,to_registry}`,
    `check_duration_seconds`, `check_results_total{status}`, `admission_duration_seconds`.

    `result` of an admission: `rerouted` (at least one image changed), `unchanged` (looked at,
    nothing to change, annotation aside), `skipped` (not ours: mirror pod, skip selectors, not a
    Pod), `error` (an internal error: admitted unchanged with a warning), `malformed` (HTTP 400),
    `audited` (audit mode: decided, not patched; `audit_decisions_total{result}` says what the
    decision was: `rerouted` or `unchanged`).

    Label values from input are bounded (`kuikcore.observe.labels`): `operation` is one of
    `OPERATIONS`, `unknown` (malformed body) or `other`; registry hosts go through `hosts`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        common: dict[str, Any] = {
            "namespace": NAMESPACE,
            "subsystem": "webhook",
            "registry": registry,
        }
        self.admissions = Counter(
            "admissions", "Pod admissions answered, by operation and outcome.",
            labelnames=("operation", "result"), **common,
        )  # fmt: skip
        self.reroutes = Counter(
            "reroutes", "Container images rerouted, by original and chosen registry host.",
            labelnames=("from_registry", "to_registry"), **common,
        )  # fmt: skip
        self.check_duration = Histogram(
            "check_duration_seconds", "Duration of one active availability check.",
            buckets=_CHECK_BUCKETS, **common,
        )  # fmt: skip
        self.check_results = Counter(
            "check_results", "Active availability checks, by resulting status.",
            labelnames=("status",), **common,
        )  # fmt: skip
        self.admission_duration = Histogram(
            "admission_duration_seconds", "Time to answer one AdmissionReview.",
            buckets=_LATENCY_BUCKETS, **common,
        )  # fmt: skip
        self.board_unavailable = Counter(
            "board_unavailable", "Admissions that could not read the availability board in time.",
            **common,
        )  # fmt: skip
        self.handler_failures = Counter(
            "handler_failures", "Admissions the handler failed on, answered allowed and unpatched.",
            **common,
        )  # fmt: skip
        self.audit_decisions = Counter(
            "audit_decisions", "Admissions decided in audit mode (nothing patched), by what "
            "enforce mode would have done.",
            labelnames=("result",), **common,
        )  # fmt: skip
        for result in AUDIT_RESULTS:
            self.audit_decisions.labels(result=result)
        self.hosts = HostLabels()
        self.stale_mirror_reports = Counter(
            "stale_mirror_reports", "Mirrors found missing at admission and reported, by outcome.",
            labelnames=("result",), **common,
        )  # fmt: skip

    def operation(self, operation: str) -> str:
        """The `operation` label of an admission: a known operation, else `other`."""
        return closed(operation, OPERATIONS)

    def result(self, result: str) -> str:
        """The `result` label: the outcomes this code produces, `other` for anything else."""
        return closed(result, RESULTS)
