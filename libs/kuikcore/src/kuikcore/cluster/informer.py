"""One list+watch loop per kind, keeping a `Store` equal to what the API server holds.

List, then watch from the list's resourceVersion with bookmarks, for as long as the server keeps
that history: a watch that ends (its timeout, a dropped connection, a 5xx) is reopened from the
last version seen (events or bookmarks), after a jittered exponential backoff; only `410 Expired`
(as an HTTP status or an ERROR event) relists. There is no periodic relist: a watch misses nothing
the server has (client-go's informers do not relist on resync either), and a full paginated LIST of
every Pod per service and replica every few minutes is load a big cluster notices. A relist emits
only real differences.

401, 403 and 404 are not outages: a missing RBAC verb, an expired credential or a CRD that is not
installed will not fix themselves within a backoff. They are logged at error level naming the
verb and the resource, counted (`failures`), kept as `problem` (the services' `/readyz` shows it)
and retried at the longest backoff, so a fix (RBAC applied, CRD installed) is picked up.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from kuikcore.cluster.store import Store, object_key

__all__ = ["PERMANENT_STATUSES", "Backoff", "Informer", "InformerSettings", "ListFunction"]

log = structlog.get_logger("kuikcore.cluster")

JSON = dict[str, Any]
ListFunction = Callable[..., Awaitable[aiohttp.ClientResponse]]
"""A kubernetes-asyncio list function (e.g. `CoreV1Api.list_pod_for_all_namespaces`)
already bound to its path arguments, called with `_preload_content=False`."""


@dataclass(frozen=True, slots=True)
class InformerSettings:
    """Timings; tests shorten them."""

    watch_timeout: float = 300.0  # server-side timeoutSeconds, jittered up to 2x
    request_timeout: float = 60.0  # for lists
    page_size: int = 500
    backoff_initial: float = 0.2
    backoff_max: float = 30.0


class Backoff:
    """Full-jitter exponential backoff, reset after progress."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum, self.failures = initial, maximum, 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2**self.failures)
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)


class _Expired(Exception):
    """The resourceVersion we watch from is gone from the server's history."""


class _HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


# What the API server says when retrying cannot help: credentials refused (401), a verb the
# ServiceAccount lacks (403), a resource it does not serve (404: CRD not installed).
PERMANENT_STATUSES = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
_TRANSIENT = (_HttpError, aiohttp.ClientError, TimeoutError, ConnectionError, ValueError)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Newline-delimited JSON events, whatever their size (aiohttp's readline caps lines)."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


_HINTS = {
    "unauthorized": "the credentials were refused: check the ServiceAccount token or kubeconfig",
    "forbidden": "the ServiceAccount lacks this verb: check the chart's ClusterRole for it",
    "not_found": "the API server does not serve this resource: is its CRD installed?",
}


class Informer:
    """Keeps `store`'s objects of `kind` in sync with the API server."""

    def __init__(
        self,
        kind: str,
        api_version: str,
        list_function: ListFunction,
        store: Store,
        settings: InformerSettings,
        *,
        label_selector: str | None = None,
    ) -> None:
        self.kind, self.api_version = kind, api_version
        self._list_function = list_function
        self._store = store
        self._settings = settings
        self._label_selector = label_selector
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.synced = asyncio.Event()
        self.version = ""
        self.relists = 0  # relists after expiry (or a crash)
        self.rewatches = 0  # watches reopened after an interruption or their timeout
        self.expirations = 0  # 410 Expired seen
        self.failures: dict[tuple[str, str], int] = {}  # (verb, reason) -> count
        self.problem: str | None = None
        """Why this informer cannot do its job right now (a permanent error), else None."""

    def _selector(self) -> dict[str, str]:
        return {"label_selector": self._label_selector} if self._label_selector else {}

    async def run(self) -> None:
        """Forever: list, watch until resync or expiry, relist. Cancel to stop."""
        while True:
            try:
                version = await self._list()
            except _TRANSIENT as error:
                await self._failed("list", error)
                continue
            except Exception as error:  # a bug must not silently end the informer
                log.exception("informer list crashed", kind=self.kind)
                await self._pause("list crashed", error)
                continue
            self._backoff.reset()
            self.problem = None
            self.version = version
            try:
                await self._watch_until_expired()
            except Exception as error:
                log.exception("informer watch crashed, relisting", kind=self.kind)
                await self._pause("watch crashed", error)
            self.relists += 1

    async def _list(self) -> str:
        """List in pages of `page_size`, compacting each page at once, so a relist of a big
        cluster never holds every full object in memory. Returns the list's resourceVersion."""
        items: list[JSON] = []
        token = ""
        version = ""
        while True:
            paging: JSON = {"limit": self._settings.page_size}
            if token:
                paging["_continue"] = token
            response = await self._list_function(
                _preload_content=False,
                _request_timeout=self._settings.request_timeout,
                **paging,
                **self._selector(),
            )
            async with response:
                body = await response.text()
                if response.status >= 300:
                    raise _HttpError(response.status, body)  # 410 on a stale token: relist
            data = json.loads(body)
            for item in data.get("items") or []:
                item.setdefault("apiVersion", self.api_version)  # core list items lack them
                item.setdefault("kind", self.kind)
                items.append(self._store.compact(self.kind, item))
            metadata = data.get("metadata") or {}
            version = version or str(metadata["resourceVersion"])  # the first page's snapshot
            token = metadata.get("continue") or ""
            if not token:
                break
        self._store.replace_kind(self.kind, items)
        self.synced.set()
        return version

    async def _watch_until_expired(self) -> None:
        """Watch, and watch again from the last version seen, until the server has forgotten it."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._watch()
                if loop.time() - started < 1.0:
                    # ended cleanly at once (a proxy closing streams?): do not spin
                    await self._pause("watch ended at once", ConnectionError("empty watch"))
                else:
                    self.rewatches += 1  # its timeout: go on from where it stopped
            except _Expired:
                log.info("watch expired, relisting", kind=self.kind, version=self.version)
                self.expirations += 1
                self._count("watch", "expired")
                return
            except _TRANSIENT as error:
                self.rewatches += 1
                await self._failed("watch", error)

    async def _watch(self) -> None:
        """One watch request from `self.version`, which advances with every event seen."""
        timeout = self._settings.watch_timeout * random.uniform(1.0, 2.0)
        response = await self._list_function(
            watch=True,
            resource_version=self.version,
            allow_watch_bookmarks=True,
            timeout_seconds=max(1, int(timeout)),
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._settings.request_timeout,
                sock_read=timeout + self._settings.request_timeout,
            ),
            **self._selector(),
        )
        async with response:
            if response.status == 410:
                raise _Expired
            if response.status >= 300:
                raise _HttpError(response.status, await response.text())
            async for line in _lines(response):
                self.version = self._apply(json.loads(line), self.version)
                self._backoff.reset()
                self.problem = None

    def _apply(self, event: JSON, version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired
            raise _HttpError(int(obj.get("code") or 500), str(obj.get("message")))
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind == "BOOKMARK":
            return new_version
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        if kind in ("ADDED", "MODIFIED"):
            self._store.upsert(self.kind, obj)
        elif kind == "DELETED":
            key = object_key(self.kind, obj)
            self._store.remove(key)
            self._store.forget_problem(key)
        return new_version

    async def _failed(self, verb: str, error: Exception) -> None:
        """Count and wait out one failed list or watch; a permanent one is said loudly."""
        status = error.status if isinstance(error, _HttpError) else None
        reason = PERMANENT_STATUSES.get(status or 0)
        if reason is None:
            self._count(verb, "server_error" if isinstance(error, _HttpError) else "network")
            await self._pause(f"{verb} failed", error)
            return
        self._count(verb, reason)
        resource = f"{self.kind} ({self.api_version})"
        self.problem = f"cannot {verb} {resource}: HTTP {status} ({reason}): {error}"
        log.error(
            "kubernetes API refused a request: not retrying soon",
            verb=verb,
            resource=resource,
            status=status,
            reason=reason,
            error=str(error),
            hint=_HINTS[reason],
            retry_in=self._settings.backoff_max,
        )
        await asyncio.sleep(self._settings.backoff_max)

    def _count(self, verb: str, reason: str) -> None:
        self.failures[(verb, reason)] = self.failures.get((verb, reason), 0) + 1

    async def _pause(self, what: str, error: Exception) -> None:
        delay = self._backoff.next_delay()
        log.warning(
            what, kind=self.kind, error=str(error) or type(error).__name__, retry_in=round(delay, 2)
        )
        await asyncio.sleep(delay)
