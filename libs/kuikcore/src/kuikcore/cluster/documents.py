"""Pure document composition: what a cluster adds to a manifest, kuik's writes merged over the
user's documents, and the Secret body both backends send.

No files, no clock unless given, no API: the local backend (`cluster.local`) does the I/O around
these, and `secret_body` is the one definition of "the Secret kuik applies" that the Kubernetes
backend sends too, so the two backends cannot drift apart.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster.interface import NAMESPACE, POD, SECRET, InvalidDocument, ObjectKey
from kuikcore.cluster.kinds import watched_kind
from kuikcore.cluster.patch import json_copy
from kuikcore.manifests import Manifest

__all__ = [
    "DEFAULT_PHASE",
    "ManifestDoc",
    "compose_pod",
    "compose_resource",
    "compose_secret",
    "held_deletion",
    "kuik_owned",
    "manifest_key",
    "object_uid",
    "secret_body",
    "stamp_overlay",
    "timestamp",
]

JSON = dict[str, Any]
_UID_NAMESPACE = uuid.UUID("6f0d5c1e-7c3a-4d0e-9a57-6b75696b2e6c")  # fixed: uids stable everywhere
DEFAULT_PHASE = "Running"
_SERVER_OWNED = ("resourceVersion", "generation", "deletionTimestamp", "managedFields")


@dataclass(frozen=True, slots=True)
class ManifestDoc:
    """One user document as read: the object, where it came from, the file's mtime."""

    raw: JSON
    file: str
    index: int
    mtime: str


def timestamp(moment: datetime) -> str:
    """A Kubernetes timestamp (RFC 3339, seconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_uid(key: ObjectKey) -> str:
    """The uid of `key`, derived from kind/namespace/name so that every process agrees."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{key.kind}/{key.namespace}/{key.name}"))


def _with_version(obj: JSON) -> JSON:
    """`obj` with a resourceVersion hashed from its content: unchanged content, same version."""
    meta = obj["metadata"]
    meta.pop("resourceVersion", None)
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    meta["resourceVersion"] = digest[:16]
    return obj


def _base(doc: ManifestDoc, key: ObjectKey) -> JSON:
    obj = copy.deepcopy(doc.raw)
    meta = obj.setdefault("metadata", {})
    if key.namespace:
        meta["namespace"] = key.namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = object_uid(key)
    meta.setdefault("creationTimestamp", doc.mtime)
    for server_owned in _SERVER_OWNED:
        meta.pop(server_owned, None)
    return obj


def compose_pod(doc: ManifestDoc, key: ObjectKey) -> JSON:
    """A Pod as the store shows it: a missing `status.phase` is Running."""
    obj = _base(doc, key)
    found = obj.get("status")
    status: JSON = found if isinstance(found, dict) else {}
    obj["status"] = {**status, "phase": status.get("phase") or DEFAULT_PHASE}
    return _with_version(obj)


def compose_namespace(doc: ManifestDoc, key: ObjectKey) -> JSON:
    """A Namespace as the store shows it (name and labels matter: the webhook's mode label)."""
    return _with_version(_base(doc, key))


def compose_secret(raw: JSON, key: ObjectKey, mtime: str) -> JSON:
    """A Secret as the API server stores it: `stringData` folded into `data`, `type` Opaque
    when missing."""
    obj = _base(ManifestDoc(raw, "", 0, mtime), key)
    string_data = obj.pop("stringData", None) or {}
    data = dict(obj.get("data") or {})
    for name, value in string_data.items():
        data[name] = base64.b64encode(str(value).encode()).decode()
    obj["data"] = data
    obj.setdefault("type", "Opaque")
    return _with_version(obj)


def held_deletion(overlay: Mapping[str, Any]) -> bool:
    """Whether kuik's writes keep a resource whose document is gone: a finalizer is held and
    the spec was recorded (what the remains show)."""
    meta = overlay.get("metadata") or {}
    return bool(meta.get("finalizers")) and "spec" in overlay


def compose_resource(
    key: ObjectKey, doc: ManifestDoc | None, overlay: JSON | None, *, now: datetime | None = None
) -> JSON | None:
    """A kuik resource as the store shows it: the user's document with kuik's writes merged
    over it (status, finalizers), or the deletion-pending remains when the document is gone
    (`deletionTimestamp` from the overlay, else `now`)."""
    overlay = overlay or {}
    overlay_meta = overlay.get("metadata") or {}
    finalizers = list(overlay_meta.get("finalizers") or [])
    if doc is None:
        if not held_deletion(overlay):
            return None
        info = watched_kind(key.kind)
        meta: JSON = {"name": key.name, "uid": object_uid(key)}
        if key.namespace:
            meta["namespace"] = key.namespace
        if overlay_meta.get("creationTimestamp"):
            meta["creationTimestamp"] = overlay_meta["creationTimestamp"]
        obj: JSON = {"apiVersion": info.api_version, "kind": key.kind, "metadata": meta}
        obj["spec"] = copy.deepcopy(overlay["spec"])
        meta["deletionTimestamp"] = overlay_meta.get("deletionTimestamp") or timestamp(
            now or datetime.now(UTC)
        )
    else:
        obj = _base(doc, key)
        obj.pop("status", None)  # status comes only from what kuik wrote, as with a real CRD
    written = overlay_meta.get("generation")
    if not isinstance(written, int):
        obj["metadata"]["generation"] = 1
    else:  # the spec of the last write is kept with it (see `stamp_overlay`)
        edited = (overlay.get("spec") or {}) != (obj.get("spec") or {})
        obj["metadata"]["generation"] = written + edited
    if finalizers:
        obj["metadata"]["finalizers"] = finalizers
    else:
        obj["metadata"].pop("finalizers", None)
    if overlay.get("status"):
        obj["status"] = json_copy(overlay["status"])
    return _with_version(obj)


def stamp_overlay(overlay: JSON, key: ObjectKey, current: Mapping[str, Any]) -> JSON:
    """`overlay` (kuik's writes about `key`, edited in place) given the identity and spec of
    `current`, the resource as composed now, so that it can stand for a held deletion."""
    meta = overlay.setdefault("metadata", {})
    meta.update(name=key.name, uid=object_uid(key), generation=current["metadata"]["generation"])
    if key.namespace:
        meta["namespace"] = key.namespace
    overlay["apiVersion"], overlay["kind"] = current["apiVersion"], key.kind
    overlay["spec"] = current.get("spec", {})  # what a held deletion keeps
    created = current["metadata"].get("creationTimestamp")
    if meta.get("creationTimestamp") is None and created:
        meta["creationTimestamp"] = created
    return overlay


def manifest_key(manifest: Manifest, kinds: Collection[str]) -> ObjectKey | InvalidDocument | None:
    """The key a manifest defines, the reason it is invalid, or None when its kind is none of
    kuik's business (Secrets are always taken, for `get_secret`)."""
    raw = manifest.obj
    kind = raw.get("kind")
    if not isinstance(kind, str) or (kind not in kinds and kind != SECRET):
        return None
    found = raw.get("metadata")
    meta: JSON = found if isinstance(found, dict) else {}
    name = meta.get("name")
    problem = None
    if not isinstance(name, str) or not name:
        problem = "metadata.name is required"
    elif kind in (POD, SECRET, NAMESPACE) and raw.get("apiVersion") != "v1":
        problem = f"apiVersion must be v1 for {kind}"
    if problem is not None:
        return InvalidDocument(str(manifest.file), manifest.index, kind, str(name or ""), problem)
    namespace = (meta.get("namespace") or "default") if watched_kind(kind).namespaced else ""
    return ObjectKey(kind, str(namespace), str(name))


def kuik_owned(obj: Mapping[str, Any]) -> bool:
    """A Secret labelled with its owner's uid: one of kuik's copies."""
    return OWNER_UID_LABEL in ((obj.get("metadata") or {}).get("labels") or {})


def secret_body(secret: Mapping[str, Any]) -> JSON:
    """The Secret kuik applies for `secret`: name, namespace, labels, annotations, `type` and
    `data`, nothing else. A missing type is Opaque and missing data is empty, as kube-apiserver
    defaults them, so both backends write (and compare against) the same body."""
    meta = secret.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not namespace or not name:
        raise ValueError("apply_secret: metadata.namespace and metadata.name are required")
    body: JSON = {
        "apiVersion": "v1",
        "kind": SECRET,
        "metadata": {"name": name, "namespace": namespace},
    }
    for part in ("labels", "annotations"):
        if meta.get(part):
            body["metadata"][part] = dict(meta[part])
    body["type"] = secret.get("type") or "Opaque"
    body["data"] = dict(secret.get("data") or {})
    return body
