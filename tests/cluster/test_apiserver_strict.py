"""The API fake refuses what kube-apiserver 1.30 refuses, with the server's own Status bodies
(kuik_testing.apivalidation), so kuik's writes are held to real-cluster rules."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s

from kuik_testing.apiserver import FakeApiServer
from kuik_testing.objects import cism

JSON = dict[str, Any]
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CISM_PATH = "/apis/kuik.enix.io/v1alpha1/clusterimagesetmirrors"


async def send(server: FakeApiServer, method: str, path: str, body: Any = None) -> tuple[int, JSON]:
    kind = "application/merge-patch+json" if method == "PATCH" else "application/json"
    headers = {"Content-Type": kind}
    async with aiohttp.ClientSession() as session:
        data = None if body is None else json.dumps(body)
        async with session.request(method, server.url + path, data=data, headers=headers) as resp:
            return resp.status, await resp.json()


def secret(name: str, **extra: Any) -> JSON:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **extra}


async def test_object_names_are_dns_subdomains_with_the_real_status(
    apiserver: FakeApiServer,
) -> None:
    code, body = await send(apiserver, "POST", "/api/v1/namespaces/a/secrets", secret("Bad_Name"))
    assert code == 422
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'Secret "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {SUBDOMAIN_MSG}',
        "reason": "Invalid",
        "details": {
            "name": "Bad_Name",
            "kind": "Secret",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "Bad_Name": {SUBDOMAIN_MSG}',
                    "field": "metadata.name",
                }
            ],
        },
        "code": 422,
    }
    code, _ = await send(apiserver, "POST", CISM_PATH, cism("x" * 254))
    assert code == 422
    code, _ = await send(apiserver, "POST", CISM_PATH, cism("x" * 253))
    assert code == 201
    code, body = await send(
        apiserver,
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}},
    )
    assert code == 422  # namespaces are DNS labels
    assert "RFC 1123 label" in body["message"]


async def test_generate_name_must_be_a_valid_prefix(apiserver: FakeApiServer) -> None:
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": "obj."},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "kuik.enix.io/test",
        "reportingInstance": "host",
        "action": "A",
        "reason": "R",
        "note": "n",
        "type": "Normal",
        "regarding": {"kind": "Pod", "namespace": "a", "name": "obj"},
    }
    path = "/apis/events.k8s.io/v1/namespaces/a/events"
    code, body = await send(apiserver, "POST", path, event)
    assert code == 422
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.generateName"]
    assert body["message"].startswith('Event.events.k8s.io "obj.')
    event["metadata"] = {"generateName": "obj-"}  # a trailing '-' is fine (maskTrailingDash)
    code, body = await send(apiserver, "POST", path, event)
    assert code == 201
    assert body["metadata"]["name"].startswith("obj-")
    assert len(body["metadata"]["name"]) == 9
    event["metadata"] = {"name": "obj.1"}
    event["note"] = "é" * 513  # 513 characters, 1026 bytes: Go's len() counts bytes
    code, body = await send(apiserver, "POST", path, event)
    assert code == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "": can have at most 1024 characters',
            "field": "message",
        }
    ]


async def test_labels_and_annotations(apiserver: FakeApiServer) -> None:
    code, body = await send(
        apiserver,
        "POST",
        CISM_PATH,
        cism("a", metadata={"labels": {"kuik.enix.io/owner-name": "n" * 64}}),
    )
    assert code == 422
    assert body["details"]["causes"][0]["message"] == (
        f'Invalid value: "{"n" * 64}": must be no more than 63 characters'
    )
    code, body = await send(
        apiserver, "POST", CISM_PATH, cism("b", metadata={"labels": {"a/b/c": "v"}})
    )
    assert code == 422
    big = {"k": "v" * (256 * 1024)}
    code, body = await send(apiserver, "POST", CISM_PATH, cism("c", metadata={"annotations": big}))
    assert code == 422
    assert body["message"] == (
        'ClusterImageSetMirror.kuik.enix.io "c" is invalid: metadata.annotations: '
        "Too long: must have at most 262144 bytes"
    )
    code, _ = await send(
        apiserver, "POST", CISM_PATH, cism("d", metadata={"labels": {"app": "web"}})
    )
    assert code == 201
    code, body = await send(
        apiserver, "PATCH", CISM_PATH + "/d", {"metadata": {"labels": {"app": "-web"}}}
    )
    assert code == 422  # updates are held to the same rules


async def test_request_body_and_stored_object_limits(apiserver: FakeApiServer) -> None:
    huge = cism("huge")
    huge["spec"]["blob"] = "x" * (3 * 1024 * 1024)
    code, body = await send(apiserver, "POST", CISM_PATH, huge)
    assert (code, body) == (
        413,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Request entity too large: limit is 3145728",
            "reason": "RequestEntityTooLarge",
            "code": 413,
        },
    )
    code, _ = await send(apiserver, "POST", CISM_PATH, cism("big"))
    assert code == 201
    patch = {"status": {"blob": "x" * (1536 * 1024)}}
    code, body = await send(apiserver, "PATCH", CISM_PATH + "/big/status", patch)
    assert (code, body["message"], "reason" in body) == (
        500,
        "etcdserver: request is too large",
        False,
    )
    assert apiserver.get("kuik.enix.io/v1alpha1", "ClusterImageSetMirror", None, "big") is not None


async def test_secret_type_and_immutable_secrets(apiserver: FakeApiServer) -> None:
    base = "/api/v1/namespaces/a/secrets"
    made = secret("s", type="kubernetes.io/dockerconfigjson", data={".dockerconfigjson": "e30="})
    code, _ = await send(apiserver, "POST", base, made)
    assert code == 201
    code, body = await send(apiserver, "PATCH", base + "/s", {"type": "Opaque"})
    assert code == 422
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "Opaque": field is immutable',
            "field": "type",
        }
    ]
    code, body = await send(apiserver, "PUT", base + "/s", secret("s", data={"a": "YQ=="}))
    assert code == 422  # no type means Opaque (defaulted), which is a change
    code, _ = await send(apiserver, "POST", base, secret("i", immutable=True, data={"a": "YQ=="}))
    assert code == 201
    code, body = await send(apiserver, "PATCH", base + "/i", {"data": {"a": "Yg=="}})
    assert code == 422
    assert body["details"]["causes"][0] == {
        "reason": "FieldValueForbidden",
        "message": "Forbidden: field is immutable when `immutable` is set",
        "field": "data",
    }
    code, _ = await send(apiserver, "DELETE", base + "/i")
    assert code == 200  # what an immutable Secret allows: delete and create again


async def test_secret_string_data_is_written_into_data_and_never_stored(
    apiserver: FakeApiServer,
) -> None:
    """As kube-apiserver's v1 conversion: each stringData entry is base64 in data (over a data
    entry of the same key), stringData itself is never returned; a non-string value is a 400."""
    base = "/api/v1/namespaces/a/secrets"
    made = secret("sd", data={"a": "YQ==", "b": "Yg=="}, stringData={"b": "two", "c": "three"})
    code, body = await send(apiserver, "POST", base, made)
    assert code == 201
    assert body["data"] == {"a": "YQ==", "b": "dHdv", "c": "dGhyZWU="}
    assert "stringData" not in body
    code, body = await send(apiserver, "PATCH", base + "/sd", {"stringData": {"a": "uno"}})
    assert code == 200
    assert body["data"]["a"] == "dW5v"
    assert "stringData" not in body
    code, body = await send(apiserver, "GET", base + "/sd")
    assert "stringData" not in body
    code, body = await send(apiserver, "POST", base, secret("bad", stringData={"n": 1}))
    assert code == 400
    assert "Secret.stringData of type string" in body["message"]


@pytest.mark.parametrize("verb", ["PATCH", "PUT"])
async def test_no_new_finalizers_while_deleting(apiserver: FakeApiServer, verb: str) -> None:
    apiserver.create(cism("m", metadata={"finalizers": ["example.com/keep"]}))
    apiserver.delete("kuik.enix.io/v1alpha1", "ClusterImageSetMirror", None, "m")
    current = apiserver.get("kuik.enix.io/v1alpha1", "ClusterImageSetMirror", None, "m")
    assert current is not None
    finalizers = ["example.com/keep", "kuik.enix.io/new"]
    if verb == "PATCH":
        code, body = await send(
            apiserver, verb, CISM_PATH + "/m", {"metadata": {"finalizers": finalizers}}
        )
    else:
        current["metadata"]["finalizers"] = finalizers
        code, body = await send(apiserver, verb, CISM_PATH + "/m", current)
    assert code == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: no new finalizers can be added if the object is being "
            'deleted, found new finalizers []string{"kuik.enix.io/new"}',
            "field": "metadata.finalizers",
        }
    ]
    code, _ = await send(apiserver, "PATCH", CISM_PATH + "/m", {"metadata": {"finalizers": None}})
    assert code == 200  # removing one is always allowed (and completes the deletion)
    assert apiserver.get("kuik.enix.io/v1alpha1", "ClusterImageSetMirror", None, "m") is None


async def test_strict_can_be_turned_off() -> None:
    server = await FakeApiServer(strict=False).start()
    try:
        code, _ = await send(server, "POST", "/api/v1/namespaces/a/secrets", secret("Bad_Name"))
        assert code == 201
    finally:
        await server.stop()


async def test_delete_preconditions(apiserver: FakeApiServer) -> None:
    made = apiserver.create({**secret("p"), "metadata": {"name": "p", "namespace": "a"}})
    path = "/api/v1/namespaces/a/secrets/p"
    code, body = await send(apiserver, "DELETE", path, {"preconditions": {"uid": "other"}})
    assert (code, body["reason"]) == (409, "Conflict")
    assert "Precondition failed: UID in precondition: other" in body["message"]
    meta = made["metadata"]
    options = {"preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}}
    code, _ = await send(apiserver, "DELETE", path, options)
    assert code == 200


async def test_rbac_forbidden_status(apiserver: FakeApiServer) -> None:
    rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    apiserver.grant("t", "system:serviceaccount:kuik-system:kuik", rules)
    apiserver.create({**secret("s"), "metadata": {"name": "s", "namespace": "a"}})
    client = apiserver.api_client("t")
    try:
        core = k8s.CoreV1Api(client)
        ok = await core.read_namespaced_secret("s", "a", _preload_content=False)
        assert ok.status == 200
        denied = await core.delete_namespaced_secret("s", "a", _preload_content=False)
        assert denied.status == 403
        assert await denied.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'secrets "s" is forbidden: User "system:serviceaccount:kuik-system:kuik" '
            'cannot delete resource "secrets" in API group "" in the namespace "a"',
            "reason": "Forbidden",
            "details": {"name": "s", "kind": "secrets"},  # omitempty: no group
            "code": 403,
        }
        listing = await core.list_secret_for_all_namespaces(_preload_content=False)
        assert listing.status == 403
        assert (await listing.json())["message"] == (
            'secrets is forbidden: User "system:serviceaccount:kuik-system:kuik" cannot list '
            'resource "secrets" in API group "" at the cluster scope'
        )
    finally:
        await client.close()
    code, _ = await send(apiserver, "DELETE", "/api/v1/namespaces/a/secrets/s")
    assert code == 200  # other callers are not restricted


async def test_not_found_already_exists_and_conflict_name_the_group_resource(
    apiserver: FakeApiServer,
) -> None:
    code, body = await send(apiserver, "GET", "/api/v1/namespaces/a/secrets/nope")
    assert (code, body["message"], body["details"]) == (
        404,
        'secrets "nope" not found',
        {"name": "nope", "kind": "secrets"},
    )
    await send(apiserver, "POST", CISM_PATH, cism("c"))
    code, body = await send(apiserver, "POST", CISM_PATH, cism("c"))
    assert (code, body["reason"], body["message"]) == (
        409,
        "AlreadyExists",
        'clusterimagesetmirrors.kuik.enix.io "c" already exists',
    )
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"priority": 1}}
    code, body = await send(apiserver, "PATCH", CISM_PATH + "/c", stale)
    assert (code, body["reason"], body["details"]["kind"]) == (
        409,
        "Conflict",
        "clusterimagesetmirrors",
    )
    assert body["message"].startswith(
        'Operation cannot be fulfilled on clusterimagesetmirrors.kuik.enix.io "c": '
    )


async def test_generation_moves_with_the_spec_and_the_deletion_mark_only(
    apiserver: FakeApiServer,
) -> None:
    """kube-apiserver's rules for a CRD with a status subresource: `generation` starts at 1,
    goes up when anything but metadata and status changes, and once more when a deletion is
    held by a finalizer (markAsDeleting); status writes, label edits and a status sent to the
    main endpoint (dropped) leave it alone. `observedGeneration` and `kubectl wait` rest on it."""
    path = f"{CISM_PATH}/m"
    code, created = await send(
        apiserver, "POST", CISM_PATH, cism("m", metadata={"finalizers": ["x.io/y"]})
    )
    assert (code, created["metadata"]["generation"]) == (201, 1)

    async def generation_after(method: str, where: str, body: JSON) -> int:
        code, obj = await send(apiserver, method, where, body)
        assert code == 200, obj
        return int(obj["metadata"]["generation"])

    assert await generation_after("PATCH", f"{path}/status", {"status": {"imageCount": 3}}) == 1
    assert await generation_after("PATCH", path, {"metadata": {"labels": {"a": "b"}}}) == 1
    assert await generation_after("PATCH", path, {"status": {"imageCount": 9}}) == 1
    stored = apiserver.get("kuik.enix.io/v1alpha1", "ClusterImageSetMirror", None, "m")
    assert stored is not None
    assert stored["status"] == {"imageCount": 3}  # the main endpoint ignores status
    assert await generation_after("PATCH", path, {"spec": {"priority": 2}}) == 2
    assert await generation_after("PATCH", path, {"spec": {"priority": 2}}) == 2  # no change
    code, held = await send(apiserver, "DELETE", path)
    assert (code, held["metadata"]["generation"]) == (200, 3)
    code, again = await send(apiserver, "DELETE", path)
    assert (code, again["metadata"]["generation"]) == (200, 3)  # marked once
