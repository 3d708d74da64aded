"""Delete an image from a repository without taking other tags down with it.

Deleting by digest removes the manifest for every tag that points at it, so kuik first tries
to delete the tag alone (OCI distribution allows it; some registries implement it). When the
registry refuses tag deletion (distribution 2.x answers 400 or 405), kuik deletes by digest
only after listing the repository's tags and HEADing each one: when another tag resolves to
the same manifest the image is kept and the result says which tags share it. Cost of that
path: one tag listing (paginated) plus one HEAD per tag in the repository.

Upstream deletes by digest blindly (behaviour notes §6.5, Appendix B #9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kuikcore.reference import Reference
from kuikcore.registry.auth import Credentials, credential_attempts
from kuikcore.registry.client import RegistryClient, as_reference
from kuikcore.registry.errors import InvalidAuth, NotFound, RegistryError
from kuikcore.registry.transport import Deadline

__all__ = ["DeleteResult", "delete"]

DeleteMethod = Literal["tag", "digest", "absent", "kept"]
_TAG_DELETE_REFUSED = frozenset({400, 405, 501})


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: bool  # the image is gone from the reference (True also when it was absent)
    method: DeleteMethod
    digest: str | None  # what the reference pointed at
    shared_with: tuple[str, ...] = ()  # other tags on the same manifest (method "kept")
    requests: int = 0  # registry requests spent (tag listing pages count once each)


async def delete(
    client: RegistryClient,
    ref: Reference | str,
    *,
    credentials: Sequence[Credentials] | Credentials | None = None,
    deadline: Deadline | None = None,
) -> DeleteResult:
    """Delete `ref` (by tag when possible, else by digest when no other tag shares it)."""
    attempts = credential_attempts(credentials)
    last: RegistryError | None = None
    for creds in attempts:
        try:
            return await _delete(client, ref, creds, deadline or Deadline.never())
        except InvalidAuth as error:
            last = error
    assert last is not None
    raise last


async def _delete(
    client: RegistryClient,
    ref: Reference | str,
    creds: Credentials | None,
    deadline: Deadline,
) -> DeleteResult:
    ref = as_reference(ref)
    requests = 1
    try:
        info = await client.head_manifest(ref, credentials=creds, deadline=deadline)
    except NotFound:
        return DeleteResult(True, "absent", None, requests=requests)
    digest = info.digest
    if ref.tag is None and ref.digest is not None:
        # the caller named the manifest itself: deleting it is what was asked
        await client.delete_manifest(ref, ref.digest, credentials=creds, deadline=deadline)
        return DeleteResult(True, "digest", ref.digest, requests=requests + 1)

    tag = ref.tag or ref.effective_tag or "latest"
    requests += 1
    try:
        await client.delete_manifest(ref, tag, credentials=creds, deadline=deadline)
        return DeleteResult(True, "tag", digest, requests=requests)
    except NotFound:
        return DeleteResult(True, "absent", digest, requests=requests)
    except InvalidAuth:
        raise
    except RegistryError as error:
        if error.status not in _TAG_DELETE_REFUSED and "UNSUPPORTED" not in error.codes:
            raise
    if digest is None:
        raise RegistryError(
            f"cannot delete {ref}: the registry refuses tag deletion and did not say the digest"
        )

    requests += 1
    tags = await client.list_tags(ref, credentials=creds, deadline=deadline)
    shared: list[str] = []
    for other in tags:
        if other == tag:
            continue
        requests += 1
        try:
            other_info = await client.head_manifest(
                ref.without_digest().with_tag(other), credentials=creds, deadline=deadline
            )
        except NotFound:
            continue
        if other_info.digest == digest:
            shared.append(other)
    if shared:
        return DeleteResult(False, "kept", digest, tuple(shared), requests=requests)
    requests += 1
    try:
        await client.delete_manifest(ref, digest, credentials=creds, deadline=deadline)
    except NotFound:
        return DeleteResult(True, "absent", digest, requests=requests)
    return DeleteResult(True, "digest", digest, requests=requests)
