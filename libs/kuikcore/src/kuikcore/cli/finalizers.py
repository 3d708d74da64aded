"""`kuik release-finalizers`: remove kuik's finalizers from every kuik resource.

The replicator holds the deletion of a (Cluster)ImageSetMirror until it has deleted its mirrored
images (`kuik.enix.io/mirror-cleanup`), and of a CISM or CRIS until it has deleted the pull-secret
copies it made (`kuik.enix.io/secret-cleanup`). Without a replicator (after `helm uninstall`, or
with it disabled) nothing would ever release them, and the resources, their namespaces and the
CRDs would hang in deletion. The chart runs this command in a post-delete hook Job; an operator
can run it by hand. Mirrors and pull-secret copies are left in place (listed in the output).
Exit status 0 when every finalizer was removed, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["command", "kuik_finalizers"]

_SYNC_TIMEOUT = 60.0
_KUIK_PREFIX = "kuik.enix.io/"


def kuik_finalizers(finalizers: Sequence[str] | None) -> list[str]:
    """The finalizers of `finalizers` that kuik owns (others are left to their owners). Pure."""
    return [f for f in finalizers or () if f.startswith(_KUIK_PREFIX)]


async def _release(spec: str, dry_run: bool) -> list[dict[str, Any]]:
    from kuikcore.api import KINDS
    from kuikcore.cluster.open import open_cluster

    kinds = [info.kind for info in KINDS.values()]
    cluster = await open_cluster(spec, field_manager="kuik-release-finalizers", kinds=kinds)
    done: list[dict[str, Any]] = []
    try:
        await cluster.start()
        async with asyncio.timeout(_SYNC_TIMEOUT):
            await cluster.wait_synced()
        for kind in kinds:
            for resource in cluster.store.resources(kind):
                namespace = (resource.metadata.namespace or "") if resource.NAMESPACED else ""
                for finalizer in kuik_finalizers(resource.metadata.finalizers):
                    row = {"resource": resource.key, "finalizer": finalizer, "removed": False}
                    if not dry_run:
                        try:
                            await cluster.remove_finalizer(
                                kind, namespace, resource.name, finalizer
                            )
                            row["removed"] = True
                        except Exception as exc:
                            row["error"] = f"{type(exc).__name__}: {exc}"
                    done.append(row)
    finally:
        await cluster.stop()
    return done


@click.command(name="release-finalizers")
@click.option(
    "--cluster",
    "cluster_spec",
    default="kubernetes",
    show_default=True,
    metavar="kubernetes|dir:PATH",
    help="Where the kuik resources are.",
)
@click.option("--dry-run", is_flag=True, help="Only list the finalizers that would be removed.")
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def command(cluster_spec: str, dry_run: bool, as_json: bool) -> None:
    """Remove kuik's finalizers from every kuik resource (no replicator will release them)."""
    rows = asyncio.run(_release(cluster_spec, dry_run))
    if as_json:
        click.echo(json.dumps({"items": rows}, indent=2))
    else:
        for row in rows:
            verb = "would remove" if dry_run else ("removed" if row["removed"] else "FAILED")
            line = f"{verb} {row['finalizer']} from {row['resource']}"
            click.echo(line + (f": {row['error']}" if "error" in row else ""))
        if not rows:
            click.echo("no kuik finalizer found")
        else:
            click.echo(
                "mirrored images and pull-secret copies are left in place: "
                "delete them by hand if you no longer want them"
            )
    if any("error" in row for row in rows):
        sys.exit(1)
