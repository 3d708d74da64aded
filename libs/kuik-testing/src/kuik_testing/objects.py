"""Builders for the objects tests, benchmarks and the demo feed kuik: Pods, AdmissionReviews,
Secrets and the five kuik kinds, as the plain dicts an API server stores.

One set so that a change to what kube-apiserver accepts is made once (`tests/unit/test_objects.py`
keeps every builder accepted by the strict API fake and by `parse_resource`). Each builder does
one shape with few defaults; an unusual object is built by passing keywords or by editing the
returned dict.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION

__all__ = [
    "CISA",
    "CISM",
    "CRIS",
    "ISM",
    "JSON",
    "KUIK",
    "RIS",
    "admission_request",
    "admission_review",
    "all_images",
    "body",
    "cisa",
    "cism",
    "container",
    "cris",
    "docker_secret",
    "eventually",
    "ism",
    "mirror",
    "pod",
    "resource",
    "review",
    "ris",
    "secret",
    "upstream",
]

JSON = dict[str, Any]
KUIK = "kuik.enix.io/v1alpha1"
CISM = "ClusterImageSetMirror"
ISM = "ImageSetMirror"
CRIS = "ClusterReplicatedImageSet"
RIS = "ReplicatedImageSet"
CISA = "ClusterImageSetAvailability"

Container = str | Mapping[str, Any]


# --- Pods --------------------------------------------------------------------------------------


def container(name: str, image: str, *, policy: str | None = None, **extra: Any) -> JSON:
    """One container; `policy` is its `imagePullPolicy` (left out when None, as users do)."""
    out: JSON = {"name": name, "image": image}
    if policy is not None:
        out["imagePullPolicy"] = policy
    out.update(extra)
    return out


def _containers(prefix: str, items: Iterable[Container], policy: str | None) -> list[JSON]:
    out = [
        container(f"{prefix}{i}", item) if isinstance(item, str) else dict(item)
        for i, item in enumerate(items)
    ]
    if policy is not None:
        for one in out:
            one.setdefault("imagePullPolicy", policy)
    return out


def pod(
    *containers: Container,
    namespace: str | None = "default",
    name: str = "p",
    init: Iterable[Container] = (),
    ephemeral: Iterable[Container] = (),
    policy: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    originals: Mapping[str, str] | None = None,
    pull_secrets: Iterable[str] = (),
    created: datetime | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
    **extra: Any,
) -> JSON:
    """A Pod. A container given as an image is named `c0`, `c1`... (`i<n>` for init, `e<n>` for
    ephemeral ones), one given as a dict is used as it is; `policy` is the `imagePullPolicy` of
    every container that has none. `originals` (container name ->
    image) is the webhook's original-images annotation; `namespace=None` leaves it out (an
    AdmissionReview's object may omit it); `metadata`, `spec` and `extra` are merged last."""
    meta: JSON = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels is not None:
        meta["labels"] = dict(labels)
    if annotations is not None or originals:
        meta["annotations"] = dict(annotations or {})
    if originals:
        meta["annotations"][ORIGINAL_IMAGES_ANNOTATION] = json.dumps(dict(originals))
    if created is not None:
        meta["creationTimestamp"] = (
            created.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(created, datetime) else created
        )
    meta.update(metadata or {})
    body: JSON = {"containers": _containers("c", containers, policy)}
    if init_list := _containers("i", init, policy):
        body["initContainers"] = init_list
    if ephemeral_list := _containers("e", ephemeral, policy):
        body["ephemeralContainers"] = ephemeral_list
    if secrets := [{"name": s} for s in pull_secrets]:
        body["imagePullSecrets"] = secrets
    body.update(spec or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body, **extra}


# --- AdmissionReviews ---------------------------------------------------------------------------


def admission_request(
    obj: Any,
    *,
    operation: str = "CREATE",
    uid: str | None = None,
    old: Any = None,
    dry_run: bool = False,
    sub_resource: str | None = None,
) -> JSON:
    """The `request` an API server sends for a Pod; namespace and name come from `obj` when it
    is a Pod (`default` when it has no namespace), a fresh uid unless given."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    request: JSON = {
        "uid": uid if uid is not None else str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
    }
    if isinstance(meta, dict):
        request["namespace"] = meta.get("namespace", "default")
        if "name" in meta:
            request["name"] = meta["name"]
    request.update(
        {"operation": operation, "object": obj, "oldObject": old, "dryRun": dry_run},
    )
    if sub_resource:
        request["subResource"] = sub_resource
    return request


def admission_review(request: Mapping[str, Any]) -> JSON:
    """The `admission.k8s.io/v1` envelope around a request given as it is (even a malformed one)."""
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def review(obj: Any, **request: Any) -> JSON:
    """The AdmissionReview an API server sends for `obj` (keywords: `admission_request`)."""
    return admission_review(admission_request(obj, **request))


def body(doc: Any) -> bytes:
    """`doc` as the JSON body of an HTTP request."""
    return json.dumps(doc).encode()


# --- Secrets ------------------------------------------------------------------------------------


def secret(namespace: str, name: str, labels: Mapping[str, str] | None = None, **data: str) -> JSON:
    """An Opaque Secret with `data` (values already base64)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name, "labels": dict(labels or {})},
        "type": "Opaque",
        "data": data,
    }


def docker_secret(
    namespace: str,
    name: str,
    host: str,
    user: str = "u",
    password: str = "p",
    *,
    string_data: bool = False,
) -> JSON:
    """A `kubernetes.io/dockerconfigjson` pull secret for one registry host, base64 in `data`
    or, with `string_data`, plain in `stringData` as a user writes it."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}})
    content = (
        {"stringData": {".dockerconfigjson": config}}
        if string_data
        else {"data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        **content,
    }


# --- kuik kinds ---------------------------------------------------------------------------------


def all_images() -> JSON:
    """The filter that selects every image (a fresh dict each time: callers edit it)."""
    return {"include": [{"image": ".*"}]}


def mirror(registry: str = "mirror.example:5000", path: str = "mirror", **extra: Any) -> JSON:
    """One entry of a (C)ISM's `mirrors`."""
    return {"registry": registry, "path": path, **extra}


def upstream(registry: str, path: str = "", **extra: Any) -> JSON:
    """One entry of a (C)RIS's `upstreams`."""
    return {"registry": registry, "path": path, **extra}


def resource(
    kind: str,
    name: str,
    *,
    namespace: str | None = None,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> JSON:
    """Any of the five kuik kinds; `metadata` is merged into name and namespace."""
    meta: JSON = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update(metadata or {})
    out: JSON = {"apiVersion": KUIK, "kind": kind, "metadata": meta, "spec": dict(spec or {})}
    if status is not None:
        out["status"] = dict(status)
    return out


def _kind(kind: str, name: str, namespace: str | None, key: str, items: Any, spec: JSON) -> JSON:
    """One of the four set kinds: `items` under `key` (left out when none), `metadata=` taken
    out of `spec` and merged into the object's."""
    metadata = spec.pop("metadata", None)
    body = {key: list(items), **spec} if items else spec
    return resource(kind, name, namespace=namespace, spec=body, metadata=metadata)


def cism(name: str, *mirrors: JSON, **spec: Any) -> JSON:
    """A ClusterImageSetMirror; keywords are spec fields (`filter=`, `priority=`...)."""
    return _kind(CISM, name, None, "mirrors", mirrors, spec)


def ism(namespace: str, name: str, *mirrors: JSON, **spec: Any) -> JSON:
    """An ImageSetMirror."""
    return _kind(ISM, name, namespace, "mirrors", mirrors, spec)


def cris(name: str, *upstreams: JSON, **spec: Any) -> JSON:
    """A ClusterReplicatedImageSet."""
    return _kind(CRIS, name, None, "upstreams", upstreams, spec)


def ris(namespace: str, name: str, *upstreams: JSON, **spec: Any) -> JSON:
    """A ReplicatedImageSet."""
    return _kind(RIS, name, namespace, "upstreams", upstreams, spec)


def cisa(
    name: str,
    *,
    images: Sequence[Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    **spec: Any,
) -> JSON:
    """A ClusterImageSetAvailability; `images` is its status list as the monitor writes it."""
    status = None if images is None else {"imageCount": len(images), "images": list(images)}
    return resource(CISA, name, spec=spec, status=status, metadata=metadata)


# --- waiting ------------------------------------------------------------------------------------


async def eventually(condition: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    """Poll `condition` until true; fail naming `what` after `within` seconds (a safety net for
    convergence, not a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never converged: {what or condition}")
        await asyncio.sleep(0.02)
