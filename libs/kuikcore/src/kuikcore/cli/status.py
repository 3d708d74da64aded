"""`kuik status [KIND[/NAME]]`: every kuik resource with what kuik recorded in its status.

Works the same on a cluster (`--cluster kubernetes`) and in local mode (`--cluster dir:PATH`),
so a local-mode user sees what the replicator and the monitor did without opening files.
Text output is, per resource, its conditions (Ready, Degraded: status, reason, since when, the
generation they were written for, message; "stale" while the spec's generation is newer, when
`kubectl wait` would not accept them), then a table: for (C)ISM one row per (image, mirror)
with mirrored at, digest, platforms and last error; for CISA one row per image with its
availability. `--json` prints `{"items": [...]}`, each item the object as the API returns it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

__all__ = ["command", "find_kind", "render", "select"]

EXIT_INVALID = 2
_SYNC_TIMEOUT = 30.0


def _fail(message: str) -> NoReturn:
    click.echo(f"kuik status: {message}", err=True)
    sys.exit(EXIT_INVALID)


def find_kind(text: str) -> str:
    """A kind from its name, plural or short name, any case (`cism`, `ImageSetMirrors`)."""
    from kuikcore.api import KINDS

    wanted = text.lower()
    for info in KINDS.values():
        if wanted in (info.kind.lower(), info.plural, info.short_name):
            return info.kind
    names = ", ".join(f"{i.kind} ({i.short_name})" for i in KINDS.values())
    raise ValueError(f"unknown kind {text!r}: expected one of {names}")


def select(resources: Sequence[Any], name: str | None) -> list[Any]:
    """`name` is `name` or `namespace/name`; None keeps everything."""
    if name is None:
        return list(resources)
    namespace, _, short = name.rpartition("/")
    return [
        r
        for r in resources
        if r.name == short and (not namespace or (r.metadata.namespace or "") == namespace)
    ]


async def _load(cluster_spec: str, kinds: Sequence[str]) -> tuple[list[Any], list[str]]:
    from kuikcore.cluster.open import open_cluster

    # read_only: a status is a look, so it works on a directory this user may not write.
    cluster = await open_cluster(
        cluster_spec, field_manager="kuik-status", kinds=kinds, read_only=True
    )
    try:
        await cluster.start()
        async with asyncio.timeout(_SYNC_TIMEOUT):
            await cluster.wait_synced()
        resources = [r for kind in kinds for r in cluster.store.resources(kind)]
        problems = [str(p) for p in cluster.problems()]
    finally:
        await cluster.stop()
    return resources, problems


def _text(value: object) -> str:
    return "-" if value in (None, "", []) else str(value)


def _short_digest(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def _conditions(resource: Any, status: dict[str, Any]) -> Any:
    """The conditions as a table, or None when kuik wrote none yet."""
    from rich.table import Table

    conditions = status.get("conditions") or ()
    if not conditions:
        return None
    generation = resource.metadata.generation
    table = Table(title=f"{resource.key} conditions", title_justify="left")
    for column in ("condition", "status", "reason", "since", "generation", "message"):
        table.add_column(column, overflow="fold")
    for condition in conditions:
        observed = condition.get("observedGeneration", status.get("observedGeneration"))
        seen = _text(observed)
        if observed is not None and generation is not None and observed < generation:
            seen = f"{observed} (stale: spec is at {generation})"
        table.add_row(
            condition.get("type"),
            _text(condition.get("status")),
            _text(condition.get("reason")),
            _text(condition.get("lastTransitionTime")),
            seen,
            _text(condition.get("message")),
        )
    return table


def render(resources: Sequence[Any], console: Any) -> None:
    """Rich tables, one per resource."""
    from rich.table import Table

    from kuikcore.api import ClusterImageSetAvailability

    if not resources:
        console.print("no kuik resources found")
        return
    for resource in resources:
        title = resource.key
        if resource.metadata.deletion_timestamp is not None:
            title += " (being deleted)"
        status = resource.status.to_dict()
        conditions = _conditions(resource, status)
        if conditions is not None:
            console.print(conditions)
        if isinstance(resource, ClusterImageSetAvailability):
            table = Table(title=title, title_justify="left")
            for column in ("image", "status", "last monitor", "unused since", "last error"):
                table.add_column(column, overflow="fold")
            for image in status.get("images") or ():
                table.add_row(
                    image.get("image"),
                    _text(image.get("status")),
                    _text(image.get("lastMonitor")),
                    _text(image.get("unusedSince")),
                    _text(image.get("lastError")),
                )
            if not status.get("images"):
                table.add_row("(no image yet)", "", "", "", "")
        elif "matchingImages" in status or hasattr(resource.spec, "mirrors"):
            table = Table(title=title, title_justify="left")
            for column in (
                "image",
                "mirror",
                "mirrored at",
                "digest",
                "platforms",
                "unused since",
                "last error",
            ):
                table.add_column(column, overflow="fold")
            entries = status.get("matchingImages") or ()
            for entry in entries:
                for mirror in entry.get("mirrors") or [{}]:
                    table.add_row(
                        entry.get("image"),
                        _text(mirror.get("image")),
                        _text(mirror.get("mirroredAt")),
                        _short_digest(mirror.get("digest")),
                        _text(",".join(mirror.get("platforms") or ())),
                        _text(entry.get("unusedSince")),
                        _text(mirror.get("lastError")),
                    )
            if not entries:
                table.add_row("(no matching image yet)", "", "", "", "", "", "")
        else:
            if conditions is None:
                console.print(f"[bold]{title}[/bold]: no status (routing only)")
            continue
        omitted = status.get("omitted")
        if omitted:  # the list was bounded by bytes on the way to the API server
            table.caption = f"{omitted.get('message') or omitted.get('count')}"
            table.caption_justify = "left"
        console.print(table)


@click.command(name="status")
@click.argument("target", required=False)
@click.option(
    "--cluster",
    "cluster_spec",
    default="kubernetes",
    envvar="KUIK_CLUSTER",
    show_default=True,
    help='Where the resources are: "kubernetes" or "dir:PATH" (local mode).',
)
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"items": [...]} as the API returns them.'
)
def command(target: str | None, cluster_spec: str, as_json: bool) -> None:
    """Show kuik resources and their status. TARGET: KIND or KIND/NAME (NAME may be NS/NAME)."""
    from kuikcore.api import KINDS

    kinds = list(KINDS)
    name: str | None = None
    if target:
        kind_text, _, name_text = target.partition("/")
        try:
            kinds = [find_kind(kind_text)]
        except ValueError as exc:
            _fail(str(exc))
        name = name_text or None
    try:
        resources, problems = asyncio.run(_load(cluster_spec, kinds))
    except TimeoutError:
        _fail(f"could not list resources from {cluster_spec!r} within {_SYNC_TIMEOUT:.0f}s")
    except (OSError, ValueError) as exc:
        _fail(f"cannot read {cluster_spec!r}: {exc}")
    chosen = select(resources, name)
    if target and name and not chosen:
        _fail(f"{target} not found")
    for problem in problems:
        click.echo(f"kuik status: skipped invalid document: {problem}", err=True)
    if as_json:
        click.echo(json.dumps({"items": [r.to_dict() for r in chosen]}, indent=2))
        return
    from rich.console import Console

    render(chosen, Console())
