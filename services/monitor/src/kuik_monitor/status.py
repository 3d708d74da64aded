"""Check results into CISA status entries (pure mutate functions for `cluster.update_status`).

Only the checked entries change: `status`, `lastMonitor`, and `lastError` (removed on success),
as upstream's `performCheck`. An entry that disappeared meanwhile (the tracker expired it) is
left alone: a result never re-creates an image the tracker removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kuik_monitor.checker import Outcome
from kuikcore.api import AvailabilityStatus
from kuikcore.api.models import format_time

__all__ = ["apply_outcomes", "entry_statuses"]


def apply_outcomes(status: Mapping[str, Any], outcomes: Mapping[str, Outcome]) -> dict[str, Any]:
    """`status` with each listed image's entry updated from its outcome; `status` itself is left
    untouched (unchanged entries are shared with it, not copied)."""
    images: list[Any] = []
    for old in status.get("images") or ():
        outcome = outcomes.get(str(old.get("image")))
        if outcome is None:
            images.append(old)  # shared, not copied: a 10,000-entry status stays one list
            continue
        entry = dict(old)
        entry["status"] = outcome.status.value
        entry["lastMonitor"] = format_time(outcome.checked_at)
        if outcome.error:
            entry["lastError"] = outcome.error
        else:
            entry.pop("lastError", None)
        images.append(entry)
    new = dict(status)
    if "images" in status or images:
        new["images"] = images
    return new


def entry_statuses(status: Mapping[str, Any]) -> dict[str, AvailabilityStatus]:
    """image -> current status of a CISA's entries (what events compare against)."""
    out: dict[str, AvailabilityStatus] = {}
    for entry in status.get("images") or ():
        try:
            out[str(entry.get("image"))] = AvailabilityStatus(
                entry.get("status") or AvailabilityStatus.SCHEDULED
            )
        except ValueError:
            continue
    return out
