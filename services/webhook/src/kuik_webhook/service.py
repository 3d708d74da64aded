"""The webhook service's body. Today: nothing beyond the shared health and metrics server.

Extension point for the webhook issue (issue 7): build the routing state here, start the HTTPS
admission server on `ctx.config.webhook.listen` with `webhook.tlsCert`/`tlsKey`, register its
readiness checks on `ctx.health`, then call `ctx.mark_started()`. Cancellation is the stop signal.
"""

from __future__ import annotations

import asyncio

from kuikcore.service import ServiceContext

__all__ = ["run"]


async def run(ctx: ServiceContext) -> None:
    ctx.mark_started()
    ctx.log.info("no admission endpoint yet: serving health and metrics only")
    await asyncio.Event().wait()  # until cancelled
