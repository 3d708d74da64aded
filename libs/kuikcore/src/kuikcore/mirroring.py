"""The replicator's queue contract: what a copy job is and how another service asks for one.

The replicator's leader enqueues one `CopyJob` per (source image, mirror destination) not yet
mirrored; every replicator replica consumes them. The webhook, when an admission finds a mirror
recorded as mirrored but absent (a stale mirror, behaviour reference §1.8), calls
`report_stale_mirror`: the same job on the expedite lane, so the copy happens before routine
work and the replicator's leader stays the only writer of (C)ISM status.

Queues are per cluster (`replicator:<cluster id>`): clusters sharing one Redis share mirror
registries and usage records, but a job's source credentials come from its own cluster's Pods.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from kuikcore.cluster.interface import ClusterSource
from kuikcore.coord import EXPEDITE, ROUTINE, Coord, Enqueued, Job, JobQueue

__all__ = [
    "EXPEDITE",
    "ROUTINE",
    "CopyJob",
    "SecretName",
    "copy_queue",
    "queue_cluster_id",
    "queue_name",
    "report_stale_mirror",
]


async def queue_cluster_id(configured: str | None, cluster: ClusterSource) -> str:
    """Which cluster's copy queue to use: config `clusterID`, else the backend's own id (the
    kube-system namespace's UID, or a stable id of the local directory). The replicator consumes
    it and the webhook reports stale mirrors to it, so both must compute it the same way."""
    return configured or await cluster.cluster_id()


class SecretName(BaseModel):
    """Where a mirror's `credentialSecret` lives (a reference: never the secret itself)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str


class CopyJob(Job):
    """Copy `source` (a Pod's normalised image) to `destination` (its mirror reference).

    `credential_secret` is the mirror's destination secret (longest-prefix rule applied by the
    planner); source credentials are found by the worker from the Pods using `source`.
    """

    kind: ClassVar[str] = "copy"
    version: ClassVar[int] = 1

    source: str
    destination: str
    credential_secret: SecretName | None = None

    def job_key(self) -> str:
        return f"copy:{self.source}->{self.destination}"


def queue_name(cluster_id: str) -> str:
    return f"replicator:{cluster_id}"


def copy_queue(coord: Coord, cluster_id: str, **options: object) -> JobQueue:
    """The copy queue of one cluster; `options` are `JobQueue` settings (timeouts, retries)."""
    return JobQueue(coord, queue_name(cluster_id), [CopyJob], **options)  # type: ignore[arg-type]


async def report_stale_mirror(
    coord: Coord,
    cluster_id: str,
    *,
    source: str,
    destination: str,
    credential_secret: tuple[str, str] | None = None,
) -> Enqueued:
    """Ask the replicator to re-copy `source` to `destination` before routine work.

    `credential_secret` is (namespace, name) of the mirror's secret, when it has one.
    """
    secret = None
    if credential_secret is not None:
        secret = SecretName(namespace=credential_secret[0], name=credential_secret[1])
    job = CopyJob(source=source, destination=destination, credential_secret=secret)
    return await copy_queue(coord, cluster_id).enqueue(job, lane=EXPEDITE)
