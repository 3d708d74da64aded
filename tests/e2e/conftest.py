"""Servers the end-to-end modules share: one of each per module (tests of a module reuse them,
with repositories and Redis key prefixes of their own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kuik_testing import RedisServer, RegistryServer


@pytest.fixture(scope="module")
def source() -> Iterator[RegistryServer]:
    """A plain-HTTP registry holding the images the Pods run."""
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_shared() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()
