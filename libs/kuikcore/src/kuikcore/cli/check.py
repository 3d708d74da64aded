"""`kuik check REF...`: is each image pullable now? One availability check per image, in parallel.

Statuses and error texts are the ones the monitor writes into ClusterImageSetAvailability
status (upstream's). Exit status 0 when every image is Available, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Literal

import click

from kuikcore.cli.copy import (
    build_client,
    credentials_for,
    load_authfile,
    parse_creds,
    parse_refs,
    registry_options,
)
from kuikcore.reference import Reference
from kuikcore.registry import Credentials, Keyring, RegistryClient
from kuikcore.registry.check import CheckResult

__all__ = ["command"]

EXIT_UNAVAILABLE = 1


def _row(ref: Reference, result: CheckResult) -> dict[str, Any]:
    return {
        "image": str(ref),
        "status": result.status.value,
        "error": result.error,
        "digest": result.digest,
    }


async def _check_all(
    client: RegistryClient,
    refs: list[Reference],
    keyring: Keyring | None,
    creds: Credentials | None,
    method: Literal["HEAD", "GET"],
    timeout: float,  # noqa: ASYNC109 (each check's own deadline)
    resolve_digest: bool,
) -> list[CheckResult]:
    async with client:
        return list(
            await asyncio.gather(
                *(
                    client.check(
                        ref,
                        method=method,
                        timeout=timeout,
                        credentials=credentials_for(ref, creds, keyring),
                        resolve_digest=resolve_digest,
                    )
                    for ref in refs
                )
            )
        )


@click.command(name="check")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@click.option(
    "--method",
    type=click.Choice(["HEAD", "GET"]),
    default="HEAD",
    show_default=True,
    help="Request used to check the manifest.",
)
@click.option(
    "--timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds allowed per image (0: none).",
)
@click.option(
    "--resolve-digest",
    is_flag=True,
    help="Also fetch the manifest by the digest the tag resolves to (stale caches).",
)
@click.option("--creds", metavar="USER:PASS", help="Credentials for every image.")
@registry_options
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def command(
    refs: tuple[str, ...],
    method: Literal["HEAD", "GET"],
    timeout: float,
    resolve_digest: bool,
    creds: str | None,
    authfile: Path | None,
    insecure: tuple[str, ...],
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Check that each image can be pulled, with the monitor's statuses and messages."""
    parsed = parse_refs("check", refs)
    credentials = parse_creds("check", "--creds", creds)
    keyring = load_authfile("check", authfile)
    client = build_client("check", insecure, config_path)
    results = asyncio.run(
        _check_all(client, parsed, keyring, credentials, method, timeout, resolve_digest)
    )
    rows = [_row(ref, result) for ref, result in zip(parsed, results, strict=True)]
    if as_json:
        click.echo(json.dumps({"items": rows}, indent=2))
    else:
        width = max(len(r["image"]) for r in rows)
        for row in rows:
            line = f"{row['image']:<{width}}  {row['status']}"
            if row["error"]:
                line += f"  {row['error']}"
            elif row["digest"]:
                line += f"  {row['digest']}"
            click.echo(line)
    if any(not r.available for r in results):
        sys.exit(EXIT_UNAVAILABLE)
