"""Copy workers: every replica consumes the cluster's copy queue.

One job = one (source image, mirror destination). The worker
- finds source credentials in the pull secrets of the Pods using the image (each Pod's set in
  turn: `kuikcore.credentials`), destination credentials in the job's mirror secret;
- holds a slot of the per-registry semaphore (`mirroring.maxConcurrentPerRegistry`, in Redis)
  for the source and the destination registry, so replicas × workers never flood a registry;
- copies with kuikcore's registry client: the destination is HEADed first, and when it already
  holds the wanted digest nothing is uploaded; blobs go first and the tag last, so a worker
  killed mid-copy leaves no tag on a half image, and its job is reclaimed by another worker;
- keeps `mirroring.platforms` of an index, except for a digest-pinned source, copied whole and
  verbatim so its digest survives;
- appends the outcome to the result stream (the leader folds it into status) and publishes the
  mirror's availability on the board for the webhook. A failure is retried by the queue with
  capped exponential backoff.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import structlog

from kuik_replicator.metrics import ReplicatorMetrics
from kuik_replicator.status import CopyOutcome, ResultLog
from kuikcore import registry
from kuikcore.api import AvailabilityStatus, format_time
from kuikcore.cluster import ClusterSource
from kuikcore.config import Config
from kuikcore.coord import AvailabilityBoard, Coord, Delivery, Semaphore
from kuikcore.credentials import (
    candidate_pod_secrets,
    read_credential_set,
    read_credential_sets,
)
from kuikcore.mirroring import CopyJob
from kuikcore.reference import parse
from kuikcore.registry import Credentials, Platform, RegistryClient, RegistryError
from kuikcore.routing import SecretRef

__all__ = ["CopyFailed", "CopyWorker", "platforms_from_config"]

log = structlog.get_logger("kuik.replicator.worker")


class CopyFailed(Exception):
    """The copy failed; the message is what status `lastError` says (secrets never in it)."""


def platforms_from_config(config: Config) -> list[Platform]:
    """`mirroring.platforms` as registry platforms (an empty `os` matches any)."""
    return [Platform(p.os, p.architecture, p.variant) for p in config.mirroring.platforms]


class CopyWorker:
    """Handles deliveries of `CopyJob`s (`Worker.run(worker.handle, concurrency=N)`)."""

    def __init__(
        self,
        *,
        cluster: ClusterSource,
        client: RegistryClient,
        coord: Coord,
        results: ResultLog,
        metrics: ReplicatorMetrics,
        platforms: Sequence[Platform],
        per_registry: int,
        board: AvailabilityBoard | None = None,
    ) -> None:
        self.cluster = cluster
        self.client = client
        self.coord = coord
        self.results = results
        self.metrics = metrics
        self.platforms = list(platforms)
        self.per_registry = per_registry
        self.board = board

    async def handle(self, delivery: Delivery) -> None:
        job = delivery.job
        if not isinstance(job, CopyJob):
            raise TypeError(f"unexpected job {type(job).__name__}")
        started = time.monotonic()
        self.metrics.jobs_in_flight.inc()
        try:
            outcome = await self.copy(job, attempt=delivery.attempt)
        finally:
            self.metrics.jobs_in_flight.dec()
            self.metrics.copy_duration.observe(time.monotonic() - started)
        await self.results.append(outcome)
        if outcome.error is not None:
            raise CopyFailed(outcome.error)

    async def _source_credentials(self, image: str) -> list[Credentials] | None:
        pods = self.cluster.store.pods_by_image(image)
        sets = await read_credential_sets(self.cluster, candidate_pod_secrets(pods))
        creds: list[Credentials] = []
        for each in sets:
            for cred in each.credentials(image):
                if cred not in creds:
                    creds.append(cred)
        return creds or None

    async def _destination_credentials(self, job: CopyJob) -> list[Credentials] | None:
        if job.credential_secret is None:
            return None
        ref = SecretRef(name=job.credential_secret.name, namespace=job.credential_secret.namespace)
        found = await read_credential_set(self.cluster, "mirror", (ref,))
        if not found.readable:
            raise CopyFailed(f"destination credentials: {found.error}")
        return found.credentials(job.destination) or None

    async def copy(self, job: CopyJob, *, attempt: int = 0) -> CopyOutcome:
        now = format_time(datetime.now(UTC))
        log.info("mirroring image", image=job.source, mirror=job.destination, attempt=attempt)
        try:
            source = parse(job.source)
            destination = parse(job.destination)
            dst_creds = await self._destination_credentials(job)
            src_creds = await self._source_credentials(job.source)
            hosts = sorted({source.registry_host, destination.registry_host})
            async with AsyncExitStack() as stack:
                for host in hosts:
                    semaphore = Semaphore(self.coord, f"copies:{host}", self.per_registry)
                    await stack.enter_async_context(semaphore.slot())
                result = await registry.copy(
                    self.client,
                    source,
                    destination,
                    platforms=self.platforms,
                    all_platforms=source.is_digest_pinned,
                    src_credentials=src_creds,
                    dst_credentials=dst_creds,
                )
        except RegistryError as exc:
            present = await self._already_there(job)
            if present is None:
                return self._failed(job, now, str(exc))
            # upstream 9969b67: the source failed but the destination holds the image (another
            # cluster copied it, or the source is gone since): that is a mirror all the same
            log.info(
                "source failed but the mirror exists, keeping it",
                image=job.source,
                mirror=job.destination,
                error=str(exc),
            )
            self.metrics.copies.labels(result="unchanged").inc()
            return CopyOutcome(job.source, job.destination, now, digest=present)
        except (CopyFailed, ValueError) as exc:
            return self._failed(job, now, str(exc))
        uploaded = result.manifests_pushed > 0
        self.metrics.copies.labels(result="copied" if uploaded else "unchanged").inc()
        self.metrics.copy_bytes.inc(result.bytes_moved)
        log.info(
            "successfully mirrored image",
            image=job.source,
            mirror=job.destination,
            digest=result.digest,
            platforms=list(result.platforms),
            bytes=result.bytes_moved,
            uploaded=uploaded,
        )
        await self._publish(job.destination, result.digest)
        return CopyOutcome(
            job.source,
            job.destination,
            format_time(datetime.now(UTC)),
            digest=result.digest,
            platforms=result.platforms,
        )

    def _failed(self, job: CopyJob, now: str, error: str) -> CopyOutcome:
        self.metrics.copies.labels(result="failed").inc()
        log.warning("could not mirror image", image=job.source, mirror=job.destination, error=error)
        return CopyOutcome(job.source, job.destination, now, error=error)

    async def _already_there(self, job: CopyJob) -> str | None:
        """The destination's digest when it exists (None when absent or unreadable)."""
        try:
            creds = await self._destination_credentials(job)
            info = await self.client.head_manifest(
                job.destination, credentials=creds[0] if creds else None
            )
        except (RegistryError, CopyFailed, ValueError):
            return None
        return info.digest

    async def _publish(self, destination: str, digest: str) -> None:
        if self.board is None:
            return
        try:
            await self.board.publish_image(destination, AvailabilityStatus.AVAILABLE, digest=digest)
        except Exception as exc:  # the board is advisory: never fail a copy over it
            log.debug("could not publish mirror availability", mirror=destination, error=str(exc))
