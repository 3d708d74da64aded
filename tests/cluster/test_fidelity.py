"""kuik's writes as a real API server judges them: each test here failed against the strict
fake (kuikcore.testing.apivalidation) before the fix it names."""

from __future__ import annotations

from typing import Any

from kuikcore.cluster.interface import EventType, ObjectKey
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.testing.apiserver import FakeApiServer

JSON = dict[str, Any]
CISM = "ClusterImageSetMirror"
CISA = "ClusterImageSetAvailability"
API = "kuik.enix.io/v1alpha1"


def cr(kind: str, name: str, **meta: Any) -> JSON:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, **meta}, "spec": {}}


async def test_events_are_named_so_events_k8s_io_v1_accepts_them(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Was: generateName '<name>.', refused (a trailing '.' is no DNS subdomain prefix)."""
    long_name = ("a" * 62 + ".") * 4  # 252 characters, a valid CR name
    long_name = long_name[:-1] + "b"
    for name in ("avail", long_name):
        apiserver.create(cr(CISA, name))
    for name in ("avail", long_name):
        key = ObjectKey(CISA, "", name)
        await k8s_cluster.emit_event(key, EventType.NORMAL, "ImageAvailable", f"{name} ok")
        events = await k8s_cluster.list_events(key)
        assert [e["note"] for e in events] == [f"{name} ok"]
        event_name = events[0]["metadata"]["name"]
        assert len(event_name) <= 253
        assert event_name.startswith(name[:200])


async def test_event_notes_are_cut_in_bytes(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Was: cut at 1024 characters; 'é' * 600 is 1200 bytes and was refused."""
    apiserver.create(cr(CISA, "avail"))
    key = ObjectKey(CISA, "", "avail")
    await k8s_cluster.emit_event(key, EventType.WARNING, "ImageUnavailable", "é" * 600)
    [event] = await k8s_cluster.list_events(key)
    assert event["note"].endswith("...")
    assert len(event["note"].encode()) <= 1024
    assert event["note"] == "é" * 510 + "..."


async def test_no_finalizer_is_added_to_an_object_being_deleted(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Was: the finalizer patch was sent and the API server's 422 raised out of
    add_finalizer (the replicator decides from its cache, which can predate the deletion)."""
    apiserver.create(cr(CISM, "m", finalizers=["example.com/other"]))
    apiserver.delete(API, CISM, None, "m")
    assert await k8s_cluster.add_finalizer(CISM, "", "m", "kuik.enix.io/secret-cleanup") is False
    held = apiserver.get(API, CISM, None, "m")
    assert held is not None
    assert held["metadata"]["finalizers"] == ["example.com/other"]
    assert await k8s_cluster.remove_finalizer(CISM, "", "m", "example.com/other") is True
    assert apiserver.get(API, CISM, None, "m") is None
