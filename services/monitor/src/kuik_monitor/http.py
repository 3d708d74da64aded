"""`GET /status/images[?groupBy=cisa|registry]`: upstream's status endpoint (§1.12), byte for byte.

Served on the metrics listener (`ctx.health.add_route`) by every replica from its own view of
the CISA statuses. Shapes: `{"items":[…],"total":N}`, or `{"groupBy":"…","groups":{"<key>":[…]},
"total":N}`; each image `{"cisa","image","registry","status","unusedSince","lastError",
"lastMonitor"}` in that order, `cisa`/`registry` left out inside their own group, `lastError` left
out when empty, timestamps RFC 3339 UTC or null. The JSON is written like Go's `encoding/json`:
compact, map keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from kuik_monitor.scheduler import registry_host
from kuikcore.api import ClusterImageSetAvailability
from kuikcore.api.models import format_time

__all__ = ["GROUP_BY_ERROR", "go_json", "status_handler", "status_images"]

GROUP_BY_ERROR = 'groupBy must be "cisa" or "registry"'
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def go_json(value: Any) -> str:
    """JSON as Go's `json.Marshal` writes it (dict keys must already be in the wanted order;
    `sort_keys` is applied only where Go sorts: maps, which callers build as plain dicts)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def status_images(
    cisas: Iterable[ClusterImageSetAvailability], group_by: str = ""
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for the endpoint; pure over the CISAs."""
    if group_by not in ("", "cisa", "registry"):
        return 400, {"error": GROUP_BY_ERROR}
    items: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    total = 0
    for cisa in sorted(cisas, key=lambda c: c.name):
        for image in cisa.status.images or ():
            registry = registry_host(image.image)
            if registry is None:
                continue
            item: dict[str, Any] = {}
            if group_by != "cisa":
                item["cisa"] = cisa.name
            item["image"] = image.image
            if group_by != "registry":
                item["registry"] = registry
            item["status"] = image.status.value
            item["unusedSince"] = format_time(image.unused_since) if image.unused_since else None
            if image.last_error:
                item["lastError"] = image.last_error
            item["lastMonitor"] = format_time(image.last_monitor) if image.last_monitor else None
            if group_by:
                groups.setdefault(cisa.name if group_by == "cisa" else registry, []).append(item)
            else:
                items.append(item)
            total += 1
    if group_by:
        return 200, {"groupBy": group_by, "groups": dict(sorted(groups.items())), "total": total}
    return 200, {"items": items, "total": total}


def status_handler(
    cisas: Callable[[], Iterable[ClusterImageSetAvailability]],
    ready: Callable[[], str | None],
) -> Callable[[web.Request], Any]:
    """The aiohttp handler; `ready()` returns why the CISAs cannot be listed, or None."""

    async def handle(request: web.Request) -> web.Response:
        problem = ready()
        if problem is not None:
            code, body = (
                500,
                {"error": f"failed to list ClusterImageSetAvailability resources: {problem}"},
            )
        else:
            code, body = status_images(cisas(), request.query.get("groupBy", ""))
        return web.Response(
            status=code,
            body=go_json(body).encode(),
            headers={"Content-Type": "application/json"},
        )

    return handle
