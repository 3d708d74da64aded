"""Turn an API dict into a model, rejecting what the CRD would reject, with the field path.

`parse_resource` runs the pydantic structure checks (types, lengths, item counts, unknown
fields) and then the same rules the CRD states as CEL `x-kubernetes-validations`, with the same
messages, so local mode and the CLI refuse exactly what the API server refuses.
`check_rules` runs the CEL half alone (for models built in code or read from a cluster whose
CRD is older than ours).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kuikcore.api.models import (
    AnyFilter,
    ClusterFilter,
    ClusterImageSetAvailability,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageFilterDefinition,
    ImageSetMirror,
    ReplicatedImageSet,
    Resource,
)
from kuikcore.names import API_VERSION
from kuikcore.patterns import InvalidPattern, compile_pattern

__all__ = [
    "KINDS",
    "MSG_FILTER_EXCLUSIVE",
    "MSG_ITEM_ONE_OF",
    "MSG_ITEM_ONE_OF_CLUSTER",
    "InvalidResource",
    "KindInfo",
    "KuikResource",
    "check_rules",
    "msg_invalid_regex",
    "msg_no_image_items",
    "parse_resource",
]

KuikResource = (
    ClusterImageSetMirror
    | ImageSetMirror
    | ClusterReplicatedImageSet
    | ReplicatedImageSet
    | ClusterImageSetAvailability
)

# CEL messages, word for word from upstream's CRDs (the generated CRDs use these constants).
MSG_ITEM_ONE_OF = "each filter item must set exactly one of image, label or annotation"
MSG_ITEM_ONE_OF_CLUSTER = (
    "each filter item must set exactly one of image, label, annotation or namespace"
)
MSG_FILTER_EXCLUSIVE = (
    "spec.filter and the deprecated spec.imageFilter are mutually exclusive; "
    "fold imageFilter patterns into spec.filter image items"
)


def msg_no_image_items(kind: str) -> str:
    return (
        f"spec.filter image items are not supported on {kind}; "
        "image selection is per-upstream via spec.upstreams[].imageFilter"
    )


def msg_invalid_regex(field: str) -> str:
    return f"{field} contains an invalid regular expression"


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    plural: str
    short_name: str
    namespaced: bool
    model: type[Resource]


KINDS: dict[str, KindInfo] = {
    model.KIND: KindInfo(model.KIND, model.PLURAL, model.SHORT_NAME, model.NAMESPACED, model)
    for model in (
        ClusterImageSetMirror,
        ImageSetMirror,
        ClusterReplicatedImageSet,
        ReplicatedImageSet,
        ClusterImageSetAvailability,
    )
}


class InvalidResource(ValueError):
    """A kuik CR the API server would refuse; names the CR, the field path and why.

    `problems` holds every (field path, reason) found; the first is also `field_path`/`reason`.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        field_path: str,
        reason: str,
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.field_path = field_path
        self.reason = reason
        self.problems = problems or [(field_path, reason)]
        details = "; ".join(f"{path}: {why}" for path, why in self.problems)
        super().__init__(f"invalid {kind or 'resource'} {name or '(unnamed)'}: {details}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.name, self.field_path, self.reason, self.problems))


def parse_resource(obj: Mapping[str, Any]) -> KuikResource:
    """Validate one API object of a kuik kind like the CRD does; raise `InvalidResource`."""
    if not isinstance(obj, Mapping):
        raise InvalidResource("", "", "", f"expected an object, got {type(obj).__name__}")
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = _display_name(metadata)
    if kind not in KINDS:
        raise InvalidResource(
            str(kind or ""),
            name,
            "kind",
            f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}",
        )
    if obj.get("apiVersion") != API_VERSION:
        raise InvalidResource(
            kind, name, "apiVersion", f"expected {API_VERSION!r}, got {obj.get('apiVersion')!r}"
        )
    info = KINDS[kind]
    data = dict(obj)
    meta = dict(metadata) if isinstance(metadata, Mapping) else metadata
    if isinstance(meta, dict):
        if info.namespaced and not meta.get("namespace"):
            meta["namespace"] = "default"  # what kubectl does for a namespaced object
        elif not info.namespaced:
            meta.pop("namespace", None)  # ignored by the API server for cluster-scoped kinds
        data["metadata"] = meta
    try:
        resource = info.model.model_validate(data)
    except ValidationError as exc:
        problems = [(_field_path(err["loc"]), _reason(err)) for err in exc.errors()]
        raise InvalidResource(kind, name, *problems[0], problems=problems) from None
    if not resource.metadata.name:
        raise InvalidResource(kind, name, "metadata.name", "name is required")
    problems = list(check_rules(resource))
    if problems:
        raise InvalidResource(kind, resource.display_name, *problems[0], problems=problems)
    return resource  # type: ignore[return-value]


def check_rules(resource: Resource) -> Iterator[tuple[str, str]]:
    """Yield (field path, message) for every CRD CEL rule the resource breaks."""
    spec = getattr(resource, "spec", None)
    if spec is None:
        return
    filt: AnyFilter | None = getattr(spec, "filter", None)
    if filt is not None:
        yield from _filter_problems(filt, "spec.filter")
        if isinstance(resource, ClusterReplicatedImageSet | ReplicatedImageSet):
            for list_name, items in (("include", filt.include), ("exclude", filt.exclude)):
                for i, item in enumerate(items or []):
                    if item.image is not None:
                        yield f"spec.filter.{list_name}[{i}]", msg_no_image_items(resource.KIND)
    image_filter: ImageFilterDefinition | None = getattr(spec, "image_filter", None)
    if image_filter is not None:
        yield from _image_filter_problems(image_filter, "spec.imageFilter")
        if image_filter.is_set and filt is not None and filt.is_set:
            yield "spec", MSG_FILTER_EXCLUSIVE
    for i, upstream in enumerate(getattr(spec, "upstreams", None) or []):
        yield from _image_filter_problems(upstream.image_filter, f"spec.upstreams[{i}].imageFilter")


def _filter_problems(filt: AnyFilter, path: str) -> Iterator[tuple[str, str]]:
    cluster = isinstance(filt, ClusterFilter)
    for list_name, items in (("include", filt.include), ("exclude", filt.exclude)):
        for i, item in enumerate(items or []):
            item_path = f"{path}.{list_name}[{i}]"
            set_count = sum(getattr(item, field) is not None for field in item.SELECTORS)
            if set_count != 1:
                yield item_path, MSG_ITEM_ONE_OF_CLUSTER if cluster else MSG_ITEM_ONE_OF
            for field in ("image", "namespace"):
                pattern = getattr(item, field, None)
                if pattern is not None:
                    problem = _regex_problem(pattern, field)
                    if problem:
                        yield f"{item_path}.{field}", problem


def _image_filter_problems(
    definition: ImageFilterDefinition, path: str
) -> Iterator[tuple[str, str]]:
    for list_name, patterns in (("include", definition.include), ("exclude", definition.exclude)):
        for i, pattern in enumerate(patterns or []):
            problem = _regex_problem(pattern, list_name)
            if problem:
                yield f"{path}.{list_name}[{i}]", problem


def _regex_problem(pattern: str, field: str) -> str | None:
    try:
        compile_pattern(pattern)
    except InvalidPattern as exc:
        return f"{msg_invalid_regex(field)}: {exc.reason}"
    return None


def _display_name(metadata: object) -> str:
    if not isinstance(metadata, Mapping):
        return ""
    name = str(metadata.get("name") or "")
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace and name else name


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _reason(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required value"
    return str(err["msg"]).removeprefix("Value error, ")
