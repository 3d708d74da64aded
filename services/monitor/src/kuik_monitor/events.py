"""Which Events the monitor emits about a CISA (pure; the cluster sends them).

Upstream emits only `InvalidFilter` (`kuikcore.cluster.events.invalid_filter_event`, shared with
the replicator). Beyond upstream, an image turning from `Available` to
`NotFound`, `Unreachable` or `InvalidAuth` gets a Warning on every CISA listing it, and a Normal
Event when it is `Available` again, so `kubectl describe cisa` tells an outage's story.
"""

from __future__ import annotations

from kuikcore.api import AvailabilityStatus
from kuikcore.cluster import EventType
from kuikcore.cluster.events import EventSpec, limit_note

__all__ = ["ACTION_CHECK", "IMAGE_AVAILABLE", "IMAGE_UNAVAILABLE", "availability_event"]

IMAGE_UNAVAILABLE = "ImageUnavailable"
IMAGE_AVAILABLE = "ImageAvailable"
ACTION_CHECK = "CheckAvailability"

OUTAGES = frozenset(
    {AvailabilityStatus.NOT_FOUND, AvailabilityStatus.UNREACHABLE, AvailabilityStatus.INVALID_AUTH}
)


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
            limit_note(note + (f": {error}" if error else "")),
            ACTION_CHECK,
        )
    if old in OUTAGES and new is AvailabilityStatus.AVAILABLE:
        return EventSpec(
            EventType.NORMAL,
            IMAGE_AVAILABLE,
            limit_note(f"image {image} is available again (was {old.value})"),
            ACTION_CHECK,
        )
    return None
