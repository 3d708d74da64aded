"""What one admission has to decide, and the JSONPatch that carries the decisions: pure.

`plan_pod` turns a request into `Target`s (containers to choose an image for, with their
ordered alternatives from `kuikcore.routing.route_pod`) and the `kuik.enix.io/original-images`
map to write. `build_patch` turns the chosen images and pull secrets into JSONPatch operations.

The annotation is upstream's JSON object `{"<key>": "<image as written>"}` where the key is the
container name, `init:<name>` for init containers and `ephemeral:<name>` for ephemeral ones
(upstream never records init containers, Appendix B #1). Every container the webhook considers
is recorded, routed or not, so a re-invocation (`reinvocationPolicy: IfNeeded`) skips it.

UPDATE (beyond upstream): only containers whose image differs from `oldObject` are considered
again; their entries are replaced by the new image, the others' entries are kept. Pod updates
cannot change `imagePullSecrets`, and the `pods/ephemeralcontainers` subresource keeps nothing
but `spec.ephemeralContainers` from the request, so in both cases no pull secret is added, and
on the subresource the annotation is not written (the API server would drop it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kuik_webhook.review import AdmissionRequest, escape_pointer
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION
from kuikcore.api.models import Resource
from kuikcore.filters import InvalidFilter
from kuikcore.pods import SPEC_FIELDS
from kuikcore.routing import (
    ContainerRoute,
    ContainerType,
    PodRoute,
    RoutingOptions,
    annotation_key,
    original_images,
    route_pod,
)

__all__ = [
    "NotAPod",
    "PodPlan",
    "Router",
    "Slot",
    "Target",
    "build_patch",
    "container_slots",
    "encode_annotation",
    "plan_pod",
]


class NotAPod(ValueError):
    """The request's object cannot be read as a Pod (admitted unchanged, with a warning)."""


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one container sits in the Pod: its kind, its index in that list, its name and image."""

    type: ContainerType
    index: int
    name: str
    image: str | None
    key: str = field(init=False, compare=False)
    """Its key in `kuik.enix.io/original-images`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", annotation_key(self.type, self.name))

    @property
    def image_path(self) -> str:
        return f"/spec/{SPEC_FIELDS[self.type]}/{self.index}/image"


@dataclass(frozen=True, slots=True)
class Target:
    """A container whose image is chosen at this admission."""

    slot: Slot
    route: ContainerRoute


@dataclass(frozen=True, slots=True)
class PodPlan:
    namespace: str
    targets: tuple[Target, ...] = ()
    annotation: dict[str, str] | None = None
    """The original-images map to write, or None to leave the annotation alone."""
    can_add_pull_secrets: bool = True
    skipped: str | None = None
    problems: tuple[InvalidFilter, ...] = field(default=(), repr=False)


def container_slots(pod: Mapping[str, Any]) -> list[Slot]:
    """Regular, init, then ephemeral containers (the order of `kuikcore.routing.pod_containers`)."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return []
    slots = []
    for container_type, spec_field in SPEC_FIELDS.items():
        containers = spec.get(spec_field)
        if not isinstance(containers, list):
            continue
        for index, container in enumerate(containers):
            if isinstance(container, Mapping):
                image = container.get("image")
                slots.append(
                    Slot(
                        container_type,
                        index,
                        str(container.get("name", "")),
                        image if isinstance(image, str) else None,
                    )
                )
    return slots


def _check_pod(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise NotAPod("request.object is not an object")
    if not isinstance(obj.get("spec"), Mapping):
        raise NotAPod("request.object has no spec")
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise NotAPod("request.object.metadata is not an object")
    for spec_field in SPEC_FIELDS.values():
        value = obj["spec"].get(spec_field)
        if value is not None and not isinstance(value, list):
            raise NotAPod(f"request.object.spec.{spec_field} is not a list")
    return obj


def _metadata(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = pod.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    annotations = _metadata(pod).get("annotations")
    return annotations if isinstance(annotations, Mapping) else {}


_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode_annotation(recorded: Mapping[str, str]) -> str:
    """Byte for byte as Go's json.Marshal of a map (upstream): keys sorted, compact, UTF-8 kept,
    HTML characters and line separators escaped."""
    text = json.dumps(dict(recorded), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES)


def _routing_view(
    pod: Mapping[str, Any], namespace: str, recorded: dict[str, str]
) -> dict[str, Any]:
    """The Pod as routing should see it: namespace filled in, annotation = what to skip."""
    metadata = dict(_metadata(pod))
    metadata["namespace"] = namespace
    metadata["annotations"] = {
        **{str(k): v for k, v in _annotations(pod).items()},
        ORIGINAL_IMAGES_ANNOTATION: encode_annotation(recorded),
    }
    return {**pod, "metadata": metadata}


Router = Callable[[Mapping[str, Any], str], PodRoute]
"""(Pod as routing sees it, namespace) -> its route; `RouteCache.route` in the service."""


def plan_pod(
    request: AdmissionRequest,
    resources: Sequence[Resource] = (),
    options: RoutingOptions | None = None,
    *,
    router: Router | None = None,
) -> PodPlan:
    """Raises `NotAPod` when the object is not a readable Pod. Routes with `router` when given,
    else `route_pod` over `resources`."""
    pod = _check_pod(request.object)
    namespace = str(_metadata(pod).get("namespace") or request.namespace or "")
    slots = container_slots(pod)
    current = original_images(pod)
    old = request.old_object
    if request.operation == "UPDATE" and isinstance(old, Mapping):
        has_annotation = ORIGINAL_IMAGES_ANNOTATION in _annotations(pod)
        base = current if has_annotation else original_images(old)
        before = {slot.key: slot.image for slot in container_slots(old)}
        changed = {s.key for s in slots if s.key not in before or before[s.key] != s.image}
        skip = {k: v for k, v in base.items() if k not in changed}
        for slot in slots:
            if slot.key not in changed and slot.key not in skip:
                skip[slot.key] = slot.image or ""
        record = {k: v for k, v in base.items() if k not in changed}
        record.update({s.key: s.image for s in slots if s.key in changed and s.image is not None})
        can_add = False
    else:
        changed = {s.key for s in slots if s.key not in current}
        skip = dict(current)
        record = dict(current)
        record.update({s.key: s.image for s in slots if s.key in changed and s.image is not None})
        can_add = request.operation != "UPDATE"  # an UPDATE without oldObject still cannot
    annotation: dict[str, str] | None = record
    if request.is_ephemeral_containers:
        annotation, can_add = None, False
    view = _routing_view(pod, namespace, skip)
    if router is not None:
        route = router(view, namespace)
    else:
        route = route_pod(view, resources, options or RoutingOptions())
    if route.skipped is not None:
        return PodPlan(namespace, skipped=route.skipped, can_add_pull_secrets=False)
    targets = tuple(
        Target(slot, container)
        for slot, container in zip(slots, route.containers, strict=True)
        if container.skipped is None and container.alternatives and slot.key in changed
    )
    if annotation is not None and current == annotation and _has_annotation(pod):
        annotation = None  # already says exactly this
    return PodPlan(namespace, targets, annotation, can_add, problems=route.problems)


def _has_annotation(pod: Mapping[str, Any]) -> bool:
    return ORIGINAL_IMAGES_ANNOTATION in _annotations(pod)


def build_patch(
    pod: Mapping[str, Any],
    images: Sequence[tuple[Slot, str]],
    annotation: Mapping[str, str] | None,
    pull_secrets: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """JSONPatch operations: new images, the annotation, pull secrets not yet listed."""
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": slot.image_path, "value": image} for slot, image in images
    ]
    if annotation is not None:
        value = encode_annotation(annotation)
        metadata = pod.get("metadata")
        if not isinstance(metadata, Mapping):
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata",
                    "value": {"annotations": {ORIGINAL_IMAGES_ANNOTATION: value}},
                }
            )
        elif not isinstance(metadata.get("annotations"), Mapping):
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations",
                    "value": {ORIGINAL_IMAGES_ANNOTATION: value},
                }
            )
        else:
            ops.append(
                {
                    "op": "add",
                    "path": "/metadata/annotations/" + escape_pointer(ORIGINAL_IMAGES_ANNOTATION),
                    "value": value,
                }
            )
    spec = pod.get("spec")
    listed = spec.get("imagePullSecrets") if isinstance(spec, Mapping) else None
    present = (
        {s.get("name") for s in listed if isinstance(s, Mapping)}
        if isinstance(listed, list)
        else set()
    )
    missing = [name for name in dict.fromkeys(pull_secrets) if name not in present]
    if missing:
        if isinstance(listed, list):
            ops.extend(
                {"op": "add", "path": "/spec/imagePullSecrets/-", "value": {"name": name}}
                for name in missing
            )
        else:
            ops.append(
                {
                    "op": "add",
                    "path": "/spec/imagePullSecrets",
                    "value": [{"name": name} for name in missing],
                }
            )
    return ops
