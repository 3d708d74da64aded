"""`kubectl wait --for=condition=...` for tests: poll an object until its condition holds.

The rule is kuik's own `kuikcore.api.conditions.condition_met` (kubectl's: the condition's
observedGeneration must have caught up with metadata.generation), and the object comes from
any reader: the API fake (`api_reader`), `kuik status --json` in local mode (`status_reader`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.processes import bin_path
from kuikcore.api.conditions import condition_met

__all__ = ["api_reader", "status_reader", "wait_for_condition"]

JSON = dict[str, Any]
Reader = Callable[[], Awaitable[JSON | None]]


def api_reader(server: FakeApiServer, kind: str, name: str, namespace: str | None = None) -> Reader:
    """Read a kuik resource from the API fake, as `kubectl get -o json` would."""

    async def read() -> JSON | None:
        return server.get("kuik.enix.io/v1alpha1", kind, namespace, name)

    return read


def status_reader(target: str, cluster: str, env: dict[str, str] | None = None) -> Reader:
    """Read `KIND/NAME` through `kuik status TARGET --cluster CLUSTER --json` (a process)."""

    async def read() -> JSON | None:
        process = await asyncio.create_subprocess_exec(
            str(bin_path("kuik")),
            "status",
            target,
            "--cluster",
            cluster,
            "--json",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        if process.returncode != 0:
            return None  # not there yet (exit 2: not found)
        items: list[JSON] = json.loads(out)["items"]
        return items[0] if items else None

    return read


async def wait_for_condition(
    read: Reader,
    type: str = "Ready",
    status: str = "True",
    *,
    within: float = 60.0,
    interval: float = 0.2,
) -> JSON:
    """The object once `type` is `status` for its current generation; AssertionError naming
    the conditions last seen after `within` seconds."""
    deadline = time.monotonic() + within
    last: JSON | None = None
    while True:
        last = await read()
        if last is not None and condition_met(last, type, status):
            return last
        if time.monotonic() >= deadline:
            meta = (last or {}).get("metadata") or {}
            seen = ((last or {}).get("status") or {}).get("conditions")
            raise AssertionError(
                f"{type}={status} not met within {within:g}s: generation "
                f"{meta.get('generation')}, conditions {seen}"
            )
        await asyncio.sleep(interval)
