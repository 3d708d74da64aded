"""kuik-replicator end to end: real processes in local mode, real Redis, real docker-registry.

Registries: `source` (A) holds the images Pods use; `mirror` (B) is where (C)ISMs copy them.
Both are shared by the module; every test uses its own repositories, its own Redis key prefix
and its own cluster directory, so tests never see each other's state.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuikcore.testing import (
    RedisServer,
    RegistryServer,
    get_manifest,
    push_image,
    synthetic_image,
)
from kuikcore.testing.processes import ServiceProcess, bin_path

pytestmark = pytest.mark.timeout(120)

CISM = "ClusterImageSetMirror"


# --- shared servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="module")
def mirror() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="module")
def redis_shared() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


# --- a cluster directory and replicator processes ------------------------------------------


class Env:
    """One test's cluster directory, config and replicator processes."""

    def __init__(self, root: Path, redis_url: str, prefix: str) -> None:
        self.root = root
        self.cluster = root / "cluster"
        self.cluster.mkdir()
        self.redis_url = redis_url
        self.prefix = prefix
        self.processes: list[ServiceProcess] = []
        self.config_overrides: dict[str, Any] = {}

    def config(self, cluster_id: str | None = None, **mirroring: Any) -> Path:
        doc: dict[str, Any] = {
            "redis": {"url": self.redis_url, "keyPrefix": self.prefix},
            "mirroring": {
                "resyncInterval": "1s",
                "jobTimeout": "3s",
                "leaderTTL": "3s",
                "platforms": [{"os": "linux", "architecture": "amd64"}],
                **mirroring,
            },
        }
        if cluster_id:
            doc["clusterID"] = cluster_id
        path = self.root / f"config-{len(self.processes)}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def write(self, name: str, *docs: dict[str, Any]) -> None:
        path = self.cluster / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump_all(docs))
        tmp.rename(path)

    def remove(self, name: str) -> None:
        (self.cluster / name).unlink()

    def start(
        self,
        *,
        cluster: Path | None = None,
        cluster_id: str | None = None,
        workers: int = 4,
        **mirroring: Any,
    ) -> ServiceProcess:
        config = self.config(cluster_id, **mirroring)
        process = ServiceProcess(
            "replicator",
            [
                "--config",
                str(config),
                "--cluster",
                f"dir:{cluster or self.cluster}",
                "--workers",
                str(workers),
            ],
            log_dir=self.root,
        ).start()
        self.processes.append(process)
        process.wait_ready()
        return process

    def status(self, name: str, kind: str = CISM, cluster: Path | None = None) -> dict[str, Any]:
        path = (
            (cluster or self.cluster) / ".kuik" / "resources" / kind / "_cluster" / f"{name}.yaml"
        )
        if not path.exists():
            return {}
        data = yaml.safe_load(path.read_text()) or {}
        return data.get("status") or {}

    def mirrors(
        self, name: str, cluster: Path | None = None
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """(source image, mirror image) -> mirror status."""
        return {
            (entry["image"], m["image"]): {**m, "unusedSince": entry.get("unusedSince")}
            for entry in self.status(name, cluster=cluster).get("matchingImages") or ()
            for m in entry.get("mirrors") or ()
        }

    def events(self, reason: str) -> list[dict[str, Any]]:
        base = self.cluster / ".kuik" / "events"
        found = []
        for path in sorted(base.rglob("*.yaml")) if base.exists() else ():
            event = yaml.safe_load(path.read_text())
            if event.get("reason") == reason:
                found.append(event)
        return found

    def logs(self) -> str:
        return "\n".join(p.log_text() for p in self.processes)

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}\n--- logs ---\n{self.logs()[-6000:]}")

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@pytest.fixture
def env(tmp_path: Path, redis_shared: RedisServer, request: pytest.FixtureRequest) -> Iterator[Env]:
    prefix = f"t{abs(hash(request.node.nodeid)) % 10**8}:"
    environment = Env(tmp_path, redis_shared.url, prefix)
    yield environment
    environment.stop()


def docker_secret(
    name: str, namespace: str, host: str, user: str = "u", password: str = "p"
) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json.dumps({"auths": {host: {"auth": auth}}})},
    }


def cism(
    name: str,
    mirrors: list[dict[str, Any]],
    *,
    cleanup: dict[str, Any] | None = None,
    filter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mirrors": mirrors,
        "filter": filter or {"include": [{"image": ".*"}]},
    }
    if cleanup is not None:
        spec["cleanup"] = cleanup
    return {
        "apiVersion": "kuik.enix.io/v1alpha1",
        "kind": CISM,
        "metadata": {"name": name},
        "spec": spec,
    }


def mirror_spec(registry: RegistryServer, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "registry": registry.host,
        "path": path,
        "credentialSecret": {"name": "mirror-creds", "namespace": "kuik"},
        **extra,
    }


def pod(name: str, *images: str, namespace: str = "apps", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]},
    }


def uploads(registry: RegistryServer, repository: str, since: int = 0) -> int:
    """Manifest PUTs into `repository` (one per copied image or index child)."""
    return registry.count_requests("PUT", rf"/v2/{repository}/manifests/", since=since)


def base_setup(env: Env, mirror: RegistryServer, *docs: dict[str, Any]) -> None:
    env.write("secrets.yaml", docker_secret("mirror-creds", "kuik", mirror.host))
    env.write("mirrors.yaml", *docs)


# --- tests ------------------------------------------------------------------------------------


def test_mirrors_pod_image_and_reports_status(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    image = synthetic_image("basic")
    digest = push_image(source, "basic/app", "1.0", image)
    base_setup(env, mirror, cism("all", [mirror_spec(mirror, "m1")]))
    env.write("pods.yaml", pod("web", f"{source.host}/basic/app:1.0"))
    env.start()
    key = (f"{source.host}/basic/app:1.0", f"{mirror.host}/m1/basic/app:1.0")
    env.wait("mirroredAt", lambda: bool(env.mirrors("all").get(key, {}).get("mirroredAt")))
    copied = get_manifest(mirror, "m1/basic/app", "1.0")
    assert copied.status == 200
    assert copied.digest == digest

    out = subprocess.run(
        [str(bin_path("kuik")), "status", "cism/all", "--cluster", f"dir:{env.cluster}", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    items = json.loads(out.stdout)["items"]
    assert [i["metadata"]["name"] for i in items] == ["all"]
    state = items[0]["status"]["matchingImages"][0]["mirrors"][0]
    assert state["image"] == key[1]
    assert state["mirroredAt"]
    assert state["digest"] == digest
    assert state["platforms"] == ["linux/amd64"]
    assert items[0]["status"]["mirroredCount"] == 1
    assert "kuik.enix.io/mirror-cleanup" in items[0]["metadata"]["finalizers"]

    table = subprocess.run(
        [str(bin_path("kuik")), "status", "--cluster", f"dir:{env.cluster}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "ClusterImageSetMirror/all" in table
    assert "basic/app:1.0" in table
    assert "linux/amd64" in table
