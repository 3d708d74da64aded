"""`python -m kuik_testing.demo` (make demo) and `python -m kuik_testing.demo dev` (make dev)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from kuik_testing.demo.manifests import DEMO_IMAGE
from kuik_testing.demo.scenario import Narrator, StepFailed, Target, demo_image, run_scenario
from kuik_testing.demo.stack import LocalStack, Ports
from kuik_testing.processes import bin_path

EXIT_FAILED = 1


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; everything started is stopped before exiting 128+signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def _stopping(stack: LocalStack, narrator: Narrator) -> Iterator[None]:
    """Stop the stack on any exit; further signals are ignored while it stops."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        began = time.monotonic()
        narrator.say("Stopping everything the demo started…")
        stack.stop()
        narrator.say(f"Stopped ({time.monotonic() - began:.1f}s); removed {stack.workdir}")


def _start(stack: LocalStack, narrator: Narrator) -> None:
    with narrator.step("Start Redis, registries A and B, and the three kuik services") as done:
        stack.start_servers(narrator.detail)
        stack.start_services(narrator.detail)
        done(f"local mode on {stack.cluster}")


def _log_tails(stack: LocalStack, narrator: Narrator) -> None:
    for service, process in stack.services.items():
        narrator.say(f"--- last lines of kuik-{service}'s log")
        narrator.detail("\n".join(process.log_text().splitlines()[-15:]))


@click.group(invoke_without_command=True)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds each step may take.")
@click.pass_context
def main(ctx: click.Context, timeout: float) -> None:
    """The kuik demo: mirror an image, kill its registry, see the next Pod rerouted."""
    if ctx.invoked_subcommand is not None:
        return
    narrator = Narrator()
    stack = LocalStack()
    narrator.say("kuik demo: the whole system on this machine, no cluster, no containers.")
    narrator.say(f"work directory: {stack.workdir}")
    code = 0
    try:
        with _stopping(stack, narrator):
            try:
                _start(stack, narrator)
                assert stack.registry_a is not None
                assert stack.registry_b is not None
                target = Target(
                    cluster=stack.cluster,
                    registry_a=stack.registry_a.host,
                    registry_b=stack.registry_b.host,
                    registry_a_url=stack.registry_a.url,
                    webhook_url=stack.webhook_url,
                    webhook_ca=stack.ca_file,
                    monitor_url=stack.metrics_url("monitor"),
                    kill_registry_a=stack.registry_a.kill,
                    status_command=[
                        str(bin_path("kuik")),
                        "status",
                        "--cluster",
                        f"dir:{stack.cluster}",
                    ],
                )
                run_scenario(target, narrator, timeout=timeout)
                narrator.say(
                    f"Demo passed in {time.monotonic() - narrator.started:.1f}s: the Pod was "
                    "rerouted to the mirror while its registry was down."
                )
            except StepFailed as failed:
                _log_tails(stack, narrator)
                narrator.say(f"Demo FAILED at step {failed.step!r}: {failed.reason}")
                code = EXIT_FAILED
    except Interrupted as interrupted:
        narrator.say(f"Interrupted ({interrupted}); everything is stopped.")
        code = 128 + interrupted.signum
    sys.exit(code)


@main.command()
@click.option(
    "--cluster-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("examples/cluster"),
    show_default=True,
    help="The local-mode directory the services read (edit its manifests while they run).",
)
def dev(cluster_dir: Path) -> None:
    """The demo's stack on fixed ports, left running until Ctrl-C."""
    from kuik_testing.images import push_image
    from kuik_testing.registry import RegistryHTTP

    narrator = Narrator()
    stack = LocalStack(cluster_dir=cluster_dir.resolve(), ports=Ports.fixed())
    code = 0
    try:
        with _stopping(stack, narrator):
            try:
                _start(stack, narrator)
            except StepFailed as failed:
                _log_tails(stack, narrator)
                narrator.say(f"kuik dev: could not start: {failed.reason}")
                sys.exit(EXIT_FAILED)
            assert stack.registry_a is not None
            assert stack.registry_b is not None
            assert stack.redis
            repository, tag = DEMO_IMAGE.split(":")
            with RegistryHTTP(stack.registry_a.url) as client:
                push_image(client, repository, tag, demo_image())
            narrator.say("")
            narrator.say("kuik is running in local mode. Addresses:")
            rows = [
                ("cluster directory", f"{stack.cluster}  (edit the manifests; state in .kuik/)"),
                ("redis", stack.redis.url),
                ("registry A", f"{stack.registry_a.url}  (holds {DEMO_IMAGE})"),
                ("registry B", stack.registry_b.url),
                ("webhook", f"{stack.webhook_url}  (CA: {stack.ca_file})"),
                *((f"kuik-{s} metrics", stack.metrics_url(s) + "/metrics") for s in stack.services),
                ("monitor view", stack.metrics_url("monitor") + "/status/images"),
                ("service logs", str(stack.workdir / "logs")),
            ]
            for name, value in rows:
                narrator.say(f"  {name:<24} {value}")
            narrator.say(f"  watch with: uv run kuik status --cluster dir:{stack.cluster}")
            narrator.say("Ctrl-C stops everything.")
            while True:
                dead = [s for s, p in stack.services.items() if not p.running()]
                if dead:
                    _log_tails(stack, narrator)
                    narrator.say(f"kuik dev: kuik-{dead[0]} exited")
                    code = EXIT_FAILED
                    break
                time.sleep(1)
    except Interrupted as interrupted:
        code = 0 if interrupted.signum == signal.SIGINT else 128 + interrupted.signum
    sys.exit(code)


@main.command()
@click.option(
    "--registry",
    default="http://127.0.0.1:5001",
    show_default=True,
    help="URL of the registry to push to (docker-compose's registry A by default).",
)
def push(registry: str) -> None:
    """Push the demo's small image (demo/web:1.0, built in memory) to a registry."""
    from kuik_testing.images import push_image
    from kuik_testing.registry import RegistryHTTP

    repository, tag = DEMO_IMAGE.split(":")
    with RegistryHTTP(registry) as client:
        digest = push_image(client, repository, tag, demo_image())
    click.echo(f"pushed {DEMO_IMAGE} to {registry} ({digest})")


if __name__ == "__main__":
    main()
