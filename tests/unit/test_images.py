"""Synthetic images are deterministic, well-formed, and their layers are real tar.gz files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest

from kuik_testing import images
from kuik_testing.images import make_layer, synthetic_image, synthetic_index
from kuikcore.registry.platforms import Platform


def test_same_seed_same_bytes_other_seed_other_digest() -> None:
    assert synthetic_image("a").manifest_bytes == synthetic_image("a").manifest_bytes
    assert synthetic_image("a").digest != synthetic_image("b").digest


@pytest.mark.parametrize("size", [0, 1, 511, 512, 5000])
def test_layer_is_a_gzip_tar_whose_digests_match(size: int) -> None:
    layer = make_layer("seed", size)
    packed = layer.blob.data
    assert layer.blob.digest == "sha256:" + hashlib.sha256(packed).hexdigest()
    assert layer.blob.size == len(packed)
    raw = gzip.decompress(packed)
    assert layer.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        (member,) = tar.getmembers()
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert len(extracted.read()) == size


def test_big_layers_are_streamed_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "CACHE_LIMIT", 1000)
    layer = make_layer("big", 300_000)
    chunks = list(layer.blob.chunks())
    assert len(chunks) > 1
    assert b"".join(chunks) == layer.blob.data
    assert "sha256:" + hashlib.sha256(layer.blob.data).hexdigest() == layer.blob.digest


@pytest.mark.parametrize(
    ("flavor", "manifest_type", "config_type", "layer_type"),
    [
        ("oci", images.OCI_MANIFEST, images.OCI_CONFIG, images.OCI_LAYER),
        ("docker", images.DOCKER_MANIFEST, images.DOCKER_CONFIG, images.DOCKER_LAYER),
    ],
)
def test_single_manifest_shape(
    flavor: images.Flavor, manifest_type: str, config_type: str, layer_type: str
) -> None:
    image = synthetic_image("x", platform="linux/arm/v7", layers=3, layer_size=100, flavor=flavor)
    doc = image.manifest
    assert image.config is not None
    assert image.media_type == manifest_type == doc["mediaType"]
    assert doc["schemaVersion"] == 2
    assert doc["config"] == {
        "mediaType": config_type,
        "digest": image.config.digest,
        "size": image.config.size,
    }
    assert [layer["mediaType"] for layer in doc["layers"]] == [layer_type] * 3
    config = json.loads(image.config.data)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v7")
    assert config["rootfs"]["diff_ids"] == [layer.diff_id for layer in image.layers]
    assert image.blobs == (image.config, *(layer.blob for layer in image.layers))


@pytest.mark.parametrize(
    ("flavor", "index_type"),
    [("oci", images.OCI_INDEX), ("docker", images.DOCKER_MANIFEST_LIST)],
)
def test_index_lists_each_platform_child(flavor: images.Flavor, index_type: str) -> None:
    index = synthetic_index("x", flavor=flavor)
    doc = index.manifest
    assert index.is_index
    assert doc["mediaType"] == index_type
    assert [m["platform"] for m in doc["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    for entry, child in zip(doc["manifests"], index.children, strict=True):
        assert entry["digest"] == child.digest
        assert entry["size"] == len(child.manifest_bytes)
    assert index.child("linux/arm64/v8").platform == Platform("linux", "arm64", "v8")
    assert index.child("linux/amd64").digest != index.child("linux/arm64/v8").digest


def test_shared_base_layers_are_the_same_blobs() -> None:
    base = [make_layer("base", 2000), make_layer("base-2", 2000)]
    one = synthetic_image("app-1", base_layers=base, layers=1)
    two = synthetic_image("app-2", base_layers=base, layers=1)
    assert one.layers[:2] == two.layers[:2] == tuple(base)
    assert one.layers[2] != two.layers[2]
    index = synthetic_index("multi", base_layers={"linux/amd64": base})
    assert index.child("linux/amd64").layers[:2] == tuple(base)
    # blobs of an index are listed once each
    digests = [b.digest for b in index.blobs]
    assert len(digests) == len(set(digests))


@pytest.mark.parametrize("bad", ["linux", "linux//v8", "", "a/b/c/d"])
def test_bad_platform_names_the_input(bad: str) -> None:
    with pytest.raises(ValueError, match=f"platform '{bad}'"):
        synthetic_image(platform=bad)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="flavor"):
        synthetic_image(flavor="helm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        make_layer("x", -1)
    with pytest.raises(ValueError, match="platforms"):
        synthetic_index(platforms=[])
