"""The distribution API, one method per request kind, over the shared `Transport`.

`RegistryClient` is what services hold (one per process: its sessions, tokens and scheme
probes are shared by every call). It is a leaf of the package: the multi-request operations
(`check`, `copy`, `delete`) are functions in their own modules that take a client, so every
import inside `kuikcore.registry` points down to it and never back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import aiohttp
from yarl import URL

from kuikcore.reference import DEFAULT_DOMAIN, DOCKER_HUB_API_HOST, Reference, parse
from kuikcore.registry.auth import Credentials, scope_for
from kuikcore.registry.errors import DigestMismatch, NotFound, RegistryError
from kuikcore.registry.locations import BlobLocations
from kuikcore.registry.mediatypes import MANIFEST_ACCEPT, ImageManifest, digest_of, parse_manifest
from kuikcore.registry.transport import (
    CloudHook,
    Deadline,
    RegistryTLS,
    RetryPolicy,
    TLSLookup,
    Transport,
)

__all__ = ["ManifestInfo", "RegistryClient", "VerifyingStream", "as_reference", "tls_from_config"]

PULL: Final = ("pull",)
PUSH: Final = ("pull", "push")
DELETE: Final = ("delete",)
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
BLOB_CHUNK: Final = 1024 * 1024  # bytes per read of a blob stream
_THREADED_HASH: Final = 64 * 1024  # smaller chunks hash inline: the thread hop costs more


def as_reference(ref: Reference | str) -> Reference:
    return ref if isinstance(ref, Reference) else parse(ref)


def _manifest_ref(ref: Reference) -> str:
    """What a pull asks for: the digest when pinned, else the tag (or `latest`)."""
    return ref.digest or ref.effective_tag or "latest"


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a HEAD (or GET) of a manifest says about it."""

    digest: str | None
    media_type: str
    size: int | None
    headers: Mapping[str, str] = field(repr=False)


class _ConfigLike(Protocol):
    def registry_tls(self, host: str) -> Any: ...


def tls_from_config(config: _ConfigLike) -> TLSLookup:
    """A TLS lookup over the operator config's `registries.<host>` entries."""

    def lookup(host: str) -> RegistryTLS | None:
        # requests go to Docker Hub's API host; the operator writes `docker.io`
        options = config.registry_tls(DEFAULT_DOMAIN if host == DOCKER_HUB_API_HOST else host)
        if options is None:
            return None
        ca_file = getattr(options, "ca_file", None)
        return RegistryTLS(
            insecure=bool(getattr(options, "insecure", False)),
            skip_verify=bool(getattr(options, "skip_verify", False)),
            ca_file=str(ca_file) if ca_file else None,
        )

    return lookup


class VerifyingStream:
    """Pass a blob's chunks through, hashing them; refuse to deliver the last chunk on a mismatch.

    Holding back one chunk means a corrupt blob never completes its upload: the request is
    aborted before the registry sees the final byte. `error` is set when it refused.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        digest: str,
        size: int | None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self.digest = digest
        self.size = size
        self._on_bytes = on_bytes
        self.received = 0
        self.error: DigestMismatch | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        algorithm, _, expected = self.digest.partition(":")
        if algorithm != "sha256":
            raise DigestMismatch(f"blob {self.digest}: unsupported digest algorithm {algorithm!r}")
        hasher = hashlib.sha256()
        loop = asyncio.get_running_loop()
        hashing: asyncio.Future[None] | None = None
        held: bytes | None = None
        async for chunk in self._chunks:
            if not chunk:
                continue
            # hashlib releases the GIL on big updates: chunk N hashes in a worker thread while
            # the loop sends N-1 and receives N+1 (one update in flight keeps them in order).
            # Measured: 128 MiB layer copies ~25% faster on a loaded 2-core machine.
            if hashing is not None:
                await hashing
            if len(chunk) >= _THREADED_HASH:
                hashing = loop.run_in_executor(None, hasher.update, chunk)
            else:
                hasher.update(chunk)
                hashing = None
            self.received += len(chunk)
            if held is not None:
                yield held
                if self._on_bytes:
                    self._on_bytes(len(held))
            held = chunk
        if hashing is not None:
            await hashing
        actual = hasher.hexdigest()
        if actual != expected or (self.size is not None and self.received != self.size):
            self.error = DigestMismatch(
                f"blob {self.digest}: received {self.received} bytes hashing to sha256:{actual}"
                + (f" (expected {self.size} bytes)" if self.size is not None else "")
            )
            raise self.error
        if held is not None:
            yield held
            if self._on_bytes:
                self._on_bytes(len(held))


class RegistryClient:
    """Async OCI distribution client: pooled sessions per host, auth, retries, deadlines.

    `tls` maps a registry host to its `RegistryTLS` options (or is a lookup function, e.g. the
    operator config's `registry_tls`). `blob_concurrency` bounds parallel blob copies per copy;
    `chunk_size` switches uploads from one streamed PUT to PATCH chunks of that many bytes;
    `mount=False` never asks for cross-repository mounts (registries or policies refusing them).
    `cloud` gives workload-identity credentials to the hosts opted in (`kuikcore.registry.cloud`).
    """

    def __init__(
        self,
        *,
        tls: Mapping[str, RegistryTLS] | TLSLookup | None = None,
        retry: RetryPolicy | None = None,
        connections_per_host: int = 16,
        blob_concurrency: int = 6,
        chunk_size: int | None = None,
        mount: bool = True,
        user_agent: str = "kuik",
        cloud: CloudHook | None = None,
    ) -> None:
        if tls is None:
            lookup: TLSLookup = lambda host: None  # noqa: E731
        elif callable(tls):
            lookup = tls
        else:
            mapping = dict(tls)
            lookup = mapping.get
        if blob_concurrency < 1:
            raise ValueError(f"blob_concurrency must be >= 1, got {blob_concurrency}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 byte, got {chunk_size}")
        self.transport = Transport(
            tls=lookup,
            retry=retry or RetryPolicy(),
            connections_per_host=connections_per_host,
            user_agent=user_agent,
            cloud=cloud,
        )
        self.blob_concurrency = blob_concurrency
        self.chunk_size = chunk_size
        self.locations = BlobLocations()
        self.mount = mount

    @classmethod
    def from_config(cls, config: _ConfigLike, **kwargs: Any) -> RegistryClient:
        """Use the operator config's `registries.<host>` TLS and cloud-auth options."""
        from kuikcore.registry.cloud import cloud_auth_from_config

        cloud = cloud_auth_from_config(getattr(config, "registries", {}))
        return cls(tls=tls_from_config(config), cloud=cloud, **kwargs)

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- manifests ----------------------------------------------------------------------------

    async def read_manifest(
        self,
        ref: Reference | str,
        *,
        method: Literal["HEAD", "GET"] = "GET",
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> tuple[ManifestInfo, ImageManifest | None]:
        """HEAD or GET a manifest; the manifest is None for HEAD. GETs are digest-verified."""
        ref = as_reference(ref)
        target = _manifest_ref(ref)
        path = f"/v2/{ref.repository}/manifests/{target}"
        response = await self.transport.request(
            method,
            ref.registry_host,
            path,
            scopes=(scope_for(ref.repository, PULL),),
            credentials=credentials,
            headers={"Accept": MANIFEST_ACCEPT},
            deadline=deadline,
        )
        async with response:
            headers = dict(response.headers)
            content_type = response.headers.get("Content-Type", "")
            header_digest = response.headers.get("Docker-Content-Digest")
            if method == "HEAD":
                length = response.headers.get("Content-Length")
                return (
                    ManifestInfo(
                        digest=header_digest or ref.digest,
                        media_type=content_type.split(";")[0].strip(),
                        size=int(length) if length and length.isdigit() else None,
                        headers=headers,
                    ),
                    None,
                )
            raw = await response.read()
        where = f"{ref.registry_host}/{ref.repository}@{target}"
        manifest = parse_manifest(raw, content_type, where)
        expected = ref.digest or header_digest
        if expected and expected.startswith("sha256:") and expected != manifest.digest:
            raise DigestMismatch(
                f"manifest {where}: content hashes to {manifest.digest}, expected {expected}"
            )
        info = ManifestInfo(manifest.digest, manifest.media_type, len(raw), headers)
        return info, manifest

    async def head_manifest(
        self,
        ref: Reference | str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> ManifestInfo:
        info, _ = await self.read_manifest(
            ref, method="HEAD", credentials=credentials, deadline=deadline
        )
        return info

    async def get_manifest(
        self,
        ref: Reference | str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> ImageManifest:
        _, manifest = await self.read_manifest(
            ref, method="GET", credentials=credentials, deadline=deadline
        )
        assert manifest is not None
        return manifest

    async def put_manifest(
        self,
        ref: Reference | str,
        raw: bytes,
        media_type: str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> str:
        """PUT `raw` under the ref's tag (or digest when it has no tag); return its digest."""
        ref = as_reference(ref)
        target = ref.tag or ref.digest or "latest"
        digest = digest_of(raw)
        response = await self.transport.request(
            "PUT",
            ref.registry_host,
            f"/v2/{ref.repository}/manifests/{target}",
            scopes=(scope_for(ref.repository, PUSH),),
            credentials=credentials,
            headers={"Content-Type": media_type},
            body=raw,
            ok=frozenset({200, 201, 202}),
            deadline=deadline,
        )
        async with response:
            said = response.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise DigestMismatch(
                f"PUT {ref.registry_host}/{ref.repository}:{target}: registry stored {said}, "
                f"kuik sent {digest}"
            )
        return digest

    async def delete_manifest(
        self,
        ref: Reference | str,
        target: str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """DELETE `/v2/<repo>/manifests/<target>` (a tag or a digest)."""
        ref = as_reference(ref)
        response = await self.transport.request(
            "DELETE",
            ref.registry_host,
            f"/v2/{ref.repository}/manifests/{target}",
            scopes=(scope_for(ref.repository, DELETE),),
            credentials=credentials,
            ok=frozenset({200, 202, 204}),
            deadline=deadline,
        )
        response.release()

    async def list_tags(
        self,
        ref: Reference | str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
        page_size: int | None = None,
    ) -> list[str]:
        """Every tag of the ref's repository, following `Link: <…>; rel="next"` pages.

        A repository the registry does not know (404) has no tags: the answer is empty.
        """
        ref = as_reference(ref)
        first = f"/v2/{ref.repository}/tags/list"
        path: str | None = f"{first}?n={page_size}" if page_size else first
        tags: list[str] = []
        while path is not None:
            response = await self.transport.request(
                "GET",
                ref.registry_host,
                path,
                scopes=(scope_for(ref.repository, PULL),),
                credentials=credentials,
                ok=frozenset({200, 404}),
                deadline=deadline,
            )
            async with response:
                if response.status == 404:  # distribution: a repository without any tag
                    return tags
                doc = json.loads(await response.read())
                link = response.headers.get("Link", "")
            tags.extend(doc.get("tags") or [])
            match = _LINK_NEXT.search(link)
            path = None
            if match:
                nxt = match.group(1)
                path = nxt if nxt.startswith(("http://", "https://", "/")) else "/" + nxt
        return tags

    # --- blobs --------------------------------------------------------------------------------

    async def blob_size(
        self,
        ref: Reference | str,
        digest: str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> int | None:
        """Size of a blob in the ref's repository, or None when it is not there."""
        ref = as_reference(ref)
        response = await self.transport.request(
            "HEAD",
            ref.registry_host,
            f"/v2/{ref.repository}/blobs/{digest}",
            scopes=scopes or (scope_for(ref.repository, PULL),),
            credentials=credentials,
            ok=frozenset({200, 404}),
            deadline=deadline,
        )
        async with response:
            if response.status == 404:
                return None
            length = response.headers.get("Content-Length", "")
            return int(length) if length.isdigit() else 0

    async def open_blob(
        self,
        ref: Reference | str,
        digest: str,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> aiohttp.ClientResponse:
        """Start a blob download; the caller streams `response.content` and releases it."""
        ref = as_reference(ref)
        return await self.transport.request(
            "GET",
            ref.registry_host,
            f"/v2/{ref.repository}/blobs/{digest}",
            scopes=(scope_for(ref.repository, PULL),),
            credentials=credentials,
            deadline=deadline,
            pool="download",
        )

    async def start_upload(
        self,
        ref: Reference,
        *,
        mount: tuple[str, str] | None = None,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> str | None:
        """POST an upload session; with `mount=(digest, from_repository)` try a cross-repo mount.

        Returns the upload location, or None when the blob was mounted (nothing to upload).
        """
        path = f"/v2/{ref.repository}/blobs/uploads/"
        scopes: tuple[str, ...] = (scope_for(ref.repository, PUSH),)
        if mount is not None:
            digest, source = mount
            path += f"?mount={digest}&from={source}"
            scopes += (scope_for(source, PULL),)
        try:
            response = await self._post_upload(ref, path, scopes, credentials, deadline)
        except NotFound:
            # ECR has no implicit repository creation: create it on first push, then retry
            cloud = self.transport.cloud
            if credentials is not None or cloud is None:
                raise
            if not await cloud.ensure_repository(
                ref.registry_host, ref.repository, deadline or Deadline.never()
            ):
                raise
            response = await self._post_upload(ref, path, scopes, credentials, deadline)
        async with response:
            if response.status == 201:
                return None
            location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"POST {ref.registry_host}{path.split('?')[0]}: no upload Location")
        return location

    async def _post_upload(
        self,
        ref: Reference,
        path: str,
        scopes: tuple[str, ...],
        credentials: Credentials | None,
        deadline: Deadline | None,
    ) -> aiohttp.ClientResponse:
        return await self.transport.request(
            "POST",
            ref.registry_host,
            path,
            scopes=scopes,
            credentials=credentials,
            ok=frozenset({201, 202}),
            deadline=deadline,
            body=b"",
        )

    async def upload_blob(
        self,
        ref: Reference,
        location: str,
        stream: VerifyingStream,
        *,
        credentials: Credentials | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """Stream a blob into an upload session: one PUT, or PATCH chunks then PUT."""
        host = ref.registry_host
        scopes = (scope_for(ref.repository, PUSH),)
        try:
            if self.chunk_size is None:
                headers = {"Content-Type": "application/octet-stream"}
                if stream.size is not None:
                    headers["Content-Length"] = str(stream.size)
                response = await self.transport.request(
                    "PUT",
                    host,
                    _with_query(location, "digest", stream.digest),
                    scopes=scopes,
                    credentials=credentials,
                    headers=headers,
                    body=stream,
                    ok=frozenset({201, 204}),
                    deadline=deadline,
                )
                response.release()
                return
            offset = 0
            async for piece in _rechunk(stream, self.chunk_size):
                response = await self.transport.request(
                    "PATCH",
                    host,
                    location,
                    scopes=scopes,
                    credentials=credentials,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                    },
                    body=_once(piece),
                    ok=frozenset({202, 204}),
                    deadline=deadline,
                )
                async with response:
                    location = _absolute(location, response.headers.get("Location") or location)
                offset += len(piece)
            response = await self.transport.request(
                "PUT",
                host,
                _with_query(location, "digest", stream.digest),
                scopes=scopes,
                credentials=credentials,
                body=b"",
                ok=frozenset({201, 204}),
                deadline=deadline,
            )
            response.release()
        except RegistryError:
            if stream.error is not None:
                raise stream.error from None
            raise


def _absolute(base: str, location: str) -> str:
    if location.startswith(("http://", "https://")):
        return location
    if base.startswith(("http://", "https://")):
        return str(URL(base, encoded=True).join(URL(location, encoded=True)))
    return location


def _with_query(location: str, key: str, value: str) -> str:
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{key}={value}"


async def _rechunk(stream: VerifyingStream, size: int) -> AsyncIterator[bytes]:
    buffer = bytearray()
    async for chunk in stream:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
