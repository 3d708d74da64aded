"""Manifest media types kuik reads and writes, and what each kind of document carries."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from kuikcore.registry.errors import UnsupportedManifest

__all__ = [
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_SCHEMA1",
    "DOCKER_SCHEMA1_SIGNED",
    "INDEX_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageManifest",
    "digest_of",
    "parse_manifest",
]

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED: Final = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})

# Indexes first, like containerd: a registry that holds a multi-platform image answers
# with the index rather than a single platform's manifest.
MANIFEST_ACCEPT: Final = ", ".join([OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI descriptor: what a manifest points at."""

    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Descriptor:
        if not isinstance(doc, dict):
            raise UnsupportedManifest(f"{where}: descriptor is not an object")
        digest, size = doc.get("digest"), doc.get("size")
        if not isinstance(digest, str) or not isinstance(size, int) or size < 0:
            raise UnsupportedManifest(f"{where}: descriptor without a valid digest and size")
        platform = doc.get("platform")
        return cls(
            media_type=str(doc.get("mediaType") or ""),
            digest=digest,
            size=size,
            platform=platform if isinstance(platform, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """An image's manifest or index exactly as the registry served it (`raw` is never re-encoded).

    Named apart from `kuikcore.manifests` (Kubernetes YAML documents)."""

    raw: bytes
    media_type: str
    digest: str
    children: tuple[Descriptor, ...] = ()  # index entries
    config: Descriptor | None = None  # image manifest only
    layers: tuple[Descriptor, ...] = ()  # image manifest only; also subject-less artifacts

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then layers: every blob this manifest needs in its repository."""
        return ((self.config,) if self.config else ()) + self.layers


def parse_manifest(raw: bytes, content_type: str | None, where: str) -> ImageManifest:
    """Parse a manifest body; `content_type` falls back to the document's own `mediaType`."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnsupportedManifest(f"{where}: manifest is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise UnsupportedManifest(f"{where}: manifest is not a JSON object")
    media_type = (content_type or "").split(";")[0].strip()
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:
        declared = doc.get("mediaType")
        if isinstance(declared, str) and declared in INDEX_TYPES | MANIFEST_TYPES:
            media_type = declared
        elif "manifests" in doc:
            media_type = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            media_type = OCI_MANIFEST
        else:
            raise UnsupportedManifest(
                f"{where}: unsupported manifest media type {media_type or declared!r} "
                "(kuik handles OCI and Docker schema 2 manifests and indexes)"
            )
    digest = digest_of(raw)
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise UnsupportedManifest(f"{where}: index without a `manifests` list")
        children = tuple(Descriptor.from_json(e, where) for e in entries)
        return ImageManifest(raw, media_type, digest, children=children)
    layers = doc.get("layers") or []
    if not isinstance(layers, list):
        raise UnsupportedManifest(f"{where}: `layers` is not a list")
    return ImageManifest(
        raw,
        media_type,
        digest,
        config=Descriptor.from_json(doc.get("config"), where),
        layers=tuple(Descriptor.from_json(e, where) for e in layers),
    )
