"""kuikcore.credentials against the Kubernetes backend: Secrets read through the real client on the
API fake, a forbidden read (403) and a missing Secret (404) both make a Pod's set unreadable."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from kuik_testing.apiserver import FakeApiServer
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.credentials import resolve_credentials
from kuikcore.registry.auth import Credentials
from kuikcore.routing import SecretRef

IMAGE = "registry.example:5000/team/app:1"


def _secret(namespace: str, name: str, user: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:pw".encode()).decode()
    doc = json.dumps({"auths": {"registry.example:5000": {"auth": auth}}})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(doc.encode()).decode()},
    }


def _pod(namespace: str, name: str, secret: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "containers": [{"name": "c", "image": IMAGE}],
            "imagePullSecrets": [{"name": secret}],
        },
    }


async def test_forbidden_and_missing_secrets_then_fallback(apiserver: FakeApiServer) -> None:
    apiserver.create(_secret("b", "pull", "bob"))
    apiserver.create(_secret("c", "locked", "carol"))
    apiserver.create(_secret("kuik-system", "fallback", "fallback"))
    client = apiserver.api_client()
    cluster = KubernetesCluster(client, field_manager="kuik-test", kinds=("Pod",))
    try:
        await cluster.start()
        async with asyncio.timeout(20):
            await cluster.wait_synced()
        apiserver.fail_requests(1, 403, match="/namespaces/c/secrets/locked")
        choice = await resolve_credentials(
            cluster, [_pod("c", "p", "locked"), _pod("a", "p", "absent")], None
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
            [_pod("a", "p", "absent"), _pod("b", "p", "pull")],
            SecretRef("fallback", "kuik-system"),
        )
        assert choice.credentials(IMAGE) == [Credentials("bob", "pw")]

        choice = await resolve_credentials(
            cluster, [_pod("a", "p", "absent")], SecretRef("fallback", "kuik-system")
        )
        assert choice.credentials(IMAGE) == [Credentials("fallback", "pw")]
        assert choice.unavailable is None
    finally:
        await cluster.stop()
        await client.close()
