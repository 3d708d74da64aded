"""Metric label values that come from input, bounded.

Every distinct label value is a child kept for the life of the process, and prometheus_client
encodes the exposition as strict UTF-8: one admission carrying a lone surrogate (`"\\ud800"`)
as a label would make every later `/metrics` answer fail, and arbitrary strings would grow the
process without bound. So a label fed from input is either one of a closed set (`closed`) or a
registry host of valid syntax among the first `limit` seen (`HostLabels`); the rest is `other`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection

from kuikcore.reference import is_registry_host

__all__ = ["MAX_HOST_LABELS", "OTHER", "HostLabels", "closed", "object_name"]

OTHER = "other"
"""The label value that stands for every value outside the allowed ones."""

MAX_HOST_LABELS = 64
"""Distinct registry hosts one label keeps by default: a cluster uses a handful."""

_MAX_HOST_LENGTH = 255
# a Kubernetes object name (DNS-1123 subdomain), which the API server enforces and local mode not
_OBJECT_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def closed(value: object, allowed: Collection[str]) -> str:
    """`value` when it is one of `allowed`, else `other`."""
    return value if isinstance(value, str) and value in allowed else OTHER


def object_name(value: object) -> str:
    """A Kubernetes object name as a label: valid DNS-1123 subdomain syntax, else `other`."""
    if isinstance(value, str) and len(value) <= 253 and _OBJECT_NAME_RE.fullmatch(value):
        return value
    return OTHER


class HostLabels:
    """Registry hosts as label values: valid `host[:port]` syntax, the first `limit` distinct
    ones kept as they are, later ones and invalid text folded into `other` (thread-safe: the
    monitor computes its labels in the scrape thread)."""

    def __init__(self, limit: int = MAX_HOST_LABELS) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, host: object) -> str:
        if not isinstance(host, str):
            return OTHER
        if host in self._known:
            return host
        if len(host) > _MAX_HOST_LENGTH or not host.isascii() or not is_registry_host(host):
            return OTHER
        with self._lock:
            if host in self._known:
                return host
            if len(self._known) >= self.limit:
                return OTHER
            self._known.add(host)
        return host
