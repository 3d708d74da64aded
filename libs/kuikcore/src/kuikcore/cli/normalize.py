"""`kuik normalize`: show how kuik (and docker) normalise image references.

Filters and mirror names match the normalised form (`docker.io/library/nginx:1.27`),
so this is the quickest way to see what a filter will be matched against.
"""

from __future__ import annotations

import json

import click

from kuikcore.reference import InvalidReference, normalize

__all__ = ["command"]


@click.command(name="normalize")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@click.argument("refs", metavar="REF...", nargs=-1, required=True)
@click.pass_context
def command(ctx: click.Context, as_json: bool, refs: tuple[str, ...]) -> None:
    """Print each REF normalised (docker.io/library/..., no implicit :latest).

    Invalid references are reported (on stderr, or as "error" entries with --json)
    and make the exit status 1.
    """
    results: list[dict[str, str]] = []
    failed = False
    for ref in refs:
        try:
            results.append({"input": ref, "normalized": normalize(ref)})
        except InvalidReference as exc:
            failed = True
            results.append({"input": ref, "error": str(exc)})
    if as_json:
        click.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for result in results:
            if "error" in result:
                click.echo(f"error: {result['error']}", err=True)
            else:
                click.echo(result["normalized"])
    if failed:
        ctx.exit(1)
