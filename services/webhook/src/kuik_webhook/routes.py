"""Routing results reused across admissions: the Pods of one ReplicaSet route identically.

`kuikcore.routing.route_view` compiles every CR's filters and builds every candidate (~0.4 ms
for a 4-container Pod over a few CRs): more than everything else an admission does once the
availability caches are warm. Its result depends only on the Pod as the plan read it (namespace,
labels, annotations, containers: name, image, pull policy, kind) and on the CRs, so it is
cached under exactly that key plus a generation number that any change to a routing CR bumps.

The cache is bounded in entries and in bytes (the strings its keys hold, which the routes
repeat): a Pod carries any text the API server lets through, and 2,048 Pods with 20 KB labels or
images each kept ~40 MiB alive in the soak benchmark. A Pod whose key alone is over
`MAX_KEY_BYTES` is routed without being remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence

from kuikcore.api.models import Resource
from kuikcore.pods import PodView
from kuikcore.routing import PodRoute, RoutingOptions, route_view

__all__ = ["MAX_BYTES", "MAX_KEY_BYTES", "RouteCache", "route_key"]

MAX_BYTES = 4 * 1024 * 1024
MAX_KEY_BYTES = 64 * 1024


def _frozen(mapping: object) -> Hashable:
    if not isinstance(mapping, Mapping):
        return repr(mapping)  # odd shapes still key consistently (and route the same)
    return tuple(sorted((str(k), repr(v)) for k, v in mapping.items()))


def route_key(view: PodView) -> Hashable:
    """Everything `route_view` reads from a Pod, hashable (`processed` is what the annotations
    already say: the webhook writes it there for routing to see)."""
    containers = tuple(
        (c.type.value, c.name, repr(c.image), repr(c.pull_policy)) for c in view.containers
    )
    return (view.namespace, _frozen(view.labels), _frozen(view.annotations), containers)


class RouteCache:
    """`route(view, namespace)` = `route_view(view, resources(namespace), options)`, memoised
    (LRU).

    Call `invalidate()` whenever a routing CR changes (the service subscribes it to the
    cluster's change feed)."""

    def __init__(
        self,
        resources: Callable[[str], Sequence[Resource]],
        options: RoutingOptions,
        *,
        max_entries: int = 2048,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._resources = resources
        self.options = options
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.generation = 0
        self._entries: OrderedDict[Hashable, tuple[PodRoute, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def invalidate(self) -> None:
        self.generation += 1
        self._entries.clear()
        self.bytes = 0

    def route(self, view: PodView, namespace: str) -> PodRoute:
        key = (self.generation, namespace, route_key(view))
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]
        self.misses += 1
        generation = self.generation
        route = route_view(view, self._resources(namespace), self.options)
        size = _text_bytes(key)
        if generation == self.generation and size <= MAX_KEY_BYTES:  # not invalidated meanwhile
            self._entries[key] = (route, size)
            self.bytes += size
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                self.bytes -= self._entries.popitem(last=False)[1][1]
        return route


def _text_bytes(key: object) -> int:
    """The characters of the strings in a route key (nested tuples of strings)."""
    if isinstance(key, str):
        return len(key)
    if isinstance(key, tuple):
        return sum(_text_bytes(part) for part in key)
    return 8
