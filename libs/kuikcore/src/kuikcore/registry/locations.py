"""Where blobs are known to live, so a copy can mount instead of uploading.

Blobs are per repository in the distribution API, but a registry stores each blob once: when
kuik knows a blob exists in another repository of the destination registry (it copied it
there, or found it there), a cross-repository mount (`POST ...?mount=&from=`) makes it appear
without moving a byte. Concurrent copies of images sharing base layers also wait for the one
upload in flight and mount its result, instead of uploading the same layer N times.

Process memory only, bounded (least recently used forgotten first): a wrong guess costs one
POST that the registry answers with a normal upload session.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["BlobLocations"]


@dataclass
class BlobLocations:
    limit: int = 50_000  # (host, digest) pairs remembered
    _repos: OrderedDict[tuple[str, str], list[str]] = field(default_factory=OrderedDict)
    _uploads: dict[tuple[str, str], asyncio.Future[None]] = field(default_factory=dict)

    def record(self, host: str, repository: str, digest: str) -> None:
        key = (host, digest)
        repos = self._repos.pop(key, [])
        if repository in repos:
            repos.remove(repository)
        repos.insert(0, repository)
        del repos[8:]  # a few mount sources are plenty
        self._repos[key] = repos
        while len(self._repos) > self.limit:
            self._repos.popitem(last=False)

    def mount_sources(self, host: str, digest: str, repository: str) -> list[str]:
        """Other repositories of `host` that hold `digest`, most recently seen first."""
        return [r for r in self._repos.get((host, digest), []) if r != repository]

    def upload_in_flight(self, host: str, digest: str) -> asyncio.Future[None] | None:
        future = self._uploads.get((host, digest))
        return None if future is None or future.done() else future

    def start_upload(self, host: str, digest: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._uploads[(host, digest)] = future
        return future

    def end_upload(self, host: str, digest: str, future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)
        if self._uploads.get((host, digest)) is future:
            del self._uploads[(host, digest)]
