"""Garbage collection of the webhook's pull-secret copies (behaviour reference §1.10).

Every ClusterImageSetMirror and ClusterReplicatedImageSet carries the finalizer
`kuik.enix.io/secret-cleanup`; when one is deleted, the Secrets labelled
`kuik.enix.io/owner-uid=<its uid>` (the copies the webhook made for its credential secrets)
are deleted in every namespace, then the finalizer is removed. As upstream, copies are not
deleted when Pods go away or the CR stops matching.
"""

from __future__ import annotations

import structlog

from kuikcore.api import SECRET_CLEANUP_FINALIZER, ClusterImageSetMirror, ClusterReplicatedImageSet
from kuikcore.cluster import ClusterError, ClusterSource, NotFoundError

__all__ = ["SECRET_OWNER_KINDS", "reconcile_secret_owner"]

log = structlog.get_logger("kuik.replicator.secrets")

SECRET_OWNER_KINDS = (ClusterImageSetMirror.KIND, ClusterReplicatedImageSet.KIND)


async def reconcile_secret_owner(
    cluster: ClusterSource, resource: ClusterImageSetMirror | ClusterReplicatedImageSet
) -> int:
    """Keep the finalizer on a live CR; on a deleted one, delete its copies and release it.
    Returns the number of Secrets deleted."""
    meta = resource.metadata
    finalizers = meta.finalizers or []
    try:
        if meta.deletion_timestamp is None:
            if SECRET_CLEANUP_FINALIZER not in finalizers:
                await cluster.add_finalizer(resource.KIND, "", meta.name, SECRET_CLEANUP_FINALIZER)
            return 0
        if SECRET_CLEANUP_FINALIZER not in finalizers:
            return 0
        deleted = 0
        for secret in cluster.store.secrets_by_owner(meta.uid or ""):
            smeta = secret.get("metadata") or {}
            if await cluster.delete_secret(str(smeta.get("namespace")), str(smeta.get("name"))):
                deleted += 1
                log.info(
                    "deleted pull-secret copy",
                    owner=resource.key,
                    secret=f"{smeta.get('namespace')}/{smeta.get('name')}",
                )
        await cluster.remove_finalizer(resource.KIND, "", meta.name, SECRET_CLEANUP_FINALIZER)
        return deleted
    except NotFoundError:
        return 0
    except ClusterError as exc:
        # keep the finalizer: the next pass tries again
        log.warning("pull-secret cleanup failed", owner=resource.key, error=str(exc))
        return 0
