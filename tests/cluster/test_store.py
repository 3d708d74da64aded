"""The store and the write helpers as pure logic: indexes, relist diffs, merge patches."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kuik_testing.apiserver import merge_patch
from kuik_testing.objects import pod, secret
from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster import POD, SECRET, ChangeType, ObjectKey, Store
from kuikcore.cluster.patch import finalizers_after, merge_patch_between
from kuikcore.cluster.store import slim_pod
from kuikcore.reference import parse

IMAGES = [
    "nginx",
    "nginx:latest",
    "docker.io/library/nginx:1.27",
    "redis:7",
    "quay.io/a/b@sha256:" + "c" * 64,
]


def versioned(obj: dict[str, Any], version: int) -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = str(version)
    return obj


def test_relist_reports_only_differences() -> None:
    store = Store()
    first = [
        versioned(pod("nginx", namespace="a", name="x"), 1),
        versioned(pod("redis", namespace="a", name="y"), 2),
    ]
    assert [c.type for c in store.replace_kind(POD, first)] == [ChangeType.ADDED, ChangeType.ADDED]
    assert store.replace_kind(POD, first) == []
    second = [
        versioned(pod("nginx:1.27", namespace="a", name="x"), 3),
        versioned(pod("busybox", namespace="a", name="z"), 4),
    ]
    changes = store.replace_kind(POD, second)
    assert [(c.type, c.key.name) for c in changes] == [
        (ChangeType.MODIFIED, "x"),
        (ChangeType.ADDED, "z"),
        (ChangeType.DELETED, "y"),
    ]
    assert store.pods_by_image("nginx") == []
    assert [p["metadata"]["name"] for p in store.pods_by_image("nginx:1.27")] == ["x"]


def test_secret_owner_index_follows_label_changes() -> None:
    store = Store()
    store.upsert(SECRET, versioned(secret("a", "s", labels={OWNER_UID_LABEL: "u1"}), 1))
    assert [s["metadata"]["name"] for s in store.secrets_by_owner("u1")] == ["s"]
    store.upsert(SECRET, versioned(secret("a", "s", labels={OWNER_UID_LABEL: "u2"}), 2))
    assert store.secrets_by_owner("u1") == []
    assert len(store.secrets_by_owner("u2")) == 1
    store.remove(ObjectKey(SECRET, "a", "s"))
    assert store.secrets_by_owner("u2") == []


def test_slim_pod_drops_what_kuik_never_reads() -> None:
    full = pod(
        "nginx",
        namespace="a",
        name="p",
        metadata={"managedFields": [{}], "ownerReferences": [{}]},
        status={"phase": "Pending", "podIP": "10.1.1.1"},
    )
    full["spec"]["containers"][0].update(command=["x"], imagePullPolicy="Always")
    slim = slim_pod(full)
    assert slim["spec"] == {
        "containers": [{"name": "c0", "image": "nginx", "imagePullPolicy": "Always"}]
    }
    assert slim["status"] == {"phase": "Pending"}
    assert "managedFields" not in slim["metadata"]
    assert slim_pod(slim) == slim  # idempotent: informers compact list pages, the store again


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.lists(st.sampled_from(IMAGES), max_size=3), st.booleans()),
        max_size=30,
    )
)
def test_image_index_always_matches_a_recomputation(
    operations: list[tuple[int, list[str], bool]],
) -> None:
    store = Store()
    for version, (n, images, delete) in enumerate(operations):
        key = ObjectKey(POD, "ns", f"p{n}")
        if delete:
            store.remove(key)
        else:
            store.upsert(POD, versioned(pod(*images, namespace="ns", name=key.name), version))
    for image in IMAGES:
        expected = {
            p["metadata"]["name"]
            for p in store.pods()
            if any(
                store_key(image) == store_key(c["image"]) for c in p["spec"].get("containers", [])
            )
        }
        assert {p["metadata"]["name"] for p in store.pods_by_image(image)} == expected


def store_key(image: str) -> str:
    return str(parse(image).tag_name_only())


json_values = st.recursive(
    st.one_of(st.booleans(), st.integers(), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=4), json_values, max_size=5)


@settings(max_examples=80, deadline=None)
@given(json_objects, json_objects)
def test_merge_patch_between_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Checked with the API fake's independent RFC 7386 implementation."""
    assert merge_patch(old, merge_patch_between(old, new)) == new


def test_finalizers_after() -> None:
    assert finalizers_after({}, "f", True) == ["f"]
    assert finalizers_after({"finalizers": ["f"]}, "f", True) is None
    assert finalizers_after({"finalizers": ["a", "f"]}, "f", False) == ["a"]
    assert finalizers_after({"finalizers": ["a"]}, "f", False) is None
    deleting = {"finalizers": ["a", "f"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    assert finalizers_after(deleting, "g", True) is None  # refused by the API server
    assert finalizers_after(deleting, "f", False) == ["a"]
