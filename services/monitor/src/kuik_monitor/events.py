"""Which Events the monitor emits about a CISA (pure; the cluster sends them).

Upstream emits only `InvalidFilter`. Beyond upstream, an image turning from `Available` to
`NotFound`, `Unreachable` or `InvalidAuth` gets a Warning on every CISA listing it, and a Normal
Event when it is `Available` again, so `kubectl describe cisa` tells an outage's story.
"""

from __future__ import annotations

from dataclasses import dataclass

from kuikcore.api import AvailabilityStatus
from kuikcore.cluster import EventType

__all__ = [
    "ACTION_CHECK",
    "ACTION_SKIPPED",
    "IMAGE_AVAILABLE",
    "IMAGE_UNAVAILABLE",
    "INVALID_FILTER",
    "EventSpec",
    "availability_event",
    "invalid_filter_event",
]

INVALID_FILTER = "InvalidFilter"
IMAGE_UNAVAILABLE = "ImageUnavailable"
IMAGE_AVAILABLE = "ImageAvailable"
ACTION_SKIPPED = "ReconcileSkipped"
ACTION_CHECK = "CheckAvailability"

OUTAGES = frozenset(
    {AvailabilityStatus.NOT_FOUND, AvailabilityStatus.UNREACHABLE, AvailabilityStatus.INVALID_AUTH}
)
_MAX_NOTE = 1024  # events.k8s.io/v1 refuses longer notes


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: EventType
    reason: str
    note: str
    action: str


def _note(text: str) -> str:
    return text if len(text) <= _MAX_NOTE else text[: _MAX_NOTE - 3] + "..."


def availability_event(
    image: str,
    old: AvailabilityStatus | None,
    new: AvailabilityStatus,
    error: str | None = None,
) -> EventSpec | None:
    """The Event for one image's status change on a CISA, or None."""
    if old is AvailabilityStatus.AVAILABLE and new in OUTAGES:
        note = f"image {image} is no longer available: {new.value}"
        return EventSpec(
            EventType.WARNING,
            IMAGE_UNAVAILABLE,
            _note(note + (f": {error}" if error else "")),
            ACTION_CHECK,
        )
    if old in OUTAGES and new is AvailabilityStatus.AVAILABLE:
        return EventSpec(
            EventType.NORMAL,
            IMAGE_AVAILABLE,
            _note(f"image {image} is available again (was {old.value})"),
            ACTION_CHECK,
        )
    return None


def invalid_filter_event(error: Exception) -> EventSpec:
    """Upstream's: Warning `InvalidFilter`, action `ReconcileSkipped`, `filter is invalid: …`."""
    return EventSpec(
        EventType.WARNING, INVALID_FILTER, _note(f"filter is invalid: {error}"), ACTION_SKIPPED
    )
