"""kuikcore.credentials against the Kubernetes backend: Secrets read through the real client on the
API fake, a forbidden read (403) and a missing Secret (404) both make a Pod's set unreadable."""

from __future__ import annotations

import asyncio

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import container, docker_secret, pod
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.credentials import resolve_credentials
from kuikcore.registry.auth import Credentials
from kuikcore.routing import SecretRef

IMAGE = "registry.example:5000/team/app:1"


async def test_forbidden_and_missing_secrets_then_fallback(apiserver: FakeApiServer) -> None:
    apiserver.create(docker_secret("b", "pull", "registry.example:5000", "bob", "pw"))
    apiserver.create(docker_secret("c", "locked", "registry.example:5000", "carol", "pw"))
    apiserver.create(
        docker_secret("kuik-system", "fallback", "registry.example:5000", "fallback", "pw")
    )
    client = apiserver.api_client()
    cluster = KubernetesCluster(client, field_manager="kuik-test", kinds=("Pod",))
    try:
        await cluster.start()
        async with asyncio.timeout(20):
            await cluster.wait_synced()
        apiserver.fail_requests(1, 403, match="/namespaces/c/secrets/locked")
        choice = await resolve_credentials(
            cluster,
            [
                pod(container("c", IMAGE), namespace="c", name="p", pull_secrets=["locked"]),
                pod(container("c", IMAGE), namespace="a", name="p", pull_secrets=["absent"]),
            ],
            None,
        )
        assert choice.chosen is None
        assert choice.unavailable is not None
        assert choice.unavailable.startswith(
            "unavailable secret: pod a/p: secret a/absent not found; "
            "pod c/p: secret c/locked could not be read: "
        )
        assert "403" in choice.unavailable

        choice = await resolve_credentials(
            cluster,
            [
                pod(container("c", IMAGE), namespace="a", name="p", pull_secrets=["absent"]),
                pod(container("c", IMAGE), namespace="b", name="p", pull_secrets=["pull"]),
            ],
            SecretRef("fallback", "kuik-system"),
        )
        assert choice.credentials(IMAGE) == [Credentials("bob", "pw")]

        choice = await resolve_credentials(
            cluster,
            [pod(container("c", IMAGE), namespace="a", name="p", pull_secrets=["absent"])],
            SecretRef("fallback", "kuik-system"),
        )
        assert choice.credentials(IMAGE) == [Credentials("fallback", "pw")]
        assert choice.unavailable is None
    finally:
        await cluster.stop()
        await client.close()
