"""Where Pods, Secrets and kuik's resources come from, and where status, Secrets and Events go.

`open_cluster("kubernetes" | "dir:PATH")` returns a `ClusterSource`; services use only that
protocol and its `Store`, so they run unchanged on a cluster or on a manifest directory.
"""

from __future__ import annotations

from kuikcore.cluster.interface import (
    NAMESPACE,
    POD,
    SECRET,
    Change,
    ChangeCallback,
    ChangeType,
    ClusterError,
    ClusterSource,
    ConflictError,
    EventType,
    InvalidDocument,
    NotFoundError,
    ObjectKey,
    StatusMutator,
)
from kuikcore.cluster.store import Store, slim_pod

__all__ = [
    "NAMESPACE",
    "POD",
    "SECRET",
    "Change",
    "ChangeCallback",
    "ChangeType",
    "ClusterError",
    "ClusterSource",
    "ConflictError",
    "EventType",
    "InvalidDocument",
    "NotFoundError",
    "ObjectKey",
    "StatusMutator",
    "Store",
    "slim_pod",
]
