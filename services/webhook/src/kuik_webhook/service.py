"""The webhook service's body: wire the cluster cache, Redis (optional), the registry client and
the admission server, then serve until cancelled.

Readiness is the CR cache's first complete listing; Redis is optional (no URL, or Redis down:
active checks only), so it never makes the webhook unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc

from kuik_webhook.chooser import Chooser
from kuik_webhook.handler import AdmissionHandler
from kuik_webhook.metrics import WebhookMetrics
from kuik_webhook.secrets import SecretReader
from kuik_webhook.server import AdmissionServer, CertReloader, build_app
from kuik_webhook.stale import StaleMirrorReporter
from kuikcore.api.models import (
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    ReplicatedImageSet,
)
from kuikcore.cluster import NAMESPACE, SECRET, Change, ClusterSource
from kuikcore.cluster.open import open_cluster
from kuikcore.coord import AvailabilityBoard, Coord, watch_health
from kuikcore.health.keeper import HealthKeeper
from kuikcore.mirroring import queue_cluster_id
from kuikcore.registry import RegistryClient
from kuikcore.routing import RoutingOptions
from kuikcore.service import ServiceContext
from kuikcore.supervise import Loop, stop_tasks

__all__ = ["WATCHED_KINDS", "run"]

WATCHED_KINDS = (
    SECRET,
    NAMESPACE,  # for the mode label (kuikcore.mode)
    ClusterImageSetMirror.KIND,
    ImageSetMirror.KIND,
    ClusterReplicatedImageSet.KIND,
    ReplicatedImageSet.KIND,
)


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
# Above asyncio's TLS read size (each read allocates 256 KiB): a 128 KiB pin sent every TLS read to
# mmap/munmap and cost a quarter of the webhook's throughput (bench/webhook.py, paired run).
MMAP_THRESHOLD = 1024 * 1024


def pin_mmap_threshold() -> bool:
    """Keep glibc from retaining freed request buffers: True when done (glibc only).

    glibc raises its mmap threshold to the size of the largest block freed so far (up to 32
    MiB), so after one 16 MiB body later large buffers come from the heap, which it rarely gives
    back: the soak benchmark's webhook kept ~40 MiB of freed memory after 10,000 requests (2.5
    MiB with the threshold pinned). Pinning it sends every buffer over 1 MiB (request bodies, their
    inflation) to its own mapping, returned when freed; the 256 KiB buffer of each TLS read stays
    on the heap, where it is reused."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to pin
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def _coord(ctx: ServiceContext) -> Coord | None:
    """Redis is optional here: without it the webhook decides from active checks alone."""
    if not ctx.config.redis.url:
        ctx.log.info("no Redis configured: availability from active checks only")
        return None
    return ctx.connect_coord(retries=1)  # an admission cannot wait for long reconnects


async def _cluster_id(ctx: ServiceContext, cluster: ClusterSource) -> str | None:
    """The replicator's queue is per cluster: the id it uses, or None (no stale-mirror reports)."""
    try:
        async with asyncio.timeout(5):
            return await queue_cluster_id(ctx.config.cluster_id, cluster)
    except Exception as exc:
        ctx.log.warning("no cluster id: stale mirrors will not be reported", error=repr(exc))
        return None


async def run(ctx: ServiceContext) -> None:
    pin_mmap_threshold()
    config = ctx.config
    metrics = WebhookMetrics(ctx.metrics)
    cluster = await open_cluster(config.cluster, field_manager="kuik-webhook", kinds=WATCHED_KINDS)
    coord = _coord(ctx)
    client = RegistryClient.from_config(config, user_agent="kuik-webhook")
    health = HealthKeeper.for_service(
        config,
        client.transport,
        coord=coord,
        cluster=cluster,
        service="webhook",
        registry=ctx.metrics,
    )
    active = config.routing.active_check
    chooser = Chooser(
        client,
        board=AvailabilityBoard(coord) if coord is not None else None,
        metrics=metrics,
        check_timeout=active.timeout.total_seconds(),
        cache_ttl=config.webhook.cache_ttl.total_seconds(),
        resolve_digest=active.resolve_digest,
        health=health,
    )
    cluster_id = await _cluster_id(ctx, cluster) if coord is not None else None
    reporter = StaleMirrorReporter(
        coord if cluster_id else None,
        cluster_id or "",
        metrics,
        max_concurrent=active.stale_mirror_cleanup.max_concurrent,
        timeout=active.stale_mirror_cleanup.timeout.total_seconds(),
    )
    handler = AdmissionHandler(
        cluster,
        chooser,
        SecretReader(cluster),
        reporter,
        metrics,
        RoutingOptions.from_config(config),
        deadline=config.webhook.deadline.total_seconds(),
        mode=config.webhook.mode,
        namespace_labels=lambda namespace: cluster.store.namespace_labels(namespace),
    )
    routing_kinds = set(WATCHED_KINDS) - {SECRET, NAMESPACE}

    def on_change(change: Change) -> None:
        if change.key.kind in routing_kinds:
            handler.routes.invalidate()

    unsubscribe = cluster.subscribe(on_change)
    reloader = None
    if config.webhook.tls_cert is not None and config.webhook.tls_key is not None:
        reloader = CertReloader(config.webhook.tls_cert, config.webhook.tls_key)
    else:
        ctx.log.warning(
            "no serving certificate (webhook.tlsCert/tlsKey): plain HTTP, for local use only; "
            "the Kubernetes API server only calls webhooks over HTTPS"
        )
    server = AdmissionServer(build_app(handler))
    tasks: list[asyncio.Task[None]] = []
    try:
        await cluster.start()
        tasks.append(asyncio.create_task(ctx.supervisor.run(Loop.REGISTRY_HEALTH, health.run)))

        ctx.track_cluster(cluster)
        await server.start(config.webhook.listen, reloader.context if reloader else None)
        if coord is not None:
            tasks.append(
                asyncio.create_task(
                    ctx.supervisor.run(Loop.REDIS_HEALTH, lambda: watch_health(coord, ctx.metrics))
                )
            )
        if reloader is not None:
            tasks.append(
                asyncio.create_task(ctx.supervisor.run(Loop.WEBHOOK_CERT_RELOADER, reloader.run))
            )
        ctx.log.info(
            "admission endpoint listening",
            listen=str(config.webhook.listen),
            port=server.port,
            tls=reloader is not None,
        )
        # Everything built so far lives as long as the process: keep it out of every later
        # garbage collection, which admissions (allocation-heavy) would otherwise trigger often.
        gc.collect()
        gc.freeze()
        ctx.mark_started()
        await asyncio.Event().wait()  # until cancelled
    finally:
        unsubscribe()
        await stop_tasks(*tasks)
        with contextlib.suppress(Exception):
            await server.stop()
        handler.log.flush()  # the last batched `rerouting image` lines
        await reporter.close()
        await chooser.close()
        await health.close()
        await client.close()
        with contextlib.suppress(Exception):
            await cluster.stop()
        if coord is not None:
            with contextlib.suppress(Exception):
                await coord.aclose()
