"""Stale mirror reports (upstream §1.8, reworked): a (C)ISM mirror that answers NotFound while
the CR's status says it was mirrored is reported to the replicator with
`kuikcore.mirroring.report_stale_mirror` (a copy job on its expedite lane), so it is copied
again before routine work and the replicator's leader stays the only writer of CR status.

Never on a dry run. At most one report per mirror per `interval` from this process (the queue
de-duplicates across replicas while a job is pending), at most
`routing.activeCheck.staleMirrorCleanup.maxConcurrent` in flight (0 disables), each bounded by
`staleMirrorCleanup.timeout`. Reports run in the background: the admission never waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from kuik_webhook.cache import TTLCache
from kuik_webhook.metrics import WebhookMetrics
from kuikcore.api.models import ClusterImageSetMirror, ImageSetMirror, Resource
from kuikcore.coord import Coord
from kuikcore.mirroring import report_stale_mirror
from kuikcore.routing import SecretRef

__all__ = ["StaleMirror", "StaleMirrorReporter", "stale_mirror_job"]

log = structlog.get_logger("kuik.webhook")


@dataclass(frozen=True, slots=True)
class StaleMirror:
    owner: str  # the (C)ISM's key, for logs
    source: str
    mirror: str
    credential_secret: SecretRef | None


def stale_mirror_job(
    owner: Resource | None, mirror: str, credential_secret: SecretRef | None = None
) -> StaleMirror | None:
    """The report for `mirror`, when `owner` is a (C)ISM whose status says it is mirrored."""
    if not isinstance(owner, ClusterImageSetMirror | ImageSetMirror):
        return None
    for matching in owner.status.matching_images or ():
        for entry in matching.mirrors or ():
            if entry.image == mirror and entry.mirrored_at is not None:
                return StaleMirror(owner.key, matching.image, mirror, credential_secret)
    return None


class StaleMirrorReporter:
    def __init__(
        self,
        coord: Coord | None,
        cluster_id: str,
        metrics: WebhookMetrics,
        *,
        max_concurrent: int,
        timeout: float,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coord = coord
        self.cluster_id = cluster_id
        self.metrics = metrics
        self.max_concurrent = max_concurrent
        self.timeout = timeout
        self._recent: TTLCache[str, bool] = TTLCache(interval, clock=clock)
        self._tasks: set[asyncio.Task[None]] = set()

    def report(self, job: StaleMirror) -> bool:
        """Start sending `job` unless disabled, recently sent or too many in flight."""
        if self.coord is None or self.max_concurrent == 0:
            self.metrics.stale_mirror_reports.labels(result="disabled").inc()
            return False
        if self._recent.get(job.mirror) is not None:
            self.metrics.stale_mirror_reports.labels(result="recent").inc()
            return False
        if len(self._tasks) >= self.max_concurrent:
            log.debug("stale mirror report dropped: too many in flight", mirror=job.mirror)
            self.metrics.stale_mirror_reports.labels(result="dropped").inc()
            return False
        self._recent.set(job.mirror, True)
        task = asyncio.ensure_future(self._send(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, job: StaleMirror) -> None:
        assert self.coord is not None
        secret = job.credential_secret
        try:
            async with asyncio.timeout(self.timeout):
                outcome = await report_stale_mirror(
                    self.coord,
                    self.cluster_id,
                    source=job.source,
                    destination=job.mirror,
                    credential_secret=(secret.namespace, secret.name) if secret else None,
                )
        except Exception as exc:
            log.warning("stale mirror report failed", mirror=job.mirror, error=repr(exc))
            self.metrics.stale_mirror_reports.labels(result="failed").inc()
            return
        log.info(
            "stale mirror reported",
            mirror=job.mirror,
            source=job.source,
            owner=job.owner,
            outcome=outcome.value,
        )
        self.metrics.stale_mirror_reports.labels(result="sent").inc()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
