"""`kuik-monitor`: wiring of the monitor's parts into one process.

Every replica watches Pods and CISAs, serves `/status/images` and the monitoring metrics from
that view (the statuses are the shared state), and campaigns for the `monitor` leadership in
Redis; only the leader tracks and checks (`leader.Leader`). Readiness: the cluster view is synced.
Redis down does not make a replica unready: it still serves `/status/images` and the metrics from
that view; Redis's state is the `kube_image_keeper_redis_up` gauge and a log line per change.
"""

from __future__ import annotations

import asyncio

from kuik_monitor.budget import Budget
from kuik_monitor.checker import Checker
from kuik_monitor.http import status_handler
from kuik_monitor.leader import CISA, Leader
from kuik_monitor.metrics import MonitoringCollector
from kuikcore.api import ClusterImageSetAvailability
from kuikcore.cluster import POD, SECRET
from kuikcore.cluster.open import open_cluster
from kuikcore.coord import AvailabilityBoard, Leadership, RateLimiter, watch_health
from kuikcore.health.keeper import HealthKeeper
from kuikcore.registry import RegistryClient, RetryPolicy
from kuikcore.service import ServiceContext
from kuikcore.supervise import Loop, stop_tasks

__all__ = ["LEADER_ROLE", "run"]

LEADER_ROLE = "monitor"


async def run(ctx: ServiceContext) -> None:
    config = ctx.config
    coord = ctx.connect_coord()  # leadership and budgets live in Redis
    cluster = await open_cluster(
        config.cluster, field_manager="kuik-monitor", kinds=(POD, SECRET, CISA)
    )
    # One request per check: retries (5xx, 429 waits) would spend budget the limiter never saw.
    client = RegistryClient.from_config(
        config, retry=RetryPolicy(attempts=1), user_agent="kuik-monitor"
    )
    store = cluster.store
    health = HealthKeeper.for_service(
        config, client.transport, coord=coord, cluster=cluster, service="monitor",
        registry=ctx.metrics,
    )  # fmt: skip

    def cisas() -> list[ClusterImageSetAvailability]:
        return list(store.resources(CISA))

    def not_listable() -> str | None:
        return None if cluster.synced else "cluster view not synced yet"

    buckets = config.metrics.image_last_monitor_age_minutes.legacy.buckets()
    ctx.metrics.register(MonitoringCollector(cisas, buckets))
    ctx.health.add_route("GET", "/status/images", status_handler(cisas, not_listable))

    ctx.track_cluster(cluster)

    leader = Leader(
        config=config,
        cluster=cluster,
        checker=Checker(client=client, secrets=cluster, pods_using=store.pods_by_image),
        budget=Budget(RateLimiter(coord)),
        board=AvailabilityBoard(coord),
        supervisor=ctx.supervisor,
    )
    leadership = Leadership(coord, LEADER_ROLE, service="monitor", registry=ctx.metrics)
    unsubscribe = cluster.subscribe(leader.on_change)
    background = [
        asyncio.create_task(ctx.supervisor.run(Loop.REGISTRY_HEALTH, health.run)),
        asyncio.create_task(
            ctx.supervisor.run(Loop.REDIS_HEALTH, lambda: watch_health(coord, ctx.metrics))
        ),
    ]
    try:
        await cluster.start()
        ctx.mark_started()
        await cluster.wait_synced()
        ctx.log.info("cluster view synced, campaigning for leadership", role=LEADER_ROLE)
        await ctx.supervisor.run(Loop.MONITOR_LEADERSHIP, lambda: leadership.run(leader.run))
    finally:
        unsubscribe()
        await stop_tasks(*background)
        await cluster.stop()
        await client.close()
        await coord.aclose()
