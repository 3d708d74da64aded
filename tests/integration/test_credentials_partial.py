"""One missing pull secret no longer takes the Pod's other secrets away (kubelet semantics).

A Pod listing `gone` (no such Secret) and `src-creds` used to get no credentials at all: the
monitor checked its image anonymously (InvalidAuth, reported as UnavailableSecret) and the
replicator copied it anonymously (401). Against a real `docker-registry` requiring basic auth,
both services' credential resolution now authenticates with `src-creds`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from kuik_monitor.checker import Checker
from kuik_replicator.worker import CopyWorker
from kuik_testing import RegistryServer, push_image, synthetic_image
from kuikcore.api import AvailabilityStatus
from kuikcore.config import RegistryMonitoring
from kuikcore.reference import parse
from kuikcore.registry import RegistryClient, check, copy


@pytest.fixture(scope="module")
def private() -> Iterator[RegistryServer]:
    with RegistryServer(username="puller", password="s3cret") as server:
        push_image(server, "team/app", "1", synthetic_image("partial"))
        yield server


def _secret(name: str, host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    doc = json.dumps({"auths": {host: {"auth": auth}}})
    return {
        "metadata": {"namespace": "apps", "name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(doc.encode()).decode()},
    }


class Cluster:
    """What both services read: Pods by image and Secrets on demand (`gone` does not exist)."""

    def __init__(self, image: str, *secrets: dict[str, Any]) -> None:
        self.pod = {
            "metadata": {"namespace": "apps", "name": "web"},
            "spec": {
                "containers": [{"name": "c", "image": image}],
                "imagePullSecrets": [{"name": "gone"}, {"name": "bad"}, {"name": "src-creds"}],
            },
        }
        self.secrets = {s["metadata"]["name"]: s for s in secrets}
        self.store = SimpleNamespace(pods_by_image=lambda image: [self.pod])

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.secrets.get(name)


def _cluster(private: RegistryServer, image: str) -> Cluster:
    broken = _secret("bad", private.host, "x", "y")
    broken["data"][".dockerconfigjson"] = "!!not base64"
    return Cluster(image, _secret("src-creds", private.host, "puller", "s3cret"), broken)


async def test_monitor_check_authenticates_with_the_secrets_left(private: RegistryServer) -> None:
    image = f"{private.host}/team/app:1"
    cluster = _cluster(private, image)
    async with RegistryClient() as client:
        checker = Checker(client, cluster, cluster.store.pods_by_image)
        outcome = await checker.check(image, RegistryMonitoring())
    assert outcome.status is AvailabilityStatus.AVAILABLE, outcome.error
    assert outcome.credentials == "pod apps/web"


async def test_monitor_reports_the_missing_secret_when_the_rest_is_refused(
    private: RegistryServer,
) -> None:
    image = f"{private.host}/team/app:1"
    cluster = Cluster(image, _secret("src-creds", private.host, "puller", "wrong"))
    async with RegistryClient() as client:
        outcome = await Checker(client, cluster, cluster.store.pods_by_image).check(
            image, RegistryMonitoring()
        )
    assert outcome.status is AvailabilityStatus.UNAVAILABLE_SECRET
    assert outcome.error == (
        "unavailable secret: pod apps/web: secret apps/gone not found; secret apps/bad not found"
    )


async def test_replicator_copy_authenticates_with_the_secrets_left(private: RegistryServer) -> None:
    image = f"{private.host}/team/app:1"
    cluster = _cluster(private, image)
    with RegistryServer() as mirror:
        async with RegistryClient() as client:
            worker = CopyWorker(
                cluster=cast(Any, cluster),
                client=client,
                coord=cast(Any, None),
                results=cast(Any, None),
                metrics=cast(Any, None),
                platforms=[],
                per_registry=1,
            )
            creds = await worker._source_credentials(image)
            assert creds is not None
            await copy(
                client, parse(image), parse(f"{mirror.host}/m/team/app:1"), src_credentials=creds
            )
            copied = await check(client, f"{mirror.host}/m/team/app:1")
        assert copied.status is AvailabilityStatus.AVAILABLE, copied.error
