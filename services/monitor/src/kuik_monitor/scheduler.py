"""Which image to check next on each registry, and when (upstream §1.11 step 3), pure.

Images of every CISA are grouped by registry host. On each host the next image is the one
never checked (first in stable order), else the one checked longest ago; the host is due one
`tick` (`interval / maxPerInterval`) after its newest check. The schedule is derived from the
statuses' `lastMonitor`, so a restarted or newly elected monitor continues where the last one
stopped; the shared budget in Redis (`budget.py`) is what guarantees the rate across replicas.

Beyond upstream:
- an image listed by several CISAs is one schedule entry (checked once, the result written to
  every CISA listing it); its `lastMonitor` is the oldest of its entries (None if any is None);
- entries carrying the instant-expiry marker (out of the CISA's filter) are not checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from kuikcore.api import UNUSED_MARKER
from kuikcore.tracking import parse_time

__all__ = ["Listed", "Schedule", "due_at", "listed", "registry_host"]


def registry_host(image: str) -> str | None:
    """The registry part of a normalised reference (the config's `items` key), None if invalid.

    Status images are normalised, so the host is everything before the first `/` (what
    `Reference.registry_host` gives, without re-parsing 10 000 references on every rebuild).
    """
    host, sep, rest = image.partition("/")
    return host if sep and host and rest else None


def _older(a: datetime | None, b: datetime | None) -> datetime | None:
    """The older of two checks; never checked (None) wins."""
    if a is None or b is None:
        return None
    return min(a, b)


def due_at(registry_last_monitor: datetime | None, tick: timedelta, now: datetime) -> datetime:
    """When a host may be checked again: one tick after its newest check (now if never)."""
    if registry_last_monitor is None:
        return now
    return max(now, registry_last_monitor + tick)


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class Listed(NamedTuple):
    """One status entry as the schedule needs it."""

    image: str
    last_monitor: datetime | None
    out_of_filter: bool
    """`unusedSince` is the instant-expiry marker: not checked any more."""


def listed(images: Iterable[Mapping[str, Any]] | None) -> list[Listed]:
    """`Listed` entries from API-shaped status images (`status.images`)."""
    out = []
    for entry in images or ():
        image = entry.get("image")
        if isinstance(image, str):
            marked = entry.get("unusedSince") == UNUSED_MARKER
            out.append(Listed(image, _time(entry.get("lastMonitor")), marked))
    return out


@dataclass
class _Host:
    images: dict[str, datetime | None] = field(default_factory=dict)
    newest: datetime | None = None

    def note(self, when: datetime | None) -> None:
        if when is not None and (self.newest is None or when > self.newest):
            self.newest = when


@dataclass
class Schedule:
    """Monitored images per registry host, with when each was last checked.

    Built from the CISAs' status lists; `record` applies a check at once so the next choice does
    not wait for the status write to come back through the watch.
    """

    hosts: dict[str, _Host] = field(default_factory=dict)
    owners: dict[str, list[str]] = field(default_factory=dict)
    """image -> names of the CISAs listing it (results are written to each)."""

    @classmethod
    def build(
        cls,
        cisas: Iterable[tuple[str, Iterable[Listed]]],
        recent: Mapping[str, datetime] | None = None,
    ) -> Schedule:
        """From (CISA name, listed images) pairs; `recent` = checks not yet seen in a status
        (image -> when), which win over older `lastMonitor` values."""
        schedule = cls()
        for name, images in cisas:
            for image, last, out_of_filter in images:
                if out_of_filter:
                    continue
                host = registry_host(image)
                if host is None:
                    continue
                owners = schedule.owners.setdefault(image, [])
                if name not in owners:
                    owners.append(name)
                slot = schedule.hosts.setdefault(host, _Host())
                slot.images[image] = (
                    _older(slot.images[image], last) if image in slot.images else last
                )
                slot.note(last)
        for image, when in (recent or {}).items():
            host = registry_host(image)
            if host is not None and image in schedule.hosts.get(host, _Host()).images:
                schedule.record(image, when)
        return schedule

    def record(self, image: str, when: datetime) -> None:
        """A check of `image` happened at `when`."""
        host = registry_host(image)
        if host is None or host not in self.hosts:
            return
        slot = self.hosts[host]
        previous = slot.images.get(image)
        if image in slot.images and (previous is None or when > previous):
            slot.images[image] = when
        slot.note(when)

    def next_image(self, host: str) -> str | None:
        """Never checked first (in listing order), else the one checked longest ago."""
        slot = self.hosts.get(host)
        if slot is None or not slot.images:
            return None
        oldest: tuple[datetime, str] | None = None
        for image, last in slot.images.items():
            if last is None:
                return image
            if oldest is None or last < oldest[0]:
                oldest = (last, image)
        return oldest[1] if oldest is not None else None

    def last_monitor(self, image: str) -> datetime | None:
        host = registry_host(image)
        slot = self.hosts.get(host) if host is not None else None
        return slot.images.get(image) if slot is not None else None

    def registry_last_monitor(self, host: str) -> datetime | None:
        """The newest check of any image of `host` (upstream's `registryLastMonitor`)."""
        slot = self.hosts.get(host)
        return slot.newest if slot is not None else None

    def images(self, host: str) -> list[str]:
        slot = self.hosts.get(host)
        return list(slot.images) if slot is not None else []

    def __len__(self) -> int:
        return sum(len(slot.images) for slot in self.hosts.values())
