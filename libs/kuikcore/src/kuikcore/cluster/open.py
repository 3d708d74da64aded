"""`open_cluster(spec)`: the one place a `--cluster` value becomes a backend."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from kuikcore.cluster.informer import InformerSettings
from kuikcore.cluster.interface import ClusterSource
from kuikcore.cluster.kinds import DEFAULT_KINDS

__all__ = ["LOCAL_PREFIX", "open_cluster"]

LOCAL_PREFIX = "dir:"


async def open_cluster(
    spec: str,
    *,
    field_manager: str = "kuik",
    kinds: Collection[str] = DEFAULT_KINDS,
    state_dir: str | Path | None = None,
    settings: InformerSettings | None = None,
    read_only: bool = False,
) -> ClusterSource:
    """A backend for `spec`: "kubernetes" (in-cluster config or $KUBECONFIG) or "dir:PATH".

    `field_manager` names the writer (e.g. "kuik-replicator") in managed fields and Events;
    `kinds` limits what is watched (the webhook needs no Pods); `state_dir` moves local mode's
    writes out of PATH/.kuik; `read_only` makes local mode write nothing at all, not even its
    lock file (a viewer on a directory it cannot write; the API backend needs no such switch:
    a reader simply never writes). Not started: call `await cluster.start()`.
    """
    if spec == "kubernetes":
        from kuikcore.cluster.kubernetes import KubernetesCluster, api_client_from_environment

        client = await api_client_from_environment()
        return KubernetesCluster(
            client, field_manager=field_manager, kinds=kinds, settings=settings, close_client=True
        )
    if spec.startswith(LOCAL_PREFIX) and len(spec) > len(LOCAL_PREFIX):
        from kuikcore.cluster.local import LocalCluster

        return LocalCluster(
            spec[len(LOCAL_PREFIX) :],
            state_dir=state_dir,
            field_manager=field_manager,
            kinds=kinds,
            read_only=read_only,
        )
    raise ValueError(f'cluster must be "kubernetes" or "dir:PATH", got {spec!r}')
