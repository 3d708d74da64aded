"""The leader's work: keep CISA image lists current, check images within budget, write results.

Three loops under one leadership (cancelled together when it is lost):
- tracking: on Pod or CISA spec changes (debounced) and when an unused entry is due to expire,
  every CISA's image list is brought up to date (`tracker.sync_status`) and written when it
  changed; a CISA with an invalid filter gets an `InvalidFilter` Event and condition and is
  otherwise left alone; every write carries the Ready and Degraded conditions
  (`kuikcore.api.conditions.availability_conditions`);
- scheduling: per registry host, when the host is due by the statuses (`scheduler`) and the Redis
  budget allows it (`budget`), the next image is checked (`checker`); the result goes to the
  availability board at once and to the statuses by the flush loop;
- flushing: results are written per CISA in batches (one status write per CISA per flush rather
  than one per check: a CISA listing 10 000 images is a large object; flushes are spaced at least
  0.5 s and ten times the last flush's duration), with Events on Available <-> outage transitions.

Nothing here is lost on failover: the schedule is rebuilt from `lastMonitor` and the budgets live
in Redis, so a new leader neither re-checks early nor over-spends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog

from kuik_monitor.budget import Budget, rate_limit
from kuik_monitor.checker import Checker, Outcome
from kuik_monitor.events import availability_event
from kuik_monitor.scheduler import Listed, Schedule, due_at
from kuik_monitor.status import apply_outcomes, entry_statuses
from kuik_monitor.tracker import selected_images, sync_status
from kuikcore.api import AvailabilityStatus, ClusterImageSetAvailability
from kuikcore.api.conditions import (
    availability_conditions,
    invalid_filter_conditions,
    with_conditions,
    with_derived_conditions,
)
from kuikcore.cluster import POD, Change, ChangeType, ClusterSource, NotFoundError, ObjectKey
from kuikcore.cluster.events import EventSpec, invalid_filter_event
from kuikcore.config import Config
from kuikcore.coord import AvailabilityBoard
from kuikcore.coord.connection import OUTAGE_ERRORS
from kuikcore.filters import InvalidFilter, SkipRules, compile_filter
from kuikcore.supervise import Loop, Supervisor
from kuikcore.tracking import UNUSED_MARKER_TIME, expires_in

__all__ = ["CISA", "Leader"]

CISA = ClusterImageSetAvailability.KIND
log = structlog.get_logger("kuik_monitor")

_RECENT_FOR = 120.0  # seconds a check's time is remembered while its status write comes back


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Leader:
    """What the elected monitor replica runs (`run`); `on_change` is subscribed for the process
    lifetime so nothing is missed while campaigning."""

    config: Config
    cluster: ClusterSource
    checker: Checker
    budget: Budget
    board: AvailabilityBoard
    clock: Callable[[], datetime] = _utcnow
    debounce: float = 0.2
    flush_interval: float = 0.5
    flush_cost_factor: float = 10.0
    """Wait at least this many times the last flush's duration before the next one, so status
    writes of very large CISAs take a bounded share of the leader's time."""
    idle_wake: float = 30.0
    supervisor: Supervisor = field(default_factory=Supervisor)
    """Restarts a loop whose turn failed (logged, counted, backoff) instead of ending the others."""
    skip: SkipRules = field(init=False)
    schedule: Schedule = field(default_factory=Schedule, init=False)
    invalid: dict[str, str] = field(default_factory=dict, init=False)
    checks: int = field(default=0, init=False)
    _track: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _flush: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _schedule_dirty: bool = field(default=True, init=False)
    _pending: dict[str, Outcome] = field(default_factory=dict, init=False)
    _recent: dict[str, tuple[datetime, float]] = field(default_factory=dict, init=False)
    _not_before: dict[str, float] = field(default_factory=dict, init=False)
    _inflight: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)
    _reported_invalid: dict[str, str] = field(default_factory=dict, init=False)
    _next_expiry_in: float | None = field(default=None, init=False)
    _last_flush_cost: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.skip = SkipRules.parse(self.config.skip_labels, self.config.skip_annotations)

    # ------------------------------------------------------------------ change feed

    def on_change(self, change: Change) -> None:
        """Cluster change callback (sync, cheap): mark what needs recomputing."""
        if change.key.kind == POD:
            self._track.set()
            return
        if change.key.kind != CISA:
            return
        self._schedule_dirty = True
        self._wake.set()
        old, new = change.old, change.new
        if (
            change.type is not ChangeType.MODIFIED
            or old is None
            or new is None
            or old.spec != new.spec
        ):
            self._track.set()
            self._reported_invalid.pop(change.key.name, None)

    # ------------------------------------------------------------------ leadership

    async def run(self, _lock: object = None) -> None:
        """The leader's work, until cancelled (leadership lost or process stopping)."""
        self._track.set()
        self._schedule_dirty = True
        self._not_before.clear()
        try:
            async with asyncio.TaskGroup() as group:
                for loop, turn in (
                    (Loop.MONITOR_TRACKING, self._tracking_turn),
                    (Loop.MONITOR_SCHEDULING, self._scheduling_turn),
                    (Loop.MONITOR_FLUSHING, self._flushing_turn),
                ):
                    group.create_task(self.supervisor.run(loop, partial(_repeat, turn)))
        finally:
            for task in list(self._inflight.values()):
                task.cancel()
            self._inflight.clear()

    # ------------------------------------------------------------------ tracking

    async def _tracking_turn(self) -> None:
        timeout = self._next_expiry_in
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._track.wait()
        self._track.clear()
        await asyncio.sleep(self.debounce)
        await self.sync_all()

    async def sync_all(self) -> None:
        """Bring every CISA's image list up to date with the Pods (§1.11 step 2)."""
        now = self.clock()
        pods = self.cluster.store.pods()
        next_expiry: timedelta | None = None
        invalid_before = set(self.invalid)
        cisas = self.cluster.store.resources(CISA)
        for name in set(self.invalid) - {c.name for c in cisas}:
            del self.invalid[name]
        for cisa in cisas:
            try:
                selection = compile_filter(cisa)
            except InvalidFilter as exc:
                self.invalid[cisa.name] = str(exc)
                await self._report_invalid(cisa, exc, now)
                continue
            self.invalid.pop(cisa.name, None)
            current = selected_images(pods, selection, self.skip)
            expiry = cisa.spec.unused_image_expiry_delta
            status = cisa.status.to_dict()
            generation = cisa.metadata.generation

            def mutate(
                old: dict[str, Any],
                current: dict[str, bool] = current,
                matches: Callable[[str], bool] = selection.matches_image,
                expiry: timedelta = expiry,
                generation: int | None = generation,
            ) -> dict[str, Any]:
                synced = sync_status(old, current=current, matches=matches, now=now, expiry=expiry)
                return with_derived_conditions(
                    synced.status, availability_conditions, generation=generation, now=now
                )

            synced = sync_status(
                status, current=current, matches=selection.matches_image, now=now, expiry=expiry
            )
            judged = with_derived_conditions(
                synced.status, availability_conditions, generation=generation, now=now
            )
            if judged != status:
                try:
                    await self.cluster.update_status(CISA, "", cisa.name, mutate)
                except NotFoundError:
                    continue
                tracked = synced.tracked
                for image in tracked.added:
                    log.info("discovered new image to monitor", cisa=cisa.name, image=image)
                for entry in tracked.expired:
                    log.info(
                        "image is unused for more than the retention duration, removing from monitoring",
                        cisa=cisa.name,
                        image=entry["image"],
                    )
                self._schedule_dirty = True
                self._wake.set()
            for entry in synced.status.get("images") or ():
                left = expires_in(entry.get("unusedSince"), now=now, after=expiry)
                if left is not None and (next_expiry is None or left < next_expiry):
                    next_expiry = left
        if set(self.invalid) != invalid_before:  # a CISA left or joined the schedule
            self._schedule_dirty = True
            self._wake.set()
        self._next_expiry_in = (
            None if next_expiry is None else max(0.05, next_expiry.total_seconds() + 0.01)
        )

    async def _report_invalid(
        self, cisa: ClusterImageSetAvailability, exc: InvalidFilter, now: datetime
    ) -> None:
        wanted = invalid_filter_conditions(exc.field_path, exc.reason)
        generation = cisa.metadata.generation
        status = cisa.status.to_dict()
        if with_conditions(status, wanted, generation=generation, now=now) != status:
            with contextlib.suppress(NotFoundError):
                await self.cluster.update_status(
                    CISA,
                    "",
                    cisa.name,
                    lambda s: with_conditions(s, wanted, generation=generation, now=now),
                )
        if self._reported_invalid.get(cisa.name) == str(exc):
            return
        self._reported_invalid[cisa.name] = str(exc)
        log.warning("invalid filter, CISA skipped", cisa=cisa.name, error=str(exc))
        await self._emit(cisa.name, invalid_filter_event(exc))

    async def _emit(self, cisa: str, event: EventSpec) -> None:
        await self.cluster.emit_event(
            ObjectKey(CISA, "", cisa), event.type, event.reason, event.note, action=event.action
        )

    # ------------------------------------------------------------------ scheduling

    def _rebuild(self) -> None:
        horizon = time.monotonic() - _RECENT_FOR
        for image in [i for i, (_, at) in self._recent.items() if at < horizon]:
            del self._recent[image]
        cisas = [
            (
                c.name,
                [
                    Listed(e.image, e.last_monitor, e.unused_since == UNUSED_MARKER_TIME)
                    for e in c.status.images or ()
                ],
            )
            for c in self.cluster.store.resources(CISA)
            if c.name not in self.invalid
        ]
        self.schedule = Schedule.build(
            cisas, recent={image: when for image, (when, _) in self._recent.items()}
        )
        self._schedule_dirty = False

    async def _scheduling_turn(self) -> None:
        if self._schedule_dirty:
            self._rebuild()
        now = self.clock()
        mono = time.monotonic()
        wake: float | None = None

        def later(seconds: float) -> None:
            nonlocal wake
            wake = seconds if wake is None else min(wake, seconds)

        for host in list(self.schedule.hosts):
            if host in self._inflight:
                continue
            not_before = self._not_before.get(host, 0.0)
            if not_before > mono:
                later(not_before - mono)
                continue
            image = self.schedule.next_image(host)
            if image is None:
                continue
            config = self.config.monitoring.registry_config(host)
            spacing = timedelta(seconds=rate_limit(config).interval)  # the tick, plus headroom
            at = due_at(self.schedule.registry_last_monitor(host), spacing, now)
            if at > now:
                later((at - now).total_seconds())
                continue
            self._inflight[host] = asyncio.create_task(
                self._check(host, image), name=f"check {image}"
            )
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(
                min(wake, self.idle_wake) if wake is not None else self.idle_wake
            ):
                await self._wake.wait()

    async def _check(self, host: str, image: str) -> None:
        """Credentials, then the budget, then at once the request: the budget is spent as close
        to the wire as possible, so a busy event loop cannot squeeze two checks together."""
        config = self.config.monitoring.registry_config(host)
        try:
            choice = await self.checker.credentials(image, config)
            decision = await self.budget.try_spend(host, config)
            if not decision.allowed:
                self._not_before[host] = time.monotonic() + decision.wait
                return
            outcome = await self.checker.check(image, config, choice)
            self.checks += 1
            self.schedule.record(image, outcome.checked_at)
            self._recent[image] = (outcome.checked_at, time.monotonic())
            self._pending[image] = outcome
            self._flush.set()
            log.info(
                "checked image availability",
                image=image,
                registry=host,
                status=outcome.status.value,
                error=outcome.error,
                using=outcome.credentials,
            )
            if outcome.status is AvailabilityStatus.QUOTA_EXCEEDED:
                delay = await self.budget.back_off(host, config, outcome.retry_after)
                self._not_before[host] = time.monotonic() + delay
                log.warning("registry quota exceeded, backing off", registry=host, seconds=delay)
            await self._publish(host, outcome)
        except asyncio.CancelledError:
            raise
        except OUTAGE_ERRORS as exc:
            log.warning(
                "could not record check result: redis unavailable", image=image, error=str(exc)
            )
        except Exception:
            log.exception("image check failed", image=image)
            self._not_before[host] = time.monotonic() + config.tick.total_seconds()
        finally:
            self._inflight.pop(host, None)
            self._wake.set()

    async def _publish(self, host: str, outcome: Outcome) -> None:
        """The image's result, for the webhook. The host's health is the health keeper's: the
        client reported a failed connection already, and "up" is the probes' to say."""
        await self.board.publish_image(
            outcome.image,
            outcome.status,
            digest=outcome.digest,
            error=outcome.error,
            checked_at=outcome.checked_at,
        )

    # ------------------------------------------------------------------ flushing

    async def _flushing_turn(self) -> None:
        await self._flush.wait()
        await asyncio.sleep(
            max(self.flush_interval, self.flush_cost_factor * self._last_flush_cost)
        )
        self._flush.clear()
        started = time.monotonic()
        await self.flush()
        self._last_flush_cost = time.monotonic() - started

    async def flush(self) -> None:
        """Write pending results into every CISA listing their image, then emit Events."""
        pending, self._pending = self._pending, {}
        now = self.clock()
        by_cisa: dict[str, dict[str, Outcome]] = {}
        for image, outcome in pending.items():
            for name in self.schedule.owners.get(image, ()):
                by_cisa.setdefault(name, {})[image] = outcome
        for name, outcomes in sorted(by_cisa.items()):
            before: dict[str, AvailabilityStatus] = {}

            def mutate(
                old: dict[str, Any],
                outcomes: dict[str, Outcome] = outcomes,
                before: dict[str, AvailabilityStatus] = before,
            ) -> dict[str, Any]:
                before.clear()
                before.update(entry_statuses(old))
                return with_derived_conditions(
                    apply_outcomes(old, outcomes), availability_conditions, generation=None, now=now
                )

            try:
                await self.cluster.update_status(CISA, "", name, mutate)
            except NotFoundError:
                continue
            except Exception:
                # keep what was not written for the next flush (newer results win)
                for image, outcome in pending.items():
                    self._pending.setdefault(image, outcome)
                self._flush.set()
                raise
            for image, outcome in outcomes.items():
                event = availability_event(image, before.get(image), outcome.status, outcome.error)
                if event is not None:
                    await self._emit(name, event)


async def _repeat(turn: Callable[[], Awaitable[None]]) -> None:
    """A loop made of turns; a failed turn ends it, and the supervisor starts it again."""
    while True:
        await turn()
