"""Events as kuik records them (events.k8s.io/v1 shape), shared by both backends.

Pure: building the object and deciding whether an identical Event was recorded recently
(repeats within the window are dropped, so a flapping condition cannot flood the API).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kuikcore.cluster.interface import EventType, ObjectKey
from kuikcore.cluster.kinds import watched_kind

__all__ = [
    "CLUSTER_SCOPED_EVENT_NAMESPACE",
    "INVALID_FILTER",
    "RECONCILE_SKIPPED",
    "EventDeduplicator",
    "EventSpec",
    "build_event",
    "event_name",
    "invalid_filter_event",
    "limit_note",
    "regards",
]

JSON = dict[str, Any]
# Where client-go records Events about cluster-scoped objects.
CLUSTER_SCOPED_EVENT_NAMESPACE = "default"
NOTE_LIMIT = 1024  # bytes: the API server rejects longer notes (Go len(), UTF-8)
_MAX_NAME = 253
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# Upstream's reason and action for a resource whose filter does not compile.
INVALID_FILTER = "InvalidFilter"
RECONCILE_SKIPPED = "ReconcileSkipped"


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One Event to emit, before it is addressed to an object."""

    type: EventType
    reason: str
    note: str
    action: str


def limit_note(text: str) -> str:
    """Cut a note to the 1024 UTF-8 bytes the API server accepts (it counts bytes, not
    characters), marking the cut; never splits a character."""
    raw = text.encode()
    if len(raw) <= NOTE_LIMIT:
        return text
    return raw[: NOTE_LIMIT - 3].decode(errors="ignore") + "..."


def event_name(regarding_name: str, moment: datetime) -> str:
    """`<object name>.<UnixNano in hex>`, as client-go's events/v1 recorder names Events.

    events.k8s.io/v1 requires a DNS-1123 subdomain name, and a `generateName` of
    `<name>.` is refused (it must itself be valid, and may not end in '.'). The object part is
    cut so the whole fits 253 characters; a name that still would not validate falls back to a
    hash of it."""
    nanos = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    stamp = f"{nanos:x}"
    base = regarding_name[: _MAX_NAME - 1 - len(stamp)].rstrip(".-")
    name = f"{base}.{stamp}"
    if not base or not _SUBDOMAIN.fullmatch(name):
        digest = hashlib.sha256(regarding_name.encode()).hexdigest()[:16]
        name = f"kuik-{digest}.{stamp}"
    return name


def invalid_filter_event(error: Exception) -> EventSpec:
    """Upstream's: Warning `InvalidFilter`, action `ReconcileSkipped`, `filter is invalid: …`."""
    return EventSpec(
        EventType.WARNING,
        INVALID_FILTER,
        limit_note(f"filter is invalid: {error}"),
        RECONCILE_SKIPPED,
    )


def build_event(
    regarding: ObjectKey,
    uid: str | None,
    type: EventType,
    reason: str,
    note: str,
    *,
    action: str,
    controller: str,
    instance: str,
    now: datetime | None = None,
) -> JSON:
    api_version = watched_kind(regarding.kind).api_version
    target: JSON = {"apiVersion": api_version, "kind": regarding.kind, "name": regarding.name}
    if regarding.namespace:
        target["namespace"] = regarding.namespace
    if uid:
        target["uid"] = uid
    moment = now or datetime.now(UTC)
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(regarding.name, moment),
            "namespace": regarding.namespace or CLUSTER_SCOPED_EVENT_NAMESPACE,
        },
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": controller,
        "reportingInstance": instance,
        "action": action or reason,
        "reason": reason,
        "note": limit_note(note),
        "type": type.value,
        "regarding": target,
    }


def regards(event: JSON, key: ObjectKey) -> bool:
    target = event.get("regarding") or {}
    found = (target.get("kind"), target.get("namespace") or "", target.get("name"))
    return found == (key.kind, key.namespace, key.name)


class EventDeduplicator:
    """Remembers recently recorded Events; `admit` is False for a repeat within `window` s."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._until: dict[tuple[str, ...], float] = {}

    def admit(self, regarding: ObjectKey, type: EventType, reason: str, note: str) -> bool:
        now = time.monotonic()
        self._until = {k: t for k, t in self._until.items() if t > now}
        key = (str(regarding), type.value, reason, note)
        if key in self._until:
            return False
        self._until[key] = now + self._window
        return True

    def forget(self, regarding: ObjectKey, type: EventType, reason: str, note: str) -> None:
        """Let a retry through (the Event could not be recorded)."""
        self._until.pop((str(regarding), type.value, reason, note), None)
