"""Typed models of the five `kuik.enix.io/v1alpha1` kinds (pydantic v2).

Attribute names are snake_case, aliases are the API's camelCase field names. Parsing accepts
the API shape (aliases); `to_dict()` gives it back by alias without unset or None fields, so a
status built in code patches only what it names. Optional API fields whose presence matters
(CEL's `has()`) are `None` when absent. Structure (types, lengths, item counts) is checked
here; the CRD's CEL rules live in `kuikcore.api.validation` so both can name exact field paths.

Beyond upstream: `MirrorStatus.digest` / `.platforms` record what was copied, and
`Mirror.cleanup` overrides `spec.cleanup` per mirror (upstream declares it but ignores it).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
)
from pydantic.alias_generators import to_camel

from kuikcore.api import cel
from kuikcore.duration import parse_duration
from kuikcore.names import AvailabilityStatus

__all__ = [
    "AnyFilter",
    "Cleanup",
    "ClusterFilter",
    "ClusterFilterItem",
    "ClusterImageSetAvailability",
    "ClusterImageSetAvailabilitySpec",
    "ClusterImageSetAvailabilityStatus",
    "ClusterImageSetMirror",
    "ClusterImageSetMirrorSpec",
    "ClusterReplicatedImageSet",
    "ClusterReplicatedImageSetSpec",
    "Condition",
    "CredentialSecret",
    "Filter",
    "FilterItem",
    "ImageFilterDefinition",
    "ImageSetMirror",
    "ImageSetMirrorSpec",
    "ImageSetMirrorStatus",
    "MatchingImage",
    "Mirror",
    "MirrorStatus",
    "MonitoredImage",
    "ObjectMeta",
    "OmittedEntries",
    "ReplicatedImageSet",
    "ReplicatedImageSetSpec",
    "ReplicatedImageSetStatus",
    "ReplicatedUpstream",
    "Resource",
    "format_time",
    "join_path",
]

MAX_FILTER_ITEMS = 16
MAX_PATTERN_LENGTH = 128
MAX_SELECTOR_LENGTH = 512
MAX_UPSTREAMS = 32
_RESOURCE_PRIORITY = (
    "Order of this resource's alternatives among every kuik resource's; the original image has 0, "
    "so a negative priority is tried before it."
)
# status lists keyed by `image` (server-side apply merges entries by key)
LIST_MAP: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["image"],
}
# metav1.Condition lists are keyed by `type`
CONDITIONS_MAP: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def format_time(value: datetime) -> str:
    """metav1.Time's wire format: RFC 3339, UTC, whole seconds (`2026-07-13T09:47:32Z`)."""
    v = _aware(value).astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}Z"


def join_path(*elements: str) -> str:
    """Go's `path.Join`: skip empty elements, join with "/", then `path.Clean` ("" if none)."""
    parts = [e for e in elements if e]
    if not parts:
        return ""
    cleaned = posixpath.normpath("/".join(parts))
    return cleaned[1:] if cleaned.startswith("//") else cleaned


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _go_duration(value: str) -> str:
    if value:
        parse_duration(value)  # raises InvalidDuration (a ValueError) naming the input
    return value


Time = Annotated[datetime, AfterValidator(_aware), PlainSerializer(format_time, return_type=str)]
Duration = Annotated[str, AfterValidator(_go_duration)]
Pattern = Annotated[str, Field(max_length=MAX_PATTERN_LENGTH)]
Selector = Annotated[str, Field(max_length=MAX_SELECTOR_LENGTH)]
PatternList = Annotated[list[Pattern], Field(max_length=MAX_FILTER_ITEMS)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The API shape: camelCase keys, JSON values, unset and None fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)


# --- shared types -------------------------------------------------------------------------


class FilterItem(_Model):
    """One selector of the unified filter; exactly one field is set (CEL-checked)."""

    image: Pattern | None = Field(
        default=None,
        description="RE2 pattern matched against the whole normalised image reference "
        "(`docker.io/library/nginx:1.27`).",
        json_schema_extra=cel.validations(cel.regex_item("image")),
    )
    label: Selector | None = Field(
        default=None,
        description="Kubernetes label selector (`app=web`, `tier in (a,b)`, `!canary`) matched "
        "against the Pod's labels.",
    )
    annotation: Selector | None = Field(
        default=None, description="Kubernetes label selector matched against the Pod's annotations."
    )

    SELECTORS: ClassVar[tuple[str, ...]] = ("image", "label", "annotation")


class ClusterFilterItem(FilterItem):
    """A `FilterItem` with the namespace dimension (cluster-scoped kinds only)."""

    namespace: Pattern | None = Field(
        default=None,
        description="RE2 pattern matched against the Pod's whole namespace.",
        json_schema_extra=cel.validations(cel.regex_item("namespace")),
    )

    SELECTORS: ClassVar[tuple[str, ...]] = ("image", "label", "annotation", "namespace")


class _FilterBase(_Model):
    include: Sequence[FilterItem] | None
    exclude: Sequence[FilterItem] | None

    @property
    def is_empty(self) -> bool:
        """No item at all: pods all match and images fall back to the deprecated imageFilter."""
        return not self.include and not self.exclude

    @property
    def is_set(self) -> bool:
        """CEL's `has(filter.include) || has(filter.exclude)` (an empty list counts as set)."""
        return self.include is not None or self.exclude is not None


class Filter(_FilterBase):
    """Unified pod/image selector: OR within a dimension, AND across, exclude wins."""

    include: Annotated[list[FilterItem], Field(max_length=MAX_FILTER_ITEMS)] | None = Field(
        default=None,
        description="Items selecting Pods (label, annotation items) and their images (image "
        "items): OR within a dimension, AND across; a dimension without items selects all.",
        json_schema_extra=cel.validations(cel.ITEM_ONE_OF),
    )
    exclude: Annotated[list[FilterItem], Field(max_length=MAX_FILTER_ITEMS)] | None = Field(
        default=None,
        description="Items excluding Pods or images: one match excludes, whatever `include` says.",
        json_schema_extra=cel.validations(cel.ITEM_ONE_OF),
    )


class ClusterFilter(_FilterBase):
    """`Filter` with the namespace dimension, for cluster-scoped kinds."""

    include: Annotated[list[ClusterFilterItem], Field(max_length=MAX_FILTER_ITEMS)] | None = Field(
        default=None,
        description="Items selecting Pods (label, annotation, namespace items) and their images "
        "(image items): OR within a dimension, AND across; a dimension without items selects all.",
        json_schema_extra=cel.validations(cel.ITEM_ONE_OF_CLUSTER),
    )
    exclude: Annotated[list[ClusterFilterItem], Field(max_length=MAX_FILTER_ITEMS)] | None = Field(
        default=None,
        description="Items excluding Pods or images: one match excludes, whatever `include` says.",
        json_schema_extra=cel.validations(cel.ITEM_ONE_OF_CLUSTER),
    )


AnyFilter = Filter | ClusterFilter


class ImageFilterDefinition(_Model):
    """RE2 include/exclude pattern lists: the deprecated `spec.imageFilter`, and
    `spec.upstreams[].imageFilter` (matched after the upstream's `registry`)."""

    include: PatternList | None = Field(
        default=None,
        description="RE2 patterns an image must fully match one of. Empty with `exclude` set: "
        "every image; both empty: no image.",
        json_schema_extra=cel.validations(cel.regex_list("include")),
    )
    exclude: PatternList | None = Field(
        default=None,
        description="RE2 patterns; an image fully matching one is left out.",
        json_schema_extra=cel.validations(cel.regex_list("exclude")),
    )

    @property
    def is_set(self) -> bool:
        return self.include is not None or self.exclude is not None


class CredentialSecret(_Model):
    """A dockerconfigjson Secret; `namespace` is forced to the CR's on namespaced kinds."""

    name: str = Field(default="", description="Name of a `kubernetes.io/dockerconfigjson` Secret.")
    namespace: str = Field(
        default="",
        description="Namespace of the Secret; on namespaced kinds the resource's own is used.",
    )


class Cleanup(_Model):
    """Delete mirrored copies unused for `retention` (Go duration)."""

    enabled: bool = Field(
        default=False, description="Delete a copy once its image has been unused for `retention`."
    )
    retention: Duration = Field(
        default="",
        description="Go duration (`168h`, `30m`) an image stays unused before its copies are "
        "deleted; empty: at once.",
    )

    @property
    def retention_delta(self) -> timedelta:
        return parse_duration(self.retention) if self.retention else timedelta(0)


class ObjectMeta(BaseModel):
    """The metadata fields kuik reads; everything else is kept as it came."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None


class Condition(_Model):
    """metav1.Condition, with its validation: `kubectl wait --for=condition=Ready` reads these."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Ready or Degraded.",
    )
    status: Literal["True", "False", "Unknown"]
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The metadata.generation this condition was set for."
    )
    last_transition_time: Time = Field(description="When status last changed.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase cause, for programs.",
    )
    message: str = Field(max_length=32768, description="What happened and what to do, for people.")


Conditions = Annotated[list[Condition], Field(json_schema_extra=CONDITIONS_MAP)]
ObservedGeneration = Annotated[int, Field(ge=0)]


class _Observed(_Model):
    """What every kind's status adds to upstream's: conditions and the generation they saw."""

    observed_generation: ObservedGeneration | None = Field(
        default=None, description="The metadata.generation the status was last written for."
    )
    conditions: Conditions | None = Field(
        default=None, description="Ready and Degraded (metav1.Condition), keyed by type."
    )


# --- (Cluster)ImageSetMirror --------------------------------------------------------------


class Mirror(_Model):
    """A registry/path images are copied to; `priority` orders mirrors within the CR."""

    priority: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Order among this resource's mirrors, lowest first."
    )
    registry: str = Field(
        default="",
        description="Registry host the images are copied to (`harbor.example.com`, "
        "`localhost:5000`).",
    )
    path: str = Field(
        default="",
        description="Repository prefix there: `docker.io/library/nginx:1.27` is copied to "
        "`<registry>/<path>/library/nginx:1.27`.",
    )
    credential_secret: CredentialSecret | None = Field(
        default=None,
        description="Credentials to push and delete copies and to pull them: copied next to a "
        "Pod routed to this mirror and added to its `imagePullSecrets`.",
    )
    cleanup: Cleanup | None = Field(
        default=None,
        description="Overrides `spec.cleanup` for this mirror (upstream declares it but ignores it).",
    )

    @property
    def prefix(self) -> str:
        """`path.Join(registry, path)`: where this mirror's copies live."""
        return join_path(self.registry, self.path)


class MirrorStatus(_Model):
    """State of one image in one mirror; `digest`/`platforms` record what was copied."""

    image: str = Field(description="Reference of the copy in this mirror.")
    mirrored_at: Time | None = Field(
        default=None,
        description="When the copy was made or found in place; unset: not mirrored (yet, or "
        "any more).",
    )
    last_error: str | None = Field(
        default=None, description="Why the last copy or deletion failed, or was refused."
    )
    digest: str | None = Field(default=None, description="Digest of the manifest copied.")
    platforms: list[str] | None = Field(
        default=None, description="Platforms copied (`linux/amd64`), as `mirroring.platforms` kept."
    )


class MatchingImage(_Model):
    """An image selected by the CR and its state in every mirror."""

    image: str = Field(description="The source image, normalised (`docker.io/library/nginx:1.27`).")
    mirrors: list[MirrorStatus] | None = Field(
        default=None,
        description="Its copy in each of `spec.mirrors`, in spec order.",
        json_schema_extra=LIST_MAP,
    )
    unused_since: Time | None = Field(
        default=None,
        description="When the last selected Pod stopped using it; unset: in use; "
        "`0001-01-01T01:00:00Z`: no longer selected (expires at once).",
    )


class OmittedEntries(_Model):
    """Status list entries left out because the list passed its byte budget (etcd holds
    objects of at most 1.5 MiB); the counts beside the list still include them."""

    count: int = Field(description="Number of entries not listed.")
    digest: str = Field(description="Hash of the entries not listed; changes whenever they do.")
    message: str = Field(default="", description="What was left out, in words.")


class ImageSetMirrorStatus(_Observed):
    """Observed state: the matching images and their copies."""

    matching_images: list[MatchingImage] | None = Field(
        default=None,
        description="Every image the selected Pods use (or used), with its copies.",
        json_schema_extra=LIST_MAP,
    )
    # beyond upstream, for printer columns (JSONPath cannot count): kept by the replicator
    image_count: int | None = Field(default=None, description="Number of matching images.")
    mirrored_count: int | None = Field(
        default=None, description="Number of (image, mirror) pairs currently mirrored."
    )
    failed_count: int | None = Field(
        default=None, description="Number of (image, mirror) pairs whose last copy failed."
    )
    omitted: OmittedEntries | None = Field(
        default=None, description="Set when `matchingImages` is cut short to fit in etcd."
    )


class _ImageSetMirrorSpecBase(_Model):
    priority: int = Field(default=0, description=_RESOURCE_PRIORITY)
    image_filter: ImageFilterDefinition = Field(
        default_factory=ImageFilterDefinition,
        description="Deprecated: images to mirror as RE2 patterns; use `filter` image items "
        "(the two are exclusive).",
    )
    cleanup: Cleanup = Field(
        default_factory=Cleanup, description="When copies of images no longer used are deleted."
    )
    mirrors: list[Mirror] = Field(
        default_factory=list,
        description="Where images are copied; each copy is an alternative a Pod may be routed to.",
    )

    def cleanup_for(self, mirror: Mirror) -> Cleanup:
        """The mirror's own cleanup when it has one, else the CR's (beyond upstream)."""
        return mirror.cleanup if mirror.cleanup is not None else self.cleanup


class ImageSetMirrorSpec(_ImageSetMirrorSpecBase):
    """Images to copy to mirrors, for Pods of this namespace."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.FILTER_EXCLUSIVE))

    filter: Filter = Field(
        default_factory=Filter,
        description="Which Pods of the namespace and which of their images to mirror; empty: "
        "every Pod, images by `imageFilter`.",
    )


class ClusterImageSetMirrorSpec(_ImageSetMirrorSpecBase):
    """Images to copy to mirrors, for Pods of every namespace."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.FILTER_EXCLUSIVE))

    filter: ClusterFilter = Field(
        default_factory=ClusterFilter,
        description="Which Pods and which of their images to mirror; empty: every Pod, images by "
        "`imageFilter`.",
    )


# --- (Cluster)ReplicatedImageSet ----------------------------------------------------------


class ReplicatedUpstream(_Model):
    """A registry/path serving the same images; `imageFilter` matches after `registry`."""

    registry: str = Field(description="Registry host (`docker.io`, `public.ecr.aws`).")
    path: str = Field(
        description="Repository prefix there (`library`); an image under `<registry>/<path>` has "
        "the same image under every other upstream's prefix."
    )
    priority: Annotated[int, Field(ge=0)] = Field(
        default=0, description="Order among this resource's upstreams, lowest first."
    )
    discard_alternative: bool = Field(
        default=False,
        description="Match images with this upstream but never route to it; when it matches a "
        "Pod's image, the original image is not an alternative either.",
    )
    image_filter: ImageFilterDefinition = Field(
        default_factory=ImageFilterDefinition,
        description="Images this upstream serves: RE2 patterns matched against the reference "
        "after `registry` (`/library/.+`); empty: none.",
    )
    credential_secret: CredentialSecret | None = Field(
        default=None,
        description="Pull credentials for this upstream: copied next to a Pod routed to it and "
        "added to its `imagePullSecrets`.",
    )


class ReplicatedImageSetStatus(_Observed):
    """Only conditions (upstream's is empty): whether the webhook can route with it."""


class _ReplicatedImageSetSpecBase(_Model):
    priority: int = Field(default=0, description=_RESOURCE_PRIORITY)
    upstreams: Annotated[list[ReplicatedUpstream], Field(max_length=MAX_UPSTREAMS)] = Field(
        default_factory=list,
        description="Registries holding the same images: a Pod image from one may be pulled "
        "from the others.",
    )


class ReplicatedImageSetSpec(_ReplicatedImageSetSpecBase):
    """Registries holding the same images, for Pods of this namespace."""

    model_config = ConfigDict(
        json_schema_extra=cel.validations(cel.no_image_items("ReplicatedImageSet"))
    )

    filter: Filter = Field(
        default_factory=Filter,
        description="Which Pods of the namespace this applies to (label and annotation items; "
        "images are chosen per upstream); empty: every Pod.",
    )


class ClusterReplicatedImageSetSpec(_ReplicatedImageSetSpecBase):
    """Registries holding the same images, for Pods of every namespace."""

    model_config = ConfigDict(
        json_schema_extra=cel.validations(cel.no_image_items("ClusterReplicatedImageSet"))
    )

    filter: ClusterFilter = Field(
        default_factory=ClusterFilter,
        description="Which Pods this applies to (label, annotation and namespace items; images "
        "are chosen per upstream); empty: every Pod.",
    )


# --- ClusterImageSetAvailability ----------------------------------------------------------


class MonitoredImage(_Model):
    """Availability of one image used by selected Pods."""

    image: str = Field(description="The image, normalised (`docker.io/library/redis:7.2`).")
    status: AvailabilityStatus = Field(
        default=AvailabilityStatus.SCHEDULED,
        description="Result of the last check; `Scheduled`: not checked yet.",
        json_schema_extra={"x-kuik-default": "Scheduled"},
    )
    unused_since: Time | None = Field(
        default=None,
        description="When the last selected Pod stopped using it; unset: in use; "
        "`0001-01-01T01:00:00Z`: out of the filter, or unused and never checked.",
    )
    last_error: str | None = Field(default=None, description="Error of the last failed check.")
    last_monitor: Time | None = Field(
        default=None, description="When it was last checked; unset: never."
    )
    original: bool | None = Field(
        default=None,
        description="Whether a Pod references it as its original image (the one before kuik "
        "rerouted it).",
    )


class ClusterImageSetAvailabilitySpec(_Model):
    """Which images to monitor and how long to keep unused ones."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.FILTER_EXCLUSIVE))

    unused_image_expiry: Duration = Field(
        default="",
        description="Go duration (`24h`) an unused image stays listed; empty or 0: forever.",
    )
    image_filter: ImageFilterDefinition = Field(
        default_factory=ImageFilterDefinition,
        description="Deprecated: images to monitor as RE2 patterns; use `filter` image items "
        "(the two are exclusive).",
    )
    filter: ClusterFilter = Field(
        default_factory=ClusterFilter,
        description="Which Pods and which of their images to monitor; empty: every Pod, images "
        "by `imageFilter`.",
    )

    @property
    def unused_image_expiry_delta(self) -> timedelta:
        return (
            parse_duration(self.unused_image_expiry) if self.unused_image_expiry else timedelta(0)
        )


class ClusterImageSetAvailabilityStatus(_Observed):
    """Observed state: every monitored image and its availability."""

    image_count: int | None = Field(default=None, description="Number of monitored images.")
    images: list[MonitoredImage] | None = Field(
        default=None,
        description="Every image the selected Pods use (or used), with its availability.",
        json_schema_extra=LIST_MAP,
    )
    omitted: OmittedEntries | None = Field(
        default=None, description="Set when `images` is cut short to fit in etcd."
    )


# --- the resources ------------------------------------------------------------------------


class Resource(_Model):
    """Common envelope of the five kinds (`apiVersion`, `kind`, `metadata`, `spec`, `status`)."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAME: ClassVar[str]
    NAMESPACED: ClassVar[bool]

    api_version: Literal["kuik.enix.io/v1alpha1"] = "kuik.enix.io/v1alpha1"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace if self.NAMESPACED else None

    @property
    def key(self) -> str:
        """`Kind/name` or `Kind/namespace/name`: how logs, events and route output name a CR."""
        return f"{self.KIND}/{self.display_name}"

    @property
    def display_name(self) -> str:
        """`namespace/name` for namespaced kinds, else `name`."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        head = {"apiVersion": self.api_version, "kind": self.KIND}
        return head | {k: v for k, v in data.items() if k not in head}


class ClusterImageSetMirror(Resource):
    """Copies the images Pods use to mirror registries, cluster-wide."""

    KIND: ClassVar[str] = "ClusterImageSetMirror"
    PLURAL: ClassVar[str] = "clusterimagesetmirrors"
    SHORT_NAME: ClassVar[str] = "cism"
    NAMESPACED: ClassVar[bool] = False

    kind: Literal["ClusterImageSetMirror"] = "ClusterImageSetMirror"
    spec: ClusterImageSetMirrorSpec = Field(default_factory=ClusterImageSetMirrorSpec)
    status: ImageSetMirrorStatus = Field(default_factory=ImageSetMirrorStatus)


class ImageSetMirror(Resource):
    """Copies the images Pods of its namespace use to mirror registries."""

    KIND: ClassVar[str] = "ImageSetMirror"
    PLURAL: ClassVar[str] = "imagesetmirrors"
    SHORT_NAME: ClassVar[str] = "ism"
    NAMESPACED: ClassVar[bool] = True

    kind: Literal["ImageSetMirror"] = "ImageSetMirror"
    spec: ImageSetMirrorSpec = Field(default_factory=ImageSetMirrorSpec)
    status: ImageSetMirrorStatus = Field(default_factory=ImageSetMirrorStatus)


class ClusterReplicatedImageSet(Resource):
    """Declares registries that serve the same images, cluster-wide."""

    KIND: ClassVar[str] = "ClusterReplicatedImageSet"
    PLURAL: ClassVar[str] = "clusterreplicatedimagesets"
    SHORT_NAME: ClassVar[str] = "cris"
    NAMESPACED: ClassVar[bool] = False

    kind: Literal["ClusterReplicatedImageSet"] = "ClusterReplicatedImageSet"
    spec: ClusterReplicatedImageSetSpec = Field(default_factory=ClusterReplicatedImageSetSpec)
    status: ReplicatedImageSetStatus = Field(default_factory=ReplicatedImageSetStatus)


class ReplicatedImageSet(Resource):
    """Declares registries that serve the same images, for its namespace."""

    KIND: ClassVar[str] = "ReplicatedImageSet"
    PLURAL: ClassVar[str] = "replicatedimagesets"
    SHORT_NAME: ClassVar[str] = "ris"
    NAMESPACED: ClassVar[bool] = True

    kind: Literal["ReplicatedImageSet"] = "ReplicatedImageSet"
    spec: ReplicatedImageSetSpec = Field(default_factory=ReplicatedImageSetSpec)
    status: ReplicatedImageSetStatus = Field(default_factory=ReplicatedImageSetStatus)


class ClusterImageSetAvailability(Resource):
    """Monitors whether the images Pods use can still be pulled."""

    KIND: ClassVar[str] = "ClusterImageSetAvailability"
    PLURAL: ClassVar[str] = "clusterimagesetavailabilities"
    SHORT_NAME: ClassVar[str] = "cisa"
    NAMESPACED: ClassVar[bool] = False

    kind: Literal["ClusterImageSetAvailability"] = "ClusterImageSetAvailability"
    spec: ClusterImageSetAvailabilitySpec = Field(default_factory=ClusterImageSetAvailabilitySpec)
    status: ClusterImageSetAvailabilityStatus = Field(
        default_factory=ClusterImageSetAvailabilityStatus
    )
