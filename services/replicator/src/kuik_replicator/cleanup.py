"""Deleting mirrored copies nobody uses any more, safely (behaviour reference §1.7, §1.9).

Decisions are pure (`due_deletions`, `apply_cleanup`); `Cleaner` does the I/O for one deletion.
Beyond upstream, a copy is deleted only when every check passes, in this order:

1. the mirror's cleanup applies: `spec.mirrors[].cleanup` when set, else `spec.cleanup`
   (upstream ignores the per-mirror field), retention elapsed since `unusedSince`; a mirror
   removed from the spec is deleted at once when the CR's cleanup is enabled; a CR being
   deleted deletes all its copies (upstream, finalizer `kuik.enix.io/mirror-cleanup`);
2. a credential secret exists for the destination (upstream silently skips the delete and
   reports success; kuik keeps the copy and says why in `lastError`);
3. under the Redis GC lock of the destination repository (fenced: checked right before the
   DELETE), so two replicators — of this cluster or another — never race on one repository;
4. no Pod of this cluster uses the source or the copy again (re-read now, not at planning);
5. no other cluster sharing this Redis recorded use of the copy recently (usage records);
6. the destination tag still points at the digest kuik mirrored: a tag re-pushed by someone
   else is kept, and status says so;
7. the registry client's safe delete (a manifest shared with another tag is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog

from kuik_replicator.planner import (
    MirrorResource,
    credential_secret_for,
    expected_mirrors,
    with_counts,
)
from kuikcore import registry
from kuikcore.coord import Coord, FencedLock, LockLost, UsageRecords
from kuikcore.credentials import read_credential_set
from kuikcore.mirroring import SecretName
from kuikcore.reference import parse
from kuikcore.registry import NotFound, RegistryClient, RegistryError
from kuikcore.routing import SecretRef, is_under_mirror_prefix
from kuikcore.tracking import parse_time

__all__ = [
    "Cleaner",
    "CleanupOutcome",
    "Deletion",
    "Reason",
    "apply_cleanup",
    "due_deletions",
    "fallback_secret",
]

log = structlog.get_logger("kuik.replicator.cleanup")

NO_SECRET = "not deleted: the mirror has no credentialSecret to delete with"


class Reason(StrEnum):
    RETENTION = "retention"
    REMOVED_MIRROR = "removed-mirror"
    RESOURCE_DELETED = "resource-deleted"


@dataclass(frozen=True, slots=True)
class Deletion:
    """One mirrored copy to delete."""

    source: str
    destination: str
    digest: str | None
    """What kuik mirrored there (None when mirrored by a version that did not record it)."""
    credential_secret: SecretName | None
    reason: Reason
    unused_since: datetime | None


@dataclass(frozen=True, slots=True)
class CleanupOutcome:
    source: str
    destination: str
    removed: bool
    """The copy is gone (deleted now, or already absent): its status entry goes."""
    note: str | None = None
    """Why it was kept (written to the mirror's `lastError`); None: nothing to say yet."""


def fallback_secret(
    resource: MirrorResource, destination: str, others: Iterable[MirrorResource]
) -> SecretName | None:
    """Credentials for a copy whose mirror left the spec: the longest matching prefix of any
    other (C)ISM, else a mirror of the same CR on the same registry host."""
    found = None
    best = -1
    for other in others:
        secret = credential_secret_for(other, destination)
        if secret is None:
            continue
        length = max(
            (
                len(m.prefix)
                for m in other.spec.mirrors
                if is_under_mirror_prefix(destination, [m.prefix])
            ),
            default=0,
        )
        if length > best:
            found, best = secret, length
    if found is not None:
        return found
    host = destination.split("/", 1)[0]
    for mirror in resource.spec.mirrors:
        if mirror.registry == host and mirror.credential_secret and mirror.credential_secret.name:
            namespace = mirror.credential_secret.namespace
            if resource.NAMESPACED:
                namespace = resource.metadata.namespace or ""
            return SecretName(namespace=namespace, name=mirror.credential_secret.name)
    return None


def due_deletions(
    status: Mapping[str, Any],
    resource: MirrorResource,
    *,
    now: datetime,
    deleting: bool = False,
    others: Sequence[MirrorResource] = (),
) -> tuple[list[Deletion], timedelta | None]:
    """Copies to delete now, and the time until the next one falls due (None: none pending)."""
    out: list[Deletion] = []
    next_due: timedelta | None = None
    for entry in status.get("matchingImages") or ():
        image = str(entry["image"])
        raw_unused = entry.get("unusedSince")
        unused = parse_time(raw_unused) if raw_unused else None
        spec = {dest: mirror for mirror, dest in expected_mirrors(resource, image)}
        for state in entry.get("mirrors") or ():
            if not state.get("mirroredAt"):
                continue
            destination = str(state["image"])
            mirror = spec.get(destination)
            reason: Reason | None = None
            if deleting:
                reason = Reason.RESOURCE_DELETED
            elif mirror is None:
                reason = Reason.REMOVED_MIRROR if resource.spec.cleanup.enabled else None
            elif unused is not None:
                cleanup = resource.spec.cleanup_for(mirror)
                if cleanup.enabled:
                    left = unused + cleanup.retention_delta - now
                    if left <= timedelta(0):
                        reason = Reason.RETENTION
                    elif next_due is None or left < next_due:
                        next_due = left
            if reason is None:
                continue
            secret = credential_secret_for(resource, destination)
            if secret is None and mirror is None:
                secret = fallback_secret(resource, destination, others)
            out.append(Deletion(image, destination, state.get("digest"), secret, reason, unused))
    return out, next_due


def _expired(
    resource: MirrorResource, mirror_dest: str, image: str, unused: str | None, now: datetime
) -> bool:
    """A not-mirrored entry of an expired image: nothing to delete, it just leaves."""
    if unused is None:
        return False
    for mirror, dest in expected_mirrors(resource, image):
        if dest == mirror_dest:
            cleanup = resource.spec.cleanup_for(mirror)
            return cleanup.enabled and parse_time(unused) + cleanup.retention_delta <= now
    return False


def apply_cleanup(
    status: Mapping[str, Any],
    resource: MirrorResource,
    outcomes: Sequence[CleanupOutcome],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Fold deletion outcomes into status (pure): removed copies leave, kept ones say why,
    expired mirrors never copied leave, and an unused image left without mirrors leaves."""
    by_pair = {(o.source, o.destination): o for o in outcomes}
    entries = []
    for entry in status.get("matchingImages") or ():
        image = str(entry["image"])
        unused = entry.get("unusedSince")
        mirrors = []
        touched = False
        for state in entry.get("mirrors") or ():
            dest = str(state["image"])
            outcome = by_pair.get((image, dest))
            if outcome is not None and outcome.removed:
                touched = True
                continue
            if not state.get("mirroredAt") and _expired(resource, dest, image, unused, now):
                touched = True
                continue
            state = dict(state)
            if outcome is not None and outcome.note:
                state["lastError"] = outcome.note
            mirrors.append(state)
        if touched and unused is not None and not mirrors:
            continue
        entries.append({**entry, "mirrors": mirrors})
    return with_counts({**status, "matchingImages": entries})


def _repository(destination: str) -> str:
    return parse(destination).name


class Cleaner:
    """Carries out one `Deletion` with every safety check (see the module docstring)."""

    def __init__(
        self,
        *,
        coord: Coord,
        client: RegistryClient,
        usage: UsageRecords,
        secrets: Any,
        recent: timedelta,
        lock_ttl: float = 30.0,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.coord = coord
        self.client = client
        self.usage = usage
        self.secrets = secrets
        self.recent = recent
        self.lock_ttl = lock_ttl
        self.on_result = on_result or (lambda result: None)

    async def delete(
        self, deletion: Deletion, *, now: datetime, used_here: Callable[[str, str], bool]
    ) -> CleanupOutcome:
        """`used_here(source, destination)`: does a Pod of this cluster use either, now?"""
        outcome = await self._delete(deletion, now=now, used_here=used_here)
        result = "deleted" if outcome.removed else ("kept" if outcome.note else "deferred")
        self.on_result(result)
        (log.debug if result == "deferred" else log.info)(
            "cleanup",
            image=deletion.source,
            mirror=deletion.destination,
            reason=deletion.reason.value,
            result=result,
            note=outcome.note,
        )
        return outcome

    async def _delete(
        self, d: Deletion, *, now: datetime, used_here: Callable[[str, str], bool]
    ) -> CleanupOutcome:
        def kept(note: str | None) -> CleanupOutcome:
            return CleanupOutcome(d.source, d.destination, False, note)

        if d.credential_secret is None:
            return kept(NO_SECRET)
        lock = FencedLock(
            self.coord, f"gc:{_repository(d.destination)}", ttl=self.lock_ttl, blocking=False
        )
        if not await lock.acquire():
            return kept(None)  # another replicator is cleaning this repository: next pass
        try:
            # a removed mirror's copy is still wanted only by Pods running the copy itself
            source = d.source if d.reason is Reason.RETENTION else ""
            if d.reason is not Reason.RESOURCE_DELETED and used_here(source, d.destination):
                return kept(None)  # in use again: the next plan clears unusedSince
            since = now - self.recent
            if d.unused_since is not None and d.unused_since.year > 1 and d.unused_since < since:
                since = d.unused_since
            others = await self.usage.used_elsewhere(d.destination, since=since)
            if others:
                return kept(
                    f"not deleted: still used by cluster {', '.join(others)} "
                    "(usage records shared through Redis)"
                )
            secret = d.credential_secret
            credential_set = await read_credential_set(
                self.secrets, "mirror", (SecretRef(name=secret.name, namespace=secret.namespace),)
            )
            if not credential_set.readable:
                return kept(f"not deleted: {credential_set.error}")
            creds = credential_set.credentials(d.destination) or None
            log.info(
                "image is unused for more than the retention duration, deleting it",
                image=d.source,
                mirror=d.destination,
            )
            try:
                head = await self.client.head_manifest(
                    d.destination, credentials=creds[0] if creds else None
                )
            except NotFound:
                return CleanupOutcome(d.source, d.destination, True, None)
            if d.digest and head.digest and head.digest != d.digest:
                return kept(
                    f"not deleted: {d.destination} now points at {head.digest}, not the "
                    f"mirrored {d.digest} (re-pushed by someone else)"
                )
            await lock.check()
            result = await registry.delete(self.client, d.destination, credentials=creds)
            if not result.deleted:
                return kept(
                    "not deleted: its manifest is shared with tag(s) "
                    + ", ".join(result.shared_with)
                )
            await self.usage.forget([d.destination])
            return CleanupOutcome(d.source, d.destination, True, None)
        except LockLost:
            return kept(None)
        except RegistryError as exc:
            return kept(f"deletion failed: {exc}")
        finally:
            await lock.release_quietly()
