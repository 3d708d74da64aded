"""Image routing: for each container of a Pod, the ordered alternatives to try (pure, no I/O).

`route_pod` is upstream kuik's `buildAlternativesList` (behaviour reference §3.3 and §3.6) over
the Pod's containers: replicated upstreams of matching (C)RIS, then the original, then mirrors
of matching (C)ISM for every candidate so far, stable-sorted by (CR priority, type order,
intra-CR priority, declaration order) and de-duplicated keeping the first. Beyond upstream:
- no mirror-of-mirror candidates: a candidate under any (C)ISM mirror prefix is never itself
  mirrored (upstream Appendix B #13);
- init containers are keyed `init:<name>` and ephemeral containers `ephemeral:<name>` like
  regular ones, so they are routed and recorded;
- digest-pinned references are routed with the digest kept in every alternative, so a pinned
  image is only ever swapped for the same content;
- a skipped Pod or container carries the reason, and an invalid filter disables only its CR
  (or its upstream) and is reported in `PodRoute.problems`.
Reading Pods (containers of every kind, the images a Pod uses, the recorded originals) is
`kuikcore.pods`, a leaf under this module; the CR helpers the replicator and monitor share (mirror
destinations, mirror prefixes) live here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kuikcore.api.models import (
    ClusterImageSetAvailability,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    CredentialSecret,
    ImageSetMirror,
    Mirror,
    ReplicatedImageSet,
    Resource,
    join_path,
)
from kuikcore.filters import (
    InvalidFilter,
    ResourceFilter,
    SkipRules,
    UpstreamFilter,
    compile_filter,
    compile_upstream,
)
from kuikcore.names import CONFIG_MIRROR_ANNOTATION, ORIGINAL_IMAGES_ANNOTATION
from kuikcore.pods import (
    ContainerType,
    PodContainer,
    PodImage,
    PodView,
    annotation_key,
    effective_pull_policy,
    normalised_image,
    original_images,
    pod_containers,
    pod_images,
    read_containers,
    read_pod,
)
from kuikcore.reference import InvalidReference, parse

__all__ = [
    "ORIGINAL",
    "Alternative",
    "ContainerRoute",
    "ContainerType",
    "PodContainer",
    "PodImage",
    "PodRoute",
    "PodView",
    "RoutingOptions",
    "SecretRef",
    "TypeOrder",
    "annotation_key",
    "effective_pull_policy",
    "in_scope",
    "is_under_mirror_prefix",
    "join_path",
    "mirror_destination",
    "mirror_prefixes",
    "normalised_image",
    "original_images",
    "pod_containers",
    "pod_images",
    "read_containers",
    "read_pod",
    "route_pod",
    "route_view",
    "split_registry",
]

ORIGINAL = "original"
_MIN_PRIORITY = -(2**63)  # Go's math.MinInt: `Always` pins the original before everything


class TypeOrder:
    """Upstream's default order between candidate kinds when CR priorities are equal."""

    ORIGINAL = 0
    CISM = 1
    ISM = 2
    CRIS = 3
    RIS = 4


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """The operator settings routing reads (`routing.*`, `skipLabels`, `skipAnnotations`)."""

    rewrite_on_never_image_pull_policy: bool = False
    honor_priorities_on_always_image_pull_policy: bool = False
    skip: SkipRules = field(default_factory=SkipRules)

    @classmethod
    def from_config(cls, config: Any) -> RoutingOptions:
        """From a `kuikcore.config.Config`; raises `InvalidSelector` on a bad skip selector."""
        routing = config.routing
        return cls(
            rewrite_on_never_image_pull_policy=routing.rewrite_on_never_image_pull_policy,
            honor_priorities_on_always_image_pull_policy=routing.honor_priorities_on_always_image_pull_policy,
            skip=SkipRules.parse(config.skip_labels or (), config.skip_annotations or ()),
        )


@dataclass(frozen=True, slots=True)
class SecretRef:
    name: str
    namespace: str


@dataclass(frozen=True, slots=True)
class Alternative:
    """One candidate image; `source` is "original" or the CR's `Kind/[namespace/]name`.

    `owner` is the CR that produced it (None for the original): the webhook needs its UID for
    pull-secret copies and its status for stale-mirror repair.
    """

    image: str
    source: str
    credential_secret: SecretRef | None = None
    owner: Resource | None = field(default=None, compare=False, repr=False)
    rank: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), compare=False)
    """Sort key (CR priority, type order, intra-CR priority, declaration order): why it is here."""


@dataclass(frozen=True, slots=True)
class ContainerRoute:
    name: str
    type: ContainerType
    image: str
    """The image as written in the Pod."""
    alternatives: tuple[Alternative, ...] = ()
    skipped: str | None = None
    """Why the container is not routed (None when it is)."""

    @property
    def key(self) -> str:
        """Key in `kuik.enix.io/original-images`: `name`, `init:name` or `ephemeral:name`."""
        return annotation_key(self.type, self.name)

    def to_dict(self) -> dict[str, Any]:
        """`kuik route --json` shape of one container."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type.value,
            "image": self.image,
            "alternatives": [{"image": a.image, "source": a.source} for a in self.alternatives],
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


@dataclass(frozen=True, slots=True)
class PodRoute:
    containers: tuple[ContainerRoute, ...]
    skipped: str | None = None
    """Why the whole Pod is left alone (mirror pod, skip selectors), else None."""
    problems: tuple[InvalidFilter, ...] = ()
    """CRs or upstreams disabled by an invalid filter (report as `InvalidFilter`)."""

    def __iter__(self) -> Iterator[ContainerRoute]:
        return iter(self.containers)


# --- CR helpers ---------------------------------------------------------------------------


def split_registry(image: str) -> tuple[str, str]:
    """`docker.io/library/nginx:1.27` -> (`docker.io`, `library/nginx:1.27`)."""
    registry, _, rest = str(parse(image)).partition("/")
    return registry, rest


def mirror_destination(mirror: Mirror, image: str) -> str:
    """Where `mirror` keeps `image`: `path.Join(registry, path, <image without its host>)`."""
    return _mirror_of(mirror, str(parse(image)))


def _mirror_of(mirror: Mirror, normalised: str) -> str:
    """`mirror_destination` of an image already in normal form (routing's candidates): no
    second parse."""
    return join_path(mirror.registry, mirror.path, normalised.partition("/")[2])


def in_scope(resource: Resource, namespace: str) -> bool:
    """Cluster-scoped CRs apply everywhere; namespaced ones only to their own namespace."""
    return not resource.NAMESPACED or resource.metadata.namespace == namespace


def mirror_prefixes(resources: Iterable[Resource], namespace: str | None = None) -> tuple[str, ...]:
    """`registry/path` of every (C)ISM mirror (ISMs only of `namespace`, or all when None)."""
    prefixes: list[str] = []
    for resource in resources:
        if not isinstance(resource, ClusterImageSetMirror | ImageSetMirror):
            continue
        if namespace is not None and not in_scope(resource, namespace):
            continue
        for mirror in resource.spec.mirrors:
            prefix = mirror.prefix
            if prefix and prefix not in prefixes:
                prefixes.append(prefix)
    return tuple(prefixes)


def is_under_mirror_prefix(image: str, prefixes: Iterable[str]) -> bool:
    """True when `image` lives below a mirror prefix (path boundary respected)."""
    return any(image == p or image.startswith(p.rstrip("/") + "/") for p in prefixes)


# --- routing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    image: str
    source: str
    secret: SecretRef | None
    owner: Resource | None
    cr_priority: int
    type_order: int
    intra_priority: int
    declaration: int

    def sort_key(self) -> tuple[int, int, int, int]:
        return (self.cr_priority, self.type_order, self.intra_priority, self.declaration)


@dataclass(slots=True)
class _Scope:
    """The CRs that apply to one Pod, compiled once for all its containers."""

    replicated: list[tuple[Resource, list[tuple[int, UpstreamFilter | None]]]]
    mirrors: list[tuple[Resource, ResourceFilter]]
    prefixes: tuple[str, ...]
    problems: list[InvalidFilter]


def _secret(credential: CredentialSecret | None, resource: Resource) -> SecretRef | None:
    if credential is None or not credential.name:
        return None
    namespace = resource.metadata.namespace if resource.NAMESPACED else credential.namespace
    return SecretRef(credential.name, namespace or "")


def _sorted(resources: Iterable[Resource], kind: type[Resource]) -> list[Resource]:
    chosen = [r for r in resources if type(r) is kind]
    return sorted(chosen, key=lambda r: (r.metadata.namespace or "", r.metadata.name))


def _scope(view: PodView, resources: Sequence[Resource]) -> _Scope:
    namespace = view.namespace
    problems: list[InvalidFilter] = []
    in_namespace = [r for r in resources if in_scope(r, namespace)]

    def selected(resource: Resource) -> ResourceFilter | None:
        try:
            compiled = compile_filter(resource)
        except InvalidFilter as exc:
            problems.append(exc)
            return None
        return compiled if compiled.matches_view(view) else None

    replicated = []
    for kind in (ClusterReplicatedImageSet, ReplicatedImageSet):
        for resource in _sorted(in_namespace, kind):
            if selected(resource) is None:
                continue
            upstreams: list[tuple[int, UpstreamFilter | None]] = []
            for i, upstream in enumerate(resource.spec.upstreams):  # type: ignore[attr-defined]
                try:
                    upstreams.append((i, compile_upstream(resource, i, upstream)))
                except InvalidFilter as exc:
                    problems.append(exc)
                    upstreams.append((i, None))
            replicated.append((resource, upstreams))
    mirrors = []
    for mirror_kind in (ClusterImageSetMirror, ImageSetMirror):
        for resource in _sorted(in_namespace, mirror_kind):
            compiled = selected(resource)
            if compiled is not None:
                mirrors.append((resource, compiled))
    prefixes = mirror_prefixes(in_namespace)
    return _Scope(replicated, mirrors, prefixes, problems)


def _alternatives(
    image: str, pull_policy: str, scope: _Scope, options: RoutingOptions
) -> tuple[Alternative, ...]:
    candidates: list[_Candidate] = []
    discard_original = False
    for resource, upstreams in scope.replicated:
        spec = resource.spec  # type: ignore[attr-defined]
        matched = None
        for i, compiled in upstreams:
            upstream = spec.upstreams[i]
            prefix = join_path(upstream.registry, upstream.path)
            # upstream trims the prefix blindly; a path that is not a prefix gives a bogus ref
            if compiled is not None and compiled.match(image) and image.startswith(prefix):
                matched = upstream
                break
        if matched is None:
            continue
        discard_original = discard_original or matched.discard_alternative
        suffix = image[len(join_path(matched.registry, matched.path)) :]
        type_order = TypeOrder.CRIS if not resource.NAMESPACED else TypeOrder.RIS
        for i, compiled in upstreams:
            upstream = spec.upstreams[i]
            if compiled is None or upstream.discard_alternative:
                continue
            built = join_path(upstream.registry, upstream.path) + suffix
            normalised = normalised_image(built)
            if normalised is None:
                continue  # not a pullable reference (upstream would fail admission here)
            candidates.append(
                _Candidate(
                    normalised,
                    resource.key,
                    _secret(upstream.credential_secret, resource),
                    resource,
                    spec.priority,
                    type_order,
                    upstream.priority,
                    i,
                )
            )
    if not discard_original:
        pinned = (
            pull_policy == "Always" and not options.honor_priorities_on_always_image_pull_policy
        )
        candidates.append(
            _Candidate(
                image,
                ORIGINAL,
                None,
                None,
                _MIN_PRIORITY if pinned else 0,
                TypeOrder.ORIGINAL,
                0,
                0,
            )
        )
    for resource, selection in scope.mirrors:
        spec = resource.spec  # type: ignore[attr-defined]
        type_order = TypeOrder.CISM if not resource.NAMESPACED else TypeOrder.ISM
        for candidate in list(candidates):  # snapshot: this CR's own mirrors are not inputs
            if is_under_mirror_prefix(candidate.image, scope.prefixes):
                continue  # never a mirror of a mirror
            if not selection.matches_image(candidate.image):
                continue
            for i, mirror in enumerate(spec.mirrors):
                candidates.append(
                    _Candidate(
                        _mirror_of(mirror, candidate.image),  # candidates are normalised
                        resource.key,
                        _secret(mirror.credential_secret, resource),
                        resource,
                        spec.priority,
                        type_order,
                        mirror.priority,
                        i,
                    )
                )
    candidates.sort(key=_Candidate.sort_key)  # list.sort is stable
    seen: set[str] = set()
    out = []
    for candidate in candidates:
        if candidate.image in seen:
            continue
        seen.add(candidate.image)
        out.append(
            Alternative(
                candidate.image,
                candidate.source,
                candidate.secret,
                candidate.owner,
                candidate.sort_key(),
            )
        )
    return tuple(out)


def _pod_skip_reason(view: PodView, options: RoutingOptions) -> str | None:
    if CONFIG_MIRROR_ANNOTATION in view.annotations:
        return (
            f"mirror pod (annotation {CONFIG_MIRROR_ANNOTATION}): "
            "the kubelet owns it and rejects changes"
        )
    return options.skip.reason_view(view)


def route_pod(
    pod: Mapping[str, Any],
    resources: Sequence[Resource],
    options: RoutingOptions | None = None,
) -> PodRoute:
    """Route every container of `pod` (the API dict) over `resources` (any kuik CRs).

    Namespaced CRs of other namespaces and ClusterImageSetAvailabilities are ignored, so the
    caller may pass everything it has. CRs are taken in (namespace, name) order per kind.
    """
    return route_view(read_pod(pod), resources, options)


def route_view(
    view: PodView,
    resources: Sequence[Resource],
    options: RoutingOptions | None = None,
) -> PodRoute:
    """`route_pod` of a Pod already read: its containers in `view.containers` order, one
    `ContainerRoute` each; those listed in `view.processed` are skipped."""
    options = options or RoutingOptions()
    resources = [r for r in resources if not isinstance(r, ClusterImageSetAvailability)]
    pod_reason = _pod_skip_reason(view, options)
    if pod_reason is not None:
        return PodRoute(
            tuple(
                ContainerRoute(c.name, c.type, _written(c.image), skipped=pod_reason)
                for c in view.containers
            ),
            skipped=pod_reason,
        )
    scope = _scope(view, resources)
    routes = []
    for container in view.containers:
        written = _written(container.image)
        reason = None
        policy = container.effective_pull_policy
        if container.key in view.processed:
            reason = f"already processed: listed in {ORIGINAL_IMAGES_ANNOTATION}"
        elif container.reference is None:
            reason = _invalid_image_reason(container.image)
        elif policy == "Never" and not options.rewrite_on_never_image_pull_policy:
            reason = "imagePullPolicy is Never (routing.rewriteOnNeverImagePullPolicy is false)"
        if reason is not None:
            routes.append(ContainerRoute(container.name, container.type, written, skipped=reason))
            continue
        assert container.reference is not None
        alternatives = _alternatives(str(container.reference), policy, scope, options)
        routes.append(ContainerRoute(container.name, container.type, written, alternatives))
    return PodRoute(tuple(routes), problems=tuple(scope.problems))


def _written(image: object) -> str:
    """The image as written, as text (empty when absent or empty)."""
    return str(image or "")


def _invalid_image_reason(image: object) -> str:
    if not isinstance(image, str) or not image:
        return "no image"
    try:
        parse(image)
    except InvalidReference as exc:
        return f"invalid image reference: {exc.reason}"
    return "invalid image reference"  # pragma: no cover - parse succeeded elsewhere
