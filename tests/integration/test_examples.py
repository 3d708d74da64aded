"""examples/resources/: one valid example per kind, accepted by kuik's validation and by the strict
API fake over HTTP (read back through the Kubernetes backend), and each one doing something."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import kubernetes_asyncio.client as k8s
import pytest
import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from kuik_testing.apiserver import FakeApiServer
from kuikcore.api import (
    KINDS,
    ClusterReplicatedImageSet,
    InvalidResource,
    ReplicatedImageSet,
    check_rules,
    parse_resource,
)
from kuikcore.api.docs import example_name
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.filters import compile_filter, compile_upstream
from kuikcore.names import GROUP, VERSION
from kuikcore.routing import route_pod

EXAMPLES = Path(__file__).parents[2] / "examples" / "resources"


def _example(kind: str) -> dict[str, Any]:
    documents = list(yaml.safe_load_all((EXAMPLES / example_name(kind)).read_text()))
    assert len(documents) == 1, f"{example_name(kind)}: one document per file"
    document: dict[str, Any] = documents[0]
    return document


async def _create(api: Any, document: dict[str, Any]) -> None:
    """`kubectl create -f` for one kuik document, through the real client over HTTP."""
    plural = KINDS[document["kind"]].plural
    namespace = document["metadata"].get("namespace")
    if namespace:
        await api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, document)
    else:
        await api.create_cluster_custom_object(GROUP, VERSION, plural, document)


def test_one_example_per_kind_and_nothing_else() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(map(example_name, KINDS))
    for kind in KINDS:
        assert _example(kind)["kind"] == kind


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_example_passes_kuiks_validation(kind: str) -> None:
    document = _example(kind)
    resource = parse_resource(document)
    assert kind == resource.KIND
    assert list(check_rules(resource)) == []
    compile_filter(resource)  # label selectors are checked here, not by the CRD
    if isinstance(resource, ReplicatedImageSet | ClusterReplicatedImageSet):
        for i, upstream in enumerate(resource.spec.upstreams):
            compile_upstream(resource, i, upstream)
    assert resource.to_dict() == document  # nothing dropped or reinterpreted


def test_a_broken_example_is_refused() -> None:
    document = _example("ClusterImageSetMirror")
    document["spec"]["filter"]["include"][0]["label"] = "app=web"  # two selectors in one item
    with pytest.raises(InvalidResource, match="exactly one of image, label"):
        parse_resource(document)


async def test_examples_through_the_strict_api_fake(apiserver: FakeApiServer) -> None:
    client = apiserver.api_client()
    api = k8s.CustomObjectsApi(client)
    cluster = KubernetesCluster(client, field_manager="kuik-test", kinds=tuple(KINDS))
    try:
        for kind in KINDS:
            await _create(api, _example(kind))
        bad = copy.deepcopy(_example("ImageSetMirror"))
        bad["metadata"]["name"] = "Shop_Images"
        with pytest.raises(ApiException) as refused:
            await _create(api, bad)
        assert refused.value.status == 422
        await cluster.start()
        async with asyncio.timeout(20):
            await cluster.wait_synced()
        assert cluster.problems() == []
        for kind in KINDS:
            [stored] = cluster.store.resources(kind)
            assert stored.spec == parse_resource(_example(kind)).spec, kind
    finally:
        await cluster.stop()
        await client.close()


def test_the_examples_route_and_monitor_a_pod() -> None:
    """Each routing kind offers an alternative for the Pod below; the CISA selects its images."""
    resources = [parse_resource(_example(kind)) for kind in KINDS]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app.kubernetes.io/part-of": "shop"},
        },
        "spec": {
            "containers": [
                {"name": "nginx", "image": "nginx:1.27"},
                {"name": "api", "image": "ghcr.io/acme/api:2.0"},
            ]
        },
    }
    route = route_pod(pod, resources)
    sources = {alt.source.split("/", 1)[0] for c in route.containers for alt in c.alternatives}
    assert sources == {"original", *(k for k in KINDS if k != "ClusterImageSetAvailability")}
    [availability] = [r for r in resources if r.KIND == "ClusterImageSetAvailability"]
    selected = compile_filter(availability)
    assert selected.matches_pod(pod)
    assert selected.matches_image("docker.io/library/nginx:1.27")
    assert not selected.matches_image("ghcr.io/acme/api:2.0")
