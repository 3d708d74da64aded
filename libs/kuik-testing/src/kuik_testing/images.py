"""Synthetic container images built in memory from a seed, and a push helper of their own.

Every layer is a real gzip-compressed tar (one file of seeded random bytes), so registries, skopeo
and kuik's own copier treat them like any image. The same seed always gives the same bytes and
digests. Layers bigger than `CACHE_LIMIT` are never held in memory: their bytes are regenerated
from the seed while streaming, which keeps benchmark images (tens of MiB per layer) cheap.
gzip runs at level 0 (stored blocks): random bytes do not compress, and it is ~6x faster.
Generation runs at several hundred MiB/s (see `_TILE`).

`push_image` talks to the registry with `kuik_testing.registry.RegistryHTTP`, never with
`kuikcore.registry` (the code under test); only the `Platform` value type is kuikcore's, so a
platform means one thing everywhere (the JSON is still written here).
"""

from __future__ import annotations

import hashlib
import json
import random
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from kuik_testing.registry import RegistryHTTP, RegistryResponse, RegistryServer
from kuikcore.registry.platforms import Platform, parse_platform

__all__ = [
    "CACHE_LIMIT",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Blob",
    "FetchedManifest",
    "Flavor",
    "Layer",
    "PushError",
    "SyntheticImage",
    "get_manifest",
    "make_layer",
    "push_image",
    "synthetic_image",
    "synthetic_index",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

Flavor = Literal["oci", "docker"]
_MEDIA_TYPES: dict[str, tuple[str, str, str, str]] = {
    # flavor: (manifest, index, config, layer)
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER),
    "docker": (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_CONFIG, DOCKER_LAYER),
}

CACHE_LIMIT = 4 << 20  # blobs up to this size keep their bytes; bigger ones are regenerated
_CHUNK = 1 << 20
# Each MiB repeats one fresh 64 KiB random tile: the PRNG is the cost of making big layers, and
# nothing between a registry and kuik recompresses blobs, so the repetition is never exploited.
_TILE = 64 << 10


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _platform_json(platform: Platform) -> dict[str, str]:
    """The `platform` object of an index entry (and the config's os/architecture/variant)."""
    out = {"architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        out["variant"] = platform.variant
    return out


class Blob:
    """Content-addressed bytes: a digest, a size, and the bytes as chunks (cached when small)."""

    __slots__ = ("_data", "_source", "digest", "size")

    def __init__(self, digest: str, size: int, source: Callable[[], Iterator[bytes]]) -> None:
        self.digest = digest
        self.size = size
        self._source = source
        self._data: bytes | None = None
        if size <= CACHE_LIMIT:
            self._data = b"".join(source())

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(_sha256(data), len(data), lambda: iter((data,)))

    def chunks(self) -> Iterator[bytes]:
        if self._data is not None:
            yield self._data
        else:
            yield from self._source()

    @property
    def data(self) -> bytes:
        """All the bytes at once; avoid on big layers (use `chunks()`)."""
        return self._data if self._data is not None else b"".join(self._source())

    def descriptor(self, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": self.digest, "size": self.size}

    def __repr__(self) -> str:
        return f"Blob({self.digest[:19]}…, {self.size} bytes)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blob) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)


@dataclass(frozen=True, slots=True)
class Layer:
    """A compressed layer blob and the digest of its uncompressed tar (the config's diff_id)."""

    blob: Blob
    diff_id: str


def _layer_stream(seed: str, size: int) -> Iterator[tuple[bytes, bytes]]:
    """(uncompressed tar chunk, gzip chunk) pairs of one layer, regenerated from the seed."""
    info = tarfile.TarInfo(f"kuik-synthetic/{hashlib.sha256(seed.encode()).hexdigest()[:16]}")
    info.size = size
    info.mode = 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    compressor = zlib.compressobj(0, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip container
    rng = random.Random(seed)
    yield header, compressor.compress(header)
    left = size
    while left:
        length = min(_CHUNK, left)
        tile = rng.randbytes(min(_TILE, length))
        piece = (tile * -(-length // len(tile)))[:length]
        left -= length
        yield piece, compressor.compress(piece)
    trailer = b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)
    yield trailer, compressor.compress(trailer) + compressor.flush()


def make_layer(seed: str, size: int = 1024) -> Layer:
    """A layer holding `size` seeded random bytes; equal (seed, size) give the very same layer.

    Share a base between images by passing the same layers as `base_layers`.
    """
    if size < 0:
        raise ValueError(f"layer size {size}: must be >= 0")
    tar_hash, gz_hash, gz_size = hashlib.sha256(), hashlib.sha256(), 0
    for raw, packed in _layer_stream(seed, size):
        tar_hash.update(raw)
        gz_hash.update(packed)
        gz_size += len(packed)

    def source() -> Iterator[bytes]:
        for _, packed in _layer_stream(seed, size):
            if packed:
                yield packed

    blob = Blob("sha256:" + gz_hash.hexdigest(), gz_size, source)
    return Layer(blob, "sha256:" + tar_hash.hexdigest())


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SyntheticImage:
    """A single-platform manifest (with `config` and `layers`) or an index (with `children`)."""

    manifest_bytes: bytes
    media_type: str
    platform: Platform | None = None
    config: Blob | None = None
    layers: tuple[Layer, ...] = ()
    children: tuple[SyntheticImage, ...] = ()

    @cached_property
    def digest(self) -> str:
        return _sha256(self.manifest_bytes)

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)

    @property
    def manifest(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.manifest_bytes)
        return parsed

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config and layer blobs of a single manifest; every child's (once each) for an index."""
        if self.is_index:
            seen: dict[str, Blob] = {}
            for child in self.children:
                for blob in child.blobs:
                    seen.setdefault(blob.digest, blob)
            return tuple(seen.values())
        assert self.config is not None
        return (self.config, *(layer.blob for layer in self.layers))

    @property
    def total_size(self) -> int:
        """Bytes a registry stores for it: manifests and distinct blobs."""
        manifests = len(self.manifest_bytes) + sum(len(c.manifest_bytes) for c in self.children)
        return manifests + sum(b.size for b in self.blobs)

    def child(self, platform: str) -> SyntheticImage:
        wanted = parse_platform(platform)
        for child in self.children:
            if child.platform == wanted:
                return child
        raise KeyError(f"image {self.digest} has no child for platform {platform!r}")

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest_bytes),
        }
        if self.platform is not None:
            out["platform"] = _platform_json(self.platform)
        return out


def synthetic_image(
    seed: str = "kuik",
    *,
    platform: str = "linux/amd64",
    layers: int = 2,
    layer_size: int = 1024,
    base_layers: Sequence[Layer] = (),
    flavor: Flavor = "oci",
    labels: dict[str, str] | None = None,
) -> SyntheticImage:
    """One single-platform image: `base_layers` first, then `layers` fresh layers from the seed."""
    if flavor not in _MEDIA_TYPES:
        raise ValueError(f"image flavor {flavor!r}: expected one of {sorted(_MEDIA_TYPES)}")
    if layers < 0:
        raise ValueError(f"layer count {layers}: must be >= 0")
    manifest_type, _, config_type, layer_type = _MEDIA_TYPES[flavor]
    plat = parse_platform(platform)
    own = [make_layer(f"{seed}/{plat}/{i}", layer_size) for i in range(layers)]
    all_layers = (*base_layers, *own)
    config_doc: dict[str, Any] = {
        **_platform_json(plat),
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Cmd": ["/kuik-synthetic"],
            "Labels": {"io.kuik.synthetic.seed": seed, **(labels or {})},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in all_layers]},
        "history": [{"created_by": f"kuik synthetic layer {i}"} for i in range(len(all_layers))],
    }
    config = Blob.of(_json(config_doc))
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(config_type),
        "layers": [layer.blob.descriptor(layer_type) for layer in all_layers],
    }
    return SyntheticImage(
        manifest_bytes=_json(manifest),
        media_type=manifest_type,
        platform=plat,
        config=config,
        layers=all_layers,
    )


def synthetic_index(
    seed: str = "kuik",
    *,
    platforms: Iterable[str] = ("linux/amd64", "linux/arm64/v8"),
    layers: int = 2,
    layer_size: int = 1024,
    base_layers: dict[str, Sequence[Layer]] | None = None,
    flavor: Flavor = "oci",
) -> SyntheticImage:
    """A multi-platform index (OCI) or manifest list (Docker), one child image per platform.

    `base_layers` maps a platform to the layers its child starts with (shared bases).
    """
    children = tuple(
        synthetic_image(
            seed,
            platform=p,
            layers=layers,
            layer_size=layer_size,
            base_layers=(base_layers or {}).get(p, ()),
            flavor=flavor,
        )
        for p in platforms
    )
    if not children:
        raise ValueError("synthetic_index: platforms must not be empty")
    index_type = _MEDIA_TYPES[flavor][1]
    index = {
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [child.descriptor() for child in children],
    }
    return SyntheticImage(manifest_bytes=_json(index), media_type=index_type, children=children)


class PushError(RuntimeError):
    """The registry refused a push step; the message names the step and the registry's answer."""


def _client(
    registry: RegistryServer | RegistryHTTP, username: str | None, password: str | None
) -> tuple[RegistryHTTP, bool]:
    """(client, whether we own it and must close it)."""
    if isinstance(registry, RegistryHTTP):
        return registry, False
    if username is None and password is None:
        return registry.client(), True
    return registry.client(username=username, password=password), True


def push_image(
    registry: RegistryServer | RegistryHTTP,
    repository: str,
    tag: str | None,
    image: SyntheticImage,
    *,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Upload blobs the registry lacks, then manifests (children first, the tag last); return the digest.

    With `tag=None` the top manifest is pushed by digest only. Credentials default to the
    `RegistryServer`'s own; pass a `RegistryHTTP` to push anywhere else.
    """
    client, owned = _client(registry, username, password)
    try:
        for blob in image.blobs:
            _push_blob(client, repository, blob)
        for child in image.children:
            _put_manifest(client, repository, child.digest, child)
        return _put_manifest(client, repository, tag or image.digest, image)
    finally:
        if owned:
            client.close()


def _push_blob(client: RegistryHTTP, repository: str, blob: Blob) -> None:
    head = client.request("HEAD", f"/v2/{repository}/blobs/{blob.digest}")
    if head.status == 200:
        return
    start = client.request("POST", f"/v2/{repository}/blobs/uploads/")
    location = start.header("Location")
    if start.status != 202 or location is None:
        raise PushError(f"push {repository}: starting blob upload got {_explain(start)}")
    separator = "&" if "?" in location else "?"
    done = client.request(
        "PUT",
        f"{location}{separator}digest={blob.digest}",
        headers={"Content-Type": "application/octet-stream"},
        body=blob.chunks(),
        content_length=blob.size,
    )
    if done.status != 201:
        raise PushError(f"push {repository}: uploading blob {blob.digest} got {_explain(done)}")


def _put_manifest(
    client: RegistryHTTP, repository: str, reference: str, image: SyntheticImage
) -> str:
    resp = client.request(
        "PUT",
        f"/v2/{repository}/manifests/{reference}",
        headers={"Content-Type": image.media_type},
        body=image.manifest_bytes,
    )
    if resp.status != 201:
        raise PushError(f"push {repository}:{reference}: manifest got {_explain(resp)}")
    digest = resp.header("Docker-Content-Digest")
    if digest != image.digest:
        raise PushError(
            f"push {repository}:{reference}: registry says digest {digest}, expected {image.digest}"
        )
    return digest


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """A manifest GET as the registry answered it (any status)."""

    status: int
    body: bytes
    media_type: str | None
    digest: str | None


def get_manifest(
    registry: RegistryServer | RegistryHTTP,
    repository: str,
    reference: str,
    *,
    username: str | None = None,
    password: str | None = None,
) -> FetchedManifest:
    """GET a manifest, accepting every media type this module makes."""
    client, owned = _client(registry, username, password)
    accept = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))
    try:
        resp = client.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}
        )
    finally:
        if owned:
            client.close()
    return FetchedManifest(
        status=resp.status,
        body=resp.body,
        media_type=resp.header("Content-Type"),
        digest=resp.header("Docker-Content-Digest"),
    )


def _explain(resp: RegistryResponse) -> str:
    return f"HTTP {resp.status}: {resp.body[:300].decode(errors='replace')}"
