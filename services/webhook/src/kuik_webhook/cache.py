"""Two small in-process helpers for availability results: a TTL cache and single-flight.

The single-flight task is not cancelled when an admission stops waiting for it (its deadline
passed): it finishes in the background and fills the cache, so the next admission profits.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight", "TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """At most `max_entries` values, each for `ttl` seconds; the oldest insert goes first."""

    def __init__(
        self, ttl: float, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl and max_entries must be positive")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.version = 0
        """Bumped by every `set`: what was derived from the cache may have changed."""

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        return value

    def get_entry(self, key: K) -> tuple[float, V] | None:
        """(expiry instant, value) of a live entry, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry

    def set(self, key: K, value: V) -> None:
        self.version += 1
        self._entries.pop(key, None)
        self._entries[key] = (self._clock() + self.ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class SingleFlight(Generic[K, V]):
    """One running task per key; concurrent callers for the same key share it."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    def run(self, key: K, start: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._running[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        return task

    def _done(self, key: K, _task: asyncio.Task[V]) -> None:
        self._running.pop(key, None)

    def __len__(self) -> int:
        return len(self._running)

    async def cancel_all(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
