"""The leader's planning pass in-process, on a local cluster and a real Redis: lanes and de-duplication."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from kuik_replicator.cleanup import Cleaner
from kuik_replicator.leader import Leader
from kuik_replicator.status import CopyOutcome, ResultLog
from kuik_testing.objects import all_images, cism, container, mirror, pod
from kuikcore.cluster.open import open_cluster
from kuikcore.coord import EXPEDITE, ROUTINE, Coord, UsageRecords, Worker
from kuikcore.filters import SkipRules
from kuikcore.mirroring import CopyJob, copy_queue
from kuikcore.registry import RegistryClient


async def test_new_pods_go_first_and_pairs_are_queued_once(tmp_path: Path, coord: Coord) -> None:
    docs = [
        cism("all", mirror("m.example", "m"), filter=all_images()),
        pod(
            container("c", "registry.example/app/old:1"),
            namespace="apps",
            name="old",
            created="2020-01-01T00:00:00Z",
        ),
        # creationTimestamp = the file's mtime: now
        pod(container("c", "registry.example/app/new:1"), namespace="apps", name="new"),
    ]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    cluster = await open_cluster(f"dir:{tmp_path}", field_manager="kuik-replicator")
    await cluster.start()
    await cluster.wait_synced()
    client = RegistryClient()
    try:
        queue = copy_queue(coord, "lanes")
        results = ResultLog(coord, "lanes")
        usage = UsageRecords(coord, "lanes")
        leader = Leader(
            cluster=cluster,
            queue=queue,
            results=results,
            usage=usage,
            cleaner=Cleaner(
                coord=coord,
                client=client,
                usage=usage,
                secrets=cluster,
                recent=timedelta(minutes=3),
            ),
            skip=SkipRules.parse([], []),
            resync=timedelta(minutes=1),
            expedite_window=timedelta(minutes=5),
        )
        now = datetime.now(UTC)
        await leader.run_pass(now)
        await leader.run_pass(now)  # a second pass queues nothing more
        stats = await queue.stats()
        assert (stats.lanes[EXPEDITE].ready, stats.lanes[ROUTINE].ready) == (1, 1)
        async with Worker(queue, "w") as worker:
            first = (await worker.fetch(1))[0]
            assert isinstance(first.job, CopyJob)
            assert first.job.source == "registry.example/app/new:1"
            assert first.job.destination == "m.example/m/app/new:1"
            # its result is folded by the next pass, and the done pair is not queued again
            await results.append(
                CopyOutcome(
                    first.job.source,
                    first.job.destination,
                    "2026-11-28T12:00:00Z",
                    "sha256:" + "d" * 64,
                )
            )
            await first.ack()
            await leader.run_pass(now)
        stats = await queue.stats()
        assert (stats.lanes[EXPEDITE].ready, stats.lanes[ROUTINE].ready) == (0, 1)
        status = cluster.store.resource("ClusterImageSetMirror", "", "all").status.to_dict()
        by_image = {e["image"]: e["mirrors"][0] for e in status["matchingImages"]}
        assert by_image["registry.example/app/new:1"]["digest"] == "sha256:" + "d" * 64
        assert "mirroredAt" not in by_image["registry.example/app/old:1"]
        assert set((await usage.last_seen(["m.example/m/app/new:1"]))["m.example/m/app/new:1"]) == {
            "lanes"
        }
    finally:
        await client.close()
        await cluster.stop()
