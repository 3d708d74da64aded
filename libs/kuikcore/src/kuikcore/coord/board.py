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

from kuikcore.api import AvailabilityStatus
from kuikcore.coord.connection import OUTAGE_ERRORS, Coord

__all__ = [
    "AvailabilityBoard",
    "BoardSnapshot",
    "ImageAvailability",
    "RegistryHealth",
    "decode_image",
    "decode_registry",
]

_READ_ERRORS: tuple[type[Exception], ...] = (*OUTAGE_ERRORS, TimeoutError)

# KEYS: registry key. ARGV: reachable (1/0), now (unix s), error, failures before down, ttl ms.
_REPORT_REGISTRY = """
local failures, down_since, last_error = 0, false, false
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if ok and type(d) == 'table' then
    failures = tonumber(d.consecutive_failures) or 0
    if type(d.down_since) == 'number' then down_since = d.down_since end
    if type(d.last_error) == 'string' then last_error = d.last_error end
  end
end
local now = tonumber(ARGV[2])
local up = true
if ARGV[1] == '1' then
  failures = 0
  down_since = false
else
  failures = failures + 1
  last_error = ARGV[3]
  up = failures < tonumber(ARGV[4])
  if not up and not down_since then down_since = now end
end
local out = {up = up, consecutive_failures = failures, checked_at = now}
if down_since then out.down_since = down_since end
if last_error then out.last_error = last_error end
redis.call('SET', KEYS[1], cjson.encode(out), 'PX', ARGV[5])
if up then return 1 end
return 0
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


@dataclass(frozen=True, slots=True)
class RegistryHealth:
    """Whether a registry host answers: down after several consecutive unreachable results, up at
    the first success."""

    up: bool
    checked_at: datetime
    consecutive_failures: int = 0
    down_since: datetime | None = None
    last_error: str | None = None


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


def decode_registry(text: str | None) -> RegistryHealth | None:
    data = _load(text)
    if data is None or not isinstance(data.get("up"), bool):
        return None
    checked_at = _instant(data.get("checked_at"))
    if checked_at is None:
        return None
    failures = data.get("consecutive_failures")
    error = data.get("last_error")
    return RegistryHealth(
        up=data["up"],
        checked_at=checked_at,
        consecutive_failures=failures if isinstance(failures, int) else 0,
        down_since=_instant(data.get("down_since")),
        last_error=error if isinstance(error, str) else None,
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
class BoardSnapshot:
    """What one read returned; `None` values (and absent keys) mean unknown."""

    images: dict[str, ImageAvailability | None]
    registries: dict[str, RegistryHealth | None]
    complete: bool = True  # False when the board could not be read in time: all unknown

    def registry_down(self, host: str) -> bool:
        health = self.registries.get(host)
        return health is not None and not health.up


class AvailabilityBoard:
    """Reads and writes of the board. TTLs: `image_ttl` for images, `registry_ttl` for hosts."""

    def __init__(
        self,
        coord: Coord,
        *,
        image_ttl: float = 600.0,
        registry_ttl: float = 600.0,
        down_after: int = 3,
    ) -> None:
        if down_after < 1:
            raise ValueError(f"down_after must be at least 1, got {down_after}")
        self.coord = coord
        self.image_ttl = image_ttl
        self.registry_ttl = registry_ttl
        self.down_after = down_after
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
        error: str | None = None,
        down_after: int | None = None,
        ttl: float | None = None,
    ) -> bool:
        """Fold one result into the host's health (atomically across writers); True if up after it.

        `reachable` means the registry answered at all (a 404 or 401 is reachable). The host is
        marked down after `down_after` consecutive unreachable results, up at the first success."""
        up = await self._report_registry(
            keys=[self.coord.keys.board_registry(host)],
            args=[
                1 if reachable else 0,
                time.time(),
                error or "",
                down_after or self.down_after,
                int((ttl or self.registry_ttl) * 1000),
            ],
        )
        return bool(int(up))
