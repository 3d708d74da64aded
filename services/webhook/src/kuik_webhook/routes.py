"""Routing results reused across admissions: the Pods of one ReplicaSet route identically.

`kuikcore.routing.route_pod` compiles every CR's filters and builds every candidate (~0.4 ms for
a 4-container Pod over a few CRs): more than everything else an admission does once the
availability caches are warm. Its result depends only on the Pod's namespace, labels,
annotations and containers (name, image, pull policy, kind) and on the CRs, so it is cached
under exactly that key plus a generation number that any change to a routing CR bumps.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from kuikcore.api.models import Resource
from kuikcore.pods import pod_containers
from kuikcore.routing import PodRoute, RoutingOptions, route_pod

__all__ = ["RouteCache", "route_key"]


def _frozen(mapping: object) -> Hashable:
    if not isinstance(mapping, Mapping):
        return repr(mapping)  # odd shapes still key consistently (and route the same)
    return tuple(sorted((str(k), repr(v)) for k, v in mapping.items()))


def route_key(pod: Mapping[str, Any]) -> Hashable:
    """Everything `route_pod` reads from a Pod, hashable."""
    metadata = pod.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    containers = tuple(
        (
            kind.value,
            repr(c.get("name")),
            repr(c.get("image")),
            repr(c.get("imagePullPolicy")),
        )
        for kind, c in pod_containers(pod)
    )
    return (
        repr(meta.get("namespace")),
        _frozen(meta.get("labels")),
        _frozen(meta.get("annotations")),
        containers,
    )


class RouteCache:
    """`route(pod)` = `route_pod(pod, resources(namespace), options)`, memoised (LRU).

    Call `invalidate()` whenever a routing CR changes (the service subscribes it to the
    cluster's change feed)."""

    def __init__(
        self,
        resources: Callable[[str], Sequence[Resource]],
        options: RoutingOptions,
        *,
        max_entries: int = 2048,
    ) -> None:
        self._resources = resources
        self.options = options
        self.max_entries = max_entries
        self.generation = 0
        self._entries: OrderedDict[Hashable, PodRoute] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()

    def route(self, pod: Mapping[str, Any], namespace: str) -> PodRoute:
        key = (self.generation, route_key(pod))
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        generation = self.generation
        route = route_pod(pod, self._resources(namespace), self.options)
        if generation == self.generation:  # not invalidated meanwhile
            self._entries[key] = route
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return route
