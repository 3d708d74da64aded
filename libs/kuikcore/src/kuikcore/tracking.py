"""`unusedSince` bookkeeping over status image lists (pure, no I/O).

The replicator ((C)ISM `status.matchingImages`, behaviour reference §1.6 step 7) and the monitor
(CISA `status.images`, §1.11 step 2) keep the same kind of list: one entry per image, keyed by
`image`, whose `unusedSince` says since when no selected Pod uses it. One function, `track`,
does both; what differs is passed in:

- `matches(image)`: does the image still pass the CR's filter? No ⇒ the instant-expiry marker
  (`0001-01-01T01:00:00Z`), which expires under any retention.
- `in_use`: images some selected Pod uses (current images, plus originals from
  `kuik.enix.io/original-images`). In use ⇒ `unusedSince` cleared.
- `expire_at_once(entry)`: unused entries for which waiting is pointless get the marker instead
  of `now` (CISA: never checked, still `Scheduled`). Default: none.
- `expiry`: entries unused for at least this long are dropped from the list (CISA's
  `unusedImageExpiry`; 0 or None ⇒ nothing dropped, not even marked ones, as upstream). The
  replicator passes None: its entries leave the status only after cleanup deleted their copies.

Entries are API-shaped dicts (camelCase keys, RFC 3339 strings) so the functions run inside a
`cluster.update_status` mutate function. Order is stable: existing entries keep their place,
new images are appended sorted.

Beyond upstream: an entry carrying the marker that matches the filter again and is unused gets
`now` (upstream keeps the marker, so a re-included image would be deleted at once).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kuikcore.api.models import format_time
from kuikcore.names import UNUSED_MARKER

__all__ = [
    "UNUSED_MARKER",
    "UNUSED_MARKER_TIME",
    "Tracked",
    "expires_in",
    "is_expired",
    "next_unused_since",
    "parse_time",
    "track",
]

UNUSED_MARKER_TIME = datetime(1, 1, 1, 1, tzinfo=UTC)

Entry = dict[str, Any]


def parse_time(value: str | datetime) -> datetime:
    """An RFC 3339 status timestamp as an aware datetime (naive values are taken as UTC)."""
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"unusedSince {value!r} is not an RFC 3339 timestamp") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _is_marker(value: str | None) -> bool:
    return value is not None and parse_time(value) == UNUSED_MARKER_TIME


def next_unused_since(
    previous: str | None,
    *,
    matches: bool,
    in_use: bool,
    now: datetime,
    expire_at_once: bool = False,
) -> str | None:
    """The new `unusedSince` of one entry (None = in use)."""
    if not matches:
        return UNUSED_MARKER
    if in_use:
        return None
    if expire_at_once:
        return UNUSED_MARKER
    if previous is None or _is_marker(previous):
        return format_time(now)
    return previous  # set once: the first time it was seen unused


def is_expired(unused_since: str | None, *, now: datetime, after: timedelta | None) -> bool:
    """Unused for at least `after` (a zero/None duration never expires anything)."""
    left = expires_in(unused_since, now=now, after=after)
    return left is not None and left <= timedelta(0)


def expires_in(
    unused_since: str | None, *, now: datetime, after: timedelta | None
) -> timedelta | None:
    """Time left before expiry (<= 0 once expired); None when in use or expiry is disabled."""
    if unused_since is None or after is None or after <= timedelta(0):
        return None
    return parse_time(unused_since) + after - now


@dataclass(frozen=True, slots=True)
class Tracked:
    """Result of `track`: the new list, and what changed in it (for logs and events)."""

    entries: list[Entry]
    added: list[str] = field(default_factory=list)
    became_unused: list[str] = field(default_factory=list)
    stopped_matching: list[str] = field(default_factory=list)
    expired: list[Entry] = field(default_factory=list)


def track(
    entries: Sequence[Mapping[str, Any]] | None,
    *,
    current: Iterable[str],
    matches: Callable[[str], bool],
    in_use: Collection[str],
    now: datetime,
    new_entry: Callable[[str], Entry] | None = None,
    expire_at_once: Callable[[Mapping[str, Any]], bool] | None = None,
    expiry: timedelta | None = None,
) -> Tracked:
    """Update `unusedSince` of every entry, append `current` images not listed yet, drop expired.

    `current` are the images selected Pods use now (they are in use by definition); new entries
    are `new_entry(image)` (default `{"image": image}`).
    """
    make = new_entry or (lambda image: {"image": image})
    out: list[Entry] = []
    seen: set[str] = set()
    became_unused: list[str] = []
    stopped: list[str] = []
    expired: list[Entry] = []
    for old in entries or ():
        entry = dict(old)
        image = str(entry["image"])
        if image in seen:
            continue  # a list map has one entry per key; keep the first
        seen.add(image)
        previous = entry.get("unusedSince")
        value = next_unused_since(
            previous,
            matches=matches(image),
            in_use=image in in_use,
            now=now,
            expire_at_once=expire_at_once(entry) if expire_at_once else False,
        )
        if value != previous:
            if value == UNUSED_MARKER and not matches(image):
                stopped.append(image)
            elif value is not None and previous is None:
                became_unused.append(image)
        if value is None:
            entry.pop("unusedSince", None)
        else:
            entry["unusedSince"] = value
        if is_expired(value, now=now, after=expiry):
            expired.append(entry)
            continue
        out.append(entry)
    added = sorted(set(current) - seen)
    out.extend(make(image) for image in added)
    return Tracked(out, added, became_unused, stopped, expired)
