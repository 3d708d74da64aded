"""Several local-mode processes on one directory, each watching its own kinds: a process that
does not watch a kind leaves that kind's status alone (the webhook watches no CISA; the
monitor's CISA status must survive it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from kuik_testing.objects import cisa, cism, mirror
from kuikcore.cluster.local import LocalCluster

CISA = "ClusterImageSetAvailability"
CISM = "ClusterImageSetMirror"


async def test_a_process_not_watching_a_kind_keeps_its_status(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    root.mkdir()
    (root / "crs.yaml").write_text(yaml.safe_dump_all([cisa("everything"), cism("m", mirror())]))
    monitor = LocalCluster(root)
    webhook = LocalCluster(root, kinds=[CISM, "Secret"])
    await monitor.start()
    try:
        await monitor.update_status(CISA, "", "everything", lambda s: {**s, "images": []})
        status_file = root / ".kuik" / "resources" / CISA / "_cluster" / "everything.yaml"
        assert status_file.exists()
        await webhook.start()
        # a change in the directory makes the webhook's process re-read it
        (root / "other.yaml").write_text(yaml.safe_dump(cism("n", mirror())))
        for _ in range(50):
            if webhook.store.resource(CISM, "", "n") is not None:
                break
            await asyncio.sleep(0.05)
        assert webhook.store.resource(CISM, "", "n") is not None
        assert status_file.exists()
        assert "images" in (yaml.safe_load(status_file.read_text()).get("status") or {})
    finally:
        await webhook.stop()
        await monitor.stop()
