"""KubernetesCluster through the real kubernetes-asyncio client against the stateful API fake."""

from __future__ import annotations

import asyncio
import base64
import os
import random

import pytest

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import KUIK, cisa, cism, eventually, mirror, pod, secret
from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster import (
    POD,
    SECRET,
    Change,
    ChangeType,
    ClusterError,
    ConflictError,
    EventType,
    NotFoundError,
    ObjectKey,
)
from kuikcore.cluster.informer import InformerSettings
from kuikcore.cluster.kubernetes import KubernetesCluster
from tests.cluster.conftest import ClusterFactory

CISA = "ClusterImageSetAvailability"


def truth(server: FakeApiServer, api_version: str, kind: str) -> dict[ObjectKey, str]:
    """What the server holds: key -> resourceVersion."""
    return {
        ObjectKey(kind, o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"][
            "resourceVersion"
        ]
        for o in server.objects(api_version, kind)
        if kind != SECRET or OWNER_UID_LABEL in (o["metadata"].get("labels") or {})
    }


def seen(cluster: KubernetesCluster, kind: str) -> dict[ObjectKey, str]:
    return {key: cluster.store.version(key) or "" for key in cluster.store.keys(kind)}


def converged(server: FakeApiServer, cluster: KubernetesCluster) -> bool:
    return (
        truth(server, "v1", POD) == seen(cluster, POD)
        and truth(server, "v1", SECRET) == seen(cluster, SECRET)
        and truth(server, KUIK, CISA) == seen(cluster, CISA)
    )


async def test_list_then_watch_reports_every_change_once(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    apiserver.create(pod("nginx", namespace="a", name="before"))
    cluster = await k8s_cluster_factory()
    changes: list[Change] = []
    cluster.subscribe(changes.append)
    assert [p["metadata"]["name"] for p in cluster.store.pods()] == ["before"]

    apiserver.create(pod("redis:7", namespace="a", name="p"))
    apiserver.patch("v1", "Pod", "a", "p", {"metadata": {"labels": {"app": "x"}}})
    apiserver.delete("v1", "Pod", "a", "before")
    await eventually(lambda: len(changes) == 3, what="three changes")
    assert [(c.type, c.key.name) for c in changes] == [
        (ChangeType.ADDED, "p"),
        (ChangeType.MODIFIED, "p"),
        (ChangeType.DELETED, "before"),
    ]
    assert changes[1].old["metadata"]["labels"] == {}
    assert changes[1].new["metadata"]["labels"] == {"app": "x"}
    assert changes[2].new is None
    assert changes[2].old["metadata"]["name"] == "before"


async def test_pods_are_kept_slim_and_indexed_by_image(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    big = pod(
        "nginx",
        namespace="ns",
        name="web",
        spec={
            "initContainers": [
                {
                    "name": "init",
                    "image": "busybox:1.36",
                    "command": ["sh"],
                    "env": [{"name": "A", "value": "x"}],
                }
            ],
            "ephemeralContainers": [{"name": "debug", "image": "alpine@sha256:" + "a" * 64}],
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "nodeName": "node-1",
        },
        metadata={
            "labels": {"app": "web"},
            "annotations": {
                "kuik.enix.io/original-images": '{"c0": "docker.io/library/nginx:1.25"}',
                "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 5000 + "}",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}],
        },
        status={
            "phase": "Running",
            "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    )
    apiserver.create(big)
    await eventually(lambda: cluster_pod(k8s_cluster) is not None)
    stored = cluster_pod(k8s_cluster)
    assert stored is not None
    assert set(stored) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert set(stored["metadata"]) == {
        "namespace",
        "name",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "labels",
        "annotations",
    }
    assert stored["metadata"]["annotations"] == {
        "kuik.enix.io/original-images": '{"c0": "docker.io/library/nginx:1.25"}'
    }
    assert stored["spec"] == {
        "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        "containers": [{"name": "c0", "image": "nginx"}],
        "ephemeralContainers": [{"name": "debug", "image": "alpine@sha256:" + "a" * 64}],
        "imagePullSecrets": [{"name": "pull"}],
    }
    assert stored["status"] == {"phase": "Running"}
    store = k8s_cluster.store
    for image in (
        "nginx:latest",
        "docker.io/library/nginx",
        "busybox:1.36",
        "nginx:1.25",
        "alpine@sha256:" + "a" * 64,
    ):
        assert store.pods_by_image(image) == [stored], image
    assert store.pods_by_image("nginx:1.27") == []
    apiserver.delete("v1", "Pod", "ns", "web")
    await eventually(lambda: store.pods_by_image("nginx") == [] and store.images() == [])


def cluster_pod(cluster: KubernetesCluster) -> dict | None:
    return cluster.store.pod("ns", "web")


async def test_secrets_cached_only_when_kuik_owned(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    apiserver.create(secret("a", "user-secret", token=base64.b64encode(b"s3cret").decode()))
    apiserver.create(secret("a", "kuik-copy", labels={OWNER_UID_LABEL: "uid-1"}, x="eQ=="))
    await eventually(lambda: k8s_cluster.store.secret("a", "kuik-copy") is not None)
    assert [s["metadata"]["name"] for s in k8s_cluster.store.secrets()] == ["kuik-copy"]
    assert [s["metadata"]["name"] for s in k8s_cluster.store.secrets_by_owner("uid-1")] == [
        "kuik-copy"
    ]
    secret_requests = [
        path for method, path in apiserver.requests if path.startswith("/api/v1/secrets")
    ]
    assert secret_requests
    assert all("labelSelector=kuik.enix.io/owner-uid" in p for p in secret_requests)

    # A referenced secret is read on demand, then served from the small cache.
    fetched = await k8s_cluster.get_secret("a", "user-secret")
    assert fetched is not None
    assert fetched["data"] == {"token": base64.b64encode(b"s3cret").decode()}
    reads = sum(1 for _, p in apiserver.requests if p == "/api/v1/namespaces/a/secrets/user-secret")
    assert await k8s_cluster.get_secret("a", "user-secret") == fetched
    assert (
        sum(1 for _, p in apiserver.requests if p == "/api/v1/namespaces/a/secrets/user-secret")
        == reads
    )
    assert await k8s_cluster.get_secret("a", "missing") is None


async def test_apply_secret_creates_then_updates_and_delete(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    labels = {OWNER_UID_LABEL: "owner-1"}
    created = await k8s_cluster.apply_secret(secret("b", "kuik-pull", labels=labels, auth="MQ=="))
    assert apiserver.get("v1", "Secret", "b", "kuik-pull")["data"] == {"auth": "MQ=="}
    updated = await k8s_cluster.apply_secret(secret("b", "kuik-pull", labels=labels, auth="Mg=="))
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert apiserver.get("v1", "Secret", "b", "kuik-pull")["data"] == {"auth": "Mg=="}
    await eventually(
        lambda: (k8s_cluster.store.secret("b", "kuik-pull") or {}).get("data") == {"auth": "Mg=="}
    )
    assert await k8s_cluster.delete_secret("b", "kuik-pull") is True
    assert await k8s_cluster.delete_secret("b", "kuik-pull") is False
    await eventually(lambda: k8s_cluster.store.secrets_by_owner("owner-1") == [])


async def test_410_gone_relists_and_converges(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    for i in range(5):
        apiserver.create(pod("nginx", namespace="a", name=f"p{i}"))
    await eventually(lambda: converged(apiserver, k8s_cluster))
    informer = next(i for i in k8s_cluster.informers if i.kind == POD)
    # Changes the watchers lose, then history compaction, then a cut: the re-watch gets 410.
    apiserver.drop_events(3)
    apiserver.delete("v1", "Pod", "a", "p0")
    apiserver.create(pod("redis", namespace="a", name="new"))
    apiserver.patch("v1", "Pod", "a", "p1", {"metadata": {"labels": {"changed": "yes"}}})
    apiserver.compact()
    apiserver.cut_watches()
    await eventually(
        lambda: converged(apiserver, k8s_cluster), what="store equals server after 410"
    )
    assert informer.expirations >= 1
    assert k8s_cluster.store.pod("a", "p1")["metadata"]["labels"] == {"changed": "yes"}


async def test_watches_go_on_from_the_last_version_without_ever_relisting(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    """No periodic relist (client-go has none either): watches that end are reopened from the
    last version seen, and every change still arrives."""
    settings = InformerSettings(watch_timeout=1.0, backoff_initial=0.05, backoff_max=0.2)
    cluster = await k8s_cluster_factory(settings=settings, kinds=[POD])
    [informer] = cluster.informers
    for i in range(3):
        await asyncio.sleep(1.2)  # past a watch's timeout each time
        apiserver.create(pod("nginx", namespace="a", name=f"late-{i}"))
    await eventually(lambda: cluster.store.pod("a", "late-2") is not None, what="every Pod seen")
    assert informer.rewatches >= 2
    assert informer.relists == 0  # one list, at start


@pytest.mark.parametrize(
    ("status", "reason", "hint"),
    [
        (403, "forbidden", "lacks this verb"),
        (401, "unauthorized", "credentials were refused"),
        (404, "not_found", "CRD installed"),
    ],
)
async def test_permanent_errors_are_said_once_loudly_and_reach_readiness(
    apiserver: FakeApiServer,
    k8s_cluster_factory: ClusterFactory,
    status: int,
    reason: str,
    hint: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kuikcore.cluster.health import ClusterCollector, ClusterNotReady, cluster_ready

    settings = InformerSettings(watch_timeout=5.0, backoff_initial=0.05, backoff_max=0.3)
    apiserver.fail_requests(1000, status=status, match="/pods")
    client = apiserver.api_client()
    cluster = KubernetesCluster(client, kinds=[POD], settings=settings)
    await cluster.start()
    try:
        [informer] = cluster.informers
        await eventually(lambda: informer.problem is not None, what="the problem recorded")
        with pytest.raises(ClusterNotReady, match=rf"cannot list Pod \(v1\): HTTP {status}"):
            await cluster_ready(cluster)
        await asyncio.sleep(0.5)
        # retried at the longest backoff only, not hammered
        assert informer.failures[("list", reason)] <= 3
        families = list(ClusterCollector(cluster).collect())
        samples = {tuple(s.labels.values()): s.value for s in families[0].samples}
        assert samples[("Pod", "list", reason)] >= 1
        logged = capsys.readouterr().out
        assert "kubernetes API refused a request" in logged
        assert hint in logged
        # fixed (RBAC applied, CRD installed): picked up at the next attempt
        apiserver.clear_faults()
        await eventually(lambda: cluster.synced, within=5, what="synced after the fix")
        assert informer.problem is None
        assert await cluster_ready(cluster)
    finally:
        await cluster.stop()
        await client.close()


async def test_api_server_5xx_bursts_and_slow_responses(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    apiserver.fail_requests(30, status=503)
    apiserver.cut_watches()
    for i in range(10):
        apiserver.create(pod("nginx", namespace="a", name=f"p{i}"))
    apiserver.create(cisa("avail"))
    await eventually(lambda: converged(apiserver, k8s_cluster), what="converged after a 503 burst")
    apiserver.set_delay(0.5)
    apiserver.cut_watches()
    apiserver.delete("v1", "Pod", "a", "p3")
    await eventually(
        lambda: converged(apiserver, k8s_cluster), what="converged with slow responses"
    )


async def test_bookmarks_keep_idle_watches_current(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """An idle kind's watch version follows the server through bookmarks, so a later cut
    re-watches without a 410 even after compaction."""
    informer = next(i for i in k8s_cluster.informers if i.kind == CISA)
    for i in range(3):
        apiserver.create(pod("nginx", namespace="a", name=f"p{i}"))
    await eventually(
        lambda: informer.version == str(apiserver.resource_version), what="bookmark advanced"
    )
    apiserver.compact()
    apiserver.cut_watches()
    apiserver.create(cisa("after"))
    await eventually(lambda: converged(apiserver, k8s_cluster))
    assert informer.expirations == 0


CHAOS_SECONDS = float(os.environ.get("KUIK_WATCH_CHAOS_SECONDS", "60"))


async def test_watch_cut_every_few_seconds_for_a_minute(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Writers churn Pods, CRs and kuik Secrets while every watch is cut each 1-4 s (with a
    compaction now and then, so some re-watches hit 410): the store ends equal to the server."""
    rng = random.Random(6)
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + CHAOS_SECONDS
    cuts = 0

    async def churn() -> None:
        n = 0
        while loop.time() < stop_at:
            n += 1
            name = f"p{rng.randrange(40)}"
            if apiserver.get("v1", "Pod", "a", name) is None:
                apiserver.create(
                    pod(rng.choice(["nginx", "redis", "busybox"]), namespace="a", name=name)
                )
            elif rng.random() < 0.5:
                apiserver.delete("v1", "Pod", "a", name)
            else:
                apiserver.patch("v1", "Pod", "a", name, {"metadata": {"labels": {"n": str(n)}}})
            if n % 7 == 0:
                sname = f"s{rng.randrange(5)}"
                if apiserver.get("v1", "Secret", "a", sname) is None:
                    apiserver.create(secret("a", sname, labels={OWNER_UID_LABEL: "u"}))
                else:
                    apiserver.delete("v1", "Secret", "a", sname)
            if n % 11 == 0:
                cname = f"c{rng.randrange(4)}"
                if apiserver.get(KUIK, CISA, None, cname) is None:
                    apiserver.create(cisa(cname))
                else:
                    apiserver.delete(KUIK, CISA, None, cname)
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(churn())
    while loop.time() < stop_at:
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        if rng.random() < 0.25:
            apiserver.compact()
        cuts += 1
        apiserver.cut_watches()
    await writer
    await eventually(
        lambda: converged(apiserver, k8s_cluster), what="store equals server after the storm"
    )
    assert cuts >= max(1, int(CHAOS_SECONDS / 4) - 1)
    assert sum(i.rewatches for i in k8s_cluster.informers) >= cuts


async def test_conflicting_status_writers_lose_no_update(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    """Two clusters (two replicas) and a third party all append to one status concurrently:
    every append survives, thanks to resourceVersion preconditions and conflict retries."""
    apiserver.create(cisa("shared"))
    first = await k8s_cluster_factory(field_manager="kuik-monitor")
    second = await k8s_cluster_factory(field_manager="kuik-monitor")

    def appender(tag: str):  # type: ignore[no-untyped-def]
        def mutate(status: dict) -> dict:
            images = [
                *status.get("images", []),
                {"image": f"registry.example/{tag}", "status": "Scheduled"},
            ]
            return {**status, "images": images, "imageCount": len(images)}

        return mutate

    async def third_party() -> None:
        for i in range(10):
            current = apiserver.get(KUIK, CISA, None, "shared")
            images = [
                *(current.get("status") or {}).get("images", []),
                {"image": f"registry.example/x{i}", "status": "Scheduled"},
            ]
            apiserver.patch(
                KUIK,
                CISA,
                None,
                "shared",
                {"status": {"images": images, "imageCount": len(images)}},
                subresource="status",
            )
            await asyncio.sleep(0.005)

    writes = [
        c.update_status(CISA, "", "shared", appender(f"{name}{i}"))
        for i in range(10)
        for c, name in ((first, "a"), (second, "b"))
    ]
    await asyncio.gather(third_party(), *writes)
    status = apiserver.get(KUIK, CISA, None, "shared")["status"]
    names = sorted(i["image"] for i in status["images"])
    assert len(names) == 30
    assert len(set(names)) == 30
    assert status["imageCount"] == 30
    await eventually(
        lambda: len(first.store.resource(CISA, "", "shared").status.images or []) == 30
    )
    conflicts = [p for m, p in apiserver.requests if m == "PATCH"]
    assert len(conflicts) > 20  # some writes were retried after a 409


async def test_status_write_gives_up_on_endless_conflicts(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    apiserver.create(cisa("busy"))
    cluster = await k8s_cluster_factory(write_attempts=3)

    def mutate(status: dict) -> dict:
        # Another writer always sneaks in between our read and our write.
        apiserver.patch(
            KUIK, CISA, None, "busy", {"metadata": {"labels": {"t": str(random.random())}}}
        )
        return {**status, "imageCount": 1}

    with pytest.raises(ConflictError, match="ClusterImageSetAvailability busy"):
        await cluster.update_status(CISA, "", "busy", mutate)
    with pytest.raises(NotFoundError, match="ClusterImageSetAvailability ghost"):
        await cluster.update_status(CISA, "", "ghost", lambda s: s)


async def test_status_write_keeps_spec_and_removes_dropped_keys(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    apiserver.create(cism("m", mirror()))
    await k8s_cluster.update_status(
        "ClusterImageSetMirror",
        "",
        "m",
        lambda s: {"matchingImages": [{"image": "docker.io/library/nginx:1", "mirrors": []}]},
    )
    result = await k8s_cluster.update_status("ClusterImageSetMirror", "", "m", lambda s: {})
    assert result.status.matching_images is None
    stored = apiserver.get(KUIK, "ClusterImageSetMirror", None, "m")
    assert stored.get("status") in (None, {})
    assert stored["spec"]["mirrors"][0]["registry"] == "mirror.example:5000"
    assert stored["metadata"]["generation"] == 1  # status writes never bump the generation


async def test_finalizer_holds_deletion_until_removed(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    apiserver.create(cism("m", mirror()))
    key = ObjectKey("ClusterImageSetMirror", "", "m")
    assert await k8s_cluster.add_finalizer(key.kind, "", "m", "kuik.enix.io/mirror-cleanup") is True
    assert (
        await k8s_cluster.add_finalizer(key.kind, "", "m", "kuik.enix.io/mirror-cleanup") is False
    )
    apiserver.delete(KUIK, key.kind, None, "m")
    await eventually(
        lambda: (
            getattr(k8s_cluster.store.get(key), "metadata", None) is not None
            and k8s_cluster.store.get(key).metadata.deletion_timestamp is not None
        )
    )
    assert (
        await k8s_cluster.remove_finalizer(key.kind, "", "m", "kuik.enix.io/mirror-cleanup") is True
    )
    await eventually(lambda: k8s_cluster.store.get(key) is None)
    assert apiserver.get(KUIK, key.kind, None, "m") is None


async def test_events_recorded_and_deduplicated(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    apiserver.create(cisa("avail"))
    key = ObjectKey(CISA, "", "avail")
    await eventually(lambda: k8s_cluster.store.get(key) is not None)
    await k8s_cluster.emit_event(
        key, EventType.WARNING, "ImageUnavailable", "nginx: NotFound", action="Check"
    )
    await k8s_cluster.emit_event(
        key, EventType.WARNING, "ImageUnavailable", "nginx: NotFound", action="Check"
    )
    await k8s_cluster.emit_event(key, EventType.NORMAL, "ImageAvailable", "nginx: Available")
    events = await k8s_cluster.list_events(key)
    assert [(e["type"], e["reason"], e["note"]) for e in events] == [
        ("Warning", "ImageUnavailable", "nginx: NotFound"),
        ("Normal", "ImageAvailable", "nginx: Available"),
    ]
    assert (
        events[0]["regarding"]["uid"] == apiserver.get(KUIK, CISA, None, "avail")["metadata"]["uid"]
    )
    assert events[0]["metadata"]["namespace"] == "default"
    # A failing API server never raises out of emit_event.
    apiserver.fail_requests(5, status=500, match="/events")
    await k8s_cluster.emit_event(key, EventType.WARNING, "Other", "x")


async def test_invalid_resources_are_reported_not_stored(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    bad = cism("bad", mirror())
    bad["spec"]["priority"] = "high"
    apiserver.create(bad)
    apiserver.create(cism("good", mirror()))
    await eventually(
        lambda: k8s_cluster.store.resource("ClusterImageSetMirror", "", "good") is not None
    )
    await eventually(lambda: len(k8s_cluster.problems()) == 1)
    problem = k8s_cluster.problems()[0]
    assert (problem.kind, problem.name) == ("ClusterImageSetMirror", "bad")
    assert "spec.priority" in problem.reason
    assert k8s_cluster.store.resource("ClusterImageSetMirror", "", "bad") is None
    apiserver.delete(KUIK, "ClusterImageSetMirror", None, "bad")
    await eventually(lambda: k8s_cluster.problems() == [])


async def test_cluster_id_is_the_kube_system_uid(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    ns = apiserver.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    )
    assert await k8s_cluster.cluster_id() == ns["metadata"]["uid"]


async def test_lists_are_paged_and_an_expired_page_token_restarts_the_list(
    apiserver: FakeApiServer, k8s_cluster_factory: ClusterFactory
) -> None:
    for i in range(250):
        apiserver.create(
            pod(f"registry.example/app:{i % 5}", namespace=f"ns{i % 7}", name=f"p{i:03d}")
        )
    apiserver.fail_requests(1, status=410, match="continue=")
    settings = InformerSettings(page_size=40, backoff_initial=0.05, backoff_max=0.2)
    cluster = await k8s_cluster_factory(settings=settings, kinds=[POD])
    assert len(cluster.store.pods()) == 250
    assert len(cluster.store.pods_by_image("registry.example/app:3")) == 50
    pages = [p for m, p in apiserver.requests if p.startswith("/api/v1/pods?") and "watch" not in p]
    assert all("limit=40" in p for p in pages)
    assert sum("continue=" in p for p in pages) >= 7  # 250 / 40 -> 6 follow-up pages, plus a retry
    assert converged(apiserver, cluster)


async def test_writes_ride_out_a_5xx_burst(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster, k8s_cluster_factory: ClusterFactory
) -> None:
    apiserver.create(cisa("avail"))
    apiserver.fail_requests(3, status=503, match="clusterimagesetavailabilities/avail")
    result = await k8s_cluster.update_status(CISA, "", "avail", lambda s: {**s, "imageCount": 0})
    assert result.status.image_count == 0
    apiserver.fail_requests(2, status=500, match="/secrets")
    await k8s_cluster.apply_secret(secret("a", "kuik-x", labels={OWNER_UID_LABEL: "u"}))
    assert apiserver.get("v1", "Secret", "a", "kuik-x") is not None
    impatient = await k8s_cluster_factory(transient_attempts=2)
    apiserver.fail_requests(50, status=500, match="clusterimagesetavailabilities/avail")
    with pytest.raises(ClusterError, match="HTTP 500"):
        await impatient.update_status(CISA, "", "avail", lambda s: {**s, "imageCount": 1})
