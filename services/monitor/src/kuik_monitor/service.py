"""The monitor service's body. Today: nothing beyond the shared health and metrics server.

Extension point for the monitor issue (issue 10): connect to Redis, start the tracker and, under
leadership, the per-registry scheduler (`ctx.config.monitoring.registry_config(host)`); add
`/status/images` with `ctx.health.add_route`, register readiness checks, then call
`ctx.mark_started()`. Cancellation is the stop signal.
"""

from __future__ import annotations

import asyncio

from kuikcore.service import ServiceContext

__all__ = ["run"]


async def run(ctx: ServiceContext) -> None:
    ctx.mark_started()
    ctx.log.info("no tracker or scheduler yet: serving health and metrics only")
    await asyncio.Event().wait()  # until cancelled
