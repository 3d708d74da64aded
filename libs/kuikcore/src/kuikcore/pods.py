"""Reading Pods the one way kuik reads them: containers of every kind, the images a Pod uses, the
images kuik recorded before rerouting. Pure, a leaf: routing, the cluster store and the webhook
build on it, so the container kinds and their spec fields are written out here only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from kuikcore.names import ORIGINAL_IMAGES_ANNOTATION, REROUTE_REASONS_ANNOTATION
from kuikcore.reference import InvalidReference, Reference, parse

__all__ = [
    "SPEC_FIELDS",
    "ContainerType",
    "PodContainer",
    "PodImage",
    "PodView",
    "ReroutedContainer",
    "annotation_key",
    "decode_string_map",
    "effective_pull_policy",
    "normalised_image",
    "original_images",
    "pod_annotations",
    "pod_containers",
    "pod_images",
    "pod_labels",
    "pod_namespace",
    "read_containers",
    "read_pod",
    "reroute_reasons",
    "rerouted_containers",
]


class ContainerType(StrEnum):
    CONTAINER = "container"
    INIT = "init"
    EPHEMERAL = "ephemeral"


SPEC_FIELDS = {  # in the order routing walks a Pod: regular, init, ephemeral
    ContainerType.CONTAINER: "containers",
    ContainerType.INIT: "initContainers",
    ContainerType.EPHEMERAL: "ephemeralContainers",
}


def pod_labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def pod_annotations(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("annotations") or {}


def pod_namespace(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("namespace") or "default")


def annotation_key(container_type: ContainerType, name: str) -> str:
    if container_type is ContainerType.CONTAINER:
        return name
    return f"{container_type.value}:{name}"


def pod_containers(pod: Mapping[str, Any]) -> list[tuple[ContainerType, Mapping[str, Any]]]:
    """Regular, then init, then ephemeral containers, in spec order."""
    spec = pod.get("spec") or {}
    out: list[tuple[ContainerType, Mapping[str, Any]]] = []
    for container_type, spec_field in SPEC_FIELDS.items():
        for container in spec.get(spec_field) or ():
            if isinstance(container, Mapping):
                out.append((container_type, container))
    return out


def original_images(pod: Mapping[str, Any]) -> dict[str, str]:
    """The `kuik.enix.io/original-images` map; invalid JSON reads as empty (as upstream)."""
    return _string_map(pod, ORIGINAL_IMAGES_ANNOTATION)


def reroute_reasons(pod: Mapping[str, Any]) -> dict[str, str]:
    """The `kuik.enix.io/reroute-reasons` map (same keys as the originals); invalid reads as empty."""
    return _string_map(pod, REROUTE_REASONS_ANNOTATION)


@dataclass(frozen=True, slots=True)
class ReroutedContainer:
    """One container the webhook moved to another image, as the Pod records it."""

    key: str
    """`annotation_key`: `name`, `init:name` or `ephemeral:name`."""
    original: str
    image: str
    reason: str
    """Why, as the webhook wrote it; "" when the Pod does not say (an older webhook)."""


def rerouted_containers(pod: Mapping[str, Any]) -> list[ReroutedContainer]:
    """The containers whose current image differs from their recorded original, in walk order.

    A container recorded but since set back to its original (or gone) is not rerouted."""
    originals = original_images(pod)
    if not originals:
        return []
    reasons = reroute_reasons(pod)
    out = []
    for container_type, container in pod_containers(pod):
        key = annotation_key(container_type, str(container.get("name", "")))
        original, image = originals.get(key), container.get("image")
        if original is not None and isinstance(image, str) and image != original:
            out.append(ReroutedContainer(key, original, image, reasons.get(key, "")))
    return out


def _string_map(pod: Mapping[str, Any], annotation: str) -> dict[str, str]:
    return decode_string_map(pod_annotations(pod).get(annotation))


def decode_string_map(raw: object) -> dict[str, str]:
    """A JSON-object annotation value (`kuik.enix.io/original-images`, `reroute-reasons`)
    decoded; anything but a JSON object reads as empty (as upstream)."""
    if not raw:
        return {}
    try:
        data = json.loads(cast(str, raw))  # a non-string fails as before: TypeError
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


@dataclass(frozen=True, slots=True)
class PodImage:
    image: str
    """Normalised reference (digest kept)."""
    container: str
    type: ContainerType
    original: bool
    """True when read from `kuik.enix.io/original-images` (the image before rerouting)."""


def pod_images(pod: Mapping[str, Any], *, include_originals: bool = True) -> list[PodImage]:
    """Images a Pod uses: current ones of every container kind, then the recorded originals.

    Unparseable references are left out. The replicator mirrors current images and counts both
    as "in use"; the monitor tracks both.
    """
    out: list[PodImage] = []
    for container_type, container in pod_containers(pod):
        normalised = normalised_image(container.get("image"))
        if normalised is not None:
            out.append(PodImage(normalised, str(container.get("name", "")), container_type, False))
    if include_originals:
        for key, image in original_images(pod).items():
            normalised = normalised_image(image)
            if normalised is None:
                continue
            prefix, sep, name = key.partition(":")
            container_type = ContainerType.CONTAINER
            if sep and prefix in (ContainerType.INIT.value, ContainerType.EPHEMERAL.value):
                container_type = ContainerType(prefix)
            else:
                name = key
            out.append(PodImage(normalised, name, container_type, True))
    return out


def normalised_image(image: object) -> str | None:
    """The normal form of an image reference, or None when it does not parse."""
    reference = _parsed(image)
    return None if reference is None else str(reference)


def _parsed(image: object) -> Reference | None:
    if not isinstance(image, str):
        return None
    try:
        return parse(image)
    except InvalidReference:
        return None


def effective_pull_policy(container: Mapping[str, Any]) -> str:
    """`imagePullPolicy`, or the API server's default for it (`Always` for `:latest`/no tag)."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    return _pull_policy(None, _parsed(str(container.get("image", ""))))


def _pull_policy(written: object, reference: Reference | None) -> str:
    if written:
        return str(written)
    if reference is None:
        return "IfNotPresent"
    tag = reference.tag if reference.tag is not None or reference.digest is not None else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


# --- one reading of a Pod -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodContainer:
    """One container as read from a Pod: where it sits and what it asks for."""

    type: ContainerType
    index: int
    """Its position in its spec list (`spec.<SPEC_FIELDS[type]>[index]`)."""
    name: str
    image: object
    """`image` as written (None when absent; any JSON value)."""
    pull_policy: object
    """`imagePullPolicy` as written."""
    reference: Reference | None = None
    """The image parsed, once (None when it does not parse, or when not asked for)."""

    @property
    def key(self) -> str:
        """Its key in `kuik.enix.io/original-images`."""
        return annotation_key(self.type, self.name)

    @property
    def effective_pull_policy(self) -> str:
        """As `effective_pull_policy`, from the reference already parsed."""
        return _pull_policy(self.pull_policy, self.reference)


@dataclass(frozen=True, slots=True)
class PodView:
    """A Pod read once, for routing: namespace, labels, annotations, containers, and the keys
    of the containers already processed (listed in `kuik.enix.io/original-images`).

    The webhook builds its own (namespace from the request, the keys it decided to skip);
    `read_pod` reads one from a Pod as it is."""

    namespace: str
    labels: Mapping[str, Any]
    annotations: Mapping[str, Any]
    containers: tuple[PodContainer, ...]
    processed: Mapping[str, str]


def read_containers(
    pod: Mapping[str, Any], *, parse_images: bool = True
) -> tuple[PodContainer, ...]:
    """Regular, then init, then ephemeral containers, in spec order, each image parsed once
    (unless `parse_images` is false: the images are then only compared)."""
    spec = pod.get("spec") or {}
    out: list[PodContainer] = []
    for container_type, spec_field in SPEC_FIELDS.items():
        for index, container in enumerate(spec.get(spec_field) or ()):
            if not (type(container) is dict or isinstance(container, Mapping)):
                continue  # (the dict test first: isinstance of an ABC is slow on the hot path)
            image = container.get("image")
            reference = _parsed(image) if parse_images else None
            out.append(
                PodContainer(
                    container_type,
                    index,
                    str(container.get("name", "")),
                    image,
                    container.get("imagePullPolicy"),
                    reference,
                )
            )
    return tuple(out)


def read_pod(pod: Mapping[str, Any]) -> PodView:
    """The Pod as it is: its namespace (`default` when unset) and recorded originals."""
    return PodView(
        pod_namespace(pod),
        pod_labels(pod),
        pod_annotations(pod),
        read_containers(pod),
        original_images(pod),
    )
