"""What every cluster backend offers the services: one protocol, its change and error types.

Services code against `ClusterSource` only, so the webhook, replicator and monitor run
unchanged on a Kubernetes API server or on a directory of manifests (local mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kuikcore.cluster.store import Store

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
]

POD = "Pod"
SECRET = "Secret"
NAMESPACE = "Namespace"  # watched by the webhook alone, for its mode label (kuikcore.mode)


class ChangeType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class EventType(StrEnum):
    """Kubernetes Event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Identifies one object in the store; `namespace` is "" for cluster-scoped kinds."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


@dataclass(frozen=True, slots=True)
class Change:
    """One observed change. `old` is None when ADDED, `new` is None when DELETED.

    Objects are what the store holds: slim Pod dicts, Secret dicts, or typed kuik resources.
    """

    type: ChangeType
    key: ObjectKey
    old: Any
    new: Any


ChangeCallback = Callable[[Change], None]
"""Called synchronously from the store's update path: hand the change to your own queue,
never block or await inside it."""

StatusMutator = Callable[[dict[str, Any]], dict[str, Any]]
"""Given a copy of the current `status` (API shape, {} when none), return the wanted status.
Called again on a fresh copy whenever another writer got there first, possibly from a worker
thread: keep it a pure function of its argument."""


@dataclass(frozen=True, slots=True)
class InvalidDocument:
    """A document the backend could not accept; reported, never fatal.

    `source` is the file (local mode) or "cluster"; `index` the document's position in
    its file (0-based), None when not from a file.
    """

    source: str
    index: int | None
    kind: str
    name: str
    reason: str

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source} (document {self.index})"
        return f"{where}: {self.kind} {self.name or '<unnamed>'}: {self.reason}"


class ClusterError(Exception):
    """A cluster operation failed; the message names the object and the cause."""


class NotFoundError(ClusterError):
    """The object does not exist (any more)."""


class ConflictError(ClusterError):
    """Other writers kept changing the object: gave up after the retry budget."""


class ClusterSource(Protocol):
    """Where Pods, Secrets and kuik's resources come from, and where status, Secrets and
    Events go. Backends: `KubernetesCluster`, `LocalCluster`; obtain one from `open_cluster`.

    Never assumes it is the only writer: status and finalizer writes are read-modify-write
    loops that start again from the newest object when someone else changed it.
    """

    @property
    def store(self) -> Store: ...

    @property
    def synced(self) -> bool:
        """True once every kind has been listed at least once."""
        ...

    async def start(self) -> None:
        """Begin listing and watching; returns at once (see `wait_synced`)."""

    async def wait_synced(self) -> None:
        """Wait for the first complete view (bound it with `asyncio.timeout`)."""

    async def stop(self) -> None: ...

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call `callback` for every change from now on; returns the unsubscribe function."""
        ...

    def problems(self) -> list[InvalidDocument]:
        """Documents currently rejected (invalid kuik resources), newest view."""
        ...

    async def update_status(
        self, kind: str, namespace: str, name: str, mutate: StatusMutator
    ) -> Any:
        """Read-modify-write the `status` subresource; returns the stored resource.

        Raises NotFoundError, ConflictError after repeated concurrent changes, or
        `kuikcore.api.InvalidResource` (nothing written) when the new status would not validate.
        """

    async def add_finalizer(self, kind: str, namespace: str, name: str, finalizer: str) -> bool:
        """Add `finalizer`; False when it was already there or the object is being deleted
        (the API server allows no new finalizer then)."""
        ...

    async def remove_finalizer(self, kind: str, namespace: str, name: str, finalizer: str) -> bool:
        """Remove `finalizer` (releasing a held deletion); False when it was absent."""
        ...

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A referenced Secret, read on demand through a small cache; None when missing."""
        ...

    async def apply_secret(self, secret: dict[str, Any]) -> dict[str, Any]:
        """Create or update a Secret (type, data, labels, annotations); returns it as stored."""
        ...

    async def delete_secret(self, namespace: str, name: str) -> bool:
        """Delete a Secret; False when it was already gone."""
        ...

    async def emit_event(
        self,
        regarding: ObjectKey,
        type: EventType,
        reason: str,
        note: str,
        *,
        action: str = "",
    ) -> None:
        """Record an Event about `regarding` (best effort: failures are logged, not raised)."""

    async def list_events(self, regarding: ObjectKey | None = None) -> list[dict[str, Any]]:
        """Events kuik recorded (events.k8s.io/v1 shape), oldest first."""
        ...

    async def cluster_id(self) -> str:
        """A stable identity for this cluster (kube-system UID, or one derived from the path)."""
        ...
