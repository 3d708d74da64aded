"""One contract, two backends: the same inputs give the same store, callbacks and status.

Each test runs against the Kubernetes backend (real kubernetes-asyncio client, stateful API
fake) and against local mode (a manifest directory), through a small `World` that plays the
user: it creates, edits and deletes objects the way each backend's users do.

A third world, `cluster`, plays the user over nothing but a kubeconfig (`RemoteWorld`): with
`KUIK_TEST_KUBECONFIG` naming one (`make test-cluster` passes `$KUBECONFIG`) the same contract
runs against a real cluster (a throwaway kind/k3d one: the suite creates and deletes Pods, Secrets,
namespaces and kuik resources, and needs kuik's CRDs installed); without it, the remote world runs
against the API fake through a kubeconfig, so its own code is tested here too.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import KUIK, cisa, cism, eventually, ism, mirror, pod, secret
from kuikcore.api import OWNER_UID_LABEL, InvalidResource
from kuikcore.cluster import (
    POD,
    SECRET,
    Change,
    ClusterSource,
    EventType,
    NotFoundError,
    ObjectKey,
)
from kuikcore.cluster.kinds import watched_kind
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.cluster.local import LocalCluster
from tests.cluster.conftest import FAST

JSON = dict[str, Any]
CISM = "ClusterImageSetMirror"
CISA = "ClusterImageSetAvailability"
FINALIZER = "kuik.enix.io/mirror-cleanup"


class World(Protocol):
    """The user's side of a backend, and a way to start more kuik processes on it."""

    async def put(self, obj: JSON) -> None: ...
    async def delete(self, kind: str, namespace: str, name: str) -> None: ...
    async def open(self, **options: Any) -> ClusterSource: ...


class KubernetesWorld:
    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.opened: list[tuple[KubernetesCluster, Any]] = []

    async def put(self, obj: JSON) -> None:
        meta = obj["metadata"]
        if (
            self.server.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
            is None
        ):
            self.server.create(obj)
        else:
            self.server.update(obj)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        api_version = "v1" if kind in (POD, SECRET) else KUIK
        self.server.delete(api_version, kind, namespace or None, name)

    async def open(self, **options: Any) -> ClusterSource:
        client = self.server.api_client()
        cluster = KubernetesCluster(client, settings=FAST, **options)
        self.opened.append((cluster, client))
        await cluster.start()
        async with asyncio.timeout(20):
            await cluster.wait_synced()
        return cluster

    async def close(self) -> None:
        for cluster, client in self.opened:
            await cluster.stop()
            await client.close()


NAMESPACES = ("a", "b", "team", "kuik-system")


class RemoteWorld:
    """The user's side over a kubeconfig only, with plain REST calls: what `kubectl apply` and
    `kubectl delete` would do. Everything it creates is deleted again (finalizers released)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.opened: list[KubernetesCluster] = []
        self.made: list[tuple[str, str, str]] = []  # (kind, namespace, name), in order
        self._client: Any = None

    async def _api(self) -> Any:
        if self._client is None:
            from kuikcore.cluster.kubernetes import api_client_from_environment

            os.environ["KUBECONFIG"] = str(self.kubeconfig)
            os.environ.pop("KUBERNETES_SERVICE_HOST", None)
            self._client = await api_client_from_environment()
            for namespace in NAMESPACES:
                await self.ensure_namespace(namespace)
        return self._client

    async def _call(
        self, method: str, path: str, body: JSON | None = None, ok: tuple[int, ...] = ()
    ) -> JSON | None:
        client = self._client
        response = await client.rest_client.request(
            method,
            client.configuration.host + path,
            headers={
                "Content-Type": "application/json",
                "Authorization": await client.configuration.get_api_key_with_prefix("BearerToken")
                or "",
            },
            body=body,
            _preload_content=False,
        )
        async with response:
            text = await response.text()
        if response.status in ok:
            return None
        if response.status >= 300:
            raise AssertionError(f"{method} {path}: HTTP {response.status}: {text[:300]}")
        return json.loads(text) if text else None

    async def ensure_namespace(self, name: str) -> None:
        await self._api()
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await self._call("POST", "/api/v1/namespaces", body, ok=(409,))

    @staticmethod
    def _path(kind: str, namespace: str, name: str | None = None) -> str:
        info = watched_kind(kind)
        root = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
        where = f"/namespaces/{namespace}" if info.namespaced else ""
        return f"{root}{where}/{info.plural}" + (f"/{name}" if name else "")

    async def put(self, obj: JSON) -> None:
        await self._api()
        meta = obj["metadata"]
        kind, namespace, name = obj["kind"], meta.get("namespace", ""), meta["name"]
        body = copy.deepcopy(obj)
        status = body.pop("status", None) if watched_kind(kind).is_kuik else None
        current = await self._call("GET", self._path(kind, namespace, name), ok=(404,))
        if current is None:
            await self._call("POST", self._path(kind, namespace), body)
            self.made.append((kind, namespace, name))
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self._call("PUT", self._path(kind, namespace, name), body)
        if status is not None:  # a user's manifest with a status: what the status writer keeps
            stored = await self._call("GET", self._path(kind, namespace, name))
            assert stored is not None
            stored["status"] = status
            await self._call("PUT", self._path(kind, namespace, name) + "/status", stored)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self._api()
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        await self._call("DELETE", self._path(kind, namespace, name), options, ok=(404,))

    async def open(self, **options: Any) -> ClusterSource:
        client = await self._api()
        cluster = KubernetesCluster(client, settings=FAST, **options)
        self.opened.append(cluster)
        await cluster.start()
        async with asyncio.timeout(30):
            await cluster.wait_synced()
        return cluster

    async def close(self) -> None:
        for cluster in self.opened:
            await cluster.stop()
        if self._client is None:
            return
        for kind, namespace, name in reversed(self.made):
            path = self._path(kind, namespace, name)
            current = await self._call("GET", path, ok=(404,))
            if current is not None and current["metadata"].get("finalizers"):
                current["metadata"]["finalizers"] = []
                await self._call("PUT", path, current, ok=(404, 409))
            await self.delete(kind, namespace, name)
        await self._client.close()


class LocalWorld:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.opened: list[LocalCluster] = []

    def path(self, kind: str, namespace: str, name: str) -> Path:
        return self.root / kind.lower() / f"{namespace or 'cluster'}-{name}.yaml"

    async def put(self, obj: JSON) -> None:
        meta = obj["metadata"]
        path = self.path(obj["kind"], meta.get("namespace", ""), meta["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(obj))
        os.replace(temporary, path)  # as an editor saving the file would

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.path(kind, namespace, name).unlink()

    async def open(self, **options: Any) -> ClusterSource:
        cluster = LocalCluster(self.root, **options)
        self.opened.append(cluster)
        await cluster.start()
        await cluster.wait_synced()
        return cluster

    async def close(self) -> None:
        for cluster in self.opened:
            await cluster.stop()


REMOTE = os.environ.get("KUIK_TEST_KUBECONFIG", "")


@pytest.fixture(params=["kubernetes", "local", "cluster"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    server = None
    made: KubernetesWorld | LocalWorld | RemoteWorld
    if REMOTE and request.param != "cluster":
        pytest.skip("KUIK_TEST_KUBECONFIG is set: only the real cluster's world runs")
    if request.param == "kubernetes":
        server = await FakeApiServer().start()
        made = KubernetesWorld(server)
    elif request.param == "cluster":
        if REMOTE:
            made = RemoteWorld(Path(REMOTE))
        else:  # the remote world's own code, over a kubeconfig pointing at the API fake
            server = await FakeApiServer().start()
            made = RemoteWorld(server.write_kubeconfig(tmp_path / "kubeconfig"))
    else:
        made = LocalWorld(tmp_path / "manifests")
        made.root.mkdir()
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    try:
        yield made
    finally:
        await made.close()
        if server is not None:
            await server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation")


def view(obj: Any) -> JSON:
    """What the contract compares: the object without identity and bookkeeping fields
    (their presence is checked separately, their values differ by design)."""
    data = copy.deepcopy(obj if isinstance(obj, dict) else obj.to_dict())
    meta = data["metadata"]
    for name in _SERVER_FIELDS:
        meta.pop(name, None)
    if meta.get("deletionTimestamp"):
        meta["deletionTimestamp"] = "<set>"
    for empty in ("labels", "annotations"):
        if not meta.get(empty):
            meta.pop(empty, None)
    return data


def recorder(cluster: ClusterSource) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def record(change: Change) -> None:
        seen.append((change.type.value, str(change.key)))

    cluster.subscribe(record)
    return seen


async def test_initial_view_and_slim_pods(world: World) -> None:
    await world.put(
        pod(
            "nginx:1.27",
            namespace="team",
            name="web",
            labels={"app": "web"},
            pull_secrets=["pull"],
            status={"phase": "Running"},
        )
    )
    await world.put(cism("mirror-all", mirror()))
    await world.put(ism("team", "mirror-team", mirror()))
    cluster = await world.open()
    stored = cluster.store.pod("team", "web")
    assert stored is not None
    assert stored["metadata"]["uid"]
    assert stored["metadata"]["creationTimestamp"]
    assert view(stored) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "team", "name": "web", "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "c0", "image": "nginx:1.27"}],
            "imagePullSecrets": [{"name": "pull"}],
        },
        "status": {"phase": "Running"},
    }
    assert cluster.store.pods_by_image("docker.io/library/nginx:1.27") == [stored]
    assert [r.name for r in cluster.store.resources(CISM)] == ["mirror-all"]
    assert [r.name for r in cluster.store.resources("ImageSetMirror", "team")] == ["mirror-team"]
    assert cluster.store.resources("ImageSetMirror", "other") == []
    assert cluster.synced


async def test_changes_reach_subscribers_once_each(world: World) -> None:
    cluster = await world.open()
    seen = recorder(cluster)
    await world.put(pod("redis:7", namespace="a", name="p"))
    await eventually(lambda: seen == [("ADDED", "Pod a/p")])
    await world.put(pod("redis:7", namespace="a", name="p", metadata={"labels": {"v": "2"}}))
    await eventually(lambda: len(seen) == 2)
    await world.put(cisa("avail"))
    await eventually(lambda: len(seen) == 3)
    await world.delete(POD, "a", "p")
    await eventually(lambda: len(seen) == 4)
    await asyncio.sleep(0.3)  # room for a duplicate to show up, if there were one
    assert seen == [
        ("ADDED", "Pod a/p"),
        ("MODIFIED", "Pod a/p"),
        ("ADDED", "ClusterImageSetAvailability avail"),
        ("DELETED", "Pod a/p"),
    ]
    assert cluster.store.pods_by_image("redis:7") == []


async def test_status_is_merged_over_spec_and_survives_spec_edits(world: World) -> None:
    await world.put(cism("m", mirror()))
    cluster = await world.open()
    seen = recorder(cluster)

    def add(image: str) -> Callable[[JSON], JSON]:
        def mutate(status: JSON) -> JSON:
            images = [*status.get("matchingImages", []), {"image": image, "mirrors": []}]
            return {**status, "matchingImages": images}

        return mutate

    first = await cluster.update_status(CISM, "", "m", add("docker.io/library/nginx:1"))
    assert [i.image for i in first.status.matching_images] == ["docker.io/library/nginx:1"]
    await cluster.update_status(CISM, "", "m", add("docker.io/library/redis:7"))
    unchanged = await cluster.update_status(CISM, "", "m", lambda s: s)
    assert len(unchanged.status.matching_images) == 2

    def stored_images() -> list[str]:
        resource = cluster.store.resource(CISM, "", "m")
        return [i.image for i in resource.status.matching_images or []]

    await eventually(
        lambda: stored_images() == ["docker.io/library/nginx:1", "docker.io/library/redis:7"]
    )
    edited = cism("m", mirror("other.example:5000"), priority=5)
    await world.put(edited)
    await eventually(lambda: cluster.store.resource(CISM, "", "m").spec.priority == 5)
    assert stored_images() == ["docker.io/library/nginx:1", "docker.io/library/redis:7"]
    assert view(cluster.store.resource(CISM, "", "m"))["spec"] == edited["spec"]
    await asyncio.sleep(0.3)
    assert seen == [("MODIFIED", "ClusterImageSetMirror m")] * 3
    with pytest.raises(NotFoundError, match="ClusterImageSetMirror missing"):
        await cluster.update_status(CISM, "", "missing", lambda s: s)


async def test_concurrent_status_writers_lose_nothing(world: World) -> None:
    """Two kuik processes (two backends on the same source) append to one status at once."""
    await world.put(cisa("shared"))
    first, second = await world.open(), await world.open()

    def add(tag: str) -> Callable[[JSON], JSON]:
        def mutate(status: JSON) -> JSON:
            images = [
                *status.get("images", []),
                {"image": f"registry.example/{tag}", "status": "Scheduled"},
            ]
            return {**status, "images": images, "imageCount": len(images)}

        return mutate

    await asyncio.gather(
        *(
            c.update_status(CISA, "", "shared", add(f"{n}{i}"))
            for i in range(8)
            for c, n in ((first, "a"), (second, "b"))
        )
    )

    def count(cluster: ClusterSource) -> int:
        status = cluster.store.resource(CISA, "", "shared").status
        return (
            len({i.image for i in status.images or []})
            if status.image_count == len(status.images or [])
            else -1
        )

    await eventually(lambda: count(first) == 16 and count(second) == 16)


async def test_finalizer_holds_deletion(world: World) -> None:
    await world.put(cism("m", mirror()))
    cluster = await world.open()
    seen = recorder(cluster)
    assert await cluster.add_finalizer(CISM, "", "m", FINALIZER) is True
    assert await cluster.add_finalizer(CISM, "", "m", FINALIZER) is False
    await eventually(
        lambda: cluster.store.resource(CISM, "", "m").metadata.finalizers == [FINALIZER]
    )
    await cluster.update_status(
        CISM, "", "m", lambda s: {"matchingImages": [{"image": "docker.io/library/a:1"}]}
    )
    await world.delete(CISM, "", "m")

    def pending() -> bool:
        resource = cluster.store.resource(CISM, "", "m")
        return resource is not None and resource.metadata.deletion_timestamp is not None

    await eventually(pending, what="deletion held by the finalizer")
    held = cluster.store.resource(CISM, "", "m")
    assert held.spec.mirrors[0].registry == "mirror.example:5000"
    assert [i.image for i in held.status.matching_images] == ["docker.io/library/a:1"]
    assert await cluster.remove_finalizer(CISM, "", "m", FINALIZER) is True
    await eventually(lambda: cluster.store.resource(CISM, "", "m") is None)
    await asyncio.sleep(0.3)
    assert [t for t, _ in seen] == ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    with pytest.raises(NotFoundError):
        await cluster.remove_finalizer(CISM, "", "m", FINALIZER)


async def test_secrets_only_kuik_copies_cached_others_on_demand(world: World) -> None:
    await world.put(secret("team", "registry-creds", token="dG9rZW4="))
    await world.put(secret("team", "kuik-old", labels={OWNER_UID_LABEL: "u1"}, a="YQ=="))
    cluster = await world.open()
    assert [s["metadata"]["name"] for s in cluster.store.secrets()] == ["kuik-old"]
    fetched = await cluster.get_secret("team", "registry-creds")
    assert fetched is not None
    assert fetched["data"] == {"token": "dG9rZW4="}
    assert await cluster.get_secret("team", "nope") is None

    copy_ = secret(
        "apps",
        "kuik-registry-creds-0123456789abcdef",
        labels={OWNER_UID_LABEL: "u2"},
        **{".dockerconfigjson": "e30="},
    )
    copy_["type"] = "kubernetes.io/dockerconfigjson"
    stored = await cluster.apply_secret(copy_)
    assert stored["metadata"]["uid"]
    assert view(stored)["data"] == {".dockerconfigjson": "e30="}
    await eventually(lambda: len(cluster.store.secrets_by_owner("u2")) == 1)
    assert cluster.store.secrets_by_owner("u2")[0]["type"] == "kubernetes.io/dockerconfigjson"
    copy_["data"] = {".dockerconfigjson": "e30K"}
    await cluster.apply_secret(copy_)
    await eventually(
        lambda: cluster.store.secrets_by_owner("u2")[0]["data"] == {".dockerconfigjson": "e30K"}
    )
    assert await cluster.delete_secret("apps", copy_["metadata"]["name"]) is True
    assert await cluster.delete_secret("apps", copy_["metadata"]["name"]) is False
    await eventually(lambda: cluster.store.secrets_by_owner("u2") == [])


async def test_both_backends_apply_the_same_secret(tmp_path: Path) -> None:
    """Was: the local backend defaulted a copy's missing type to Opaque and its missing data
    to empty, the Kubernetes backend kept the old ones: the same copy differed by backend.
    Both now send `documents.secret_body`; this holds them to it, step by step."""
    labels = {OWNER_UID_LABEL: "u1"}
    bare = secret("apps", "kuik-bare", labels=labels)
    del bare["type"], bare["data"]
    typed = secret("apps", "kuik-typed", labels=labels, **{".dockerconfigjson": "e30="})
    typed["type"] = "kubernetes.io/dockerconfigjson"
    typed["metadata"]["annotations"] = {"note": "copied"}
    untyped = copy.deepcopy(typed)  # the same copy given again without type or data
    del untyped["type"], untyped["data"]
    steps = [bare, typed, untyped]
    server = await FakeApiServer().start()
    worlds: list[KubernetesWorld | LocalWorld] = [KubernetesWorld(server)]
    (tmp_path / "manifests").mkdir()
    worlds.append(LocalWorld(tmp_path / "manifests"))
    try:
        clusters = [await world.open() for world in worlds]
        for step in steps:
            name = step["metadata"]["name"]
            stored = [view(await c.apply_secret(copy.deepcopy(step))) for c in clusters]
            assert stored[0] == stored[1], name

            def cached_as_stored(name: str = name, wanted: JSON = stored[0]) -> bool:
                cached = [c.store.secret("apps", name) for c in clusters]
                return all(s is not None and view(s) == wanted for s in cached)

            await eventually(cached_as_stored, what=f"{name} in both stores")
        assert stored[0]["type"] == "Opaque"  # the last step: no type is Opaque, as on the server
        assert stored[0].get("data") in (None, {})
    finally:
        for world in worlds:
            await world.close()
        await server.stop()


async def test_invalid_resource_reported_without_stopping(world: World) -> None:
    bad = cism("bad", mirror())
    bad["spec"]["priority"] = "urgent"
    await world.put(bad)
    await world.put(cism("good", mirror()))
    cluster = await world.open()
    assert [r.name for r in cluster.store.resources(CISM)] == ["good"]
    problems = [p for p in cluster.problems() if p.name == "bad"]
    assert len(problems) == 1
    assert problems[0].kind == CISM
    assert "spec.priority" in problems[0].reason
    await world.put(cism("bad", mirror()))
    await eventually(lambda: cluster.store.resource(CISM, "", "bad") is not None)
    assert cluster.problems() == []


async def test_events(world: World) -> None:
    await world.put(cisa("avail"))
    cluster = await world.open()
    key = ObjectKey(CISA, "", "avail")
    await cluster.emit_event(key, EventType.WARNING, "ImageUnavailable", "nginx is NotFound")
    await cluster.emit_event(key, EventType.WARNING, "ImageUnavailable", "nginx is NotFound")
    await cluster.emit_event(key, EventType.NORMAL, "ImageAvailable", "nginx is back")
    await cluster.emit_event(ObjectKey(CISM, "", "other"), EventType.NORMAL, "X", "y")
    events = await cluster.list_events(key)
    assert [(e["type"], e["reason"], e["note"], e["action"]) for e in events] == [
        ("Warning", "ImageUnavailable", "nginx is NotFound", "ImageUnavailable"),
        ("Normal", "ImageAvailable", "nginx is back", "ImageAvailable"),
    ]
    regarding = events[0]["regarding"]
    assert {k: regarding[k] for k in ("apiVersion", "kind", "name")} == {
        "apiVersion": KUIK,
        "kind": CISA,
        "name": "avail",
    }
    assert regarding["uid"] == cluster.store.resource(CISA, "", "avail").metadata.uid
    assert len(await cluster.list_events()) == 3


async def test_cluster_id_is_stable(world: World) -> None:
    if isinstance(world, KubernetesWorld):
        world.server.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
        )
    elif isinstance(world, RemoteWorld):
        await world.ensure_namespace("kube-system")  # a real cluster has it already
    first, second = await world.open(), await world.open()
    assert await first.cluster_id() == await second.cluster_id()
    assert await first.cluster_id()


async def test_a_failing_subscriber_does_not_stop_the_others(world: World) -> None:
    cluster = await world.open()

    def broken(change: Change) -> None:
        raise RuntimeError("subscriber bug")

    cluster.subscribe(broken)
    seen = recorder(cluster)
    unsubscribe = cluster.subscribe(broken)
    unsubscribe()
    await world.put(pod("nginx", namespace="a", name="p1"))
    await world.put(pod("nginx", namespace="a", name="p2"))
    await eventually(lambda: len(seen) == 2)
    assert len(cluster.store.pods_by_image("nginx")) == 2


async def test_an_invalid_status_is_refused_and_nothing_written(world: World) -> None:
    await world.put(cisa("avail"))
    cluster = await world.open()
    await cluster.update_status(CISA, "", "avail", lambda s: {"imageCount": 1})
    with pytest.raises(InvalidResource, match="imageCount"):
        await cluster.update_status(CISA, "", "avail", lambda s: {"imageCount": "many"})
    await asyncio.sleep(0.3)
    assert cluster.store.resource(CISA, "", "avail").status.image_count == 1
    assert cluster.problems() == []


async def test_watching_fewer_kinds(world: World) -> None:
    """What the webhook does: kuik resources only, Secrets read on demand, no Pod cache."""
    await world.put(pod("nginx", namespace="a", name="p"))
    await world.put(cism("m", mirror()))
    await world.put(secret("a", "creds", token="dA=="))
    await world.put(secret("a", "kuik-copy", labels={OWNER_UID_LABEL: "u"}))
    cluster = await world.open(kinds=[CISM])
    assert cluster.store.pods() == []
    assert cluster.store.secrets() == []
    assert [r.name for r in cluster.store.resources(CISM)] == ["m"]
    fetched = await cluster.get_secret("a", "creds")
    assert fetched is not None
    assert fetched["data"] == {"token": "dA=="}
    await cluster.apply_secret(secret("b", "kuik-new", labels={OWNER_UID_LABEL: "u"}))
    assert (await cluster.get_secret("b", "kuik-new")) is not None
    assert cluster.store.secrets() == []
