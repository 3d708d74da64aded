"""One health probe of a registry host: `GET /v2/`, the cheapest request every registry answers.

Shared by the health keeper (`kuikcore.health.keeper`) and the `kuik check` / `kuik route
--check` commands, so both judge a host by the same rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kuikcore.registry.errors import RegistryError, Unreachable
from kuikcore.registry.transport import Transport, log

__all__ = ["ProbeResult", "probe", "probe_all"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    host: str
    ok: bool
    seconds: float
    error: str | None = None
    timed_out: bool = False
    """Silence rather than a definite failure (see `kuikcore.health.state`)."""


async def probe(transport: Transport, host: str, within: float) -> ProbeResult:
    """One `GET /v2/`: any HTTP answer below 500 (200, 401, 404...) is alive; a 5xx, a refused
    or reset connection, a TLS failure or silence for `within` seconds is down."""
    started = time.perf_counter()
    try:
        status = await transport.ping(host, within)
    except RegistryError as exc:
        silent = isinstance(exc, Unreachable) and exc.timed_out
        return ProbeResult(host, False, time.perf_counter() - started, str(exc), silent)
    except Exception as exc:  # a client bug reads as "could not tell": down, and logged
        log().warning("health probe failed unexpectedly", registry=host, error=repr(exc))
        return ProbeResult(host, False, time.perf_counter() - started, repr(exc))
    seconds = time.perf_counter() - started
    if status >= 500:
        return ProbeResult(host, False, seconds, f"GET {host}/v2/: HTTP {status}")
    return ProbeResult(host, True, seconds)


async def probe_all(
    transport: Transport, hosts: Iterable[str], within: float
) -> dict[str, ProbeResult]:
    """Every distinct host probed at once."""
    distinct = list(dict.fromkeys(h for h in hosts if h))
    results = await asyncio.gather(*(probe(transport, h, within) for h in distinct))
    return dict(zip(distinct, results, strict=True))
