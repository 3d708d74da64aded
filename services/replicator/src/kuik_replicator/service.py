"""The replicator service's body: wiring only (see docs/replicator.md).

Every replica runs `mirroring.workers` copy workers on its cluster's queue; one replica at a
time (coord `Leadership`, role `replicator:<cluster id>`) also runs the `Leader` loop (planning,
status folding, cleanup, finalizers). Losing Redis pauses both and they resume by themselves;
losing leadership cancels the leader loop within the lease TTL and campaigning resumes. Each loop
runs under the service's supervisor: a failure restarts that loop, never ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib

from kuik_replicator.cleanup import Cleaner
from kuik_replicator.leader import Leader
from kuik_replicator.metrics import ReplicatorMetrics
from kuik_replicator.reroute_events import RerouteEvents
from kuik_replicator.status import ResultLog
from kuik_replicator.worker import CopyWorker, platforms_from_config
from kuikcore.cluster.health import ClusterNotReady, cluster_ready
from kuikcore.cluster.open import open_cluster
from kuikcore.coord import (
    AvailabilityBoard,
    JobQueue,
    Leadership,
    UsageRecords,
    Worker,
    default_identity,
    watch_health,
)
from kuikcore.coord.connection import OUTAGE_ERRORS
from kuikcore.filters import SkipRules
from kuikcore.health.keeper import HealthKeeper
from kuikcore.mirroring import EXPEDITE, ROUTINE, copy_queue, queue_cluster_id
from kuikcore.registry import RegistryClient
from kuikcore.service import ServiceContext, StartupError
from kuikcore.supervise import Loop, stop_tasks

__all__ = ["run"]

_SYNC_TIMEOUT = 60.0
_DEPTH_PERIOD = 2.0


async def _queue_depth(queue: JobQueue, metrics: ReplicatorMetrics) -> None:
    while True:
        with contextlib.suppress(*OUTAGE_ERRORS):
            stats = await queue.stats()
            for lane in (EXPEDITE, ROUTINE):
                lane_stats = stats.lanes.get(lane)
                if lane_stats is not None:
                    metrics.queue_depth.labels(lane=lane).set(lane_stats.ready + lane_stats.delayed)
        await asyncio.sleep(_DEPTH_PERIOD)


async def run(ctx: ServiceContext) -> None:
    config = ctx.config
    mirroring = config.mirroring
    coord = ctx.connect_coord()
    metrics = ReplicatorMetrics.create(ctx.metrics)
    cluster = await open_cluster(config.cluster, field_manager="kuik-replicator")
    client = RegistryClient.from_config(config, user_agent="kuik-replicator")
    health = HealthKeeper.for_service(
        config,
        client.transport,
        coord=coord,
        cluster=cluster,
        service="replicator",
        registry=ctx.metrics,
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        await cluster.start()
        ctx.track_cluster(cluster)  # /readyz says why while the first listing waits
        try:
            async with asyncio.timeout(_SYNC_TIMEOUT):
                await cluster.wait_synced()
        except TimeoutError:
            try:
                await cluster_ready(cluster)
                why = "no answer"
            except ClusterNotReady as exc:
                why = str(exc)
            raise StartupError(
                f"the cluster view did not sync within {_SYNC_TIMEOUT:g}s: {why}"
            ) from None
        cluster_id = await queue_cluster_id(config.cluster_id, cluster)
        identity = default_identity()
        queue = copy_queue(
            coord,
            cluster_id,
            visibility_timeout=mirroring.job_timeout.total_seconds(),
            max_attempts=1000,
            retry_base=1.0,
            retry_cap=300.0,
        )
        results = ResultLog(coord, cluster_id)
        usage = UsageRecords(coord, cluster_id)
        worker = CopyWorker(
            cluster=cluster,
            client=client,
            coord=coord,
            results=results,
            metrics=metrics,
            platforms=platforms_from_config(config),
            per_registry=mirroring.max_concurrent_per_registry,
            board=AvailabilityBoard(coord),
        )
        cleaner = Cleaner(
            coord=coord,
            client=client,
            usage=usage,
            secrets=cluster,
            recent=max(3 * mirroring.resync_interval, mirroring.job_timeout),
            on_result=lambda result: metrics.deletions.labels(result=result).inc(),
        )
        leader = Leader(
            cluster=cluster,
            queue=queue,
            results=results,
            usage=usage,
            cleaner=cleaner,
            skip=SkipRules.parse(config.skip_labels, config.skip_annotations),
            resync=mirroring.resync_interval,
            expedite_window=mirroring.expedite_window,
            supervisor=ctx.supervisor,
            events=RerouteEvents(
                cluster, coord, cluster_id, config.reroute_events, metrics.reroute_events
            )
            if config.reroute_events.enabled
            else None,
        )
        leadership = Leadership(
            coord,
            f"replicator:{cluster_id}",
            service="replicator",
            ttl=mirroring.leader_ttl.total_seconds(),
            identity=identity,
            registry=ctx.metrics,
        )

        async def work() -> None:
            async with Worker(queue, identity) as consumer:
                await consumer.run(worker.handle, concurrency=mirroring.workers)

        async def lead() -> None:
            await leadership.run(leader.run)

        async def redis_ready() -> bool:
            return await coord.ping()

        ctx.health.add_readiness_check("redis", redis_ready)
        supervise = ctx.supervisor.run
        tasks = [
            asyncio.create_task(supervise(Loop.REPLICATOR_WORKERS, work)),
            asyncio.create_task(supervise(Loop.REPLICATOR_LEADERSHIP, lead)),
            asyncio.create_task(
                supervise(Loop.REPLICATOR_QUEUE_DEPTH, lambda: _queue_depth(queue, metrics))
            ),
            asyncio.create_task(
                supervise(Loop.REDIS_HEALTH, lambda: watch_health(coord, ctx.metrics))
            ),
            asyncio.create_task(supervise(Loop.REGISTRY_HEALTH, health.run)),
        ]
        ctx.log.info(
            "replicator started",
            cluster_id=cluster_id,
            identity=identity,
            workers=mirroring.workers,
        )
        ctx.mark_started()
        await asyncio.gather(*tasks)  # supervised: they end only when cancelled
    finally:
        await stop_tasks(*tasks)
        await health.close()
        await client.close()
        await cluster.stop()
        await coord.aclose()
