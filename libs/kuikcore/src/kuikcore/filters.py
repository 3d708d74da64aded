"""Which pods and images a kuik CR selects: RE2 patterns and Kubernetes label selectors.

Upstream's semantics, exactly:
- patterns are RE2, matched against the whole string (implicitly anchored);
- the unified `spec.filter`: items grouped by dimension (image, label, annotation, and namespace
  on cluster-scoped kinds); OR within a dimension, AND across; any matching exclude item wins;
  a dimension without include items matches everything;
- the deprecated `imageFilter`: include/exclude lists; include empty with excludes given means
  "everything but", both empty means nothing; used only when `spec.filter` has no item at all;
- a (Cluster)ReplicatedImageSet upstream's `imageFilter` is matched against what follows its
  `registry` prefix (`/library/nginx:1.27`).
Compiling a CR's filters raises `InvalidFilter` naming the CR and the item, so a caller can skip
that CR (or that upstream) alone and report it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kuikcore.api.models import (
    AnyFilter,
    ClusterFilter,
    Filter,
    ImageFilterDefinition,
    ReplicatedUpstream,
    Resource,
)
from kuikcore.patterns import MATCH_ALL, InvalidPattern, PatternSet, compile_pattern
from kuikcore.pods import PodView, pod_annotations, pod_labels, pod_namespace
from kuikcore.selectors import InvalidSelector, Operator, Requirement, Selector, parse_selector

__all__ = [
    "InvalidFilter",
    "InvalidPattern",
    "InvalidSelector",
    "Operator",
    "PatternSet",
    "PodSelector",
    "Requirement",
    "ResourceFilter",
    "Selector",
    "SkipRules",
    "UpstreamFilter",
    "compile_filter",
    "compile_pattern",
    "compile_upstream",
    "parse_selector",
    "pod_annotations",
    "pod_labels",
    "pod_namespace",
]


class InvalidFilter(ValueError):
    """A CR whose filter cannot be compiled: `resource` is `Kind/[namespace/]name`."""

    def __init__(self, resource: str, field_path: str, reason: str) -> None:
        self.resource = resource
        self.field_path = field_path
        self.reason = reason
        super().__init__(f"{resource}: {field_path}: {reason}")


# --- pods ---------------------------------------------------------------------------------


def _selectors_match(
    include: Sequence[Selector], exclude: Sequence[Selector], labels: Mapping[str, str]
) -> bool:
    if include and not any(s.matches(labels) for s in include):
        return False
    return not any(s.matches(labels) for s in exclude)


@dataclass(frozen=True, slots=True)
class PodSelector:
    """Label, annotation and (cluster kinds) namespace dimensions of a filter."""

    include_labels: tuple[Selector, ...] = ()
    exclude_labels: tuple[Selector, ...] = ()
    include_annotations: tuple[Selector, ...] = ()
    exclude_annotations: tuple[Selector, ...] = ()
    namespaces: PatternSet | None = None

    def matches(self, pod: Mapping[str, Any]) -> bool:
        return self._matches(pod_labels(pod), pod_annotations(pod), pod_namespace(pod))

    def matches_view(self, view: PodView) -> bool:
        """`matches` over a Pod already read (routing's `PodView`)."""
        return self._matches(view.labels, view.annotations, view.namespace)

    def _matches(
        self, labels: Mapping[str, Any], annotations: Mapping[str, Any], namespace: str
    ) -> bool:
        if not _selectors_match(self.include_labels, self.exclude_labels, labels):
            return False
        if not _selectors_match(self.include_annotations, self.exclude_annotations, annotations):
            return False
        return self.namespaces is None or self.namespaces.match(namespace)


@dataclass(frozen=True, slots=True)
class SkipRules:
    """Operator-wide `skipLabels` / `skipAnnotations`: a pod matching any one is left alone."""

    labels: tuple[Selector, ...] = ()
    annotations: tuple[Selector, ...] = ()

    @classmethod
    def parse(
        cls, skip_labels: Iterable[str] = (), skip_annotations: Iterable[str] = ()
    ) -> SkipRules:
        """Raises `InvalidSelector` (upstream refuses to start on one)."""
        return cls(
            tuple(parse_selector(s) for s in skip_labels),
            tuple(parse_selector(s) for s in skip_annotations),
        )

    def reason(self, pod: Mapping[str, Any]) -> str | None:
        """Why the pod is skipped, or None."""
        return self._reason(pod_labels(pod), pod_annotations(pod))

    def reason_view(self, view: PodView) -> str | None:
        """`reason` for a Pod already read (routing's `PodView`)."""
        return self._reason(view.labels, view.annotations)

    def _reason(self, labels: Mapping[str, Any], annotations: Mapping[str, Any]) -> str | None:
        for selector in self.labels:
            if selector.matches(labels):
                return f"pod labels match skipLabels selector {selector.text!r}"
        for selector in self.annotations:
            if selector.matches(annotations):
                return f"pod annotations match skipAnnotations selector {selector.text!r}"
        return None


# --- CRs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceFilter:
    """A CR's compiled selection: which pods it applies to, and which of their images.

    `images` is None on (Cluster)ReplicatedImageSets: they select images per upstream.
    """

    resource: str
    pods: PodSelector
    images: PatternSet | None

    def matches_pod(self, pod: Mapping[str, Any]) -> bool:
        return self.pods.matches(pod)

    def matches_view(self, view: PodView) -> bool:
        return self.pods.matches_view(view)

    def matches_image(self, image: str) -> bool:
        """`image` is a normalised reference (`docker.io/library/nginx:1.27`)."""
        return self.images is not None and self.images.match(image)

    def selects(self, pod: Mapping[str, Any], image: str) -> bool:
        """Both: the CR applies to `pod` and picks `image` (normalised) from it."""
        return self.matches_pod(pod) and self.matches_image(image)


@dataclass(frozen=True, slots=True)
class UpstreamFilter:
    """A replicated upstream's `imageFilter`, matched after its `registry` prefix."""

    registry: str
    patterns: PatternSet

    def match(self, image: str) -> bool:
        if not image.startswith(self.registry):
            return False
        return self.patterns.match(image[len(self.registry) :])


def _definition_patterns(definition: ImageFilterDefinition, resource: str, path: str) -> PatternSet:
    include = tuple(definition.include or ())
    exclude = tuple(definition.exclude or ())
    for list_name, patterns in (("include", include), ("exclude", exclude)):
        for i, pattern in enumerate(patterns):
            _check_pattern(pattern, resource, f"{path}.{list_name}[{i}]")
    if not include and exclude:
        include = MATCH_ALL
    return PatternSet(include, exclude)


def _check_pattern(pattern: str, resource: str, path: str) -> None:
    try:
        compile_pattern(pattern)
    except InvalidPattern as exc:
        raise InvalidFilter(
            resource, path, f"invalid regular expression {pattern!r}: {exc.reason}"
        ) from None


class _Dimension(StrEnum):
    IMAGE = "image"
    LABEL = "label"
    ANNOTATION = "annotation"
    NAMESPACE = "namespace"


def _collect(
    filt: AnyFilter, list_name: str, dimension: _Dimension, resource: str
) -> list[tuple[str, str]]:
    """(value, field path) of the non-empty `dimension` values of `filt.<list_name>`."""
    out = []
    for i, item in enumerate(getattr(filt, list_name) or ()):
        value = getattr(item, dimension.value, None)
        if value:
            out.append((value, f"spec.filter.{list_name}[{i}].{dimension.value}"))
    return out


def _patterns(filt: AnyFilter, dimension: _Dimension, resource: str) -> PatternSet:
    sides = []
    for list_name in ("include", "exclude"):
        values = _collect(filt, list_name, dimension, resource)
        for pattern, path in values:
            _check_pattern(pattern, resource, path)
        sides.append(tuple(v for v, _ in values))
    include, exclude = sides
    return PatternSet(include or MATCH_ALL, exclude)


def _selectors(
    filt: AnyFilter, list_name: str, dimension: _Dimension, resource: str
) -> tuple[Selector, ...]:
    out = []
    for text, path in _collect(filt, list_name, dimension, resource):
        try:
            out.append(parse_selector(text))
        except InvalidSelector as exc:
            raise InvalidFilter(
                resource, path, f"invalid selector {text!r}: {exc.reason}"
            ) from None
    return tuple(out)


def compile_filter(resource: Resource) -> ResourceFilter:
    """Compile a CR's pod and image selection; raises `InvalidFilter` naming CR and item."""
    spec = getattr(resource, "spec", None)
    filt: AnyFilter = getattr(spec, "filter", None) or Filter()
    key = resource.key
    if filt.is_empty:
        pods = PodSelector()
    else:
        pods = PodSelector(
            _selectors(filt, "include", _Dimension.LABEL, key),
            _selectors(filt, "exclude", _Dimension.LABEL, key),
            _selectors(filt, "include", _Dimension.ANNOTATION, key),
            _selectors(filt, "exclude", _Dimension.ANNOTATION, key),
            _patterns(filt, _Dimension.NAMESPACE, key) if isinstance(filt, ClusterFilter) else None,
        )
    images: PatternSet | None
    if hasattr(spec, "upstreams"):
        images = None  # (Cluster)ReplicatedImageSet: image items are refused by the CRD
    elif filt.is_empty:
        legacy = getattr(spec, "image_filter", None) or ImageFilterDefinition()
        images = _definition_patterns(legacy, key, "spec.imageFilter")
    else:
        images = _patterns(filt, _Dimension.IMAGE, key)
    return ResourceFilter(key, pods, images)


def compile_upstream(
    resource: Resource, index: int, upstream: ReplicatedUpstream
) -> UpstreamFilter:
    """Compile `spec.upstreams[index].imageFilter`; raises `InvalidFilter` for that upstream."""
    path = f"spec.upstreams[{index}].imageFilter"
    patterns = _definition_patterns(upstream.image_filter, resource.key, path)
    return UpstreamFilter(upstream.registry, patterns)
