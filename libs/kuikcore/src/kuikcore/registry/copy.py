"""Copy an image between repositories (same or different registries), blobs first, manifests last.

Order is what keeps a half copy invisible: every blob, then every child manifest by digest, then
the top manifest (index or single) under its tag. Blobs stream from the source GET into the
destination upload through `VerifyingStream` (bounded memory, digest verified before the last
byte is sent); blobs the destination already has are skipped after a HEAD, and blobs known in
another repository of the destination registry are mounted instead (no HEAD first: the mount
answers "present" too). Blob copies run in parallel up to the client's
`blob_concurrency`, shared across the children of an index.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from kuikcore.reference import Reference
from kuikcore.registry.auth import Credentials, credential_attempts
from kuikcore.registry.client import BLOB_CHUNK, RegistryClient, VerifyingStream, as_reference
from kuikcore.registry.errors import (
    DigestMismatch,
    InvalidAuth,
    NotFound,
    PlatformNotFound,
    RegistryError,
    Unreachable,
)
from kuikcore.registry.mediatypes import Descriptor, ImageManifest, digest_of
from kuikcore.registry.platforms import Platform, filter_children
from kuikcore.registry.transport import Deadline, api_host, log

__all__ = ["BlobOutcome", "CopyResult", "Progress", "copy", "plan_index"]

BlobOutcome = Literal["copied", "skipped", "mounted"]
_CONFIG_LIMIT = 32 * 1024 * 1024
_BLOB_ATTEMPTS = 3
_T = TypeVar("_T")
_U = TypeVar("_U")


class Progress(Protocol):
    """What a progress display hears about a copy (called from the event loop)."""

    def blob_started(self, digest: str, size: int) -> None: ...
    def blob_advanced(self, digest: str, nbytes: int) -> None: ...
    def blob_finished(self, digest: str, outcome: BlobOutcome) -> None: ...


@dataclass(frozen=True, slots=True)
class CopyResult:
    digest: str  # of the manifest or index now under the destination tag
    source_digest: str  # of what the source served (differs when platforms were filtered)
    media_type: str
    platforms: tuple[str, ...]  # platforms copied, "os/arch[/variant]"
    missing_platforms: tuple[str, ...]  # requested but absent in the source (warned, skipped)
    bytes_moved: int  # blob bytes streamed from source to destination
    blobs_copied: int
    blobs_skipped: int  # already at the destination
    blobs_mounted: int  # cross-repository mounts on the same registry
    manifests_pushed: int
    manifests_skipped: int  # already at the destination


@dataclass
class _Tally:
    bytes_moved: int = 0
    copied: int = 0
    skipped: int = 0
    mounted: int = 0
    pushed: int = 0
    manifests_skipped: int = 0


def plan_index(
    index: ImageManifest, platforms: Sequence[Platform], all_platforms: bool
) -> tuple[bytes, tuple[Descriptor, ...], list[Platform]]:
    """Which children of an index to copy, and the index bytes to push.

    Returns (index bytes, kept children, requested platforms missing from the source). The
    source bytes are kept verbatim (same digest) when every child is kept.
    """
    if all_platforms or not platforms:
        return index.raw, index.children, []
    candidates = [
        (Platform.from_json(child.platform) if child.platform else None, child)
        for child in index.children
    ]
    kept, missing = filter_children(candidates, platforms)
    if not kept:
        available = sorted({str(p) for p, _ in candidates if p is not None})
        raise PlatformNotFound(
            "none of the configured platforms are available in the source image: "
            f"requested {', '.join(str(p) for p in platforms)}; "
            f"source has {', '.join(available) or 'no platform-tagged manifest'}"
        )
    if len(kept) == len(index.children):
        return index.raw, index.children, missing
    doc = json.loads(index.raw)
    kept_digests = {d.digest for d in kept}
    doc["manifests"] = [m for m in doc["manifests"] if m.get("digest") in kept_digests]
    return json.dumps(doc, separators=(",", ":")).encode(), tuple(kept), missing


@dataclass
class _Copier:
    client: RegistryClient
    src: Reference
    dst: Reference
    src_creds: Credentials | None
    dst_creds: Credentials | None
    deadline: Deadline
    progress: Progress | None
    tally: _Tally = field(default_factory=_Tally)
    semaphore: asyncio.Semaphore = field(init=False)
    blobs: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.semaphore = asyncio.Semaphore(self.client.blob_concurrency)

    async def dst_has_manifest(self, digest: str) -> bool:
        try:
            await self.client.head_manifest(
                self.dst.without_tag().with_digest(digest),
                credentials=self.dst_creds,
                deadline=self.deadline,
            )
        except NotFound:
            return False
        return True

    def copy_blob(self, desc: Descriptor, preloaded: bytes | None = None) -> asyncio.Task[None]:
        """One task per digest per copy, however many manifests share the blob."""
        task = self.blobs.get(desc.digest)
        if task is None:
            task = asyncio.ensure_future(self._copy_blob(desc, preloaded))
            self.blobs[desc.digest] = task
        return task

    async def _copy_blob(self, desc: Descriptor, preloaded: bytes | None) -> None:
        async with self.semaphore:
            for attempt in range(_BLOB_ATTEMPTS):
                try:
                    outcome = await self._copy_blob_once(desc, preloaded)
                    break
                except (Unreachable, DigestMismatch) as error:
                    # a reset mid-stream or a corrupt read: a fresh session may succeed
                    if attempt + 1 == _BLOB_ATTEMPTS or self.deadline.expired():
                        raise
                    log().warning(
                        "blob copy failed, retrying", digest=desc.digest, error=str(error)
                    )
            if outcome == "copied":
                self.tally.copied += 1
            elif outcome == "skipped":
                self.tally.skipped += 1
            else:
                self.tally.mounted += 1
            if self.progress:
                self.progress.blob_finished(desc.digest, outcome)

    async def _copy_blob_once(self, desc: Descriptor, preloaded: bytes | None) -> BlobOutcome:
        locations = self.client.locations
        host = api_host(self.dst.registry_host)
        locations.record(api_host(self.src.registry_host), self.src.repository, desc.digest)
        if self.progress:
            self.progress.blob_started(desc.digest, desc.size)
        # another copy is uploading this blob to this registry: let it finish, then mount
        while (pending := locations.upload_in_flight(host, desc.digest)) is not None:
            await asyncio.shield(pending)
        mine = locations.start_upload(host, desc.digest)
        try:
            outcome = await self._transfer(desc, preloaded)
        finally:
            locations.end_upload(host, desc.digest, mine)
        locations.record(host, self.dst.repository, desc.digest)
        return outcome

    async def _transfer(self, desc: Descriptor, preloaded: bytes | None) -> BlobOutcome:
        host = api_host(self.dst.registry_host)
        sources = self.client.locations.mount_sources(host, desc.digest, self.dst.repository)
        # one mount attempt: a refused mount still opens the upload session used below
        mount = (desc.digest, sources[0]) if sources and self.client.mount else None
        # a mount answers "already there" as well as a HEAD would (201 either way), so the
        # HEAD is only worth its round trip when there is nothing to mount from
        if mount is None:
            size = await self.client.blob_size(
                self.dst, desc.digest, credentials=self.dst_creds, deadline=self.deadline
            )
            if size is not None:
                return "skipped"
        location = await self.client.start_upload(
            self.dst, mount=mount, credentials=self.dst_creds, deadline=self.deadline
        )
        if location is None:
            return "mounted"

        def advanced(nbytes: int) -> None:
            self.tally.bytes_moved += nbytes
            if self.progress:
                self.progress.blob_advanced(desc.digest, nbytes)

        if preloaded is not None:
            stream = VerifyingStream(_single(preloaded), desc.digest, desc.size, advanced)
            await self.client.upload_blob(
                self.dst, location, stream, credentials=self.dst_creds, deadline=self.deadline
            )
            return "copied"
        response = await self.client.open_blob(
            self.src, desc.digest, credentials=self.src_creds, deadline=self.deadline
        )
        async with response:
            stream = VerifyingStream(
                response.content.iter_chunked(BLOB_CHUNK), desc.digest, desc.size, advanced
            )
            await self.client.upload_blob(
                self.dst, location, stream, credentials=self.dst_creds, deadline=self.deadline
            )
        return "copied"

    async def read_config(self, manifest: ImageManifest) -> bytes:
        assert manifest.config is not None
        if manifest.config.size > _CONFIG_LIMIT:
            raise RegistryError(f"image config {manifest.config.digest} is too large to read")
        response = await self.client.open_blob(
            self.src, manifest.config.digest, credentials=self.src_creds, deadline=self.deadline
        )
        async with response:
            data = await response.content.read(_CONFIG_LIMIT + 1)
        if digest_of(data) != manifest.config.digest:
            raise DigestMismatch(f"image config {manifest.config.digest}: content does not match")
        return data

    async def copy_image(self, manifest: ImageManifest, config: bytes | None = None) -> None:
        """Blobs of one image manifest (config first), in parallel with the other images'."""
        tasks = []
        if manifest.config is not None:
            tasks.append(self.copy_blob(manifest.config, config))
        tasks.extend(self.copy_blob(layer) for layer in manifest.layers)
        await _all(tasks)

    async def push(self, manifest_raw: bytes, media_type: str, target: Reference) -> None:
        await self.client.put_manifest(
            target, manifest_raw, media_type, credentials=self.dst_creds, deadline=self.deadline
        )
        self.tally.pushed += 1

    async def copy_child(self, desc: Descriptor) -> str | None:
        """Copy one index child (blobs, then its manifest by digest); return its platform."""
        platform = str(Platform.from_json(desc.platform)) if desc.platform else None
        if await self.dst_has_manifest(desc.digest):
            self.tally.manifests_skipped += 1
            return platform
        child = await self.client.get_manifest(
            self.src.without_tag().with_digest(desc.digest),
            credentials=self.src_creds,
            deadline=self.deadline,
        )
        if child.is_index:  # nested index: copied whole
            await _all([self.copy_child(grandchild) for grandchild in child.children])
        else:
            await self.copy_image(child)
        await self.push(
            child.raw, child.media_type, self.dst.without_tag().with_digest(child.digest)
        )
        return platform


async def _single(data: bytes) -> Any:
    yield data


async def _all(aws: Sequence[Awaitable[_T]]) -> list[_T]:
    """Await all; on the first failure cancel the rest and raise that failure (not a group)."""
    if not aws:
        return []
    futures = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*futures))
    except BaseException:
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
        raise


async def _both(first: Awaitable[_T], second: Awaitable[_U]) -> tuple[_T, _U]:
    """`_all` for two awaitables of different types."""
    done: list[Any] = await _all([first, second])
    return done[0], done[1]


async def _false() -> bool:
    return False


async def _first_working(
    attempts: list[Credentials | None],
    call: Callable[[Credentials | None], Awaitable[_T]],
) -> tuple[Credentials | None, _T]:
    """Try each credential while the registry says they are wrong (or hides the repository)."""
    for index, creds in enumerate(attempts):
        try:
            return creds, await call(creds)
        except (InvalidAuth, NotFound):
            if index + 1 == len(attempts):
                raise
    raise AssertionError("unreachable: attempts is never empty")


def _push_target(target: Reference, digest: str) -> Reference:
    """Under its tag; a destination with neither tag nor digest gets the manifest by digest."""
    if target.tag is None and target.digest is None:
        return target.with_digest(digest)
    return target


def _destination(src: Reference, dst: Reference) -> Reference:
    """The destination keeps its own tag; without one it takes the source's tag (if any)."""
    if dst.tag is not None or dst.digest is not None:
        return dst
    if src.tag is not None:
        return dst.with_tag(src.tag)
    if src.digest is None:
        return dst.with_tag("latest")
    return dst


async def copy(
    client: RegistryClient,
    src: Reference | str,
    dst: Reference | str,
    *,
    platforms: Sequence[Platform] = (),
    all_platforms: bool = False,
    src_credentials: Sequence[Credentials] | Credentials | None = None,
    dst_credentials: Sequence[Credentials] | Credentials | None = None,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy `src` to `dst`; see the module docstring for order and guarantees.

    `all_platforms` (or no `platforms`) copies an index verbatim, so digests stay identical
    (what a digest-pinned image needs). Otherwise index children not matching any platform are
    dropped (upstream's rule); none matching raises PlatformNotFound, some missing is a warning.
    """
    source = as_reference(src)
    target = _destination(source, as_reference(dst))
    deadline = deadline or Deadline.never()

    def dst_probe(probed: Reference) -> Callable[[Credentials | None], Awaitable[str | None]]:
        async def probe(creds: Credentials | None) -> str | None:
            # the destination may legitimately lack the image: 404 means "credentials fine"
            try:
                info = await client.head_manifest(probed, credentials=creds, deadline=deadline)
            except NotFound:
                return None
            return info.digest

        return probe

    read_source = _first_working(
        credential_attempts(src_credentials),
        lambda c: client.get_manifest(source, credentials=c, deadline=deadline),
    )
    # where the top manifest will go is known up front unless it is "by digest" and the
    # source's digest is not: then the probe waits for the source's answer
    known = target if target.tag or target.digest else None
    if known is None and source.digest is not None:
        known = target.with_digest(source.digest)
    if known is not None:
        probe_destination = _first_working(credential_attempts(dst_credentials), dst_probe(known))
        (src_creds, top), (dst_creds, existing) = await _both(read_source, probe_destination)
    else:
        src_creds, top = await read_source
        dst_creds, existing = await _first_working(
            credential_attempts(dst_credentials), dst_probe(_push_target(target, top.digest))
        )
    copier = _Copier(client, source, target, src_creds, dst_creds, deadline, progress)
    try:
        if top.is_index:
            raw, children, missing = plan_index(top, platforms, all_platforms)
            for absent in missing:
                log().warning(
                    "requested platform not found in source image, skipping it",
                    image=str(source),
                    platform=str(absent),
                )
            digest = digest_of(raw)
            _check_pin(target, digest)
            platform_names = tuple(
                str(Platform.from_json(c.platform)) for c in children if c.platform
            )
            missing_names = tuple(str(p) for p in missing)
            if existing == digest:
                copier.tally.manifests_skipped += 1
            else:
                await _all([copier.copy_child(child) for child in children])
                await copier.push(raw, top.media_type, _push_target(target, digest))
        else:
            digest = top.digest
            _check_pin(target, digest)
            config, present = await _both(
                copier.read_config(top),
                _false() if existing == digest else copier.dst_has_manifest(digest),
            )
            platform = _image_platform(config)
            if (
                platforms
                and not all_platforms
                and not any(platform is not None and platform.satisfies(p) for p in platforms)
            ):
                raise PlatformNotFound(
                    "none of the configured platforms are available in the source image: "
                    f"requested {', '.join(str(p) for p in platforms)}; "
                    f"source is {platform or 'unknown'}"
                )
            platform_names = (str(platform),) if platform else ()
            missing_names = ()
            if existing == digest:
                copier.tally.manifests_skipped += 1
            else:
                if present:
                    copier.tally.manifests_skipped += 1
                else:
                    await copier.copy_image(top, config)
                await copier.push(top.raw, top.media_type, _push_target(target, digest))
    finally:
        # on failure or cancellation no blob copy outlives the call (and none leaks an error)
        tasks = list(copier.blobs.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    tally = copier.tally
    return CopyResult(
        digest=digest,
        source_digest=top.digest,
        media_type=top.media_type,
        platforms=platform_names,
        missing_platforms=missing_names,
        bytes_moved=tally.bytes_moved,
        blobs_copied=tally.copied,
        blobs_skipped=tally.skipped,
        blobs_mounted=tally.mounted,
        manifests_pushed=tally.pushed,
        manifests_skipped=tally.manifests_skipped,
    )


def _check_pin(target: Reference, digest: str) -> None:
    if target.digest is not None and target.digest != digest:
        raise DigestMismatch(
            f"destination {target} is pinned to {target.digest} but the copy would be {digest}"
        )


def _image_platform(config: bytes) -> Platform | None:
    try:
        doc = json.loads(config)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("os") or not doc.get("architecture"):
        return None
    return Platform.from_json(doc)
