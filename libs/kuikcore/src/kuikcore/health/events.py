"""One Kubernetes Event per registry health transition, on the routing resources it concerns.

Events are namespaced and must regard an object, so a host's transition is recorded on the routing
CRs that name it (a mirror's or an upstream's registry); an origin registry that no CR names is
recorded on the (Cluster)ImageSetMirrors, the resources that route Pods away from origins; a service
that sees none of those (the monitor) records it on the ClusterImageSetAvailabilities. At most
`EVENT_LIMIT` objects per transition, in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from kuikcore.api.models import (
    ClusterImageSetAvailability,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    ReplicatedImageSet,
    Resource,
)
from kuikcore.cluster.interface import ClusterSource, EventType, ObjectKey
from kuikcore.health.state import Transition
from kuikcore.reference import InvalidReference, parse

__all__ = [
    "EVENT_LIMIT",
    "REGISTRY_DOWN",
    "REGISTRY_UP",
    "ROUTING_KINDS",
    "emit_transition",
    "hosts_in_use",
    "regarded",
    "routing_resources",
]

EVENT_LIMIT = 5
REGISTRY_DOWN = "RegistryDown"
REGISTRY_UP = "RegistryUp"
ROUTING_KINDS = (
    ClusterImageSetMirror.KIND,
    ImageSetMirror.KIND,
    ClusterReplicatedImageSet.KIND,
    ReplicatedImageSet.KIND,
)
_EVENT_KINDS = (*ROUTING_KINDS, ClusterImageSetAvailability.KIND)


def _named_hosts(resource: Resource) -> list[str]:
    """The registry hosts a routing CR names: its mirrors', or its upstreams'."""
    if isinstance(resource, ClusterImageSetMirror | ImageSetMirror):
        return [m.registry for m in resource.spec.mirrors if m.registry]
    if isinstance(resource, ClusterReplicatedImageSet | ReplicatedImageSet):
        return [u.registry for u in resource.spec.upstreams if u.registry]
    return []


def routing_resources(cluster: ClusterSource) -> list[Resource]:
    return [r for kind in ROUTING_KINDS for r in cluster.store.resources(kind)]


def hosts_in_use(images: Iterable[str], resources: Iterable[Resource]) -> set[str]:
    """Every registry host routing may pick for these images: their origins, and every host a
    routing CR names. Pure; unparseable references are left out."""
    hosts: set[str] = set()
    for image in images:
        try:
            hosts.add(parse(image).registry_host)
        except InvalidReference:
            continue
    for resource in resources:
        hosts.update(_named_hosts(resource))
    return hosts


def regarded(resources: Iterable[Resource], host: str, limit: int = EVENT_LIMIT) -> list[ObjectKey]:
    """The objects a transition of `host` is recorded on. Pure."""
    ordered = sorted(resources, key=lambda r: (r.KIND, r.metadata.namespace or "", r.name))
    naming = [r for r in ordered if host in _named_hosts(r)]
    mirrors = [r for r in ordered if isinstance(r, ClusterImageSetMirror | ImageSetMirror)]
    watches = [r for r in ordered if isinstance(r, ClusterImageSetAvailability)]
    chosen = naming or mirrors or watches
    return [
        ObjectKey(r.KIND, (r.metadata.namespace or "") if r.NAMESPACED else "", r.name)
        for r in chosen[:limit]
    ]


def transition_note(transition: Transition) -> tuple[EventType, str, str]:
    """(type, reason, note) of a transition's Event."""
    when = datetime.fromtimestamp(transition.at, UTC).isoformat(timespec="milliseconds")
    if transition.up:
        note = f"registry {transition.host} answers again since {when} (seen by {transition.by})"
        return EventType.NORMAL, REGISTRY_UP, note
    note = (
        f"registry {transition.host} marked down at {when} by {transition.by}: "
        f"{transition.error or 'no answer'}; Pods are routed to its alternatives"
    )
    return EventType.WARNING, REGISTRY_DOWN, note


async def emit_transition(cluster: ClusterSource, transition: Transition) -> None:
    """Record the transition's Event (best effort, as every `emit_event`)."""
    kind, reason, note = transition_note(transition)
    resources = [r for kind_ in _EVENT_KINDS for r in cluster.store.resources(kind_)]
    for key in regarded(resources, transition.host):
        await cluster.emit_event(key, kind, reason, note, action="ProbeRegistry")
