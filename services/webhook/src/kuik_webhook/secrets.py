"""Pull secrets: reading the ones a check needs, and copying a CR's credential secret into the
Pod's namespace (upstream §1.10).

A copy is named `kuik-<source name[:231]>-<xxhash64(source namespace/owner uid) as 16 hex>`,
has the source's `type` and `data` and the `kuik.enix.io/owner-*` labels (the replicator deletes
copies by `owner-uid` when the owner CR goes; `owner-name` goes through `label_value`, since a
CR name may be longer than a label value). It is always made from the CR's own secret, never
from an earlier copy (upstream bug #604). Unlike upstream, `owner-kind` is the CR's real kind
(`ClusterImageSetMirror`, not the namespaced shape upstream converts it to).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import xxhash

from kuikcore.api import (
    GROUP,
    OWNER_GROUP_LABEL,
    OWNER_KIND_LABEL,
    OWNER_NAME_LABEL,
    OWNER_UID_LABEL,
    OWNER_VERSION_LABEL,
    VERSION,
    label_value,
)
from kuikcore.api.models import Resource
from kuikcore.cluster import ClusterSource
from kuikcore.routing import Alternative, SecretRef

__all__ = [
    "COPY_PREFIX",
    "SecretReader",
    "copy_name",
    "copy_of",
    "pull_secret_name",
]

COPY_PREFIX = "kuik"
_MAX_NAME = 253


def copy_name(source: SecretRef, owner_uid: str) -> str:
    """Upstream's `makeSecretName("kuik", name, namespace + "/" + ownerUID)`."""
    keep = min(_MAX_NAME - len(COPY_PREFIX) - 16 - 2, len(source.name))
    digest = xxhash.xxh64_intdigest(f"{source.namespace}/{owner_uid}".encode())
    # a cut after a '.' would give '.-', which no DNS subdomain contains (upstream's would
    # be refused by the API server; names that fit are unchanged)
    return f"{COPY_PREFIX}-{source.name[:keep].rstrip('.')}-{digest:016x}"


def pull_secret_name(alternative: Alternative, namespace: str) -> str | None:
    """The Secret name the Pod must list to pull `alternative`, or None when it needs none."""
    secret = alternative.credential_secret
    if secret is None:
        return None
    if secret.namespace == namespace:
        return secret.name
    owner = alternative.owner
    uid = owner.metadata.uid if owner is not None else None
    return copy_name(secret, uid or "")


def copy_of(
    source: Mapping[str, Any], namespace: str, name: str, owner: Resource
) -> dict[str, Any]:
    """The copy to apply in `namespace` (type, data and owner labels; nothing else)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                OWNER_VERSION_LABEL: VERSION,
                OWNER_GROUP_LABEL: GROUP,
                OWNER_KIND_LABEL: owner.KIND,
                OWNER_UID_LABEL: owner.metadata.uid or "",
                OWNER_NAME_LABEL: label_value(owner.metadata.name),
            },
        },
        "type": source.get("type") or "Opaque",
        "data": dict(source.get("data") or {}),
    }


class SecretReader:
    """Reads the Secrets an admission needs, concurrently, each read bounded in time.

    A Secret that is missing, unreadable or too slow reads as None (the caller says why in a
    warning); nothing here raises.
    """

    def __init__(self, cluster: ClusterSource, *, timeout: float = 1.0) -> None:
        self.cluster = cluster
        self.timeout = timeout

    async def _one(
        self, ref: SecretRef, limit: float
    ) -> tuple[SecretRef, dict[str, Any] | None, str | None]:
        try:
            async with asyncio.timeout(limit):
                secret = await self.cluster.get_secret(ref.namespace, ref.name)
        except TimeoutError:
            return ref, None, f"Secret {ref.namespace}/{ref.name}: read timed out"
        except Exception as exc:  # any backend failure: the admission goes on without it
            return ref, None, f"Secret {ref.namespace}/{ref.name}: {type(exc).__name__}: {exc}"
        if secret is None:
            return ref, None, f"Secret {ref.namespace}/{ref.name} not found"
        return ref, secret, None

    async def read(
        self, refs: Iterable[SecretRef], *, within: float | None = None
    ) -> tuple[dict[SecretRef, dict[str, Any]], dict[SecretRef, str]]:
        """(found secrets, reason per secret that could not be read); each read within
        `within` seconds (default: the reader's timeout)."""
        unique = list(dict.fromkeys(refs))
        if not unique:
            return {}, {}
        limit = self.timeout if within is None else min(self.timeout, max(within, 0.01))
        results = await asyncio.gather(*(self._one(r, limit) for r in unique))
        found = {ref: s for ref, s, _ in results if s is not None}
        problems = {ref: why for ref, _, why in results if why is not None}
        return found, problems

    async def ensure_copy(
        self, source: Mapping[str, Any], namespace: str, name: str, owner: Resource
    ) -> None:
        """Create or refresh the copy (raises on failure: the caller fails open)."""
        async with asyncio.timeout(self.timeout):
            await self.cluster.apply_secret(copy_of(source, namespace, name, owner))
