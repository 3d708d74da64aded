"""The availability board: what the monitor, the replicator and the webhook learn about images and
registries, shared through Redis so the webhook answers from it in one round trip per admission.

One JSON string per image reference and per registry host, each with a TTL: a missing entry means
"unknown" (never "available"), so a stale board can only cost an active check, not a wrong route.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kuikcore.coord.connection import OUTAGE_ERRORS, Coord
from kuikcore.health.state import SILENT_DOWN_AFTER, HostHealth
from kuikcore.names import AvailabilityStatus

__all__ = [
    "AvailabilityBoard",
    "BoardSnapshot",
    "HostReport",
    "ImageAvailability",
    "decode_image",
    "decode_registry",
]

_READ_ERRORS: tuple[type[Exception], ...] = (*OUTAGE_ERRORS, TimeoutError)

# The hysteresis rule of `kuikcore.health.state.fold`, applied atomically for every writer.
# KEYS: host key. ARGV: ok (1/0), at (unix s), by, error, up_after, ttl ms, silent (1/0),
# silent_down_after. Returns {up (1/0), transition (1/0)}.
_REPORT_REGISTRY = """
local cur = redis.call('GET', KEYS[1])
local d = false
if cur then
  local ok, v = pcall(cjson.decode, cur)
  if ok and type(v) == 'table' and type(v.up) == 'boolean'
     and type(v.confirmed_at) == 'number' then d = v end
end
local seen_ok, at, by, err = ARGV[1] == '1', tonumber(ARGV[2]), ARGV[3], ARGV[4]
local up_after, silent = tonumber(ARGV[5]), ARGV[7] == '1'
local transition = 0
if not d then
  d = {up = seen_ok, confirmed_at = at, since = at, by = by, successes = 0, silences = 0}
  if not seen_ok then d.error = err; transition = 1 end
elseif at < d.confirmed_at then
  return {d.up and 1 or 0, 0}
elseif not seen_ok then
  if d.up then
    local silences = 0
    if silent then silences = (tonumber(d.silences) or 0) + 1 end
    if silent and silences < tonumber(ARGV[8]) then
      d.confirmed_at, d.silences = at, silences
    else
      d = {up = false, confirmed_at = at, since = at, by = by, error = err, successes = 0,
           silences = 0}
      transition = 1
    end
  else
    d.confirmed_at, d.error, d.successes = at, err, 0
  end
elseif d.up then
  d.confirmed_at, d.silences = at, 0
else
  d.successes = (tonumber(d.successes) or 0) + 1
  if d.successes >= up_after then
    d = {up = true, confirmed_at = at, since = at, by = by, successes = 0, silences = 0}
    transition = 1
  else
    d.confirmed_at = at
  end
end
redis.call('SET', KEYS[1], cjson.encode(d), 'PX', ARGV[6])
return {d.up and 1 or 0, transition}
"""


def _instant(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


@dataclass(frozen=True, slots=True)
class ImageAvailability:
    """The last known check of one image reference."""

    status: AvailabilityStatus
    checked_at: datetime
    digest: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "status": self.status.value,
                "checked_at": self.checked_at.timestamp(),
                "digest": self.digest,
                "error": self.error,
            },
            separators=(",", ":"),
        )


def decode_image(text: str | None) -> ImageAvailability | None:
    """Parse a board entry; anything missing, garbled or of an unknown status is unknown (None)."""
    data = _load(text)
    if data is None:
        return None
    try:
        status = AvailabilityStatus(str(data.get("status")))
    except ValueError:
        return None
    checked_at = _instant(data.get("checked_at"))
    if checked_at is None:
        return None
    digest, error = data.get("digest"), data.get("error")
    return ImageAvailability(
        status=status,
        checked_at=checked_at,
        digest=digest if isinstance(digest, str) else None,
        error=error if isinstance(error, str) else None,
    )


def decode_registry(text: str | None) -> HostHealth | None:
    """A host's folded health; anything missing or garbled is unknown (None)."""
    data = _load(text)
    if data is None or not isinstance(data.get("up"), bool):
        return None
    confirmed_at, since = data.get("confirmed_at"), data.get("since")
    if not isinstance(confirmed_at, int | float) or isinstance(confirmed_at, bool):
        return None
    error, by = data.get("error"), data.get("by")
    successes, silences = data.get("successes"), data.get("silences")
    return HostHealth(
        up=data["up"],
        confirmed_at=float(confirmed_at),
        since=float(since) if isinstance(since, int | float) else float(confirmed_at),
        by=by if isinstance(by, str) else "",
        error=error if isinstance(error, str) and error else None,
        successes=successes if isinstance(successes, int) else 0,
        silences=silences if isinstance(silences, int) else 0,
    )


def _load(text: str | None) -> Mapping[str, Any] | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True, slots=True)
class HostReport:
    up: bool
    transition: bool
    """This report changed the host's state (and no other writer's did)."""


@dataclass(frozen=True, slots=True)
class BoardSnapshot:
    """What one read returned; `None` values (and absent keys) mean unknown."""

    images: dict[str, ImageAvailability | None]
    registries: dict[str, HostHealth | None]
    complete: bool = True  # False when the board could not be read in time: all unknown

    def registry_down(self, host: str) -> bool:
        """Marked down, however long ago: readers that care how fresh ask `HostHealth.knowledge`."""
        health = self.registries.get(host)
        return health is not None and not health.up


class AvailabilityBoard:
    """Reads and writes of the board. TTLs: `image_ttl` for images, `registry_ttl` for hosts (a
    host entry outlives its freshness on purpose: readers judge freshness by `confirmed_at`)."""

    def __init__(
        self,
        coord: Coord,
        *,
        image_ttl: float = 600.0,
        registry_ttl: float = 600.0,
        up_after: int = 2,
    ) -> None:
        if up_after < 1:
            raise ValueError(f"up_after must be at least 1, got {up_after}")
        self.coord = coord
        self.image_ttl = image_ttl
        self.registry_ttl = registry_ttl
        self.up_after = up_after
        self._report_registry = coord.redis.register_script(_REPORT_REGISTRY)

    async def read(
        self,
        references: Iterable[str] = (),
        hosts: Iterable[str] = (),
        *,
        deadline: float | None = None,
    ) -> BoardSnapshot:
        """Every candidate image and registry host of an admission in one MGET.

        With `deadline` (seconds) the read never raises: Redis slow or down gives an all-unknown
        snapshot with `complete=False`, so an admission never waits on Redis longer than that."""
        refs, hosts_ = list(dict.fromkeys(references)), list(dict.fromkeys(hosts))
        keys = [self.coord.keys.board_image(r) for r in refs]
        keys += [self.coord.keys.board_registry(h) for h in hosts_]
        if not keys:
            return BoardSnapshot(images={}, registries={})
        try:
            async with asyncio.timeout(deadline):
                values: list[str | None] = await self.coord.redis.mget(keys)  # type: ignore[assignment]
        except _READ_ERRORS:
            if deadline is None:
                raise
            return BoardSnapshot(
                images=dict.fromkeys(refs), registries=dict.fromkeys(hosts_), complete=False
            )
        return BoardSnapshot(
            images={r: decode_image(v) for r, v in zip(refs, values, strict=False)},
            registries={
                h: decode_registry(v) for h, v in zip(hosts_, values[len(refs) :], strict=True)
            },
        )

    async def publish_images(
        self, results: Mapping[str, ImageAvailability], *, ttl: float | None = None
    ) -> None:
        """Record check results (reference -> availability), each expiring after `ttl` seconds."""
        if not results:
            return
        px = int((ttl or self.image_ttl) * 1000)
        async with self.coord.redis.pipeline(transaction=False) as pipe:
            for reference, availability in results.items():
                pipe.set(self.coord.keys.board_image(reference), availability.to_json(), px=px)
            await pipe.execute()

    async def publish_image(
        self,
        reference: str,
        status: AvailabilityStatus,
        *,
        digest: str | None = None,
        error: str | None = None,
        checked_at: datetime | None = None,
        ttl: float | None = None,
    ) -> ImageAvailability:
        availability = ImageAvailability(
            status=AvailabilityStatus(status),
            checked_at=checked_at or datetime.now(UTC),
            digest=digest,
            error=error,
        )
        await self.publish_images({reference: availability}, ttl=ttl)
        return availability

    async def report_registry(
        self,
        host: str,
        *,
        reachable: bool,
        by: str,
        error: str | None = None,
        silent: bool = False,
        at: float | None = None,
        up_after: int | None = None,
        ttl: float | None = None,
    ) -> HostReport:
        """Fold one observation into the host's health, atomically across every writer.

        `reachable` means the registry answered at all (a 404 or 401 is an answer); `silent` that
        nothing came back in time. Down at the first definite failure or the second silence in a
        row, up after `up_after` consecutive answers (see `kuikcore.health.state`). The report says whether this call made the transition, so
        exactly one writer logs it and emits its Event."""
        up, transition = await self._report_registry(
            keys=[self.coord.keys.board_registry(host)],
            args=[
                1 if reachable else 0,
                time.time() if at is None else at,
                by,
                error or "",
                up_after or self.up_after,
                int((ttl or self.registry_ttl) * 1000),
                1 if silent else 0,
                SILENT_DOWN_AFTER,
            ],
        )
        return HostReport(up=bool(int(up)), transition=bool(int(transition)))
