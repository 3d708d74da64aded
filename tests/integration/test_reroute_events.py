"""The replicator's `Rerouted` Events: one per rerouted Pod or workload, bounded, against a real
Redis (the cross-leader marker) and a local-mode cluster (where Events are recorded)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from kuik_replicator.metrics import ReplicatorMetrics
from kuik_replicator.reroute_events import (
    REROUTED,
    EventResult,
    RerouteEvents,
    TokenBucket,
    notice_of,
    rerouted_note,
)
from kuik_testing.objects import eventually, pod
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION
from kuikcore.cluster import ObjectKey
from kuikcore.cluster.local import LocalCluster
from kuikcore.config import RerouteEvents as Settings
from kuikcore.coord import Coord, connect
from kuikcore.names import REROUTE_REASONS_ANNOTATION

NOW = datetime.now(UTC)


def rerouted(
    name: str,
    *,
    owner: str | None = "web-7d9f",
    created: datetime = NOW,
    reason: str | None = "registry.a is down since 12:00:01 (probe)",
) -> dict[str, Any]:
    annotations = {}
    if reason is not None:
        annotations[REROUTE_REASONS_ANNOTATION] = json.dumps({"c0": reason})
    metadata: dict[str, Any] = {"uid": f"uid-{name}"}
    if owner:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner,
                "uid": "rs-1",
                "controller": True,
            }
        ]
    return pod(
        "registry.b/mirror/shop/web:1",
        namespace="shop",
        name=name,
        originals={"c0": "registry.a/shop/web:1"},
        annotations=annotations,
        created=created,
        metadata=metadata,
    )


def test_notice_names_original_chosen_and_why() -> None:
    notice = notice_of(rerouted("web-1"))
    assert notice is not None
    assert notice.pod == ObjectKey("Pod", "shop", "web-1")
    assert notice.workload == "ReplicaSet web-7d9f"
    note = rerouted_note(notice, timedelta(minutes=10))
    assert note.startswith(
        "rerouted c0: registry.a/shop/web:1 -> registry.b/mirror/shop/web:1 "
        "(registry.a is down since 12:00:01 (probe))"
    )
    assert "Other Pods of ReplicaSet web-7d9f rerouted the same way within 10 min" in note


def test_pods_of_one_workload_share_a_subject_unless_rerouted_differently() -> None:
    one, two = notice_of(rerouted("web-1")), notice_of(rerouted("web-2"))
    assert one is not None
    assert two is not None
    assert one.subject == two.subject
    other = rerouted("web-3")
    other["spec"]["containers"][0]["image"] = "registry.c/shop/web:1"
    third = notice_of(other)
    assert third is not None
    assert third.subject != one.subject
    alone_1, alone_2 = notice_of(rerouted("a", owner=None)), notice_of(rerouted("b", owner=None))
    assert alone_1 is not None
    assert alone_2 is not None
    assert alone_1.subject != alone_2.subject
    assert alone_1.workload == ""
    assert "Other Pods" not in rerouted_note(alone_1, timedelta(1))


def test_nothing_to_say_for_a_pod_that_was_not_rerouted() -> None:
    kept = rerouted("web-1")
    kept["spec"]["containers"][0]["image"] = "registry.a/shop/web:1"  # back on the original
    assert notice_of(kept) is None
    assert notice_of(pod("registry.a/shop/web:1", namespace="shop", name="plain")) is None
    broken = rerouted("web-1")
    broken["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION] = "{not json"
    assert notice_of(broken) is None


def test_an_older_webhook_without_reasons_still_gets_an_event() -> None:
    notice = notice_of(rerouted("web-1", reason=None))
    assert notice is not None
    assert "-> registry.b/mirror/shop/web:1." in rerouted_note(notice, timedelta(minutes=10))


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True  # one whole token after 0.5 s
    bucket.refund()
    assert bucket.take(0.5) is True
    assert bucket.take(100.0)
    assert bucket.take(100.0)
    assert bucket.take(100.0)
    assert bucket.take(100.0) is False  # never more than the burst


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    root = tmp_path / "cluster"
    root.mkdir()
    (root / "ns.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    )
    local = LocalCluster(root)
    await local.start()
    yield local
    await local.stop()


def writer(
    cluster: LocalCluster, coord: Coord, **settings: Any
) -> tuple[RerouteEvents, ReplicatorMetrics]:
    metrics = ReplicatorMetrics.create(CollectorRegistry())
    events = RerouteEvents(cluster, coord, "c1", Settings(**settings), metrics.reroute_events)
    return events, metrics


def count(metrics: ReplicatorMetrics, result: EventResult) -> float:
    return metrics.reroute_events.labels(result=result)._value.get()


async def rerouted_events(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await cluster.list_events(ObjectKey("Pod", "shop", name))
        if e["reason"] == REROUTED
    ]


async def test_one_event_per_workload_across_leaders(cluster: LocalCluster, coord: Coord) -> None:
    first, _metrics = writer(cluster, coord)
    notices = [notice_of(rerouted(f"web-{n}")) for n in range(50)]
    results = [await first.record(n, NOW) for n in notices if n is not None]
    assert results.count(EventResult.RECORDED) == 1
    assert results.count(EventResult.COALESCED) == 49
    events = await rerouted_events(cluster, "web-0")
    assert len(events) == 1
    assert events[0]["type"] == "Normal"
    assert events[0]["action"] == "Reroute"
    assert "registry.a/shop/web:1 -> registry.b/mirror/shop/web:1" in events[0]["note"]
    # a new leader (another process, same Redis) does not repeat it
    second, _ = writer(cluster, coord)
    again = notice_of(rerouted("web-0"))
    assert again is not None
    assert await second.record(again, NOW) is EventResult.COALESCED
    assert len(await rerouted_events(cluster, "web-0")) == 1


async def test_pods_on_their_own_are_rate_limited(cluster: LocalCluster, coord: Coord) -> None:
    events, metrics = writer(cluster, coord, per_second=0.001, burst=5)
    for n in range(30):
        notice = notice_of(rerouted(f"solo-{n}", owner=None))
        assert notice is not None
        events._enqueue(notice)
    task = asyncio.create_task(events.run())
    try:
        await eventually(
            lambda: (
                count(metrics, EventResult.RECORDED) + count(metrics, EventResult.RATE_LIMITED)
                == 30
            ),
            what="every notice handled",
        )
    finally:
        task.cancel()
    assert count(metrics, EventResult.RECORDED) == 5
    assert count(metrics, EventResult.RATE_LIMITED) == 25
    recorded = [n for n in range(30) if await rerouted_events(cluster, f"solo-{n}")]
    assert recorded == [0, 1, 2, 3, 4]


async def test_a_rate_limited_workload_gets_its_event_later(
    cluster: LocalCluster, coord: Coord
) -> None:
    """Held back by the bucket does not mean covered: the next Pod of it still gets one."""
    events, _ = writer(cluster, coord, per_second=1000, burst=1)
    events.bucket.take(0.0)
    events.bucket._at = float("inf")  # empty, and refilled by nothing
    first = notice_of(rerouted("web-1"))
    assert first is not None
    assert await events.record(first, NOW) is EventResult.RATE_LIMITED
    events.bucket = TokenBucket(1000, 1)
    second = notice_of(rerouted("web-2"))
    assert second is not None
    assert await events.record(second, NOW) is EventResult.RECORDED


async def test_pods_first_seen_past_the_window_get_none(
    cluster: LocalCluster, coord: Coord
) -> None:
    events, _ = writer(cluster, coord, window="10m")
    old = notice_of(rerouted("web-1", created=NOW - timedelta(hours=2)))
    assert old is not None
    assert await events.record(old, NOW) is EventResult.TOO_OLD
    assert await rerouted_events(cluster, "web-1") == []


async def test_without_redis_each_process_still_coalesces(cluster: LocalCluster) -> None:
    dead = connect("redis://127.0.0.1:1/0", prefix="kuik-test-dead:")
    try:
        events, _ = writer(cluster, dead)
        results = [await events.record(notice_of(rerouted(f"web-{n}")), NOW) for n in range(3)]  # type: ignore[arg-type]
    finally:
        await dead.aclose()
    assert results == [EventResult.RECORDED, EventResult.COALESCED, EventResult.COALESCED]


def test_the_counters_result_values_are_the_event_results() -> None:
    from kuik_replicator.metrics import REROUTE_EVENT_RESULTS

    assert set(REROUTE_EVENT_RESULTS) == {r.value for r in EventResult}
