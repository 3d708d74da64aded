"""Usage records for multi-cluster garbage collection: which mirrored images each cluster uses.

Each cluster sharing a Redis writes, under its cluster ID, a ZSET of mirrored image -> last time
it saw a Pod use it. Cleanup in any cluster reads every cluster's records before deleting a mirror,
so one cluster never deletes what another still runs. Records older than `retention` are pruned,
and a cluster silent for that long disappears with its key's TTL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kuikcore.coord.connection import Coord

__all__ = ["UsageRecords"]


class UsageRecords:
    """This cluster's records (writes) and every cluster's records (reads)."""

    def __init__(self, coord: Coord, cluster_id: str, *, retention: float = 30 * 86_400.0) -> None:
        if not cluster_id or any(c.isspace() for c in cluster_id):
            raise ValueError(f"cluster ID {cluster_id!r}: must be non-empty and without whitespace")
        self.coord = coord
        self.cluster_id = cluster_id
        self.retention = retention

    async def record(self, images: Iterable[str], *, seen_at: datetime | None = None) -> None:
        """Note that this cluster uses `images` now (last-seen times only move forward)."""
        now = time.time()
        when = seen_at.timestamp() if seen_at else now
        mapping = dict.fromkeys(images, when)
        key = self.coord.keys.usage(self.cluster_id)
        clusters = self.coord.keys.usage_clusters()
        ttl_ms = int(self.retention * 1000)
        async with self.coord.redis.pipeline(transaction=True) as pipe:
            if mapping:
                pipe.zadd(key, mapping, gt=True)
            pipe.zremrangebyscore(key, "-inf", now - self.retention)
            pipe.pexpire(key, ttl_ms)
            pipe.zadd(clusters, {self.cluster_id: now})
            pipe.zremrangebyscore(clusters, "-inf", now - self.retention)
            pipe.pexpire(clusters, ttl_ms)
            await pipe.execute()

    async def forget(self, images: Iterable[str]) -> None:
        """This cluster no longer uses `images` (e.g. their mirror was deleted)."""
        names = list(images)
        if names:
            await self.coord.redis.zrem(self.coord.keys.usage(self.cluster_id), *names)

    async def clusters(self) -> dict[str, datetime]:
        """Every cluster that recorded usage within the retention, with its last write."""
        items: Any = await self.coord.redis.zrange(
            self.coord.keys.usage_clusters(), 0, -1, withscores=True
        )
        return {str(c): datetime.fromtimestamp(float(s), UTC) for c, s in items}

    async def last_seen(self, images: Iterable[str]) -> dict[str, dict[str, datetime]]:
        """image -> {cluster ID -> last seen} over every cluster (this one included); images no
        cluster recorded map to an empty dict."""
        names = list(dict.fromkeys(images))
        clusters = list(await self.clusters())
        result: dict[str, dict[str, datetime]] = {name: {} for name in names}
        if not names or not clusters:
            return result
        async with self.coord.redis.pipeline(transaction=False) as pipe:
            for cluster in clusters:
                pipe.zmscore(self.coord.keys.usage(cluster), names)
            replies = await pipe.execute()
        horizon = time.time() - self.retention
        for cluster, scores in zip(clusters, replies, strict=True):
            for name, score in zip(names, scores, strict=True):
                if score is not None and float(score) >= horizon:
                    result[name][cluster] = datetime.fromtimestamp(float(score), UTC)
        return result

    async def used_elsewhere(self, image: str, *, since: datetime) -> list[str]:
        """IDs of the *other* clusters that saw `image` in use at or after `since`."""
        seen = (await self.last_seen([image]))[image]
        return sorted(c for c, t in seen.items() if c != self.cluster_id and t >= since)
