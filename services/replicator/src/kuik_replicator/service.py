"""The replicator service's body. Today: nothing beyond the shared health and metrics server.

Extension point for the replicator issue (issue 9): connect to Redis (`ctx.config.redis`), start
`ctx.config.mirroring.workers` copy workers and, under leadership, the planner and cleanup; register
readiness checks on `ctx.health`, then call `ctx.mark_started()`. Cancellation is the stop signal.
"""

from __future__ import annotations

import asyncio

from kuikcore.service import ServiceContext

__all__ = ["run"]


async def run(ctx: ServiceContext) -> None:
    ctx.mark_started()
    ctx.log.info("no planner or workers yet: serving health and metrics only")
    await asyncio.Event().wait()  # until cancelled
