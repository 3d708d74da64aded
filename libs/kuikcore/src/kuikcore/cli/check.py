"""`kuik check REF...`: is each image pullable now? One availability check per image, in parallel.

Statuses and error texts are the ones the monitor writes into ClusterImageSetAvailability
status (upstream's). Exit status 0 when every image is Available, 1 otherwise, 2 on bad input.
Also `kuik route --check`: the same checks over a Pod's alternatives, showing the webhook's
choice (the first Available in order) and why the earlier ones were rejected.

Both also probe each registry host once, as the services' health prober does (`GET /v2/`,
`registryHealth.probeTimeout`), and show that health beside the checks: the webhook passes over
every candidate on a host its probes found down, whatever an image check would say.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Literal

import click

from kuikcore import registry
from kuikcore.cli.copy import (
    build_client,
    credentials_for,
    load_authfile,
    parse_creds,
    parse_refs,
    registry_options,
)
from kuikcore.reference import Reference, parse
from kuikcore.registry import CheckResult, Credentials, Keyring, RegistryClient
from kuikcore.registry.probe import ProbeResult, probe_all

__all__ = ["check_route", "command", "print_checked_route"]

EXIT_UNAVAILABLE = 1
PROBE_TIMEOUT = 0.5  # `registryHealth.probeTimeout`'s default, when no config says otherwise

Health = dict[str, ProbeResult]


def _health_rows(health: Health) -> list[dict[str, Any]]:
    return [
        {"host": r.host, "up": r.ok, "seconds": round(r.seconds, 4), "error": r.error}
        for r in health.values()
    ]


def _print_health(health: Health) -> None:
    if not health:
        return
    click.echo("registry health (GET /v2/, as the services' prober):")
    width = max(len(host) for host in health)
    for host, result in health.items():
        state = f"up ({result.seconds * 1000:.0f} ms)" if result.ok else f"down: {result.error}"
        click.echo(f"  {host:<{width}}  {state}")


def _probe_timeout(config_path: Path | None) -> float:
    if config_path is None:
        return PROBE_TIMEOUT
    from kuikcore.config import load_config

    return load_config(config_path).registry_health.probe_timeout.total_seconds()


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
    probe_within: float,
) -> tuple[list[CheckResult], Health]:
    async with client:
        health = asyncio.ensure_future(
            probe_all(client.transport, (r.registry_host for r in refs), probe_within)
        )
        checks = await asyncio.gather(
            *(
                registry.check(
                    client,
                    ref,
                    method=method,
                    timeout=timeout,
                    credentials=credentials_for(ref, creds, keyring),
                    resolve_digest=resolve_digest,
                )
                for ref in refs
            )
        )
        return list(checks), await health


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
    within = _probe_timeout(config_path)
    results, health = asyncio.run(
        _check_all(client, parsed, keyring, credentials, method, timeout, resolve_digest, within)
    )
    rows = [_row(ref, result) for ref, result in zip(parsed, results, strict=True)]
    if as_json:
        click.echo(json.dumps({"items": rows, "registries": _health_rows(health)}, indent=2))
    else:
        width = max(len(r["image"]) for r in rows)
        for row in rows:
            line = f"{row['image']:<{width}}  {row['status']}"
            if row["error"]:
                line += f"  {row['error']}"
            elif row["digest"]:
                line += f"  {row['digest']}"
            click.echo(line)
        _print_health(health)
    if any(not r.available for r in results):
        sys.exit(EXIT_UNAVAILABLE)


# --- kuik route --check ------------------------------------------------------------------


def _secrets_by_name(cluster: str | None) -> dict[tuple[str, str], dict[str, Any]]:
    """(namespace, name) -> Secret documents found under `--cluster dir:PATH`."""
    if cluster is None or not cluster.startswith("dir:"):
        return {}
    from kuikcore.manifests import read_manifests

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for manifest in read_manifests(cluster.removeprefix("dir:")):
        obj = manifest.obj
        if obj.get("kind") == "Secret" and str(obj.get("apiVersion", "")) == "v1":
            meta = obj.get("metadata") or {}
            found[(str(meta.get("namespace") or "default"), str(meta.get("name")))] = obj
    return found


def _route_keyring(
    pod: dict[str, Any], secret_ref: Any, secrets: dict[tuple[str, str], dict[str, Any]]
) -> Keyring:
    """Pod pull secrets then the alternative's credential secret (what the webhook tries)."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    wanted = [
        (namespace, str(ref.get("name")))
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []
        if isinstance(ref, dict)
    ]
    if secret_ref is not None:
        wanted.append((secret_ref.namespace, secret_ref.name))
    keyring = Keyring()
    for key in wanted:
        if key in secrets:
            try:
                keyring.add_secret(secrets[key])
            except ValueError as exc:
                click.echo(f"warning: {exc}", err=True)
    return keyring


def check_route(
    route: Any,
    pod: dict[str, Any],
    *,
    cluster: str | None,
    config_path: Path | None,
) -> tuple[list[list[CheckResult | None]], Health]:
    """Check every alternative of every container (HEAD, `routing.activeCheck` settings), and
    probe every host they name.

    Returns, per container, one result per alternative (None for skipped containers), and the
    health of each host.
    """
    timeout, resolve_digest, within = 1.0, False, PROBE_TIMEOUT
    if config_path is not None:
        from kuikcore.config import load_config

        config = load_config(config_path)
        active = config.routing.active_check
        timeout, resolve_digest = active.timeout.total_seconds(), active.resolve_digest
        within = config.registry_health.probe_timeout.total_seconds()
    secrets = _secrets_by_name(cluster)
    client = build_client("route", (), config_path)
    hosts = [parse(a.image).registry_host for c in route.containers for a in c.alternatives]

    async def run() -> tuple[list[list[CheckResult | None]], Health]:
        async with client:
            health = asyncio.ensure_future(probe_all(client.transport, hosts, within))
            out: list[list[CheckResult | None]] = []
            for container in route.containers:
                checks = []
                for alternative in container.alternatives:
                    ref = parse(alternative.image)
                    keyring = _route_keyring(pod, alternative.credential_secret, secrets)
                    checks.append(
                        registry.check(
                            client,
                            ref,
                            method="HEAD",
                            timeout=timeout,
                            credentials=keyring.lookup(ref),
                            resolve_digest=resolve_digest,
                        )
                    )
                out.append(list(await asyncio.gather(*checks)))
            return out, await health

    return asyncio.run(run())


def chosen_index(results: list[CheckResult | None]) -> int | None:
    return next((i for i, r in enumerate(results) if r is not None and r.available), None)


def print_checked_route(
    route: Any,
    results: list[list[CheckResult | None]],
    health: Health,
    as_json: bool,
    mode: dict[str, str] | None = None,
) -> None:
    """Each alternative with its status; the first Available is what the webhook picks."""
    if as_json:
        containers = []
        for container, checks in zip(route.containers, results, strict=True):
            doc = container.to_dict()
            for alternative, result in zip(doc["alternatives"], checks, strict=True):
                if result is not None:
                    alternative["status"] = result.status.value
                    alternative["error"] = result.error
            chosen = chosen_index(checks)
            doc["chosen"] = None if chosen is None else doc["alternatives"][chosen]["image"]
            containers.append(doc)
        doc = {"containers": containers, "registries": _health_rows(health)}
        if mode is not None:
            doc = {"mode": mode, **doc}
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    for container, checks in zip(route.containers, results, strict=True):
        click.echo(f"{container.type.value} {container.name}: {container.image}")
        if container.skipped:
            click.echo(f"  skipped: {container.skipped}")
            continue
        chosen = chosen_index(checks)
        width = max((len(a.image) for a in container.alternatives), default=0)
        for i, (alternative, result) in enumerate(
            zip(container.alternatives, checks, strict=True), start=1
        ):
            assert result is not None
            if chosen is not None and i - 1 == chosen:
                verdict = "Available  <- chosen"
            elif chosen is not None and i - 1 > chosen:
                verdict = f"{result.status.value} (not needed)"
            else:
                verdict = f"{result.status.value}" + (f": {result.error}" if result.error else "")
            click.echo(f"  {i}. {alternative.image:<{width}}  {alternative.source}  {verdict}")
        if not container.alternatives:
            click.echo("  no alternative: the image is left as it is")
        elif chosen is None:
            click.echo("  no alternative is available: the image is left as it is")
    _print_health(health)
