"""kuik's writes as a real API server judges them: each test here failed against the strict
fake (kuikcore.testing.apivalidation) before the fix it names."""

from __future__ import annotations

from typing import Any

from kuik_webhook.secrets import copy_name, copy_of
from kuikcore.api import OWNER_NAME_LABEL, OWNER_UID_LABEL, label_value, parse_resource
from kuikcore.cluster.interface import EventType, ObjectKey
from kuikcore.cluster.kubernetes import KubernetesCluster
from kuikcore.routing import SecretRef
from kuikcore.testing.apiserver import FakeApiServer
from tests.cluster.objects import cism, eventually, secret

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


def writes(server: FakeApiServer, since: int) -> list[str]:
    """The methods of the requests after `since` that are not watches."""
    return [m for m, path in server.requests[since:] if "watch=" not in path]


async def test_pull_secret_copy_of_an_owner_with_a_long_name(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Was: the CR name (up to 253 characters) became the owner-name label value (at most
    63), and the copy was refused; a source name cut just after a '.' gave an invalid name."""
    owner_name = "m" * 200
    owner = parse_resource(apiserver.create(cism(owner_name)))
    source = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}
    dotted = SecretRef(name="a" * 230 + "." + "b" * 22, namespace="kuik-system")
    for ref in (SecretRef(name="creds", namespace="kuik-system"), dotted):
        name = copy_name(ref, owner.metadata.uid or "")
        stored = await k8s_cluster.apply_secret(copy_of(source, "apps", name, owner))
        labels = stored["metadata"]["labels"]
        assert labels[OWNER_NAME_LABEL] == label_value(owner_name)
        assert len(labels[OWNER_NAME_LABEL]) == 63
    assert label_value(owner_name) != label_value(owner_name + "n")


async def test_pull_secret_copy_is_written_only_when_it_differs(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Was: every admission POSTed the copy, then GET on 409 (two requests for nothing)."""
    copy_ = secret("apps", "kuik-creds-1", labels={OWNER_UID_LABEL: "u1"}, a="YQ==")
    await k8s_cluster.apply_secret(copy_)
    await eventually(lambda: k8s_cluster.store.secret("apps", "kuik-creds-1") is not None)
    since = len(apiserver.requests)
    await k8s_cluster.apply_secret(copy_)
    assert writes(apiserver, since) == []
    copy_["data"] = {"a": "Yg=="}
    stored = await k8s_cluster.apply_secret(copy_)
    assert writes(apiserver, since) == ["PUT"]
    assert stored["data"] == {"a": "Yg=="}


async def test_pull_secret_copy_is_recreated_when_its_type_changes(
    apiserver: FakeApiServer, k8s_cluster: KubernetesCluster
) -> None:
    """Was: a PUT with the new type, refused (a Secret's type is immutable), so the copy kept
    the old type for good."""
    copy_ = secret("apps", "kuik-creds-2", labels={OWNER_UID_LABEL: "u1"}, a="YQ==")
    first = await k8s_cluster.apply_secret(copy_)
    await eventually(lambda: k8s_cluster.store.secret("apps", "kuik-creds-2") is not None)
    copy_["type"] = "kubernetes.io/dockerconfigjson"
    copy_["data"] = {".dockerconfigjson": "e30="}
    since = len(apiserver.requests)
    stored = await k8s_cluster.apply_secret(copy_)
    assert writes(apiserver, since) == ["DELETE", "POST"]
    assert stored["type"] == "kubernetes.io/dockerconfigjson"
    assert stored["metadata"]["uid"] != first["metadata"]["uid"]
    immutable = secret("apps", "kuik-creds-3", labels={OWNER_UID_LABEL: "u1"}, a="YQ==")
    apiserver.create({**immutable, "immutable": True})
    await eventually(lambda: k8s_cluster.store.secret("apps", "kuik-creds-3") is not None)
    immutable["data"] = {"a": "Yg=="}
    stored = await k8s_cluster.apply_secret(immutable)
    assert stored["data"] == {"a": "Yg=="}
    assert "immutable" not in stored
