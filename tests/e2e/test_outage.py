"""The headline promise, end to end: a registry dies and the next Pods start from the mirror.

Local mode, the default configuration (no monitor), real processes: a replicator and a webhook on
one Redis, registry A holding ten images, registry B their mirror. With no admission in between:
A killed -> Pods admitted 1 s later are rerouted to B; A back on its port -> Pods keep their
original image again within 5 s; A turned into a black hole (the process stopped: its socket
listens, nothing answers) -> Pods admitted 2 s later are rerouted, each admission under 50 ms.
The same with Redis down, where each webhook probes the registries for itself.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

import kuik_testing.objects as objects
from kuik_testing import RedisServer, RegistryServer, free_port, push_image, synthetic_image
from kuik_testing.processes import ServiceProcess
from tests.e2e.test_webhook import images, user_pod

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("outage")]

IMAGES = 10


class Stack:
    """A cluster directory with ten Pods on A and a ClusterImageSetMirror to B, a replicator and
    a plain-HTTP webhook on it (local mode needs no TLS), and a kept-alive admission client."""

    def __init__(self, root: Path, a: RegistryServer, b: RegistryServer, redis: RedisServer):
        self.root, self.a, self.b, self.redis = root, a, b, redis
        self.cluster = root / "cluster"
        self.cluster.mkdir()
        self.processes: list[ServiceProcess] = []
        self.common: list[str] = []
        self.port = 0
        self._connection: http.client.HTTPConnection | None = None

    @property
    def originals(self) -> dict[str, str]:
        return {f"c{i}": f"{self.a.host}/outage/app{i}:1" for i in range(IMAGES)}

    def mirrored(self, image: str) -> str:
        return f"{self.b.host}/m/{image.split('/', 1)[1]}"

    def start(self) -> Stack:
        for i in range(IMAGES):
            push_image(self.a, f"outage/app{i}", "1", synthetic_image(f"outage-{i}"))
        cism = objects.cism(
            "to-b",
            objects.mirror(self.b.host, "m"),
            filter={"include": [{"image": rf"{self.a.host.replace('.', '[.]')}/.*"}]},
        )
        running = user_pod("apps", self.originals)
        running["metadata"]["name"] = "running"
        (self.cluster / "docs.yaml").write_text(yaml.safe_dump_all([cism, running]))
        # the default configuration: only where Redis is (and nothing at all for the webhook's
        # TLS: without a certificate it serves plain HTTP, as local mode allows)
        config = self.root / "config.yaml"
        config.write_text(yaml.safe_dump({"redis": {"url": self.redis.url}}))
        self.common = ["--config", str(config), "--cluster", f"dir:{self.cluster}"]
        replicator = ServiceProcess("replicator", self.common, log_dir=self.root).start()
        self.processes.append(replicator)
        self.port = self.add_webhook()
        replicator.wait_ready()
        self.wait("ten images mirrored", self._all_mirrored, 60)
        return self

    def add_webhook(self) -> int:
        """Another webhook replica on the same cluster and Redis: its admission port."""
        port = free_port()
        webhook = ServiceProcess(
            "webhook", [*self.common, "--listen", f"127.0.0.1:{port}"], log_dir=self.root
        ).start()
        self.processes.append(webhook)
        webhook.wait_ready()
        return port

    def _all_mirrored(self) -> bool:
        path = self.cluster / ".kuik/resources/ClusterImageSetMirror/_cluster/to-b.yaml"
        if not path.exists():
            return False
        status = (yaml.safe_load(path.read_text()) or {}).get("status") or {}
        done = [
            m
            for entry in status.get("matchingImages") or ()
            for m in entry.get("mirrors") or ()
            if m.get("mirroredAt")
        ]
        return len(done) == IMAGES

    def admit(self) -> tuple[dict[str, str], float]:
        """Admit a new Pod using the ten images: (its images after the patch, seconds taken)."""
        obj = user_pod("apps", self.originals)
        body = objects.body(objects.review(obj))
        if self._connection is None:
            self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        started = time.perf_counter()
        self._connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        response = self._connection.getresponse()
        answer = json.loads(response.read())
        took = time.perf_counter() - started
        assert response.status == 200
        assert answer["response"]["allowed"] is True
        patched = obj
        if "patch" in answer["response"]:
            ops = json.loads(base64.b64decode(answer["response"]["patch"]))
            patched = jsonpatch.apply_patch(obj, ops)
        return images(patched), took

    def logs(self) -> list[dict[str, Any]]:
        found = []
        for process in self.processes:
            for line in process.log_text().splitlines():
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def wait(self, what: str, check: Callable[[], bool], within: float) -> float:
        started = time.monotonic()
        while not check():
            if time.monotonic() - started > within:
                tail = "\n".join(p.log_text()[-3000:] for p in self.processes)
                raise AssertionError(f"timed out waiting for {what}\n{tail}")
            time.sleep(0.05)
        return time.monotonic() - started

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        for process in self.processes:
            process.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    a, b, redis = RegistryServer().start(), RegistryServer().start(), RedisServer().start()
    found = Stack(tmp_path, a, b, redis)
    try:
        yield found.start()
    finally:
        found.stop()
        a.thaw()
        for server in (a, b, redis):
            server.cleanup()


def outage_and_recovery(stack: Stack) -> dict[str, float]:
    """Kill A, bring it back, black-hole it; assert the promise at each step; the timings."""
    originals = stack.originals
    rerouted = {name: stack.mirrored(image) for name, image in originals.items()}
    warm, _ = stack.admit()
    assert warm == originals  # A is up: nothing to change

    stack.a.kill()
    time.sleep(1.0)
    after_kill, _ = stack.admit()
    assert after_kill == rerouted, "Pods admitted 1 s after the kill keep a dead image"

    stack.a.start()  # the same port and storage
    recovered = stack.wait("original images again", lambda: stack.admit()[0] == originals, 5.0)
    for _ in range(10):  # and it stays so: no flapping
        assert stack.admit()[0] == originals
        time.sleep(0.05)

    stack.a.freeze()  # the socket listens, nothing ever answers
    time.sleep(2.0)
    slowest = 0.0
    for _ in range(5):
        got, took = stack.admit()
        assert got == rerouted, "Pods admitted 2 s into a black hole keep a dead image"
        slowest = max(slowest, took)
    assert slowest < 0.05, f"an admission took {slowest * 1000:.1f} ms"
    return {"recovered": recovered, "slowest": slowest}


def test_a_dead_registry_is_routed_around_within_a_second_and_back_within_five(
    stack: Stack,
) -> None:
    outage_and_recovery(stack)
    logs = stack.logs()
    down = [e for e in logs if e.get("event") == "registry marked down"]
    up = [e for e in logs if e.get("event") == "registry back up"]
    assert {e["registry"] for e in down + up} == {stack.a.host}
    # the kill and the black hole: two transitions at least (a probe starved of CPU on a loaded
    # machine may add a flap, never more than the probes that saw the outage)
    assert len(down) >= 2
    probes_down = sum(
        float(line.rsplit(" ", 1)[1])
        for process in stack.processes
        for line in process.metrics().splitlines()
        if line.startswith('kube_image_keeper_registry_probes_total{result="down"}')
    )
    assert len(down) < probes_down / 2, "a line per probe, not per transition"
    # one line and one Event per transition, across both services (whoever saw it first)
    events = [
        yaml.safe_load(p.read_text())
        for p in sorted((stack.cluster / ".kuik" / "events").rglob("*.yaml"))
    ]
    reasons = [e["reason"] for e in events if e["reason"] in ("RegistryDown", "RegistryUp")]
    assert reasons.count("RegistryDown") == len(down)
    assert reasons.count("RegistryUp") == len(up) >= 1
    assert all(e["regarding"]["name"] == "to-b" for e in events if e["reason"] == "RegistryUp")


def test_the_same_with_redis_down(stack: Stack) -> None:
    stack.redis.stop()
    time.sleep(1.5)  # the services notice within a second or so
    outage_and_recovery(stack)
    assert any(
        e.get("event") == "registry marked down" and "(no redis)" in e.get("by", "")
        for e in stack.logs()
        if e.get("service") == "webhook"
    )


def test_the_probe_rate_does_not_grow_with_replicas(stack: Stack) -> None:
    """Two webhooks and a replicator share Redis: A sees one `GET /v2/` per probe interval
    (default 0.5 s), from whichever process holds the prober lease."""
    stack.add_webhook()
    stack.admit()  # every process now wants A
    time.sleep(1.0)
    mark = stack.a.log_offset()
    time.sleep(4.0)
    probes = stack.a.count_requests("GET", "/v2/", since=mark)
    assert 6 <= probes <= 10, f"{probes} probes of A in 4 s (one process: 8; three: 24)"
    probers = [e for e in stack.logs() if e.get("event") == "registry health prober elected"]
    assert len(probers) == 1, probers
