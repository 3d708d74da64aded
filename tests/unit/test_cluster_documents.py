"""Pure document composition (`kuikcore.cluster.documents`) over plain data: what the local
backend shows for a manifest, kuik's writes merged over it, and the Secret body both backends
send."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster.documents import (
    ManifestDoc,
    compose_pod,
    compose_resource,
    compose_secret,
    held_deletion,
    kuik_owned,
    manifest_key,
    object_uid,
    secret_body,
    stamp_overlay,
    timestamp,
)
from kuikcore.cluster.interface import POD, SECRET, InvalidDocument, ObjectKey
from kuikcore.manifests import Manifest

JSON = dict[str, Any]
KUIK = "kuik.enix.io/v1alpha1"
CISM = "ClusterImageSetMirror"
MTIME = "2026-01-02T03:04:05Z"
CISM_KEY = ObjectKey(CISM, "", "m")


def cism_doc(**status: Any) -> ManifestDoc:
    raw: JSON = {
        "apiVersion": KUIK,
        "kind": CISM,
        "metadata": {"name": "m", "resourceVersion": "9", "generation": 3},
        "spec": {"mirrors": [{"registry": "r.example", "path": "p"}]},
    }
    if status:
        raw["status"] = status
    return ManifestDoc(raw, "m.yaml", 0, MTIME)


def test_timestamp_is_utc_seconds() -> None:
    assert timestamp(datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)) == "2026-05-06T07:08:09Z"


def test_uid_is_derived_from_the_key_alone() -> None:
    assert object_uid(ObjectKey(POD, "a", "p")) == object_uid(ObjectKey(POD, "a", "p"))
    assert object_uid(ObjectKey(POD, "a", "p")) != object_uid(ObjectKey(POD, "b", "p"))
    assert object_uid(ObjectKey(POD, "a", "p")) != object_uid(ObjectKey(SECRET, "a", "p"))


def test_pod_gets_what_a_cluster_adds() -> None:
    raw: JSON = {
        "apiVersion": "v1",
        "kind": POD,
        "metadata": {"name": "p", "managedFields": [{}], "deletionTimestamp": "x"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    key = ObjectKey(POD, "default", "p")
    pod = compose_pod(ManifestDoc(raw, "p.yaml", 0, MTIME), key)
    meta = pod["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] == object_uid(key)
    assert meta["creationTimestamp"] == MTIME
    assert "managedFields" not in meta
    assert "deletionTimestamp" not in meta
    assert pod["status"] == {"phase": "Running"}
    assert "status" not in raw
    assert "uid" not in raw["metadata"]
    again = compose_pod(ManifestDoc(raw, "p.yaml", 0, MTIME), key)
    assert again["metadata"]["resourceVersion"] == meta["resourceVersion"]
    raw["status"] = {"phase": "Pending"}
    pending = compose_pod(ManifestDoc(raw, "p.yaml", 0, MTIME), key)
    assert pending["status"] == {"phase": "Pending"}
    assert pending["metadata"]["resourceVersion"] != meta["resourceVersion"]


def test_secret_folds_string_data_and_defaults_its_type() -> None:
    raw: JSON = {
        "apiVersion": "v1",
        "kind": SECRET,
        "metadata": {"name": "s"},
        "data": {"a": "YQ=="},
        "stringData": {"b": "b"},
    }
    secret = compose_secret(raw, ObjectKey(SECRET, "team", "s"), MTIME)
    assert secret["data"] == {"a": "YQ==", "b": "Yg=="}
    assert "stringData" not in secret
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["namespace"] == "team"


def test_resource_status_comes_only_from_kuiks_writes() -> None:
    doc = cism_doc(ignored=True)
    assert "status" not in (compose_resource(CISM_KEY, doc, None) or {})
    overlay: JSON = {"metadata": {"finalizers": ["kuik.enix.io/x"]}, "status": {"n": 1}}
    obj = compose_resource(CISM_KEY, doc, overlay)
    assert obj is not None
    assert obj["status"] == {"n": 1}
    assert obj["metadata"]["finalizers"] == ["kuik.enix.io/x"]
    assert obj["metadata"]["generation"] == 1  # the file's own is server-owned: never kept
    assert "resourceVersion" in obj["metadata"]
    obj["status"]["n"] = 2
    assert overlay["status"] == {"n": 1}  # a copy: the store cannot edit the overlay


def test_a_gone_document_stays_only_while_a_finalizer_holds_it() -> None:
    spec = {"mirrors": [{"registry": "r.example", "path": "p"}]}
    assert compose_resource(CISM_KEY, None, None) is None
    assert compose_resource(CISM_KEY, None, {"metadata": {"finalizers": ["f"]}}) is None
    assert compose_resource(CISM_KEY, None, {"metadata": {}, "spec": spec}) is None
    held: JSON = {"metadata": {"finalizers": ["f"], "creationTimestamp": MTIME}, "spec": spec}
    now = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    remains = compose_resource(CISM_KEY, None, held, now=now)
    assert remains is not None
    assert remains["apiVersion"] == KUIK
    assert remains["spec"] == spec
    assert remains["metadata"]["deletionTimestamp"] == "2026-02-03T04:05:06Z"
    assert remains["metadata"]["creationTimestamp"] == MTIME
    held["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kept = compose_resource(CISM_KEY, None, held, now=now)
    assert kept is not None
    assert kept["metadata"]["deletionTimestamp"] == "2026-01-01T00:00:00Z"


def test_held_deletion_needs_a_finalizer_and_a_spec() -> None:
    assert held_deletion({"metadata": {"finalizers": ["f"]}, "spec": {}})
    assert not held_deletion({"metadata": {"finalizers": []}, "spec": {}})
    assert not held_deletion({"metadata": {"finalizers": ["f"]}})
    assert not held_deletion({})


def test_stamped_overlay_can_stand_for_a_held_deletion() -> None:
    current = compose_resource(CISM_KEY, cism_doc(), None)
    assert current is not None
    overlay = stamp_overlay({"metadata": {"finalizers": ["f"]}}, CISM_KEY, current)
    assert overlay["metadata"]["uid"] == object_uid(CISM_KEY)
    assert overlay["metadata"]["creationTimestamp"] == MTIME
    assert "namespace" not in overlay["metadata"]
    assert overlay["metadata"]["generation"] == current["metadata"]["generation"] == 1
    remains = compose_resource(CISM_KEY, None, overlay)
    assert remains is not None
    assert remains["spec"] == current["spec"]


def test_generation_follows_spec_edits_past_kuiks_last_write() -> None:
    """1 until kuik writes; then the generation of that write, plus one while the file's spec
    differs from the spec that write saw (observedGeneration falls behind, as on a cluster)."""
    current = compose_resource(CISM_KEY, cism_doc(), None)
    assert current is not None
    overlay = stamp_overlay({"status": {"n": 1}}, CISM_KEY, current)
    same = compose_resource(CISM_KEY, cism_doc(), overlay)
    assert same is not None
    assert same["metadata"]["generation"] == 1
    edited = cism_doc()
    edited.raw["spec"]["mirrors"][0]["path"] = "q"
    after = compose_resource(CISM_KEY, edited, overlay)
    assert after is not None
    assert after["metadata"]["generation"] == 2


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}, None),
        ({"apiVersion": "v1", "kind": POD, "metadata": {"name": "p"}}, ("Pod", "default", "p")),
        (
            {"apiVersion": "v1", "kind": SECRET, "metadata": {"name": "s", "namespace": "t"}},
            ("Secret", "t", "s"),
        ),
        (
            {"apiVersion": KUIK, "kind": CISM, "metadata": {"name": "m", "namespace": "x"}},
            (CISM, "", "m"),
        ),
        ({"apiVersion": "v1", "kind": POD, "metadata": {}}, "metadata.name is required"),
        ({"apiVersion": "v2", "kind": POD, "metadata": {"name": "p"}}, "apiVersion must be v1"),
    ],
)
def test_manifest_key(obj: JSON, expected: tuple[str, str, str] | str | None) -> None:
    found = manifest_key(Manifest(Path("f.yaml"), 2, obj), {POD, CISM})
    if expected is None:
        assert found is None
    elif isinstance(expected, str):
        assert isinstance(found, InvalidDocument)
        assert expected in found.reason
        assert found.index == 2
        assert found.source == "f.yaml"
    else:
        assert found == ObjectKey(*expected)


def test_only_labelled_secrets_are_kuiks() -> None:
    assert kuik_owned({"metadata": {"labels": {OWNER_UID_LABEL: "u"}}})
    assert not kuik_owned({"metadata": {"labels": {"other": "u"}}})
    assert not kuik_owned({})


def test_secret_body_keeps_what_kuik_applies_and_defaults_like_the_server() -> None:
    given: JSON = {
        "apiVersion": "v1",
        "kind": SECRET,
        "metadata": {
            "name": "s",
            "namespace": "apps",
            "labels": {OWNER_UID_LABEL: "u"},
            "annotations": {},
            "uid": "abc",
            "resourceVersion": "7",
        },
        "immutable": True,
    }
    assert secret_body(given) == {
        "apiVersion": "v1",
        "kind": SECRET,
        "metadata": {"name": "s", "namespace": "apps", "labels": {OWNER_UID_LABEL: "u"}},
        "type": "Opaque",
        "data": {},
    }
    given["type"] = "kubernetes.io/dockerconfigjson"
    given["data"] = {".dockerconfigjson": "e30="}
    body = secret_body(given)
    assert body["type"] == "kubernetes.io/dockerconfigjson"
    assert body["data"] == {".dockerconfigjson": "e30="}
    assert body["data"] is not given["data"]
    with pytest.raises(ValueError, match=r"namespace and metadata\.name are required"):
        secret_body({"metadata": {"name": "s"}})
