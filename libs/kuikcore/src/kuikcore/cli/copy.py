"""`kuik copy SRC DST`: copy an image between registries with kuik's registry client.

Index filtered to `--platform`s (upstream's rule), or copied verbatim with `--all` (digests
identical). A progress bar on a terminal; otherwise one summary line: digest, bytes, seconds.
Also home of the registry options `kuik check` shares (`--authfile`, `--insecure-registry`,
`--config`): `kuik copy` must not import `kuik check`'s dependencies (the API models).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from kuikcore import registry
from kuikcore.reference import InvalidReference, Reference, parse
from kuikcore.registry import (
    CopyResult,
    Credentials,
    Deadline,
    Keyring,
    Platform,
    RegistryClient,
    RegistryError,
    RegistryTLS,
    parse_platform,
)
from kuikcore.registry.client import tls_from_config
from kuikcore.registry.copy import BlobOutcome
from kuikcore.registry.keyring import InvalidDockerConfig

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = [
    "build_client",
    "command",
    "credentials_for",
    "load_authfile",
    "parse_creds",
    "parse_refs",
    "registry_options",
    "summary",
]

EXIT_FAILED = 1
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
    """A client with `--insecure-registry` hosts on plain HTTP, else the config's TLS options
    and its `cloudAuth` hosts (the workload identity the command runs with)."""
    lookup: Callable[[str], RegistryTLS | None] = lambda host: None  # noqa: E731
    cloud = None
    if config_path is not None:
        from kuikcore.config import ConfigError, load_config
        from kuikcore.registry.cloud import cloud_auth_from_config

        try:
            config = load_config(config_path)
            cloud = cloud_auth_from_config(config.registries)
        except (ConfigError, ValueError) as exc:
            fail(prog, str(exc))
        lookup = tls_from_config(config)
    plain = set(insecure)
    return RegistryClient(
        tls=lambda host: RegistryTLS(insecure=True) if host in plain else lookup(host),
        cloud=cloud,
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


class _Bar:
    """Adapts copy progress events to one rich bar over every blob's bytes."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID = progress.add_task("blobs", total=0)
        self.sizes: dict[str, int] = {}
        self.moved: dict[str, int] = {}
        self.done = {"copied": 0, "skipped": 0, "mounted": 0}

    def blob_started(self, digest: str, size: int) -> None:
        if digest not in self.sizes:
            self.sizes[digest] = size
            self.progress.update(self.task, total=sum(self.sizes.values()))

    def blob_advanced(self, digest: str, nbytes: int) -> None:
        self.moved[digest] = self.moved.get(digest, 0) + nbytes
        self.progress.advance(self.task, nbytes)

    def blob_finished(self, digest: str, outcome: BlobOutcome) -> None:
        self.done[outcome] += 1
        if outcome != "copied":  # nothing streamed: count the blob as done at once
            self.progress.advance(self.task, self.sizes.get(digest, 0))
        described = ", ".join(f"{n} {k}" for k, n in self.done.items() if n)
        self.progress.update(self.task, description=f"blobs ({described})")


def summary(src: str, dst: str, result: CopyResult, seconds: float) -> str:
    extra = []
    if result.blobs_skipped:
        extra.append(f"{result.blobs_skipped} blobs already there")
    if result.blobs_mounted:
        extra.append(f"{result.blobs_mounted} mounted")
    if result.missing_platforms:
        extra.append(f"missing platforms: {', '.join(result.missing_platforms)}")
    tail = f" ({'; '.join(extra)})" if extra else ""
    platforms = ",".join(result.platforms) or "-"
    return (
        f"copied {src} -> {dst} digest={result.digest} platforms={platforms} "
        f"bytes={result.bytes_moved} in {seconds:.2f}s{tail}"
    )


async def _run(client: RegistryClient, *args: Any, **kwargs: Any) -> CopyResult:
    async with client:
        return await registry.copy(client, *args, **kwargs)


@click.command(name="copy")
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    metavar="OS/ARCH[/VARIANT]",
    help="Copy only these platforms of an index (repeatable).",
)
@click.option(
    "--all", "all_platforms", is_flag=True, help="Copy the whole index unchanged (same digest)."
)
@click.option("--src-creds", metavar="USER:PASS", help="Credentials for the source registry.")
@click.option("--dest-creds", metavar="USER:PASS", help="Credentials for the destination.")
@registry_options
@click.option(
    "--jobs", type=click.IntRange(1, 64), default=6, show_default=True, help="Blobs in parallel."
)
@click.option("--timeout", type=float, default=0, help="Seconds for the whole copy (0: none).")
@click.option("--json", "as_json", is_flag=True, help="Print the copy result as JSON.")
def command(
    src: str,
    dst: str,
    platforms: tuple[str, ...],
    all_platforms: bool,
    src_creds: str | None,
    dest_creds: str | None,
    authfile: Path | None,
    insecure: tuple[str, ...],
    config_path: Path | None,
    jobs: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Copy image SRC to DST: blobs streamed and verified, manifests last."""
    if all_platforms and platforms:
        fail("copy", "--all copies every platform: do not combine it with --platform")
    try:
        wanted: list[Platform] = [parse_platform(p) for p in platforms]
    except ValueError as exc:
        fail("copy", f"--platform: {exc}")
    source, destination = parse_refs("copy", (src, dst))
    keyring = load_authfile("copy", authfile)
    src_credentials = credentials_for(
        source, parse_creds("copy", "--src-creds", src_creds), keyring
    )
    dst_credentials = credentials_for(
        destination, parse_creds("copy", "--dest-creds", dest_creds), keyring
    )
    client = build_client("copy", insecure, config_path, blob_concurrency=jobs)
    kwargs: dict[str, Any] = {
        "platforms": wanted,
        "all_platforms": all_platforms,
        "src_credentials": src_credentials,
        "dst_credentials": dst_credentials,
        "deadline": Deadline.after(timeout),
    }
    started = time.monotonic()
    interactive = sys.stderr.isatty() and not as_json
    try:
        if interactive:
            from rich.progress import (  # only on a terminal: rich costs ~80 ms to import
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, transient=True) as progress:
                kwargs["progress"] = _Bar(progress)
                result = asyncio.run(_run(client, source, destination, **kwargs))
        else:
            result = asyncio.run(_run(client, source, destination, **kwargs))
    except RegistryError as exc:
        fail("copy", str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        fail("copy", "interrupted: nothing was tagged at the destination", 130)
    seconds = time.monotonic() - started
    if as_json:
        document = {
            "source": str(source),
            "destination": str(destination),
            "seconds": round(seconds, 3),
            "digest": result.digest,
            "sourceDigest": result.source_digest,
            "mediaType": result.media_type,
            "platforms": list(result.platforms),
            "missingPlatforms": list(result.missing_platforms),
            "bytesMoved": result.bytes_moved,
            "blobsCopied": result.blobs_copied,
            "blobsSkipped": result.blobs_skipped,
            "blobsMounted": result.blobs_mounted,
            "manifestsPushed": result.manifests_pushed,
            "manifestsSkipped": result.manifests_skipped,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(summary(str(source), str(destination), result, seconds))
