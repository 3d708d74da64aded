"""The `Rerouted` Event on each Pod the webhook rerouted, so `kubectl describe pod` says so.

The webhook cannot write it: at admission a Pod has no UID and often no name yet. The
replicator's leader sees every Pod appear (its cluster view) and reads what the webhook
recorded on it: `kuik.enix.io/original-images` and `kuik.enix.io/reroute-reasons`.

Bounded twice, so a 1,000-replica rollout is not 1,000 Events: Pods of one workload rerouted
the same way share one Event per window (a Redis marker, so a new leader does not repeat it),
and a token bucket caps Events per second. What the bounds hold back is counted, not queued:
the annotations stay on every Pod.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter

from kuikcore.cluster import Change, ChangeType, ClusterSource, EventType, ObjectKey
from kuikcore.cluster.events import limit_note
from kuikcore.config import RerouteEvents as RerouteEventSettings
from kuikcore.coord import Coord
from kuikcore.coord.connection import OUTAGE_ERRORS
from kuikcore.pods import ReroutedContainer, rerouted_containers
from kuikcore.supervise import call_in_loop

__all__ = [
    "REROUTED",
    "EventResult",
    "RerouteEvents",
    "RerouteNotice",
    "TokenBucket",
    "notice_of",
    "rerouted_note",
]

log = structlog.get_logger("kuik.replicator.events")

REROUTED = "Rerouted"
_QUEUE_BOUND = 10_000


class EventResult(StrEnum):
    """The `result` label of `kube_image_keeper_replicator_reroute_events_total`."""

    RECORDED = "recorded"
    COALESCED = "coalesced"  # another Pod of the workload has the Event
    RATE_LIMITED = "rate_limited"
    TOO_OLD = "too_old"  # first seen past the window: a restart or a new leader
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RerouteNotice:
    """What one Pod's Event says, and who shares it."""

    pod: ObjectKey
    containers: tuple[ReroutedContainer, ...]
    subject: str
    """What the Event covers: the workload's reroute (`owner kind/name` plus the image
    changes, hashed), or the Pod's UID when it has no controller."""
    workload: str
    """`ReplicaSet web-7d9f`, or "" for a Pod on its own."""
    created: datetime | None


def notice_of(pod: Mapping[str, Any]) -> RerouteNotice | None:
    """The notice for a Pod, or None when nothing on it was rerouted. Pure."""
    containers = tuple(rerouted_containers(pod))
    if not containers:
        return None
    meta = pod.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
    owner = next(iter(meta.get("ownerReferences") or ()), None)
    workload = f"{owner['kind']} {owner['name']}" if owner else ""
    if workload:
        changes = "|".join(f"{c.key}={c.original}>{c.image}" for c in containers)
        seed = f"{namespace}/{workload}/{changes}"
    else:
        seed = f"pod/{meta.get('uid') or f'{namespace}/{name}'}"
    subject = hashlib.sha256(seed.encode()).hexdigest()[:32]
    return RerouteNotice(
        ObjectKey("Pod", namespace, name),
        containers,
        subject,
        workload,
        _timestamp(meta.get("creationTimestamp")),
    )


def rerouted_note(notice: RerouteNotice, window: timedelta) -> str:
    """`container web: registry.a/x:1 -> registry.b/m/x:1 (why)`; per workload, who else."""
    parts = []
    for c in notice.containers:
        why = f" ({c.reason})" if c.reason else ""
        parts.append(f"{c.key}: {c.original} -> {c.image}{why}")
    text = "rerouted " + "; ".join(parts)
    if notice.workload:
        minutes = int(window.total_seconds() // 60)
        text += (
            f". Other Pods of {notice.workload} rerouted the same way within {minutes} min "
            "get no Event of their own (see their kuik.enix.io/original-images annotation)"
        )
    return limit_note(text)


class TokenBucket:
    """`rate` tokens per second, `burst` at most; `take` is False when empty. Pure but for the
    clock, which tests pass in."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def refund(self) -> None:
        """Give back the token of an Event that was not recorded after all."""
        self._tokens = min(self.burst, self._tokens + 1.0)


class RerouteEvents:
    """The leader's Event writer: fed by cluster changes, drained by `run`."""

    def __init__(
        self,
        cluster: ClusterSource,
        coord: Coord,
        cluster_id: str,
        settings: RerouteEventSettings,
        counter: Counter,
    ) -> None:
        self.cluster = cluster
        self.coord = coord
        self.cluster_id = cluster_id
        self.settings = settings
        self.counter = counter
        self.bucket = TokenBucket(settings.per_second, settings.burst)
        self._queue: asyncio.Queue[RerouteNotice] = asyncio.Queue(_QUEUE_BOUND)
        self._local: dict[str, float] = {}  # subjects covered, while Redis is unreachable
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_change(self, change: Change) -> None:
        """Cluster callback (sync): a Pod that just appeared, or just got its annotation."""
        if change.key.kind != "Pod" or change.type is ChangeType.DELETED or change.new is None:
            return
        notice = notice_of(change.new)
        if notice is None or (change.old is not None and notice_of(change.old) is not None):
            return
        call_in_loop(self._loop, self._enqueue, notice)

    def _enqueue(self, notice: RerouteNotice) -> None:
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self.counter.labels(result=EventResult.RATE_LIMITED).inc()

    async def run(self, pods: Sequence[Mapping[str, Any]] = ()) -> None:
        """Record Events until cancelled; `pods` are those already there at takeover (recent
        ones may lack their Event: the old leader may have died before writing it)."""
        self._loop = asyncio.get_running_loop()
        for pod in pods:
            notice = notice_of(pod)
            if notice is not None:
                self._enqueue(notice)
        while True:
            notice = await self._queue.get()
            result = await self.record(notice, datetime.now(UTC))
            self.counter.labels(result=result).inc()

    async def record(self, notice: RerouteNotice, now: datetime) -> EventResult:
        window = self.settings.window
        if notice.created is not None and now - notice.created > window:
            return EventResult.TOO_OLD
        if not self.bucket.take(time.monotonic()):
            return EventResult.RATE_LIMITED
        if not await self._claim(notice.subject, window):
            self.bucket.refund()
            return EventResult.COALESCED
        try:
            await self.cluster.emit_event(
                notice.pod,
                EventType.NORMAL,
                REROUTED,
                rerouted_note(notice, window),
                action="Reroute",
            )
        except Exception as exc:  # emit_event is best effort already; never stop the loop
            log.warning("Rerouted event not recorded", pod=str(notice.pod), error=str(exc))
            return EventResult.FAILED
        return EventResult.RECORDED

    async def _claim(self, subject: str, window: timedelta) -> bool:
        """True for the first claim of `subject` within `window`, cluster-wide when Redis
        answers, in this process otherwise."""
        seconds = max(int(window.total_seconds()), 1)
        try:
            key = self.coord.keys.reroute_event(self.cluster_id, subject)
            return bool(await self.coord.redis.set(key, "1", nx=True, ex=seconds))
        except OUTAGE_ERRORS:
            now = time.monotonic()
            self._local = {k: t for k, t in self._local.items() if t > now}
            if subject in self._local:
                return False
            self._local[subject] = now + seconds
            return True


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
