"""The `kuik` command: preview routing, copy and check images, read status.

Each subcommand lives in its own module (`kuikcore.cli.<name>`) exposing a click
command named `command`; this group imports them lazily so `kuik --help` stays
fast and one broken import cannot take the other subcommands down.
"""

from __future__ import annotations

import importlib

import click

# subcommand name -> module defining `command`
SUBCOMMANDS: dict[str, str] = {
    "normalize": "kuikcore.cli.normalize",
    "route": "kuikcore.cli.route",
    "copy": "kuikcore.cli.copy",
    "check": "kuikcore.cli.check",
    "status": "kuikcore.cli.status",
    "release-finalizers": "kuikcore.cli.finalizers",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in SUBCOMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        module_name = SUBCOMMANDS.get(name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet
                return None
            raise
        command: click.Command = module.command
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="kuikcore", prog_name="kuik")
def main() -> None:
    """kube-image-keeper: keep every Pod's images pullable."""
