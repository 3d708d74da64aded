"""Which images each ClusterImageSetAvailability monitors (upstream §1.11 step 2), pure.

For one CISA: the images used by the Pods it selects (current images of containers, init and
ephemeral containers, then the `kuik.enix.io/original-images` originals), kept if they pass the
CISA's image filter. Beyond upstream, digest-pinned references are tracked (and checked) too.
The status list is then updated with `kuikcore.tracking.track`: new images `Scheduled` with
their `original` flag, `unusedSince` cleared / set once / the instant-expiry marker (out of
filter, or unused and never checked), and entries unused for `unusedImageExpiry` removed.

The `original` flag of an image follows upstream: within a Pod an original overrides the current
use, across Pods the last Pod (store order) decides. Upstream's startup `BackfillOriginalField`
is folded in: an entry listed with `original` false that some Pod now uses as an original
becomes true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kuikcore.api import AvailabilityStatus
from kuikcore.filters import ResourceFilter, SkipRules
from kuikcore.pods import pod_images
from kuikcore.tracking import Tracked, track

__all__ = ["StatusSync", "selected_images", "sync_status"]


def selected_images(
    pods: Iterable[Mapping[str, Any]],
    selection: ResourceFilter,
    skip: SkipRules | None = None,
) -> dict[str, bool]:
    """image -> `original` flag, for the images of the selected Pods that pass the filter."""
    flags: dict[str, bool] = {}
    for pod in pods:
        if skip is not None and skip.reason(pod) is not None:
            continue
        if not selection.matches_pod(pod):
            continue
        in_pod: dict[str, bool] = {}
        for used in pod_images(pod):
            if selection.matches_image(used.image):
                in_pod[used.image] = in_pod.get(used.image, False) or used.original
        flags.update(in_pod)
    return flags


def _never_checked(entry: Mapping[str, Any]) -> bool:
    return bool(entry.get("status", AvailabilityStatus.SCHEDULED) == AvailabilityStatus.SCHEDULED)


@dataclass(frozen=True, slots=True)
class StatusSync:
    """The new CISA status and what changed (for logs)."""

    status: dict[str, Any]
    tracked: Tracked


def sync_status(
    status: Mapping[str, Any],
    *,
    current: Mapping[str, bool],
    matches: Callable[[str], bool],
    now: datetime,
    expiry: timedelta | None,
) -> StatusSync:
    """`status` (API shape) with its image list brought up to date; `current` from
    `selected_images`, `matches(image)` the CISA's image filter."""
    tracked = track(
        status.get("images"),
        current=current,
        matches=matches,
        in_use=current,
        now=now,
        new_entry=lambda image: {
            "image": image,
            "status": AvailabilityStatus.SCHEDULED.value,
            "original": current.get(image, False),
        },
        expire_at_once=_never_checked,
        expiry=expiry,
    )
    for entry in tracked.entries:
        if current.get(entry["image"]) and not entry.get("original"):
            entry["original"] = True
    new = dict(status)
    new["images"] = tracked.entries
    new["imageCount"] = len(tracked.entries)
    return StatusSync(new, tracked)
