"""The leader's loop: fold copy results, plan, enqueue, clean up, release finalizers.

One replica at a time runs it (coord `Leadership`, role `replicator:<cluster id>`), so every
(C)ISM status write comes from one process. A pass runs when the cluster changes (Pods, CRs,
Secrets), when workers report results, when a retention falls due, and every
`mirroring.resyncInterval`. Each pass is idempotent: it reads the cluster store and Redis and
converges; a pass interrupted by a lost leadership is simply redone by the next leader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from kuik_replicator.cleanup import Cleaner, CleanupOutcome, apply_cleanup, due_deletions
from kuik_replicator.planner import (
    MirrorResource,
    copy_jobs,
    expected_mirrors,
    plan_status,
    select_images,
)
from kuik_replicator.reroute_events import RerouteEvents
from kuik_replicator.secrets_gc import reconcile_secret_owner
from kuik_replicator.status import (
    CopyOutcome,
    ResultLog,
    apply_outcomes,
)
from kuikcore.api import (
    MIRROR_CLEANUP_FINALIZER,
    ClusterImageSetMirror,
    ClusterReplicatedImageSet,
    ImageSetMirror,
    ReplicatedImageSet,
)
from kuikcore.api.conditions import (
    Wanted,
    invalid_filter_conditions,
    mirror_conditions,
    replicated_conditions,
    with_conditions,
    with_derived_conditions,
)
from kuikcore.cluster import (
    Change,
    ClusterError,
    ClusterSource,
    EventType,
    NotFoundError,
    ObjectKey,
)
from kuikcore.cluster.events import invalid_filter_event
from kuikcore.coord import EXPEDITE, ROUTINE, FencedLock, JobQueue, QueueFull, UsageRecords
from kuikcore.coord.connection import OUTAGE_ERRORS
from kuikcore.filters import (
    InvalidFilter,
    ResourceFilter,
    SkipRules,
    compile_filter,
    compile_upstream,
)
from kuikcore.mirroring import CopyJob
from kuikcore.routing import is_under_mirror_prefix
from kuikcore.supervise import Loop, Supervisor, call_in_loop

__all__ = ["Leader"]

ReplicatedResource = ClusterReplicatedImageSet | ReplicatedImageSet

log = structlog.get_logger("kuik.replicator.leader")

_DEBOUNCE = 0.05
_FOLD_BATCH = 0.25
_PASS_ERRORS: tuple[type[BaseException], ...] = (*OUTAGE_ERRORS, ClusterError)


class Leader:
    """Planner, status folding and cleanup for one cluster."""

    def __init__(
        self,
        *,
        cluster: ClusterSource,
        queue: JobQueue,
        results: ResultLog,
        usage: UsageRecords,
        cleaner: Cleaner,
        skip: SkipRules,
        resync: timedelta,
        expedite_window: timedelta,
        supervisor: Supervisor | None = None,
        events: RerouteEvents | None = None,
    ) -> None:
        self.cluster = cluster
        self.events = events
        self.queue = queue
        self.results = results
        self.usage = usage
        self.cleaner = cleaner
        self.skip = skip
        self.resync = resync
        self.expedite_window = expedite_window
        self.supervisor = supervisor or Supervisor()
        self._wake = asyncio.Event()
        self._plan_needed = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self.passes = 0

    # wake-ups ------------------------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        """Cluster callback (sync): ask for a full pass, except for status-only changes of
        mirror CRs (our own writes), as upstream's GenerationChangedPredicate."""
        if _status_only(change):
            return
        self._plan_needed = True
        self.wake()

    def wake(self) -> None:
        call_in_loop(self._loop, self._wake.set)

    async def _watch_results(self) -> None:
        last = "$"
        while True:
            try:
                # block for less than the client's socket timeout, or every wait "fails"
                within = self.results.coord.settings.socket_timeout / 2
                newest = await self.results.wait(last, within=within)
            except OUTAGE_ERRORS:
                await asyncio.sleep(1.0)
                continue
            if newest is not None:
                last = newest
                self.wake()  # fold only: results never need a re-plan

    # the loop ------------------------------------------------------------------------------
    async def run(self, lock: FencedLock | None = None) -> None:
        """Leadership work: runs until cancelled (leadership lost or shutdown)."""
        self._loop = asyncio.get_running_loop()
        self._plan_needed = True
        unsubscribe = self.cluster.subscribe(self.on_change)
        watcher = asyncio.create_task(
            self.supervisor.run(Loop.REPLICATOR_RESULTS, self._watch_results)
        )
        background = [watcher]
        events = self.events
        if events is not None:
            unsubscribe_events = self.cluster.subscribe(events.on_change)
            pods = self.cluster.store.pods()
            background.append(
                asyncio.create_task(
                    self.supervisor.run(Loop.REPLICATOR_REROUTE_EVENTS, lambda: events.run(pods))
                )
            )
        plan_at = time.monotonic()
        try:
            pause = 0.1
            while True:
                self._wake.clear()
                planning = self._plan_needed or time.monotonic() >= plan_at
                try:
                    started = time.monotonic()
                    if planning:
                        self._plan_needed = False
                        next_due = await self.run_pass(datetime.now(UTC))
                        wait = self.resync.total_seconds()
                        if next_due is not None:
                            wait = min(wait, max(next_due.total_seconds(), 0.05))
                        plan_at = time.monotonic() + wait
                    else:
                        await self.fold_results()
                    log.debug(
                        "leader pass",
                        planning=planning,
                        seconds=round(time.monotonic() - started, 4),
                    )
                    pause = 0.1
                except _PASS_ERRORS as exc:
                    self._plan_needed = True
                    log.warning("leader pass failed, retrying", error=str(exc), retry_in=pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                folded_at = time.monotonic()
                try:
                    async with asyncio.timeout(max(plan_at - folded_at, 0.0)):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                # changes come in bursts (a file of Pods, a rollout): take them in one pass;
                # results are folded at most once per _FOLD_BATCH (one status write per CR for
                # many copies), but a result after a quiet spell is folded at once, not a
                # whole batch window later (the last copy of a burst shows up sooner)
                if self._plan_needed:
                    await asyncio.sleep(_DEBOUNCE)
                else:
                    await asyncio.sleep(max(_FOLD_BATCH - (time.monotonic() - folded_at), 0.0))
        finally:
            unsubscribe()
            if events is not None:
                unsubscribe_events()
            for task in background:
                task.cancel()

    async def run_pass(self, now: datetime) -> timedelta | None:
        """One full pass; returns the time until the next retention falls due."""
        self.passes += 1
        await self.fold_results()
        store = self.cluster.store
        for kind in (ClusterImageSetMirror.KIND, ClusterReplicatedImageSet.KIND):
            for owner in store.resources(kind):
                await reconcile_secret_owner(self.cluster, owner)
        for kind in (ClusterReplicatedImageSet.KIND, ReplicatedImageSet.KIND):
            for replicated in store.resources(kind):
                try:
                    await self._replicated_status(replicated, now)
                except ClusterError as exc:
                    log.warning("status write failed", resource=replicated.key, error=str(exc))
        mirrors: list[MirrorResource] = [
            *store.resources(ClusterImageSetMirror.KIND),
            *store.resources(ImageSetMirror.KIND),
        ]
        jobs: dict[str, tuple[CopyJob, str]] = {}
        used_destinations: set[str] = set()
        next_due: timedelta | None = None
        for resource in mirrors:
            try:
                due = await self._reconcile(resource, mirrors, now, jobs, used_destinations)
            except ClusterError as exc:  # one CR's trouble never stops the others
                log.warning("reconcile failed", resource=resource.key, error=str(exc))
                continue
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        await self._enqueue(jobs)
        await self.usage.record(used_destinations)
        return next_due

    # results -------------------------------------------------------------------------------
    async def fold_results(self) -> int:
        """Apply every pending copy result to the CRs naming its pair; returns how many."""
        batch = await self.results.read()
        if not batch:
            return 0
        outcomes = [o for _, o in batch]
        store = self.cluster.store
        for kind in (ClusterImageSetMirror.KIND, ImageSetMirror.KIND):
            for resource in store.resources(kind):
                mine = [o for o in outcomes if (o.source, o.destination) in _pairs(resource)]
                if not mine:
                    continue
                await self._update(resource, lambda s, mine=mine: apply_outcomes(s, mine))
                await self._failure_events(resource, mine)
        await self.results.done([i for i, _ in batch])
        return len(batch)

    async def _failure_events(
        self, resource: MirrorResource, outcomes: Sequence[CopyOutcome]
    ) -> None:
        for outcome in outcomes:
            if outcome.error is not None:
                await self.cluster.emit_event(
                    _key(resource),
                    EventType.WARNING,
                    "MirrorFailed",
                    f"could not mirror {outcome.source} to {outcome.destination}: {outcome.error}",
                    action="Mirror",
                )

    # one CR --------------------------------------------------------------------------------
    async def _update(
        self,
        resource: MirrorResource,
        mutate: Any,
        *,
        generation: int | None = None,
        now: datetime | None = None,
    ) -> MirrorResource | None:
        """Write `mutate`'s status with its conditions; `generation` when the write planned
        from the spec, None when it only folds results or cleanups."""
        at = now or datetime.now(UTC)
        try:
            updated: MirrorResource = await self.cluster.update_status(
                resource.KIND,
                resource.metadata.namespace or "",
                resource.name,
                lambda s: with_derived_conditions(
                    mutate(s), mirror_conditions, generation=generation, now=at
                ),
            )
        except NotFoundError:
            return None  # deleted meanwhile: nothing to write
        return updated

    async def _set_conditions(
        self, resource: MirrorResource | ReplicatedResource, wanted: list[Wanted], now: datetime
    ) -> None:
        """Write conditions alone, for the generation of the spec they judge; nothing when
        the status already says so."""
        generation = resource.metadata.generation
        current = resource.status.to_dict()
        if with_conditions(current, wanted, generation=generation, now=now) == current:
            return
        try:
            await self.cluster.update_status(
                resource.KIND,
                resource.metadata.namespace or "",
                resource.name,
                lambda s: with_conditions(s, wanted, generation=generation, now=now),
            )
        except NotFoundError:
            return

    async def _replicated_status(self, resource: ReplicatedResource, now: datetime) -> None:
        """Ready while every filter of a (Cluster)ReplicatedImageSet compiles (the webhook
        skips what an invalid one covers); the replicator writes it, being the leader."""
        if resource.metadata.deletion_timestamp is not None:
            return
        problems: list[tuple[str, str]] = []
        try:
            compile_filter(resource)
        except InvalidFilter as exc:
            problems.append((exc.field_path, exc.reason))
        for index, upstream in enumerate(resource.spec.upstreams):
            try:
                compile_upstream(resource, index, upstream)
            except InvalidFilter as exc:
                problems.append((exc.field_path, exc.reason))
        wanted = replicated_conditions(len(resource.spec.upstreams), problems)
        await self._set_conditions(resource, wanted, now)

    async def _reconcile(
        self,
        resource: MirrorResource,
        mirrors: Sequence[MirrorResource],
        now: datetime,
        jobs: dict[str, tuple[CopyJob, str]],
        used_destinations: set[str],
    ) -> timedelta | None:
        if resource.metadata.deletion_timestamp is not None:
            await self._delete_resource(resource, mirrors, now)
            return None
        try:
            filt = compile_filter(resource)
        except InvalidFilter as exc:
            event = invalid_filter_event(exc)
            await self.cluster.emit_event(
                _key(resource), event.type, event.reason, event.note, action=event.action
            )
            await self._set_conditions(
                resource, invalid_filter_conditions(exc.field_path, exc.reason), now
            )
            return None
        if MIRROR_CLEANUP_FINALIZER not in (resource.metadata.finalizers or []):
            await self.cluster.add_finalizer(
                resource.KIND,
                resource.metadata.namespace or "",
                resource.name,
                MIRROR_CLEANUP_FINALIZER,
            )
        selection = select_images(
            resource,
            filt,
            self.cluster.store.pods(),
            mirrors,
            skip=self.skip,
            now=now,
            expedite_window=self.expedite_window,
        )
        current = resource.status.to_dict()
        generation = resource.metadata.generation
        wanted = with_derived_conditions(
            plan_status(current, resource, filt, selection, now=now),
            mirror_conditions,
            generation=generation,
            now=now,
        )
        if wanted != current:
            updated = await self._update(
                resource,
                lambda s: plan_status(s, resource, filt, selection, now=now),
                generation=generation,
                now=now,
            )
            if updated is None:
                return None
            resource = updated
            current = resource.status.to_dict()
        for job in copy_jobs(current, resource):
            lane = EXPEDITE if job.source in selection.recent else ROUTINE
            known = jobs.get(job.job_key())
            if known is None or (lane == EXPEDITE and known[1] == ROUTINE):
                jobs[job.job_key()] = (job, lane)
        for entry in current.get("matchingImages") or ():
            if entry.get("unusedSince") is None:
                used_destinations.update(d for _, d in expected_mirrors(resource, entry["image"]))
        return await self._cleanup(resource, filt, mirrors, current, now)

    async def _cleanup(
        self,
        resource: MirrorResource,
        filt: ResourceFilter,
        mirrors: Sequence[MirrorResource],
        status: Mapping[str, Any],
        now: datetime,
    ) -> timedelta | None:
        deletions, next_due = due_deletions(status, resource, now=now, others=mirrors)
        if deletions:
            log.debug("cleanup due", resource=resource.key, count=len(deletions))

        def used_here(source: str, destination: str) -> bool:
            selection = select_images(
                resource,
                filt,
                self.cluster.store.pods(),
                mirrors,
                skip=self.skip,
                now=datetime.now(UTC),
            )
            matches = filt.matches_image(source) and not is_under_mirror_prefix(
                source, selection.prefixes
            )
            return (matches and source in selection.in_use) or destination in selection.in_use

        outcomes = [await self.cleaner.delete(d, now=now, used_here=used_here) for d in deletions]
        after = apply_cleanup(status, resource, outcomes, now=now)
        if after != status:
            await self._update(resource, lambda s: apply_cleanup(s, resource, outcomes, now=now))
        for outcome in outcomes:
            await self._deleted_event(resource, outcome)
        return next_due

    async def _deleted_event(self, resource: MirrorResource, outcome: CleanupOutcome) -> None:
        if outcome.removed:
            await self.cluster.emit_event(
                _key(resource),
                EventType.NORMAL,
                "MirrorDeleted",
                f"deleted {outcome.destination} (mirror of {outcome.source})",
                action="Cleanup",
            )

    async def _delete_resource(
        self, resource: MirrorResource, mirrors: Sequence[MirrorResource], now: datetime
    ) -> None:
        """CR deleted: delete its copies (finalizer `kuik.enix.io/mirror-cleanup`), then let it go."""
        if MIRROR_CLEANUP_FINALIZER not in (resource.metadata.finalizers or []):
            return
        status = resource.status.to_dict()
        others = [m for m in mirrors if m is not resource]
        deletions, _ = due_deletions(status, resource, now=now, deleting=True, others=others)
        shared = _mirrored_elsewhere(others)
        pending = False
        outcomes: list[CleanupOutcome] = []
        for deletion in deletions:
            if deletion.destination in shared:
                continue  # another CR of this cluster still keeps that copy
            outcome = await self.cleaner.delete(deletion, now=now, used_here=lambda s, d: False)
            outcomes.append(outcome)
            if not outcome.removed and (
                outcome.note is None or outcome.note.startswith("deletion failed")
            ):
                pending = True
            await self._deleted_event(resource, outcome)
        if pending:
            await self._update(resource, lambda s: apply_cleanup(s, resource, outcomes, now=now))
            return
        await self.cluster.remove_finalizer(
            resource.KIND,
            resource.metadata.namespace or "",
            resource.name,
            MIRROR_CLEANUP_FINALIZER,
        )

    async def _enqueue(self, jobs: Mapping[str, tuple[CopyJob, str]]) -> None:
        """Queue the pass's jobs, except pairs whose result arrived during the pass (their job is
        no longer pending and their status not folded yet: queuing them would copy twice)."""
        if not jobs:
            return
        finished = {(o.source, o.destination) for _, o in await self.results.read()}
        for lane in (EXPEDITE, ROUTINE):
            batch = [
                job
                for job, chosen in jobs.values()
                if chosen == lane and (job.source, job.destination) not in finished
            ]
            if not batch:
                continue
            try:
                await self.queue.enqueue_many(batch, lane=lane)
            except QueueFull as exc:
                log.warning("copy queue full, the next pass retries", error=str(exc))


def _pairs(resource: MirrorResource) -> set[tuple[str, str]]:
    return {
        (str(entry.image), str(state.image))
        for entry in resource.status.matching_images or ()
        for state in entry.mirrors or ()
    }


def _mirrored_elsewhere(resources: Sequence[MirrorResource]) -> set[str]:
    return {
        str(state.image)
        for resource in resources
        if resource.metadata.deletion_timestamp is None
        for entry in resource.status.matching_images or ()
        for state in entry.mirrors or ()
        if state.mirrored_at is not None
    }


def _key(resource: MirrorResource) -> ObjectKey:
    return ObjectKey(resource.KIND, resource.metadata.namespace or "", resource.name)


def _status_only(change: Change) -> bool:
    old, new = change.old, change.new
    if not isinstance(
        old, ClusterImageSetMirror | ImageSetMirror | ClusterReplicatedImageSet | ReplicatedImageSet
    ) or type(new) is not type(old):
        return False
    return bool(
        old.spec == new.spec
        and old.metadata.finalizers == new.metadata.finalizers
        and old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
    )
