"""The in-memory view both backends fill: objects by kind, indexes, change callbacks.

Pods are kept slim (only the fields kuik reads, strings interned) because a cluster can
run tens of thousands of them; kuik resources are kept as validated typed models; only
the Secrets a backend chose to cache are here (label-selected copies, never every Secret).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import structlog

from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster.bounded import Overflow
from kuikcore.cluster.interface import (
    NAMESPACE,
    POD,
    SECRET,
    Change,
    ChangeCallback,
    ChangeType,
    InvalidDocument,
    ObjectKey,
)
from kuikcore.pods import SPEC_FIELDS, pod_images
from kuikcore.reference import InvalidReference, parse

__all__ = ["Store", "clean_secret", "object_key", "slim_pod"]

log = structlog.get_logger("kuikcore.cluster")

JSON = dict[str, Any]
ResourceParser = Callable[[JSON], Any]

# Large, never read by kuik, present on every `kubectl apply`-ed object.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
_POD_META = (
    "namespace",
    "name",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)


def _interned(mapping: dict[str, Any] | None) -> dict[str, str]:
    return {sys.intern(str(k)): sys.intern(str(v)) for k, v in (mapping or {}).items()}


def slim_pod(pod: JSON) -> JSON:
    """The Pod fields kuik reads, in API shape, with repeated strings interned."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    slim_meta: JSON = {k: sys.intern(str(meta[k])) for k in _POD_META if meta.get(k)}
    slim_meta["labels"] = _interned(meta.get("labels"))
    slim_meta["annotations"] = {
        k: v for k, v in _interned(meta.get("annotations")).items() if k not in _DROPPED_ANNOTATIONS
    }
    controller = next(
        (
            ref
            for ref in meta.get("ownerReferences") or ()
            if isinstance(ref, dict)
            and ref.get("controller")
            and ref.get("kind")
            and ref.get("name")
        ),
        None,
    )
    if controller is not None:  # whose Pod it is: reroute Events are coalesced per workload
        slim_meta["ownerReferences"] = [
            {
                "kind": sys.intern(str(controller["kind"])),
                "name": sys.intern(str(controller["name"])),
            }
        ]
    slim_spec: JSON = {}
    for field in SPEC_FIELDS.values():
        containers = spec.get(field) or []
        if containers:
            slim_spec[field] = [
                {
                    k: sys.intern(str(c[k]))
                    for k in ("name", "image", "imagePullPolicy")
                    if c.get(k) is not None
                }
                for c in containers
            ]
    pull_secrets = [
        {"name": sys.intern(str(s["name"]))}
        for s in spec.get("imagePullSecrets") or []
        if s.get("name")
    ]
    if pull_secrets:
        slim_spec["imagePullSecrets"] = pull_secrets
    slim: JSON = {"apiVersion": "v1", "kind": POD, "metadata": slim_meta, "spec": slim_spec}
    phase = (pod.get("status") or {}).get("phase")
    if phase:
        slim["status"] = {"phase": sys.intern(str(phase))}
    return slim


def clean_secret(secret: JSON) -> JSON:
    """A Secret without server bookkeeping (managedFields)."""
    meta = {k: v for k, v in (secret.get("metadata") or {}).items() if k != "managedFields"}
    out: JSON = {"apiVersion": "v1", "kind": SECRET, "metadata": meta}
    for field in ("type", "data", "immutable"):
        if field in secret:
            out[field] = secret[field]
    return out


def slim_namespace(namespace: JSON) -> JSON:
    """A Namespace as kuik reads it: its name and labels (the webhook's mode label)."""
    meta = namespace.get("metadata") or {}
    slim_meta: JSON = {k: meta[k] for k in ("name", "uid", "resourceVersion") if meta.get(k)}
    slim_meta["labels"] = _interned(meta.get("labels"))
    return {"apiVersion": "v1", "kind": NAMESPACE, "metadata": slim_meta}


def object_key(kind: str, raw: JSON) -> ObjectKey:
    meta = raw.get("metadata") or {}
    return ObjectKey(kind, meta.get("namespace") or "", meta.get("name") or "")


def _normalized(image: str) -> str:
    """Index key for an image: normalised, `:latest` made explicit (as the kubelet pulls it),
    or the text as written when it is not a valid reference."""
    try:
        return str(parse(image).tag_name_only())
    except InvalidReference:
        return image


class Store:
    """Objects by kind and key, indexes, subscribers. Only backends write to it.

    Readers get the stored objects themselves, not copies: treat them as read-only (copy
    before changing), and never log Secrets (their `data` is credentials).
    """

    def __init__(
        self, parse_resource: ResourceParser | None = None, *, overflow: Overflow | None = None
    ) -> None:
        self._parse_resource = parse_resource
        # status entries this process left out of what it wrote (kuikcore.cluster.bounded):
        # put back into the objects it stores, so its own view is whole
        self._overflow = overflow
        self._objects: dict[str, dict[tuple[str, str], Any]] = defaultdict(dict)
        self._versions: dict[ObjectKey, str] = {}
        # dicts used as insertion-ordered sets: lookups return Pods in the order first seen
        self._pods_by_image: dict[str, dict[tuple[str, str], None]] = defaultdict(dict)
        self._sorted_keys: dict[str, list[tuple[str, str]]] = {}
        self._images_of_pod: dict[tuple[str, str], frozenset[str]] = {}
        self._secrets_by_owner: dict[str, set[tuple[str, str]]] = defaultdict(set)
        self._subscribers: list[ChangeCallback] = []
        self._problems: dict[ObjectKey, InvalidDocument] = {}
        # the raw `status` each stored kuik resource was parsed from (see `parse`)
        self._raw_status: dict[ObjectKey, Any] = {}

    # ------------------------------------------------------------------ reading

    def get(self, key: ObjectKey) -> Any:
        return self._objects.get(key.kind, {}).get((key.namespace, key.name))

    def version(self, key: ObjectKey) -> str | None:
        """The resourceVersion the store holds for `key` (backends use it for writes)."""
        return self._versions.get(key)

    def _keys_in_order(self, kind: str) -> list[tuple[str, str]]:
        """Sorted (namespace, name) keys, cached until an object of `kind` comes or goes."""
        cached = self._sorted_keys.get(kind)
        if cached is None:
            cached = self._sorted_keys[kind] = sorted(self._objects.get(kind, {}))
        return cached

    def keys(self, kind: str) -> list[ObjectKey]:
        return [ObjectKey(kind, ns, name) for ns, name in self._keys_in_order(kind)]

    def objects(self, kind: str, namespace: str | None = None) -> list[Any]:
        """Objects of `kind` (all namespaces when `namespace` is None), sorted by key."""
        bucket = self._objects.get(kind, {})
        return [
            bucket[k] for k in self._keys_in_order(kind) if namespace is None or k[0] == namespace
        ]

    def pods(self, namespace: str | None = None) -> list[JSON]:
        return self.objects(POD, namespace)

    def pod(self, namespace: str, name: str) -> JSON | None:
        pod: JSON | None = self._objects.get(POD, {}).get((namespace, name))
        return pod

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A watched Namespace's labels; None when Namespaces are not watched or it is unknown."""
        namespace: JSON | None = self._objects.get(NAMESPACE, {}).get(("", name))
        return None if namespace is None else namespace["metadata"]["labels"]

    def pods_by_image(self, image: str) -> list[JSON]:
        """Pods whose containers (or recorded originals) use `image`, compared normalised,
        in the order they were first seen."""
        pods = self._objects.get(POD, {})
        return [pods[k] for k in self._pods_by_image.get(_normalized(image), ())]

    def images(self) -> list[str]:
        """Every normalised image some Pod references."""
        return sorted(self._pods_by_image)

    def secrets(self, namespace: str | None = None) -> list[JSON]:
        return self.objects(SECRET, namespace)

    def secret(self, namespace: str, name: str) -> JSON | None:
        secret: JSON | None = self._objects.get(SECRET, {}).get((namespace, name))
        return secret

    def secrets_by_owner(self, owner_uid: str) -> list[JSON]:
        """Pull-secret copies labelled `kuik.enix.io/owner-uid=<owner_uid>`."""
        secrets = self._objects.get(SECRET, {})
        return [secrets[k] for k in sorted(self._secrets_by_owner.get(owner_uid, ()))]

    def resources(self, kind: str, namespace: str | None = None) -> list[Any]:
        """kuik resources of `kind` (typed models), optionally of one namespace."""
        return self.objects(kind, namespace)

    def resource(self, kind: str, namespace: str, name: str) -> Any:
        return self._objects.get(kind, {}).get((namespace, name))

    def problems(self) -> list[InvalidDocument]:
        return [self._problems[k] for k in sorted(self._problems)]

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # ------------------------------------------------------------------ writing (backends)

    def upsert(
        self, kind: str, raw: JSON, *, source: str = "cluster", index: int | None = None
    ) -> Change | None:
        """Store `raw` (API shape, with a resourceVersion); None when nothing changed.

        An invalid kuik resource is recorded as a problem and leaves the store (DELETED
        when an earlier valid version was there).
        """
        key = object_key(kind, raw)
        version = str((raw.get("metadata") or {}).get("resourceVersion") or "")
        if version and self._versions.get(key) == version:
            return None
        raw = self._restored(key, raw)
        try:
            obj = self._convert(kind, raw, key)
        except ValueError as error:
            self._problems[key] = InvalidDocument(source, index, kind, key.name, _reason(error))
            log.warning(
                "invalid resource ignored", object=str(key), source=source, reason=_reason(error)
            )
            return self.remove(key)
        self._problems.pop(key, None)
        bucket = self._objects[kind]
        old = bucket.get((key.namespace, key.name))
        bucket[(key.namespace, key.name)] = obj
        if old is None:
            self._sorted_keys.pop(kind, None)
        self._versions[key] = version
        if kind not in (POD, SECRET):
            self._raw_status[key] = raw.get("status")
        self._reindex(key, old, obj)
        change = Change(ChangeType.MODIFIED if old is not None else ChangeType.ADDED, key, old, obj)
        self._notify(change)
        return change

    def _restored(self, key: ObjectKey, raw: JSON) -> JSON:
        return raw if self._overflow is None else self._overflow.restore(key, raw)

    def remove(self, key: ObjectKey) -> Change | None:
        if self._overflow is not None:
            self._overflow.forget(key)
        old = self._objects.get(key.kind, {}).pop((key.namespace, key.name), None)
        self._versions.pop(key, None)
        self._raw_status.pop(key, None)
        if old is None:
            return None
        self._sorted_keys.pop(key.kind, None)
        self._reindex(key, old, None)
        change = Change(ChangeType.DELETED, key, old, None)
        self._notify(change)
        return change

    def forget_problem(self, key: ObjectKey) -> None:
        self._problems.pop(key, None)

    def replace_kind(
        self,
        kind: str,
        raws: Iterable[JSON],
        *,
        origins: dict[ObjectKey, tuple[str, int | None]] | None = None,
    ) -> list[Change]:
        """Make `kind` hold exactly `raws` (a fresh list): emits only the real differences.

        `origins` maps keys to (file, document index) so invalid documents are reported
        where they were written.
        """
        changes: list[Change] = []
        seen: set[ObjectKey] = set()
        for raw in raws:
            key = object_key(kind, raw)
            seen.add(key)
            source, index = (origins or {}).get(key, ("cluster", None))
            change = self.upsert(kind, raw, source=source, index=index)
            if change is not None:
                changes.append(change)
        for key in self.keys(kind):
            if key not in seen:
                change = self.remove(key)
                if change is not None:
                    changes.append(change)
        for key in [k for k in self._problems if k.kind == kind and k not in seen]:
            del self._problems[key]
        return changes

    def compact(self, kind: str, raw: JSON) -> JSON:
        """`raw` reduced to what the store keeps of it, still in API shape (an informer calls
        it per list page so full objects do not pile up); kuik resources are kept whole."""
        if kind == POD:
            return slim_pod(raw)
        if kind == SECRET:
            return clean_secret(raw)
        if kind == NAMESPACE:
            return slim_namespace(raw)
        return raw

    def parse(self, kind: str, raw: JSON) -> Any:
        """`raw` (a kuik resource, API shape) as the typed model the store would keep for it,
        without storing it; `ValueError` (`InvalidResource`) when invalid.

        Status list entries equal to the stored version's entry at the same position reuse
        that entry's already validated model; only the rest is validated. A 10,000-image
        status where a batch of checks changed 40 entries validates those 40 (and the rest of
        the resource), not 10,000.
        """
        key = object_key(kind, raw)
        return self._convert(kind, self._restored(key, raw), key)

    def restored(self, kind: str, raw: JSON) -> JSON:
        """`raw` with the status entries this process left out of it put back (as stored)."""
        return self._restored(object_key(kind, raw), raw)

    def _convert(self, kind: str, raw: JSON, key: ObjectKey) -> Any:
        if kind == POD:
            return slim_pod(raw)
        if kind == SECRET:
            return clean_secret(raw)
        if kind == NAMESPACE:
            return slim_namespace(raw)
        if self._parse_resource is None:
            raise ValueError(f"the store was not given a parser for {kind}")
        meta = {k: v for k, v in (raw.get("metadata") or {}).items() if k != "managedFields"}
        return _parse_reusing(
            self._parse_resource,
            {**raw, "metadata": meta},
            self._raw_status.get(key),
            self.get(key),
        )

    def _reindex(self, key: ObjectKey, old: Any, new: Any) -> None:
        ident = (key.namespace, key.name)
        if key.kind == POD:
            for image in self._images_of_pod.pop(ident, frozenset()):
                holders = self._pods_by_image.get(image)
                if holders is not None:
                    holders.pop(ident, None)
                    if not holders:
                        del self._pods_by_image[image]
            if new is not None:
                images = frozenset(sys.intern(_normalized(i.image)) for i in pod_images(new))
                self._images_of_pod[ident] = images
                for image in images:
                    self._pods_by_image[image][ident] = None
        elif key.kind == SECRET:
            for secret in (old, new):
                if secret is None:
                    continue
                uid = (secret["metadata"].get("labels") or {}).get(OWNER_UID_LABEL)
                if uid is None:
                    continue
                copies = self._secrets_by_owner[uid]
                if secret is new:
                    copies.add(ident)
                else:
                    copies.discard(ident)
                if not copies:
                    del self._secrets_by_owner[uid]

    def _notify(self, change: Change) -> None:
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:
                log.exception(
                    "change callback failed", object=str(change.key), change=change.type.value
                )


def _parse_reusing(parse: ResourceParser, raw: JSON, old_raw_status: Any, old: Any) -> Any:
    """`parse(raw)`, validating only the status list entries that differ from `old_raw_status`'s
    entry at the same position and reusing `old`'s model for the others (`old` was parsed from
    `old_raw_status`, so an equal entry gives an equal model).

    Equivalent to `parse(raw)` (an invalid `raw` is parsed whole again, so its error names
    the right list index) because no status list of a kuik kind has a whole-list rule
    (length or uniqueness; tests/cluster/test_store.py checks the schemas): every entry is valid
    on its own. Everything else (metadata, spec, other status fields) is validated every time.
    """
    status = raw.get("status")
    old_status = getattr(old, "status", None)
    if not isinstance(status, dict) or not isinstance(old_raw_status, dict) or old_status is None:
        return parse(raw)
    kept: dict[str, tuple[str, list[Any]]] = {}  # alias -> (attribute, old model or None per entry)
    reduced = dict(status)
    for alias, items in status.items():
        before = old_raw_status.get(alias)
        attribute = _attribute_of(old_status, alias)
        models = getattr(old_status, attribute, None) if attribute else None
        if not (
            isinstance(items, list)
            and isinstance(before, list)
            and isinstance(models, list)
            and len(models) == len(before)
        ):
            continue
        reuse = [
            models[i] if i < len(before) and before[i] == item else None
            for i, item in enumerate(items)
        ]
        if any(model is not None for model in reuse):
            assert attribute is not None
            kept[alias] = (attribute, reuse)
            reduced[alias] = [
                item for item, model in zip(items, reuse, strict=True) if model is None
            ]
    if not kept:
        return parse(raw)
    try:
        resource = parse({**raw, "status": reduced})
    except ValueError:
        return parse(raw)  # the error again, with field paths indexing the whole lists
    for attribute, reuse in kept.values():
        fresh = iter(getattr(resource.status, attribute))
        # set without validate_assignment: every entry is a validated model already
        resource.status.__dict__[attribute] = [
            model if model is not None else next(fresh) for model in reuse
        ]
    return resource


def _attribute_of(model: Any, alias: str) -> str | None:
    """The attribute of a pydantic model's field named `alias` in the API."""
    for name, info in type(model).model_fields.items():
        if (info.alias or name) == alias:
            return str(name)
    return None


def _reason(error: ValueError) -> str:
    reason = getattr(error, "reason", None)
    field = getattr(error, "field_path", None)
    if isinstance(reason, str):
        return f"{field}: {reason}" if field else reason
    return str(error)
