"""Image copies and deletes between real docker-registry processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kuik_testing.images import push_image, synthetic_image, synthetic_index
from kuik_testing.registry import RegistryServer
from kuikcore.registry import (
    Deadline,
    NotFound,
    PlatformNotFound,
    RegistryClient,
    RetryPolicy,
    check,
    copy,
    delete,
    parse_platform,
)
from kuikcore.registry.mediatypes import DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(retry=RetryPolicy(attempts=2, base=0.01)) as c:
        yield c


def skopeo_raw(ref: str) -> bytes:
    """What an independent client (skopeo) reads at `ref` (plain HTTP loopback registries)."""
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
async def test_copy_all_keeps_every_manifest_byte_identical(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any, docker: bool
) -> None:
    destination = registry_factory()
    index = synthetic_index(
        "s20",
        flavor="docker" if docker else "oci",
        platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
    )
    repository = "copy/all-docker" if docker else "copy/all-oci"
    digest = push_image(registry, repository, "v1", index)
    result = await copy(
        client,
        f"{registry.host}/{repository}:v1",
        f"{destination.host}/mirror/all:v1",
        all_platforms=True,
    )
    assert result.digest == digest == result.source_digest
    assert result.media_type == (DOCKER_MANIFEST_LIST if docker else OCI_INDEX)
    assert result.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert skopeo_raw(f"{destination.host}/mirror/all:v1") == index.manifest_bytes
    for child in index.children:
        assert skopeo_raw(f"{destination.host}/mirror/all@{child.digest}") == child.manifest_bytes
    assert result.blobs_copied == len(index.blobs)
    assert result.bytes_moved == sum(b.size for b in index.blobs)
    assert result.manifests_pushed == 4


async def test_platform_filter_drops_other_children_and_reports_missing(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    index = synthetic_index("s21")
    push_image(registry, "copy/filter", "v1", index)
    result = await copy(
        client,
        f"{registry.host}/copy/filter:v1",
        f"{destination.host}/mirror/filter:v1",
        platforms=[parse_platform("linux/amd64"), parse_platform("windows/amd64")],
    )
    assert result.platforms == ("linux/amd64",)
    assert result.missing_platforms == ("windows/amd64",)
    assert result.digest != index.digest
    pushed = json.loads(skopeo_raw(f"{destination.host}/mirror/filter:v1"))
    assert [m["digest"] for m in pushed["manifests"]] == [index.children[0].digest]
    with pytest.raises(NotFound):  # the arm64 child was not copied
        await client.head_manifest(f"{destination.host}/mirror/filter@{index.children[1].digest}")
    with pytest.raises(PlatformNotFound, match="none of the configured platforms"):
        await copy(
            client,
            f"{registry.host}/copy/filter:v1",
            f"{destination.host}/mirror/filter:v2",
            platforms=[parse_platform("linux/s390x")],
        )
    with pytest.raises(NotFound):
        await client.head_manifest(f"{destination.host}/mirror/filter:v2")


async def test_single_docker_manifest_and_its_platform_rule(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    image = synthetic_image("s22", flavor="docker", platform="linux/arm64")
    digest = push_image(registry, "copy/single", "v1", image)
    with pytest.raises(PlatformNotFound):
        await copy(
            client,
            f"{registry.host}/copy/single:v1",
            f"{destination.host}/m/single:v1",
            platforms=[parse_platform("linux/amd64")],
        )
    result = await copy(
        client,
        f"{registry.host}/copy/single:v1",
        f"{destination.host}/m/single:v1",
        platforms=[parse_platform("linux/arm64")],
    )
    assert result.digest == digest
    assert result.media_type == DOCKER_MANIFEST
    assert result.platforms == ("linux/arm64",)
    assert skopeo_raw(f"{destination.host}/m/single:v1") == image.manifest_bytes


async def test_second_copy_moves_no_blob_and_shared_layers_are_skipped(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    index = synthetic_index("s23")
    push_image(registry, "copy/again", "v1", index)
    src, dst = f"{registry.host}/copy/again:v1", f"{destination.host}/m/again:v1"
    first = await copy(client, src, dst, all_platforms=True)
    assert first.bytes_moved > 0
    second = await copy(client, src, dst, all_platforms=True)
    assert second.digest == first.digest
    assert (second.bytes_moved, second.blobs_copied, second.manifests_pushed) == (0, 0, 0)
    # same image under another tag: manifests already there, no blob touched
    third = await copy(client, src, f"{destination.host}/m/again:v2", all_platforms=True)
    assert third.bytes_moved == 0
    assert third.manifests_skipped == 2
    # an image sharing a base layer with one already copied: that layer is skipped
    base = synthetic_image("s24", layers=1)
    derived = synthetic_image("s25", layers=1, base_layers=base.layers)
    push_image(registry, "copy/base", "v1", base)
    push_image(registry, "copy/derived", "v1", derived)
    await copy(client, f"{registry.host}/copy/base:v1", f"{destination.host}/m/layered:base")
    layered = await copy(
        client, f"{registry.host}/copy/derived:v1", f"{destination.host}/m/layered:derived"
    )
    assert layered.blobs_skipped == 1
    assert layered.bytes_moved == sum(b.size for b in derived.blobs) - base.layers[0].blob.size


async def test_same_registry_copy_mounts_blobs(
    client: RegistryClient, registry: RegistryServer
) -> None:
    index = synthetic_index("s26")
    push_image(registry, "copy/mount-src", "v1", index)
    result = await copy(
        client,
        f"{registry.host}/copy/mount-src:v1",
        f"{registry.host}/copy/mount-dst:v1",
        all_platforms=True,
    )
    assert result.bytes_moved == 0
    assert result.blobs_mounted == len(index.blobs)
    assert skopeo_raw(f"{registry.host}/copy/mount-dst:v1") == index.manifest_bytes


async def test_chunked_uploads(registry: RegistryServer, registry_factory: Any) -> None:
    destination = registry_factory()
    image = synthetic_image("s27", layers=2, layer_size=300_000)
    push_image(registry, "copy/chunked", "v1", image)
    async with RegistryClient(chunk_size=64 * 1024) as chunky:
        result = await copy(
            chunky, f"{registry.host}/copy/chunked:v1", f"{destination.host}/m/chunked:v1"
        )
    assert result.bytes_moved == sum(b.size for b in image.blobs)
    assert skopeo_raw(f"{destination.host}/m/chunked:v1") == image.manifest_bytes


async def test_digest_pinned_destination_gets_no_tag(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    index = synthetic_index("s28")
    digest = push_image(registry, "copy/pinned", "v1", index)
    result = await copy(
        client, f"{registry.host}/copy/pinned@{digest}", f"{destination.host}/m/pinned"
    )
    assert result.digest == digest
    assert skopeo_raw(f"{destination.host}/m/pinned@{digest}") == index.manifest_bytes
    assert await client.list_tags(f"{destination.host}/m/pinned") == []


# --- delete -------------------------------------------------------------------------------


async def test_delete_keeps_a_manifest_another_tag_still_uses(
    client: RegistryClient, registry: RegistryServer
) -> None:
    image = synthetic_image("s29")
    push_image(registry, "del/app", "keep", image)
    push_image(registry, "del/app", "drop", image)
    result = await delete(client, f"{registry.host}/del/app:drop")
    assert not result.deleted
    assert result.method == "kept"
    assert result.shared_with == ("keep",)
    assert (await check(client, f"{registry.host}/del/app:keep")).available
    assert (await check(client, f"{registry.host}/del/app:drop")).available


async def test_delete_by_digest_when_no_other_tag_shares_it(
    client: RegistryClient, registry: RegistryServer
) -> None:
    push_image(registry, "del/solo", "other", synthetic_image("s30"))
    push_image(registry, "del/solo", "v1", synthetic_image("s31"))
    result = await delete(client, f"{registry.host}/del/solo:v1")
    assert result.deleted
    assert result.method == "digest"  # distribution 2.8 refuses tag deletion
    assert result.requests == 5  # HEAD, DELETE tag, tag list, HEAD other, DELETE digest
    assert not (await check(client, f"{registry.host}/del/solo:v1")).available
    assert (await check(client, f"{registry.host}/del/solo:other")).available
    again = await delete(client, f"{registry.host}/del/solo:v1")
    assert (again.deleted, again.method) == (True, "absent")


async def test_blobs_known_in_another_destination_repository_are_mounted(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    index = synthetic_index("s32")
    push_image(registry, "copy/known", "v1", index)
    src = f"{registry.host}/copy/known:v1"
    await copy(client, src, f"{destination.host}/team-a/app:v1", all_platforms=True)
    mark = destination.log_offset()
    again = await copy(client, src, f"{destination.host}/team-b/app:v1", all_platforms=True)
    assert again.bytes_moved == 0
    assert again.blobs_mounted == len(index.blobs)
    # the mount itself says whether the blob is there: no HEAD per blob before it
    assert destination.count_requests("HEAD", r"/blobs/", since=mark) == 0
    assert destination.count_requests("POST", r"mount=", since=mark) == len(index.blobs)


async def test_concurrent_copies_upload_a_shared_base_layer_once(
    client: RegistryClient, registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    base = synthetic_image("s33", layers=1, layer_size=400_000)
    images = [synthetic_image(f"s34-{i}", layers=1, base_layers=base.layers) for i in range(3)]
    for i, image in enumerate(images):
        push_image(registry, f"copy/burst{i}", "v1", image)
    results = await asyncio.gather(
        *(
            copy(client, f"{registry.host}/copy/burst{i}:v1", f"{destination.host}/m/burst{i}:v1")
            for i in range(3)
        )
    )
    base_size = base.layers[0].blob.size
    own = sum(b.size for image in images for b in image.blobs) - 3 * base_size
    assert sum(r.bytes_moved for r in results) == own + base_size
    assert sum(r.blobs_mounted for r in results) == 2


async def test_copy_within_one_registry_without_mount_never_starves_uploads(
    registry: RegistryServer,
) -> None:
    index = synthetic_index("s35", layers=1, layer_size=3 << 20)  # more than socket buffers
    push_image(registry, "copy/nomount-src", "v1", index)
    # one connection per pool: downloads held open must not block the uploads they feed
    async with RegistryClient(mount=False, connections_per_host=1, blob_concurrency=4) as tight:
        result = await copy(
            tight,
            f"{registry.host}/copy/nomount-src:v1",
            f"{registry.host}/copy/nomount-dst:v1",
            all_platforms=True,
            deadline=Deadline.after(30),
        )
    assert result.blobs_mounted == 0
    assert result.blobs_copied == len(index.blobs)
    assert skopeo_raw(f"{registry.host}/copy/nomount-dst:v1") == index.manifest_bytes
