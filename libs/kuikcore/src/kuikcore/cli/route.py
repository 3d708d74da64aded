"""`kuik route`: preview, without touching anything, how the webhook would route a Pod.

Reads one Pod manifest and the kuik CRs found in the YAML files under `--cluster dir:PATH`
and prints, for every container, its ordered alternatives and where each comes from.
No availability check is made: the first alternative is what the webhook tries first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from kuikcore.api import GROUP, InvalidResource, Resource, parse_resource
from kuikcore.manifests import InvalidManifest, Manifest, read_manifests
from kuikcore.mode import Mode, ModeChoice, mode_for
from kuikcore.pods import pod_namespace
from kuikcore.routing import PodRoute, RoutingOptions, route_pod

if TYPE_CHECKING:
    from kuikcore.config import Config

__all__ = ["command", "load_resources"]

EXIT_INVALID = 2


def _fail(message: str) -> NoReturn:
    click.echo(f"kuik route: {message}", err=True)
    sys.exit(EXIT_INVALID)


def _is_kuik(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).partition("/")[0] == GROUP


def load_resources(manifests: list[Manifest]) -> list[Resource]:
    """Parse the kuik documents among `manifests`; raises ValueError naming file and document."""
    resources: list[Resource] = []
    for manifest in manifests:
        if not _is_kuik(manifest.obj):
            continue
        try:
            resources.append(parse_resource(manifest.obj))
        except InvalidResource as exc:
            raise ValueError(f"{manifest.where}: {exc}") from None
    return resources


def _load_pod(path: Path) -> dict[str, Any]:
    pods = [m for m in read_manifests(path) if m.obj.get("kind") == "Pod"]
    if len(pods) != 1:
        raise ValueError(f"{path}: expected exactly one Pod document, found {len(pods)}")
    pod = pods[0]
    spec = pod.obj.get("spec")
    if not isinstance(spec, dict) or not isinstance(spec.get("containers"), list):
        raise ValueError(f"{pod.where}: a Pod needs spec.containers (a list)")
    return pod.obj


def _cluster_resources(cluster: str | None) -> list[Resource]:
    if cluster is None:
        return []
    scheme, sep, location = cluster.partition(":")
    if scheme != "dir" or not sep or not location:
        raise ValueError(
            f"--cluster {cluster!r}: kuik route reads manifests only, use --cluster dir:PATH"
        )
    return load_resources(read_manifests(location))


def _config(config_path: Path | None) -> Config | None:
    if config_path is None:
        return None
    from kuikcore.config import load_config  # only when asked: keeps `kuik route` light

    return load_config(config_path)


def _namespace_labels(cluster: str | None, namespace: str) -> dict[str, str] | None:
    """The Pod's Namespace labels from the `--cluster` manifests (None: no such document)."""
    if cluster is None:
        return None
    for manifest in read_manifests(cluster.partition(":")[2]):
        obj = manifest.obj
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Namespace" and meta.get("name") == namespace:
            labels = meta.get("labels") or {}
            return {str(k): str(v) for k, v in labels.items()}
    return None


def _mode(pod: dict[str, Any], cluster: str | None, config: Config | None) -> ModeChoice:
    default = config.webhook.mode if config is not None else Mode.ENFORCE
    return mode_for(default, _namespace_labels(cluster, pod_namespace(pod)))


def _mode_line(choice: ModeChoice) -> str:
    what = "patches the Pod" if choice.mode is Mode.ENFORCE else "patches nothing, logs and counts"
    return f"mode: {choice.mode.value} ({choice.source}): the webhook {what}"


def _print_text(route: PodRoute) -> None:
    if route.skipped:
        click.echo(f"pod skipped: {route.skipped}")
    for container in route.containers:
        click.echo(f"{container.type.value} {container.name}: {container.image}")
        if container.skipped:
            click.echo(f"  skipped: {container.skipped}")
            continue
        width = max((len(a.image) for a in container.alternatives), default=0)
        for i, alternative in enumerate(container.alternatives, start=1):
            secret = ""
            if alternative.credential_secret is not None:
                ref = alternative.credential_secret
                secret = f"  (pull secret {ref.namespace}/{ref.name})"
            click.echo(f"  {i}. {alternative.image:<{width}}  {alternative.source}{secret}")
        if not container.alternatives:
            click.echo("  no alternative: the image is left as it is")


@click.command(name="route")
@click.argument("pod_file", metavar="POD.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--cluster",
    metavar="dir:PATH",
    help="Read the kuik CRs from the YAML files under PATH (any depth, multi-document).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Operator config file (routing.*, skipLabels, skipAnnotations).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--check",
    is_flag=True,
    help="Check each alternative in its registry (routing.activeCheck settings, pull secrets "
    "from --cluster) and show which one the webhook would choose.",
)
def command(
    pod_file: Path, cluster: str | None, config_path: Path | None, as_json: bool, check: bool
) -> None:
    """Show each container's alternatives, in the order the webhook tries them.

    Invalid manifests are reported with the file and document and exit with status 2.
    CRs whose filter cannot be compiled are skipped with a warning on stderr.
    """
    try:
        pod = _load_pod(pod_file)
        resources = _cluster_resources(cluster)
        config = _config(config_path)
        options = RoutingOptions.from_config(config) if config else RoutingOptions()
        mode = _mode(pod, cluster, config)
    except (InvalidManifest, ValueError) as exc:
        _fail(str(exc))
    route = route_pod(pod, resources, options)
    for problem in route.problems:
        click.echo(f"warning: skipping {problem}", err=True)
    if mode.problem is not None:
        click.echo(f"warning: {mode.problem}", err=True)
    mode_doc = {"mode": mode.mode.value, "source": mode.source}
    if check:  # registry access lives with `kuik check` (kuikcore.cli.check)
        from kuikcore.cli.check import check_route, print_checked_route

        results, health = check_route(route, pod, cluster=cluster, config_path=config_path)
        if not as_json:
            click.echo(_mode_line(mode))
        print_checked_route(route, results, health, as_json, mode_doc)
        return
    if as_json:
        document = {"mode": mode_doc, "containers": [c.to_dict() for c in route.containers]}
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        click.echo(_mode_line(mode))
        _print_text(route)
