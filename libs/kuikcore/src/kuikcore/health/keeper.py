"""The health engine every service runs: shared probe targets, one prober cluster-wide, a fresh
local view, passive detection.

- **Targets.** Each service says which registry hosts it may route to or copy from (`want`); the
  keeper records them in Redis (`health:targets`, bounded, forgotten after `forgetAfter`).
- **Probing.** The holder of the `prober:registry-health` lease (one process cluster-wide, any
  service) sends `GET /v2/` to every target each `probeInterval` and folds the results into the
  board (`AvailabilityBoard.report_registry`, the hysteresis of `kuikcore.health.state`). So the
  probe rate does not grow with replicas.
- **View.** Every process reads the hosts it wants from the board every quarter interval into
  `view`, which admissions consult without any I/O.
- **Passive.** A connection-level failure seen by the registry client (`Transport.on_unreachable`)
  marks the host down in the view at once and on the board right after.
- **Redis unreachable.** The process probes its own targets itself and folds locally, until a
  board read succeeds again.

Transitions are logged once, counted, and handed to `on_transition` (the service emits an
Event) by the process whose observation caused them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from kuikcore.cluster.interface import ClusterSource
from kuikcore.coord.board import AvailabilityBoard, decode_registry
from kuikcore.coord.connection import OUTAGE_ERRORS, Coord, default_identity
from kuikcore.coord.locks import FencedLock
from kuikcore.health.events import emit_transition, hosts_in_use, routing_resources
from kuikcore.health.metrics import HealthMetrics
from kuikcore.health.state import HostHealth, Knowledge, Observation, Transition, fold, knowledge
from kuikcore.registry.probe import ProbeResult, probe
from kuikcore.registry.transport import Transport

__all__ = ["PROBER_LEASE", "HealthKeeper", "HealthSettings", "HealthView"]

log = structlog.get_logger("kuik.health")

PROBER_LEASE = "prober:registry-health"
_OUTAGE_OR_SLOW: tuple[type[Exception], ...] = (*OUTAGE_ERRORS, TimeoutError)
_REDIS_RETRY = 1.0  # seconds between attempts to get back to the board after an outage
_TARGETS_PUSH = 30.0  # seconds between refreshes of a wanted host's score in Redis
_PROBE_CONCURRENCY = 64
_FOLLOW_EVERY = 0.5  # seconds between looks at whether the cluster's Pods or CRs changed
_FOLLOW_ANYWAY = 30.0  # seconds after which the hosts are read again even without a change

TransitionHandler = Callable[[Transition], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """The `registryHealth` config section, in seconds."""

    interval: float = 0.5
    timeout: float = 0.5
    up_after: int = 2
    max_hosts: int = 512
    forget_after: float = 3600.0

    @classmethod
    def from_config(cls, config: Any) -> HealthSettings:
        section = config.registry_health
        return cls(
            interval=section.probe_interval.total_seconds(),
            timeout=section.probe_timeout.total_seconds(),
            up_after=section.up_after,
            max_hosts=section.max_hosts,
            forget_after=section.forget_after.total_seconds(),
        )

    @property
    def fresh_for(self) -> float:
        """How long one confirmation is worth acting on: a few missed probes, not more."""
        return 4 * self.interval + self.timeout

    @property
    def lease_ttl(self) -> float:
        """The prober's lease: a dead prober is replaced within it (renewed every probe)."""
        return max(3.0, 4 * self.interval)


class HealthView:
    """This process's knowledge of each host, read synchronously at admission.

    `version` changes with every transition, so anything derived from the view (a remembered
    admission) can tell it is out of date."""

    def __init__(self, fresh_for: float, clock: Callable[[], float] = time.time) -> None:
        self.fresh_for = fresh_for
        self._clock = clock
        self._hosts: dict[str, HostHealth] = {}
        self.version = 0

    def get(self, host: str) -> HostHealth | None:
        return self._hosts.get(host)

    def knowledge(self, host: str) -> Knowledge:
        return knowledge(self._hosts.get(host), self._clock(), self.fresh_for)

    def hosts(self) -> list[str]:
        return list(self._hosts)

    def set(self, host: str, health: HostHealth) -> bool:
        """Take a state read from the board; True when it changed up/down or its `since`."""
        old = self._hosts.get(host)
        if old is not None and old.confirmed_at > health.confirmed_at:
            return False  # we already know better (a passive failure not yet on the board)
        self._hosts[host] = health
        changed = old is None or old.up != health.up or old.since != health.since
        if changed:
            self.version += 1
        return changed

    def observe(self, host: str, seen: Observation, *, up_after: int) -> bool:
        """Fold one observation locally; True on a transition."""
        old = self._hosts.get(host)
        new, transition = fold(old, seen, up_after=up_after)
        self._hosts[host] = new
        if old is None or old.since != new.since:
            self.version += 1
        return transition

    def forget(self, host: str) -> None:
        if self._hosts.pop(host, None) is not None:
            self.version += 1


class HealthKeeper:
    """Runs the probing, the view refresh and passive reports for one process (see module doc)."""

    def __init__(
        self,
        transport: Transport,
        *,
        coord: Coord | None,
        settings: HealthSettings,
        identity: str,
        service: str,
        registry: CollectorRegistry = REGISTRY,
        on_transition: TransitionHandler | None = None,
        cluster: ClusterSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.cluster = cluster
        self.coord = coord
        self.settings = settings
        self.identity = identity
        self.service = service
        self.on_transition = on_transition
        self.metrics = HealthMetrics.of(registry)
        self.view = HealthView(settings.fresh_for, clock)
        self.board = (
            AvailabilityBoard(coord, up_after=settings.up_after) if coord is not None else None
        )
        self.is_prober = False
        self._clock = clock
        self._wanted: dict[str, float] = {}  # host -> last wanted (unix s), insertion = age order
        self._pushed: dict[str, float] = {}  # host -> last score written to Redis
        self._redis_down_until = 0.0
        self._redis_lost_at: float | None = None
        self._lease: FencedLock | None = None
        self._passive_inflight: set[str] = set()
        self._cluster_changed = True
        self._followed_at = float("-inf")
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def for_service(
        cls,
        config: Any,
        transport: Transport,
        *,
        coord: Coord | None,
        cluster: ClusterSource | None,
        service: str,
        registry: CollectorRegistry,
    ) -> HealthKeeper:
        """The keeper a service runs: config `registryHealth`, Events on `cluster`, listening to
        `transport`'s failed connections."""
        on_transition = functools.partial(emit_transition, cluster) if cluster is not None else None
        keeper = cls(
            transport,
            coord=coord,
            settings=HealthSettings.from_config(config),
            identity=default_identity(),
            service=service,
            registry=registry,
            on_transition=on_transition,
            cluster=cluster,
        )
        return keeper.attach()

    # --- what services call ----------------------------------------------------------------

    def attach(self) -> HealthKeeper:
        """Listen to the registry client's connection failures (passive detection)."""
        self.transport.on_unreachable = self.report_unreachable
        return self

    def want(self, hosts: Iterable[str]) -> None:
        """These hosts may be routed to or copied from: probe them. Cheap, no I/O."""
        now = self._clock()
        for host in hosts:
            if not host:
                continue
            last = self._wanted.get(host)
            if last is None:
                self._wanted[host] = now
                if len(self._wanted) > self.settings.max_hosts:
                    oldest = next(iter(self._wanted))
                    self._drop(oldest)
            elif now - last > 1.0:
                del self._wanted[host]  # move to the young end
                self._wanted[host] = now

    @property
    def wanted(self) -> list[str]:
        return list(self._wanted)

    def report_unreachable(self, host: str, error: str) -> None:
        """A connection to `host` failed somewhere in this process: down here at once, then on
        the board (one write in flight per host)."""
        if not host:
            return
        self.want([host])
        seen = Observation(False, self._clock(), f"{self.service} {self.identity} (passive)", error)
        local = self.view.observe(host, seen, up_after=self.settings.up_after)
        self._gauge(host)
        if self.board is None or self._redis_down():
            if local:
                self._transition(host, seen, passive=True)
            return
        if host in self._passive_inflight:
            return
        self._passive_inflight.add(host)
        self._spawn(self._report_passive(host, seen))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._lease is not None:
            await self._lease.release_quietly()

    async def run(self) -> None:
        """Probe and refresh until cancelled; a failing round is logged and the next one runs."""
        loops = [
            self._loop(self._probe_round, self.settings.interval),
            self._loop(self._refresh, self.settings.interval / 4),
        ]
        unsubscribe = None
        if self.cluster is not None:
            unsubscribe = self.cluster.subscribe(self._on_cluster_change)
            loops.append(self._loop(self._follow_cluster, _FOLLOW_EVERY))
        try:
            await asyncio.gather(*loops)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            await self.close()

    # --- loops ----------------------------------------------------------------------------------

    async def _loop(self, body: Callable[[], Awaitable[None]], every: float) -> None:
        while True:
            started = time.monotonic()
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("registry health round failed", round=body.__name__)
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    def _redis_down(self) -> bool:
        return time.monotonic() < self._redis_down_until

    def _lost_redis(self, exc: BaseException) -> None:
        if self._redis_lost_at is None:
            self._redis_lost_at = time.monotonic()
            log.warning(
                "registry health: redis unreachable, probing this process's hosts itself",
                error=str(exc),
            )
        self._redis_down_until = time.monotonic() + _REDIS_RETRY
        self.is_prober = False

    async def _probe_round(self) -> None:
        self._forget_old()
        if self.board is None or self._redis_down():
            await self._probe_locally(self.wanted)
            return
        try:
            await self._push_targets()
            if not await self._hold_lease():
                return
            targets = await self._shared_targets()
        except OUTAGE_ERRORS as exc:
            self._lost_redis(exc)
            await self._probe_locally(self.wanted)
            return
        results = await self._probe_all(targets)
        try:
            reports = await asyncio.gather(
                *(
                    self.board.report_registry(
                        r.host,
                        reachable=r.ok,
                        by=self._by(),
                        error=r.error,
                        silent=r.timed_out,
                        at=now,
                    )
                    for r, now in results
                )
            )
        except OUTAGE_ERRORS as exc:
            self._lost_redis(exc)
            return
        for (result, now), report in zip(results, reports, strict=True):
            seen = Observation(result.ok, now, self._by(), result.error, result.timed_out)
            self.view.observe(result.host, seen, up_after=self.settings.up_after)
            self._gauge(result.host)
            if report.transition:
                self._transition(result.host, seen, passive=False)

    async def _probe_locally(self, hosts: list[str]) -> None:
        for result, now in await self._probe_all(hosts):
            seen = Observation(
                result.ok, now, self._by() + " (no redis)", result.error, result.timed_out
            )
            if self.view.observe(result.host, seen, up_after=self.settings.up_after):
                self._transition(result.host, seen, passive=False)
            self._gauge(result.host)

    async def _probe_all(self, hosts: list[str]) -> list[tuple[ProbeResult, float]]:
        if not hosts:
            return []
        limit = asyncio.Semaphore(_PROBE_CONCURRENCY)

        async def one(host: str) -> tuple[ProbeResult, float]:
            async with limit:
                result = await probe(self.transport, host, self.settings.timeout)
            self.metrics.probe_duration.observe(result.seconds)
            self.metrics.probes.labels(result="up" if result.ok else "down").inc()
            return result, self._clock()

        return list(await asyncio.gather(*(one(h) for h in hosts)))

    async def _follow_cluster(self) -> None:
        """Want the hosts of every image Pods use and every host routing CRs name, soon after
        they change (a new Pod's registry is probed before its first reroute is needed)."""
        assert self.cluster is not None
        stale = time.monotonic() - self._followed_at > _FOLLOW_ANYWAY
        if not self.cluster.synced or not (self._cluster_changed or stale):
            return
        self._cluster_changed = False
        self._followed_at = time.monotonic()
        store = self.cluster.store
        self.want(sorted(hosts_in_use(store.images(), routing_resources(self.cluster))))

    def _on_cluster_change(self, _change: Any) -> None:
        self._cluster_changed = True

    async def _refresh(self) -> None:
        """Read every wanted host's state from the board into the view."""
        if self.coord is None or self._redis_down() or not self._wanted:
            return
        hosts = self.wanted
        try:
            async with asyncio.timeout(max(self.settings.interval, 0.2)):
                values = await self.coord.redis.mget(
                    [self.coord.keys.board_registry(h) for h in hosts]
                )
        except _OUTAGE_OR_SLOW as exc:
            self._lost_redis(exc)
            return
        if self._redis_lost_at is not None:
            log.info("registry health: redis reachable again, back to the shared board",
                     after=round(time.monotonic() - self._redis_lost_at, 1))  # fmt: skip
            self._redis_lost_at = None
        for host, value in zip(hosts, values, strict=True):
            health = decode_registry(value if isinstance(value, str | None) else value.decode())
            if health is not None:
                self.view.set(host, health)
                self._gauge(host)

    # --- Redis: targets and the lease --------------------------------------------------------

    async def _push_targets(self) -> None:
        assert self.coord is not None
        due = {
            h: t
            for h, t in self._wanted.items()
            if t - self._pushed.get(h, float("-inf")) > _TARGETS_PUSH
        }
        if not due:
            return
        key = self.coord.keys.health_targets()
        async with self.coord.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, due)
            pipe.zremrangebyscore(key, "-inf", self._clock() - self.settings.forget_after)
            pipe.zremrangebyrank(key, 0, -self.settings.max_hosts - 1)
            await pipe.execute()
        self._pushed.update(due)

    async def _shared_targets(self) -> list[str]:
        assert self.coord is not None
        since = self._clock() - self.settings.forget_after
        found = await self.coord.redis.zrangebyscore(
            self.coord.keys.health_targets(), since, "+inf"
        )
        return list(dict.fromkeys([*(str(h) for h in found), *self._wanted]))

    async def _hold_lease(self) -> bool:
        assert self.coord is not None
        if self._lease is not None and await self._lease.renew():
            return True
        lease = FencedLock(self.coord, PROBER_LEASE, ttl=self.settings.lease_ttl, blocking=False)
        held = await lease.acquire(token=self.identity)
        if held and not self.is_prober:
            log.info("registry health prober elected", identity=self.identity)
        elif not held and self.is_prober:
            log.info("registry health prober lease lost", identity=self.identity)
        self._lease = lease if held else None
        self.is_prober = held
        return bool(held)

    # --- bookkeeping ------------------------------------------------------------------------

    async def _report_passive(self, host: str, seen: Observation) -> None:
        assert self.board is not None
        try:
            async with asyncio.timeout(1.0):
                report = await self.board.report_registry(
                    host, reachable=False, by=seen.by, error=seen.error, at=seen.at
                )
        except _OUTAGE_OR_SLOW as exc:
            self._lost_redis(exc)
            return
        finally:
            self._passive_inflight.discard(host)
        if report.transition:
            self._transition(host, seen, passive=True)

    def _transition(self, host: str, seen: Observation, *, passive: bool) -> None:
        to = "up" if seen.ok else "down"
        self.metrics.transitions.labels(to=to, by="passive" if passive else "probe").inc()
        if seen.ok:
            log.info("registry back up", registry=host, by=seen.by)
        else:
            log.warning("registry marked down", registry=host, by=seen.by, error=seen.error)
        if self.on_transition is not None:
            transition = Transition(host, seen.ok, seen.at, seen.by, seen.error)
            self._spawn(self._notify(transition))

    async def _notify(self, transition: Transition) -> None:
        assert self.on_transition is not None
        try:
            await self.on_transition(transition)
        except Exception:
            log.exception("registry health transition handler failed", registry=transition.host)

    def _gauge(self, host: str) -> None:
        state = self.view.knowledge(host)
        if state is not Knowledge.UNKNOWN and host in self._wanted:
            self.metrics.up.labels(registry=host).set(1 if state is Knowledge.UP else 0)

    def _forget_old(self) -> None:
        horizon = self._clock() - self.settings.forget_after
        for host in [h for h, t in self._wanted.items() if t < horizon]:
            self._drop(host)

    def _drop(self, host: str) -> None:
        self._wanted.pop(host, None)
        self._pushed.pop(host, None)
        self.view.forget(host)
        with contextlib.suppress(KeyError):
            self.metrics.up.remove(host)

    def _by(self) -> str:
        return f"{self.service} {self.identity}"

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
