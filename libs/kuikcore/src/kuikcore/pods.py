"""Reading Pods the one way kuik reads them: containers of every kind, the images a Pod uses, the
images kuik recorded before rerouting. Pure, a leaf: routing, the cluster store and the webhook
build on it, so the container kinds and their spec fields are written out here only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kuikcore.names import ORIGINAL_IMAGES_ANNOTATION, REROUTE_REASONS_ANNOTATION
from kuikcore.reference import InvalidReference, parse

__all__ = [
    "SPEC_FIELDS",
    "ContainerType",
    "PodImage",
    "ReroutedContainer",
    "annotation_key",
    "effective_pull_policy",
    "normalised_image",
    "original_images",
    "pod_annotations",
    "pod_containers",
    "pod_images",
    "pod_labels",
    "pod_namespace",
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
    raw = pod_annotations(pod).get(annotation)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
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
    if not isinstance(image, str):
        return None
    try:
        return str(parse(image))
    except InvalidReference:
        return None


def effective_pull_policy(container: Mapping[str, Any]) -> str:
    """`imagePullPolicy`, or the API server's default for it (`Always` for `:latest`/no tag)."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    try:
        ref = parse(str(container.get("image", "")))
    except InvalidReference:
        return "IfNotPresent"
    tag = ref.tag if ref.tag is not None or ref.digest is not None else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"
