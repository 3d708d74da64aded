"""The demo scenario, step by step, against any running kuik stack: the local processes of
`make demo` or the docker-compose stack (its test runs the same steps).

Each step says what it does, waits for the effect it promises (bounded), and prints how long
it took; a step whose effect does not show raises `StepFailed` naming the step.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import yaml

from kuik_testing import objects
from kuik_testing.demo.manifests import (
    CISM_NAME,
    DEMO_IMAGE,
    apply_admission,
    cluster_manifests,
    web_pod,
)
from kuik_testing.images import SyntheticImage

__all__ = ["Narrator", "StepFailed", "Target", "demo_image", "run_scenario", "write_manifests"]

T = TypeVar("T")


class StepFailed(RuntimeError):
    """A step's promised effect did not happen; `.step` is its title."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step {step!r} failed: {reason}")
        self.step = step
        self.reason = reason


@dataclass
class Target:
    """A running stack, as the scenario needs to see it."""

    cluster: Path  # the local-mode directory the services read
    registry_a: str  # registry hosts as written in image references
    registry_b: str
    registry_a_url: str  # where to push from here
    webhook_url: str  # .../mutate
    monitor_url: str  # the monitor's metrics listener
    kill_registry_a: Callable[[], object]
    status_command: list[str]  # `kuik status` for this cluster directory
    webhook_ca: Path | None = None  # None: plain HTTP webhook


class Narrator:
    """Prints each step with the time since the start and the step's own duration."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def detail(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            self.say(f"      {line}")

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Callable[[str], None]]:
        """`with narrator.step("...") as done: ...; done("outcome")`."""
        began = time.monotonic()
        self.say(f"[{began - self.started:6.1f}s] ▶ {title}")
        outcome: list[str] = []
        try:
            yield outcome.append
        except StepFailed:
            raise
        except Exception as error:  # any other failure is this step's failure
            raise StepFailed(title, f"{type(error).__name__}: {error}") from error
        elapsed = time.monotonic() - began
        self.say(f"         ✓ {outcome[-1] if outcome else 'done'} ({elapsed:.1f}s)")


def wait_for(step: str, what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll `probe` until it returns a value; StepFailed naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, ValueError) as error:
            value, last_error = None, f" (last error: {error})"
        if value is not None:
            return value
        time.sleep(0.2)
    raise StepFailed(step, f"{what} not seen within {timeout:.0f}s{last_error}")


def write_manifests(directory: Path, files: dict[str, list[dict[str, Any]]]) -> None:
    """Write each file whole (aside, then renamed), as local mode asks of editors."""
    for name, docs in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        tmp.replace(path)


def _status(cluster: Path, kind: str, name: str) -> dict[str, Any]:
    path = cluster / ".kuik" / "resources" / kind / "_cluster" / f"{name}.yaml"
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text()) or {}).get("status") or {}


def _http(url: str, body: bytes | None = None, ca: Path | None = None) -> bytes:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        data: bytes = response.read()
        return data


def _port_closed(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    host = {"localhost": "127.0.0.1"}.get(host, host)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


def _registry_event(cluster: Path, reason: str, host: str) -> dict[str, Any] | None:
    """The first Event of `reason` whose note names `host`, from local mode's Event files."""
    for path in sorted((cluster / ".kuik" / "events").rglob("*.yaml")):
        try:
            event = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue  # being written
        if isinstance(event, dict) and event.get("reason") == reason and host in event["note"]:
            return event
    return None


def _marked_by(event: dict[str, Any]) -> str:
    """`webhook host-1234` out of `... marked down at T by webhook host-1234: error`."""
    note = str(event.get("note", ""))
    by = note.partition(" by ")[2].partition(": ")[0]
    return by or "kuik"


def _monitor_items(target: Target) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(_http(f"{target.monitor_url}/status/images"))["items"]
    return items


def demo_image() -> SyntheticImage:
    """The image the demo pushes to registry A: two 128 KiB layers, the same every time."""
    from kuik_testing.images import synthetic_image

    return synthetic_image("kuik-demo", layers=2, layer_size=128 * 1024)


def run_scenario(target: Target, narrator: Narrator, *, timeout: float = 60.0) -> None:
    """Mirror an image, lose its registry, admit a Pod: it lands on the mirror."""
    from kuik_testing.images import push_image
    from kuik_testing.registry import RegistryHTTP

    image_a = f"{target.registry_a}/{DEMO_IMAGE}"
    repository, tag = DEMO_IMAGE.split(":")

    with narrator.step(f"Push a small image to registry A: {image_a}") as done:
        image = demo_image()
        with RegistryHTTP(target.registry_a_url) as client:
            digest = push_image(client, repository, tag, image)
        done(f"pushed {len(image.blobs)} blobs, manifest {digest[:19]}…")

    with narrator.step("Declare a Pod using it, a mirror to registry B and an availability watch"):
        files = cluster_manifests(target.registry_a, target.registry_b)
        write_manifests(target.cluster, files)
        for name, docs in files.items():
            kinds = ", ".join(f"{d['kind']} {d['metadata']['name']}" for d in docs)
            narrator.detail(f"{name}: {kinds}")

    title = "The replicator copies the Pod's image to registry B"
    with narrator.step(title) as done:

        def mirrored() -> dict[str, Any] | None:
            for entry in (
                _status(target.cluster, "ClusterImageSetMirror", CISM_NAME).get("matchingImages")
                or ()
            ):
                for mirror in entry.get("mirrors") or ():
                    if mirror.get("mirroredAt"):
                        return dict(mirror)
            return None

        mirror = wait_for(title, f"a mirrored copy in {CISM_NAME}'s status", mirrored, timeout)
        done(f"{image_a} -> {mirror['image']}")
        shown = subprocess.run(
            target.status_command,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "150"},
            check=False,
        )
        narrator.detail(f"$ kuik status\n{shown.stdout}{shown.stderr}")
        if shown.returncode != 0:
            raise StepFailed(title, f"kuik status exited with {shown.returncode}")

    def status_of(image: str) -> str | None:
        for item in _monitor_items(target):
            if item.get("image") == image:
                return str(item.get("status"))
        return None

    def seen(image: str, wanted: str) -> Callable[[], str | None]:
        return lambda: wanted if status_of(image) == wanted else None

    def monitor_sees(title: str, image: str, wanted: str) -> None:
        with narrator.step(title) as done:
            wait_for(title, f"{image} {wanted} on /status/images", seen(image, wanted), timeout)
            done(f"{image}: {wanted}")

    monitor_sees("The monitor finds the image available on registry A", image_a, "Available")

    title = "Registry A goes down"
    with narrator.step(title) as done:
        target.kill_registry_a()
        wait_for(
            title,
            f"{target.registry_a} refusing connections",
            lambda: _port_closed(target.registry_a) or None,
            timeout,
        )
        done(f"{target.registry_a} no longer answers")

    title = "kuik's registry health probes mark registry A down (no monitor involved)"
    with narrator.step(title) as done:
        event = wait_for(
            title,
            f"a RegistryDown Event naming {target.registry_a}",
            lambda: _registry_event(target.cluster, "RegistryDown", target.registry_a),
            timeout,
        )
        narrator.detail(f"Event {event['reason']} on {event['regarding']['kind']} "
                        f"{event['regarding']['name']}: {event['note']}")  # fmt: skip
        done(f"{target.registry_a} marked down by {_marked_by(event)}")

    title = "A new Pod asking for the same image is admitted through the webhook"
    with narrator.step(title) as done:
        web2 = web_pod("web-2", image_a)
        began = time.monotonic()
        answer = json.loads(
            _http(target.webhook_url, objects.body(objects.review(web2)), target.webhook_ca)
        )
        took = time.monotonic() - began
        stored = apply_admission(web2, answer)
        image_now = stored["spec"]["containers"][0]["image"]
        narrator.detail(f"POST {target.webhook_url} answered in {took * 1000:.0f} ms")
        for warning in answer["response"].get("warnings") or ():
            narrator.detail(f"warning: {warning}")
        if not image_now.startswith(f"{target.registry_b}/"):
            raise StepFailed(
                title, f"web-2 kept {image_now}, expected an image on {target.registry_b}"
            )
        annotations = stored["metadata"].get("annotations") or {}
        narrator.detail(f"annotations: {json.dumps(annotations)}")
        write_manifests(target.cluster, {"pods/web-2.yaml": [stored]})
        done(f"web-2 rerouted: {image_a} -> {image_now}")

    title = "Every service knows registry A is down; the monitor checks images on its own schedule"
    with narrator.step(title) as done:

        def registry_a_down() -> str | None:
            metrics = _http(f"{target.monitor_url}/metrics").decode()
            wanted = f'kube_image_keeper_registry_up{{registry="{target.registry_a}"}} 0.0'
            return wanted if wanted in metrics.splitlines() else None

        line = wait_for(title, "registry A down in the monitor's health view", registry_a_down,
                        timeout)  # fmt: skip
        narrator.detail(f"$ curl {target.monitor_url}/metrics | grep registry_up\n  {line}")
        narrator.detail(f"$ curl {target.monitor_url}/status/images")
        for item in _monitor_items(target):
            error = f"  ({item['lastError'][:70]}…)" if item.get("lastError") else ""
            narrator.detail(f"  {item['image']}: {item['status']}{error}")
        done(f"{target.registry_a}: down in the monitor's view too")
