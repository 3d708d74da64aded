"""Pods × (Cluster)ImageSetMirrors → wanted status and copy jobs (pure, no I/O).

Upstream's reconcile (behaviour reference §1.6 steps 3-9) split into plain functions:

- `select_images`: the *matching* set (current images of selected Pods that pass the image
  filter and are not under any mirror prefix: mirror-loop prevention) and the *in-use* set
  (current images plus the originals recorded in `kuik.enix.io/original-images`);
- `plan_status`: `unusedSince` bookkeeping (kuikcore.tracking), one mirror entry per spec
  mirror, counters. Beyond upstream: digest-pinned images are mirrored too (under their digest),
  entries of mirrors removed from the spec leave the status (kept only while cleanup still has
  to delete their copy), and the order is stable (existing entries keep their place; mirrors
  follow the spec order);
- `copy_jobs`: one `CopyJob` per in-use (image, spec mirror) pair not mirrored yet, with the
  destination secret of the longest matching mirror prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kuikcore.api import ClusterImageSetMirror, ImageSetMirror, Mirror, Resource
from kuikcore.filters import ResourceFilter, SkipRules
from kuikcore.mirroring import CopyJob, SecretName
from kuikcore.routing import (
    is_under_mirror_prefix,
    mirror_destination,
    mirror_prefixes,
    pod_images,
)
from kuikcore.tracking import parse_time, track

__all__ = [
    "MirrorResource",
    "Selection",
    "copy_jobs",
    "credential_secret_for",
    "expected_mirrors",
    "plan_status",
    "scope_pods",
    "select_images",
    "status_counts",
    "with_counts",
]

MirrorResource = ClusterImageSetMirror | ImageSetMirror
Status = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Selection:
    """What one CR selects from the Pods of its scope right now."""

    matching: frozenset[str]
    """Current images to mirror (filter passed, not under a mirror prefix)."""
    in_use: frozenset[str]
    """Current and original images of the selected Pods: keeps a mirrored image "in use"."""
    recent: frozenset[str]
    """Matching images of Pods created within the expedite window."""
    prefixes: tuple[str, ...]
    """Mirror prefixes excluded from matching (every CISM, and the ISMs that share the scope)."""


def scope_pods(
    resource: MirrorResource, pods: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The Pods a CR may select: all of them for a CISM, its namespace's for an ISM."""
    if not resource.NAMESPACED:
        return list(pods)
    namespace = resource.metadata.namespace
    return [p for p in pods if (p.get("metadata") or {}).get("namespace") == namespace]


def _created(pod: Mapping[str, Any]) -> datetime | None:
    value = (pod.get("metadata") or {}).get("creationTimestamp")
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def select_images(
    resource: MirrorResource,
    filt: ResourceFilter,
    pods: Iterable[Mapping[str, Any]],
    resources: Iterable[Resource],
    *,
    skip: SkipRules | None = None,
    now: datetime,
    expedite_window: timedelta = timedelta(minutes=5),
) -> Selection:
    """Upstream's matching and in-use sets for one CR (§1.6 steps 4, 6 and 7)."""
    # a CISM excludes every mirror prefix; an ISM the CISMs' and its own namespace's ISMs'
    namespace = resource.metadata.namespace if resource.NAMESPACED else None
    prefixes = mirror_prefixes(resources, namespace)
    matching: set[str] = set()
    in_use: set[str] = set()
    recent: set[str] = set()
    for pod in scope_pods(resource, pods):
        if not filt.matches_pod(pod) or (skip is not None and skip.reason(pod) is not None):
            continue
        created = _created(pod)
        young = created is not None and now - created <= expedite_window
        for used in pod_images(pod):
            in_use.add(used.image)
            if used.original:
                continue
            if filt.matches_image(used.image) and not is_under_mirror_prefix(used.image, prefixes):
                matching.add(used.image)
                if young:
                    recent.add(used.image)
    return Selection(frozenset(matching), frozenset(in_use), frozenset(recent), prefixes)


def expected_mirrors(resource: MirrorResource, image: str) -> list[tuple[Mirror, str]]:
    """(spec mirror, destination) for `image`, in spec order, one per distinct destination."""
    out: list[tuple[Mirror, str]] = []
    seen: set[str] = set()
    for mirror in resource.spec.mirrors:
        destination = mirror_destination(mirror, image)
        if destination not in seen:
            seen.add(destination)
            out.append((mirror, destination))
    return out


def _cleanup_enabled(resource: MirrorResource) -> bool:
    return resource.spec.cleanup.enabled


def _reconcile_mirrors(
    resource: MirrorResource, image: str, current: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Spec mirrors first (in spec order, existing state kept), then removed mirrors whose copy
    cleanup still has to delete; other removed mirrors leave the status."""
    by_image = {str(m["image"]): dict(m) for m in current}
    out = [by_image.pop(dest, {"image": dest}) for _, dest in expected_mirrors(resource, image)]
    for leftover in by_image.values():
        if leftover.get("mirroredAt") and _cleanup_enabled(resource):
            out.append(leftover)
    return out


def status_counts(entries: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """`imageCount`, `mirroredCount`, `failedCount` (kuik's printer columns)."""
    mirrors = [m for e in entries for m in e.get("mirrors") or ()]
    return {
        "imageCount": len(entries),
        "mirroredCount": sum(1 for m in mirrors if m.get("mirroredAt")),
        "failedCount": sum(1 for m in mirrors if m.get("lastError") and not m.get("mirroredAt")),
    }


def with_counts(status: Status) -> Status:
    entries = status.get("matchingImages") or []
    return {**status, **status_counts(entries)}


def plan_status(
    status: Mapping[str, Any],
    resource: MirrorResource,
    filt: ResourceFilter,
    selection: Selection,
    *,
    now: datetime,
) -> Status:
    """The wanted status (pure: usable as a `cluster.update_status` mutate function)."""

    def matches(image: str) -> bool:
        return filt.matches_image(image) and not is_under_mirror_prefix(image, selection.prefixes)

    tracked = track(
        status.get("matchingImages"),
        current=selection.matching,
        matches=matches,
        in_use=selection.in_use,
        now=now,
        new_entry=lambda image: {"image": image, "mirrors": []},
    )
    entries = []
    for entry in tracked.entries:
        image = str(entry["image"])
        entry["mirrors"] = _reconcile_mirrors(resource, image, entry.get("mirrors") or [])
        entries.append(entry)
    return with_counts({**status, "matchingImages": entries})


def credential_secret_for(resource: MirrorResource, destination: str) -> SecretName | None:
    """The `credentialSecret` of the mirror whose prefix is the longest prefix of `destination`
    (upstream's `GetCredentialSecretForImage`); ISM secrets live in the ISM's namespace."""
    best: Mirror | None = None
    for mirror in resource.spec.mirrors:
        prefix = mirror.prefix
        if not prefix or not is_under_mirror_prefix(destination, [prefix]):
            continue
        if best is None or len(prefix) > len(best.prefix):
            best = mirror
    if best is None or best.credential_secret is None or not best.credential_secret.name:
        return None
    namespace = best.credential_secret.namespace
    if resource.NAMESPACED:
        namespace = resource.metadata.namespace or ""
    return SecretName(namespace=namespace, name=best.credential_secret.name)


def copy_jobs(status: Mapping[str, Any], resource: MirrorResource) -> list[CopyJob]:
    """One job per in-use image and spec mirror without `mirroredAt` (§1.6 step 9)."""
    jobs: list[CopyJob] = []
    for entry in status.get("matchingImages") or ():
        if entry.get("unusedSince") is not None:
            continue
        image = str(entry["image"])
        state = {str(m["image"]): m for m in entry.get("mirrors") or ()}
        for _, destination in expected_mirrors(resource, image):
            if state.get(destination, {}).get("mirroredAt"):
                continue
            jobs.append(
                CopyJob(
                    source=image,
                    destination=destination,
                    credential_secret=credential_secret_for(resource, destination),
                )
            )
    return jobs
