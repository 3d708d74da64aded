"""Fixtures for the cluster tests: KubernetesCluster instances on the API fake, short timings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from kuik_testing.apiserver import FakeApiServer
from kuikcore.cluster.informer import InformerSettings
from kuikcore.cluster.kubernetes import KubernetesCluster

FAST = InformerSettings(
    watch_timeout=5.0,
    request_timeout=10.0,
    backoff_initial=0.05,
    backoff_max=0.5,
)

ClusterFactory = Callable[..., Coroutine[Any, Any, KubernetesCluster]]


@pytest.fixture
async def k8s_cluster_factory(apiserver: FakeApiServer) -> AsyncIterator[ClusterFactory]:
    """Start KubernetesCluster instances on `apiserver` (synced), all stopped after the test."""
    made: list[tuple[KubernetesCluster, Any]] = []

    async def make(*, token: str | None = None, **options: Any) -> KubernetesCluster:
        """`token`: the bearer token its requests carry (`FakeApiServer.grant`)."""
        options.setdefault("settings", FAST)
        client = apiserver.api_client(token)
        cluster = KubernetesCluster(client, **options)
        made.append((cluster, client))
        await cluster.start()
        async with asyncio.timeout(20):
            await cluster.wait_synced()
        return cluster

    yield make
    for cluster, client in made:
        await cluster.stop()
        await client.close()


@pytest.fixture
async def k8s_cluster(k8s_cluster_factory: ClusterFactory) -> KubernetesCluster:
    return await k8s_cluster_factory()
