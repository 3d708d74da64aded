"""`kuik check REF...`: is each image pullable now? One availability check per image, in parallel.

Statuses and error texts are the ones the monitor writes into ClusterImageSetAvailability
status (upstream's). Exit status 0 when every image is Available, 1 otherwise, 2 on bad input.
Also home of the registry options `kuik copy` shares (`--authfile`, `--insecure-registry`,
`--config`).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click

from kuikcore.reference import InvalidReference, Reference, parse
from kuikcore.registry import CheckResult, Credentials, Keyring, RegistryClient, RegistryTLS
from kuikcore.registry.client import tls_from_config
from kuikcore.registry.keyring import InvalidDockerConfig

__all__ = ["build_client", "command", "credentials_for", "load_authfile", "registry_options"]

EXIT_UNAVAILABLE = 1
EXIT_INVALID = 2
_F = TypeVar("_F", bound=Callable[..., Any])


def fail(prog: str, message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.echo(f"kuik {prog}: {message}", err=True)
    sys.exit(code)


def registry_options(function: _F) -> _F:
    """The options every registry-talking subcommand takes."""
    options = [
        click.option(
            "--authfile",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Docker config (config.json / auth.json) to take credentials from, "
            "matched like kubelet matches pull secrets.",
        ),
        click.option(
            "--insecure-registry",
            "insecure",
            multiple=True,
            metavar="HOST",
            help="Talk plain HTTP to HOST (repeatable). Loopback hosts need no flag.",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Operator config file: per-registry TLS options (registries.<host>).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def load_authfile(prog: str, path: Path | None) -> Keyring | None:
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise InvalidDockerConfig(f"{path}: not a JSON object")
        return Keyring.from_docker_config(doc, str(path))
    except (OSError, ValueError) as exc:
        fail(prog, f"--authfile {path}: {exc}")


def build_client(
    prog: str, insecure: tuple[str, ...], config_path: Path | None, **kwargs: Any
) -> RegistryClient:
    """A client with `--insecure-registry` hosts on plain HTTP, else the config's TLS options."""
    lookup: Callable[[str], RegistryTLS | None] = lambda host: None  # noqa: E731
    if config_path is not None:
        from kuikcore.config import ConfigError, load_config

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            fail(prog, str(exc))
        lookup = tls_from_config(config)
    plain = set(insecure)
    return RegistryClient(
        tls=lambda host: RegistryTLS(insecure=True) if host in plain else lookup(host),
        **kwargs,
    )


def credentials_for(
    ref: Reference, explicit: Credentials | None, keyring: Keyring | None
) -> list[Credentials]:
    """`--*-creds` wins; else every authfile credential matching the image, best first."""
    if explicit is not None:
        return [explicit]
    return keyring.lookup(ref) if keyring is not None else []


def parse_creds(prog: str, option: str, text: str | None) -> Credentials | None:
    if text is None:
        return None
    try:
        return Credentials.parse(text)
    except ValueError as exc:
        fail(prog, f"{option}: {exc}")


def parse_refs(prog: str, texts: tuple[str, ...]) -> list[Reference]:
    refs = []
    for text in texts:
        try:
            refs.append(parse(text))
        except InvalidReference as exc:
            fail(prog, str(exc))
    return refs


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
