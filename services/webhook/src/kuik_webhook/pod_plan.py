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
from kuikcore.names import REROUTE_REASONS_ANNOTATION
from kuikcore.pods import (
    SPEC_FIELDS,
    PodContainer,
    PodView,
    decode_string_map,
    original_images,
    pod_annotations,
    pod_labels,
    read_containers,
    reroute_reasons,
)
from kuikcore.routing import ContainerRoute, PodRoute, RoutingOptions, route_view

__all__ = [
    "NotAPod",
    "PodPlan",
    "Router",
    "Target",
    "build_patch",
    "encode_annotation",
    "image_path",
    "plan_pod",
]


class NotAPod(ValueError):
    """The request's object cannot be read as a Pod (admitted unchanged, with a warning)."""


def image_path(container: PodContainer) -> str:
    """The JSON pointer of a container's image."""
    return f"/spec/{SPEC_FIELDS[container.type]}/{container.index}/image"


def _image_text(container: PodContainer) -> str | None:
    image = container.image
    return image if isinstance(image, str) else None


@dataclass(frozen=True, slots=True)
class Target:
    """A container whose image is chosen at this admission."""

    container: PodContainer
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


_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def encode_annotation(recorded: Mapping[str, str]) -> str:
    """Byte for byte as Go's json.Marshal of a map (upstream): keys sorted, compact, UTF-8 kept,
    HTML characters and line separators escaped."""
    text = json.dumps(dict(recorded), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES)


Router = Callable[[PodView, str], PodRoute]
"""(the Pod as routing sees it, the namespace its CRs are read from) -> its route;
`RouteCache.route` in the service."""


def plan_pod(
    request: AdmissionRequest,
    resources: Sequence[Resource] = (),
    options: RoutingOptions | None = None,
    *,
    router: Router | None = None,
) -> PodPlan:
    """Raises `NotAPod` when the object is not a readable Pod. Routes with `router` when given,
    else `route_view` over `resources`.

    The Pod is read once (`read_containers`: each image parsed once, the annotations once) and
    routing is handed that reading, with the keys to skip, instead of a Pod to read again."""
    pod = _check_pod(request.object)
    metadata = pod.get("metadata") or {}
    annotations = pod_annotations(pod)
    namespace = str(metadata.get("namespace") or request.namespace or "")
    containers = read_containers(pod)
    has_annotation = ORIGINAL_IMAGES_ANNOTATION in annotations
    current = decode_string_map(annotations.get(ORIGINAL_IMAGES_ANNOTATION))
    old = request.old_object
    if request.operation == "UPDATE" and isinstance(old, Mapping):
        base = current if has_annotation else original_images(old)
        before = {c.key: _image_text(c) for c in read_containers(old, parse_images=False)}
        changed = {
            c.key for c in containers if c.key not in before or before[c.key] != _image_text(c)
        }
        skip = {k: v for k, v in base.items() if k not in changed}
        for c in containers:
            if c.key not in changed and c.key not in skip:
                skip[c.key] = _image_text(c) or ""
        record = {k: v for k, v in base.items() if k not in changed}
        can_add = False
    else:
        changed = {c.key for c in containers if c.key not in current}
        skip = dict(current)
        record = dict(current)
        can_add = request.operation != "UPDATE"  # an UPDATE without oldObject still cannot
    for c in containers:
        image = _image_text(c)
        if c.key in changed and image is not None:
            record[c.key] = image
    annotation: dict[str, str] | None = record
    if request.is_ephemeral_containers:
        annotation, can_add = None, False
    # Routing sees the annotation saying what to skip, as the Pod will once admitted (CR and
    # skipAnnotations selectors read it), and `processed` is that same map.
    view = PodView(
        namespace or "default",
        pod_labels(pod),
        {
            **{str(k): v for k, v in annotations.items()},
            ORIGINAL_IMAGES_ANNOTATION: encode_annotation(skip),
        },
        containers,
        skip,
    )
    if router is not None:
        route = router(view, namespace)
    else:
        route = route_view(view, resources, options or RoutingOptions())
    if route.skipped is not None:
        return PodPlan(namespace, skipped=route.skipped, can_add_pull_secrets=False)
    targets = tuple(
        Target(container, container_route)
        for container, container_route in zip(containers, route.containers, strict=True)
        if container_route.skipped is None
        and container_route.alternatives
        and container.key in changed
    )
    if annotation is not None and current == annotation and has_annotation:
        annotation = None  # already says exactly this
    return PodPlan(namespace, targets, annotation, can_add, problems=route.problems)


def build_patch(
    pod: Mapping[str, Any],
    images: Sequence[tuple[PodContainer, str]],
    annotation: Mapping[str, str] | None,
    pull_secrets: Sequence[str] = (),
    reasons: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """JSONPatch operations: new images, the annotations, pull secrets not yet listed.

    `reasons` (container key -> why it was rerouted) joins what the Pod already says in
    `kuik.enix.io/reroute-reasons`; it is written only with the original-images annotation
    (where metadata can be written at all)."""
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": image_path(container), "value": image}
        for container, image in images
    ]
    if annotation is not None:
        written = {ORIGINAL_IMAGES_ANNOTATION: encode_annotation(annotation)}
        if reasons:
            merged = {**reroute_reasons(pod), **reasons}
            written[REROUTE_REASONS_ANNOTATION] = encode_annotation(
                {k: v for k, v in merged.items() if k in annotation}
            )
        metadata = pod.get("metadata")
        if not isinstance(metadata, Mapping):
            ops.append({"op": "add", "path": "/metadata", "value": {"annotations": written}})
        elif not isinstance(metadata.get("annotations"), Mapping):
            ops.append({"op": "add", "path": "/metadata/annotations", "value": written})
        else:
            ops.extend(
                {
                    "op": "add",
                    "path": "/metadata/annotations/" + escape_pointer(name),
                    "value": value,
                }
                for name, value in written.items()
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
