"""Local mode (`--cluster dir:PATH`) on a real directory: layout, problems, writes, processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuik_testing.objects import cisa, cism, eventually, mirror, pod, secret
from kuikcore.api import OWNER_UID_LABEL
from kuikcore.cluster import POD, ClusterError, EventType, ObjectKey
from kuikcore.cluster.local import LocalCluster
from kuikcore.cluster.open import open_cluster

CISM = "ClusterImageSetMirror"
CISA = "ClusterImageSetAvailability"


def write(path: Path, *docs: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))
    return path


def fingerprint(root: Path) -> dict[str, str]:
    """Hash of every user file (the state directory excluded)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".kuik" not in p.parts
    }


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    clusters: list[LocalCluster] = []

    async def open_(root: Path, **options: Any) -> LocalCluster:
        cluster = LocalCluster(root, **options)
        clusters.append(cluster)
        await cluster.start()
        return cluster

    yield open_
    for cluster in clusters:
        await cluster.stop()


async def test_directory_layout(tmp_path: Path, opened: Callable[..., Any]) -> None:
    root = tmp_path / "demo"
    write(
        root / "pods.yaml",
        pod("nginx", namespace="team", name="a"),
        pod("redis:7", namespace="team", name="b"),
    )
    no_namespace = pod("busybox", namespace=None, name="c")
    write(
        root / "deep" / "er" / "more.yml",
        no_namespace,
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
    )
    (root / "mirrors.json").write_text(json.dumps(cism("all", mirror())))
    write(root / ".hidden" / "ignored.yaml", pod("nginx", namespace="team", name="hidden"))
    string_secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "team"},
        "stringData": {"user": "me"},
    }
    write(root / "secrets.yaml", string_secret)
    cluster: LocalCluster = await opened(root)

    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in cluster.store.pods()] == [
        ("default", "c"), ("team", "a"), ("team", "b"),
    ]  # fmt: skip
    assert cluster.store.pod("default", "c")["status"] == {"phase": "Running"}
    assert [r.name for r in cluster.store.resources(CISM)] == ["all"]
    fetched = await cluster.get_secret("team", "creds")
    assert fetched is not None
    assert fetched["data"] == {"user": "bWU="}
    assert fetched["type"] == "Opaque"
    assert cluster.store.secrets() == []  # not kuik-owned: read on demand only
    assert cluster.problems() == []


async def test_invalid_documents_reported_with_file_and_index(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    bad_cr = cism("bad", mirror())
    bad_cr["spec"]["mirrors"] = "not-a-list"
    unnamed = pod("nginx", namespace="team", name="x")
    del unnamed["metadata"]["name"]
    mixed = write(
        root / "mixed.yaml",
        pod("nginx", namespace="team", name="ok"),
        unnamed,
        bad_cr,
        pod("redis", namespace="team", name="ok"),
    )
    broken = root / "broken.yaml"
    broken.write_text("kind: Pod\nmetadata: [unclosed\n")
    cluster: LocalCluster = await opened(root)

    assert [p["metadata"]["name"] for p in cluster.store.pods()] == ["ok"]
    assert (
        cluster.store.pod("team", "ok")["spec"]["containers"][0]["image"] == "nginx"
    )  # the first wins
    found = {(Path(p.source).name, p.index, p.kind, p.name): p.reason for p in cluster.problems()}
    assert set(found) == {
        ("broken.yaml", 0, "", ""),
        ("mixed.yaml", 1, POD, ""),
        ("mixed.yaml", 2, CISM, "bad"),
        ("mixed.yaml", 3, POD, "ok"),
    }
    assert found[("mixed.yaml", 1, POD, "")] == "metadata.name is required"
    assert "spec.mirrors" in found[("mixed.yaml", 2, CISM, "bad")]
    assert "duplicate of" in found[("mixed.yaml", 3, POD, "ok")]
    assert "invalid YAML" in found[("broken.yaml", 0, "", "")]
    assert str(mixed) in {p.source for p in cluster.problems()}

    broken.write_text(yaml.safe_dump(cisa("fixed")))
    write(mixed, pod("nginx", namespace="team", name="ok"))
    await eventually(lambda: cluster.problems() == [], what="problems cleared after the fix")
    assert [r.name for r in cluster.store.resources(CISA)] == ["fixed"]


async def test_changes_noticed_added_edited_removed(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    cluster: LocalCluster = await opened(root)
    file = write(root / "p.yaml", pod("nginx", namespace="a", name="p"))
    await eventually(lambda: cluster.store.pod("a", "p") is not None)
    write(file, pod("nginx:1.27", namespace="a", name="p"))
    await eventually(lambda: cluster.store.pods_by_image("nginx:1.27") != [])
    file.unlink()
    await eventually(lambda: cluster.store.pods() == [])


async def test_writes_land_in_state_dir_never_in_user_files(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    write(root / "all.yaml", cism("m", mirror()), pod("nginx", namespace="team", name="p"))
    before = fingerprint(root)
    cluster: LocalCluster = await opened(root)
    await cluster.update_status(
        CISM, "", "m", lambda s: {"matchingImages": [{"image": "docker.io/library/nginx:latest"}]}
    )
    await cluster.add_finalizer(CISM, "", "m", "kuik.enix.io/mirror-cleanup")
    await cluster.apply_secret(
        secret("team", "kuik-creds-1", labels={OWNER_UID_LABEL: "u"}, token="dA==")
    )
    await cluster.emit_event(
        ObjectKey(CISM, "", "m"), EventType.NORMAL, "MirrorDeleted", "deleted x"
    )
    assert fingerprint(root) == before

    state = root / ".kuik"
    status_file = yaml.safe_load((state / "resources" / CISM / "_cluster" / "m.yaml").read_text())
    assert status_file["status"] == {
        "matchingImages": [{"image": "docker.io/library/nginx:latest"}]
    }
    assert status_file["metadata"]["finalizers"] == ["kuik.enix.io/mirror-cleanup"]
    secret_file = state / "secrets" / "team" / "kuik-creds-1.yaml"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert yaml.safe_load(secret_file.read_text())["data"] == {"token": "dA=="}
    events = list((state / "events" / "default").glob("*.yaml"))
    assert len(events) == 1
    assert yaml.safe_load(events[0].read_text())["reason"] == "MirrorDeleted"
    assert not list(state.rglob("*.tmp"))

    # A fresh process sees everything kuik wrote.
    again: LocalCluster = await opened(root)
    resource = again.store.resource(CISM, "", "m")
    assert resource.metadata.finalizers == ["kuik.enix.io/mirror-cleanup"]
    assert resource.status.matching_images[0].image == "docker.io/library/nginx:latest"
    assert [s["metadata"]["name"] for s in again.store.secrets_by_owner("u")] == ["kuik-creds-1"]


async def test_deleting_a_user_secret_is_refused(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    write(root / "user-secret.yaml", secret("team", "mine", token="dA=="))
    cluster: LocalCluster = await opened(root)
    with pytest.raises(ClusterError, match="never edits your files"):
        await cluster.delete_secret("team", "mine")
    assert (root / "user-secret.yaml").is_file()
    assert await cluster.get_secret("team", "mine") is not None


async def test_state_dir_elsewhere(tmp_path: Path, opened: Callable[..., Any]) -> None:
    root, state = tmp_path / "demo", tmp_path / "state"
    write(root / "m.yaml", cism("m", mirror()))
    cluster: LocalCluster = await opened(root, state_dir=state)
    await cluster.update_status(
        CISM, "", "m", lambda s: {"matchingImages": [{"image": "docker.io/library/a:1"}]}
    )
    assert (state / "resources" / CISM / "_cluster" / "m.yaml").is_file()
    assert not (root / ".kuik").exists()
    other: LocalCluster = await opened(root, state_dir=state)
    assert (
        other.store.resource(CISM, "", "m").status.matching_images[0].image
        == "docker.io/library/a:1"
    )


async def test_held_deletion_survives_restart_and_recreation_starts_clean(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    file = write(root / "m.yaml", cism("m", mirror()))
    first: LocalCluster = await opened(root)
    await first.add_finalizer(CISM, "", "m", "kuik.enix.io/mirror-cleanup")
    await first.update_status(
        CISM, "", "m", lambda s: {"matchingImages": [{"image": "docker.io/library/a:1"}]}
    )
    await first.stop()
    file.unlink()
    second: LocalCluster = await opened(root)
    held = second.store.resource(CISM, "", "m")
    assert held is not None
    assert held.metadata.deletion_timestamp is not None
    await second.remove_finalizer(CISM, "", "m", "kuik.enix.io/mirror-cleanup")
    assert second.store.resource(CISM, "", "m") is None
    assert not (root / ".kuik" / "resources" / CISM / "_cluster" / "m.yaml").exists()
    write(file, cism("m", mirror()))
    await eventually(lambda: second.store.resource(CISM, "", "m") is not None)
    assert second.store.resource(CISM, "", "m").status.matching_images is None

    # Without a finalizer, deleting the document forgets the status too.
    await second.update_status(
        CISM, "", "m", lambda s: {"matchingImages": [{"image": "docker.io/library/b:1"}]}
    )
    file.unlink()
    await eventually(lambda: second.store.resource(CISM, "", "m") is None)
    write(file, cism("m", mirror()))
    await eventually(lambda: second.store.resource(CISM, "", "m") is not None)
    assert second.store.resource(CISM, "", "m").status.matching_images is None


_WRITER = """
import asyncio, sys
from kuikcore.cluster.local import LocalCluster

async def main(root: str, tag: str, count: int) -> None:
    cluster = LocalCluster(root)
    await cluster.start()
    for i in range(count):
        def add(status, i=i):
            images = [*status.get("images", []), {"image": f"registry.example/{tag}{i}", "status": "Scheduled"}]
            return {**status, "images": images, "imageCount": len(images)}
        await cluster.update_status("ClusterImageSetAvailability", "", "shared", add)
    await cluster.stop()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_processes_sharing_a_directory_lose_no_status_update(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    write(root / "cisa.yaml", cisa("shared"))
    writers = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _WRITER, str(root), tag, "15")
        for tag in ("a", "b", "c")
    ]
    assert [await w.wait() for w in writers] == [0, 0, 0]
    cluster: LocalCluster = await opened(root)
    status = cluster.store.resource(CISA, "", "shared").status
    assert status.image_count == 45
    assert len({i.image for i in status.images}) == 45


async def test_open_cluster_specs(tmp_path: Path) -> None:
    cluster = await open_cluster(f"dir:{tmp_path}")
    assert isinstance(cluster, LocalCluster)
    with pytest.raises(ValueError, match="dir:PATH"):
        await open_cluster("dir:")
    with pytest.raises(ValueError, match="kubernetes"):
        await open_cluster("k8s")
    missing = LocalCluster(tmp_path / "nope")
    with pytest.raises(ClusterError, match="does not exist"):
        await missing.start()


async def test_rereading_reports_nothing_new_and_state_writes_are_read_alone(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    write(root / "all.yaml", cisa("avail"), pod("nginx", namespace="a", name="p"))
    writer: LocalCluster = await opened(root)
    reader: LocalCluster = await opened(root)
    await writer.apply_secret(secret("a", "kuik-copy", labels={OWNER_UID_LABEL: "u"}, x="eA=="))
    await writer.update_status(CISA, "", "avail", lambda s: {"imageCount": 0})
    await eventually(lambda: reader.store.resource(CISA, "", "avail").status.image_count == 0)
    await eventually(lambda: reader.store.secret("a", "kuik-copy") is not None)

    seen: list[str] = []
    reader.subscribe(lambda change: seen.append(f"{change.type} {change.key}"))
    await reader.reload()
    await writer.reload()
    assert seen == []  # unchanged files: same content, same resourceVersion, no callback

    full_reloads = reader.reloads
    for count in (1, 2, 3):
        await writer.update_status(CISA, "", "avail", lambda s, n=count: {"imageCount": n})
    await eventually(lambda: reader.store.resource(CISA, "", "avail").status.image_count == 3)
    assert reader.reloads == full_reloads  # only the changed state file was read
    assert set(seen) == {"MODIFIED ClusterImageSetAvailability avail"}


async def test_a_file_broken_mid_edit_keeps_its_objects(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    root = tmp_path / "demo"
    file = write(root / "m.yaml", cism("m", mirror()), pod("nginx", namespace="a", name="p"))
    cluster: LocalCluster = await opened(root)
    await cluster.add_finalizer(CISM, "", "m", "kuik.enix.io/mirror-cleanup")
    await cluster.update_status(
        CISM, "", "m", lambda s: {"matchingImages": [{"image": "docker.io/library/a:1"}]}
    )
    file.write_text("kind: ClusterImageSetMirror\nmetadata: [oops\n")
    await eventually(lambda: len(cluster.problems()) == 1, what="the broken file reported")
    held = cluster.store.resource(CISM, "", "m")
    assert held is not None
    assert held.metadata.deletion_timestamp is None  # no deletion started by a typo
    assert held.status.matching_images[0].image == "docker.io/library/a:1"
    assert cluster.store.pod("a", "p") is not None
    file.unlink()  # a real removal does start the held deletion
    await eventually(
        lambda: cluster.store.resource(CISM, "", "m").metadata.deletion_timestamp is not None
    )
    assert cluster.store.pod("a", "p") is None


async def test_event_files_are_bounded(tmp_path: Path, opened: Callable[..., Any]) -> None:
    root = tmp_path / "demo"
    write(root / "c.yaml", cisa("avail"))
    cluster: LocalCluster = await opened(root, max_events=20)
    key = ObjectKey(CISA, "", "avail")
    for n in range(120):
        await cluster.emit_event(key, EventType.NORMAL, "Checked", f"round {n}")
    events = await cluster.list_events(key)
    assert len(events) <= 20 + 50  # pruned every 50 writes down to the newest 20
    assert events[-1]["note"] == "round 119"
    assert "round 0" not in {e["note"] for e in events}


async def test_generation_follows_spec_edits_against_the_last_write(
    tmp_path: Path, opened: Callable[..., Any]
) -> None:
    """No API server counts edits here: a resource's generation is the one kuik last wrote
    status for, plus one while the file's spec differs from what that write saw."""
    root = tmp_path / "demo"
    file = write(root / "m.yaml", cism("m", mirror("a.example")))
    cluster: LocalCluster = await opened(root)

    def generation() -> int | None:
        found = cluster.store.get(ObjectKey(CISM, "", "m"))
        return None if found is None else found.metadata.generation

    await eventually(lambda: generation() == 1)
    write(
        file, cism("m", mirror("b.example"))
    )  # edited before any write: still what kuik never saw
    await eventually(
        lambda: cluster.store.get(ObjectKey(CISM, "", "m")).spec.mirrors[0].registry == "b.example"
    )  # type: ignore[union-attr]
    assert generation() == 1
    written = await cluster.update_status(CISM, "", "m", lambda s: {**s, "imageCount": 0})
    assert written.metadata.generation == 1
    write(file, cism("m", mirror("c.example")))
    await eventually(lambda: generation() == 2)
    write(file, cism("m", mirror("d.example")))  # a second edit before a write: still one ahead
    await eventually(
        lambda: cluster.store.get(ObjectKey(CISM, "", "m")).spec.mirrors[0].registry == "d.example"
    )  # type: ignore[union-attr]
    assert generation() == 2
    write(file, cism("m", mirror("b.example")))  # back to what the write saw
    await eventually(lambda: generation() == 1)
    await cluster.update_status(CISM, "", "m", lambda s: {**s, "imageCount": 1})
    write(file, cism("m", mirror("e.example")))
    await eventually(lambda: generation() == 2)
    await cluster.update_status(CISM, "", "m", lambda s: {**s, "imageCount": 2})
    assert generation() == 2
    # another process on the same directory sees the same numbers
    other: LocalCluster = await opened(root)
    assert other.store.get(ObjectKey(CISM, "", "m")).metadata.generation == 2  # type: ignore[union-attr]
