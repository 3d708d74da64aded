"""kuik-replicator end to end: real processes in local mode, real Redis, real docker-registry.

Registries: `source` (A) holds the images Pods use; `mirror` (B) is where (C)ISMs copy them.
Both are shared by the module; every test uses its own repositories, its own Redis key prefix
and its own cluster directory, so tests never see each other's state.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuik_testing import (
    RedisServer,
    RegistryServer,
    get_manifest,
    make_layer,
    objects,
    push_image,
    synthetic_image,
    synthetic_index,
)
from kuik_testing.objects import all_images, cism, docker_secret, pod
from kuik_testing.processes import ServiceProcess, bin_path
from kuikcore.coord import connect
from kuikcore.mirroring import report_stale_mirror
from kuikcore.names import REROUTE_REASONS_ANNOTATION

pytestmark = pytest.mark.timeout(120)

CISM = "ClusterImageSetMirror"


# --- shared servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror() -> Iterator[RegistryServer]:
    with RegistryServer() as server:
        yield server


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


def mirror_spec(registry: RegistryServer, path: str, **extra: Any) -> dict[str, Any]:
    """A mirror entry for `registry` with the credentials `base_setup` writes."""
    creds = {"name": "mirror-creds", "namespace": "kuik"}
    return objects.mirror(registry.host, path, credentialSecret=creds, **extra)


def uploads(registry: RegistryServer, repository: str, since: int = 0) -> int:
    """Manifest PUTs into `repository` (one per copied image or index child)."""
    return registry.count_requests("PUT", rf"/v2/{repository}/manifests/", since=since)


def base_setup(env: Env, mirror: RegistryServer, *docs: dict[str, Any]) -> None:
    env.write("secrets.yaml", docker_secret("kuik", "mirror-creds", mirror.host, string_data=True))
    env.write("mirrors.yaml", *docs)


# --- tests ------------------------------------------------------------------------------------


def test_mirrors_pod_image_and_reports_status(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    image = synthetic_image("basic")
    digest = push_image(source, "basic/app", "1.0", image)
    base_setup(env, mirror, cism("all", mirror_spec(mirror, "m1"), filter=all_images()))
    env.write("pods.yaml", pod(f"{source.host}/basic/app:1.0", namespace="apps", name="web"))
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


def test_two_replicators_copy_every_image_exactly_once(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    base = [make_layer("twice/base", 4096)]
    images = [f"{source.host}/twice/app{i}:1" for i in range(8)]
    for i in range(8):
        push_image(source, f"twice/app{i}", "1", synthetic_image(f"twice{i}", base_layers=base))
    mark = mirror.log_offset()
    base_setup(env, mirror, cism("all", mirror_spec(mirror, "m2"), filter=all_images()))
    env.start(workers=2)
    env.start(workers=2)
    env.write(
        "pods.yaml", *(pod(image, namespace="apps", name=f"p{i}") for i, image in enumerate(images))
    )
    env.wait(
        "8 images mirrored",
        lambda: sum(1 for m in env.mirrors("all").values() if m.get("mirroredAt")) == 8,
    )
    for i in range(8):
        assert uploads(mirror, f"m2/twice/app{i}", since=mark) == 1, f"app{i}"
    # 8 x (config + 2 own layers) + the shared base, which each process uploads at most once
    # (mounted or found elsewhere); nothing is uploaded twice by retries or duplicate jobs
    blob_puts = mirror.count_requests("PUT", r"/v2/m2/twice/.*/blobs/uploads/", since=mark)
    assert 8 * 3 + 1 <= blob_puts <= 8 * 3 + 2
    worked = [p for p in env.processes if '"successfully mirrored image"' in p.log_text()]
    assert worked, "no process logged a copy"


def test_sigkill_mid_copy_is_finished_by_another_and_never_tags_a_half_image(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    image = synthetic_image("large", layers=3, layer_size=24 * 1024 * 1024)
    digest = push_image(source, "large/app", "1", image)
    base_setup(env, mirror, cism("all", mirror_spec(mirror, "m3"), filter=all_images()))
    first = env.start()
    mark = mirror.log_offset()
    env.write("pods.yaml", pod(f"{source.host}/large/app:1", namespace="apps", name="big"))
    env.wait(
        "the first blob upload to start",
        lambda: mirror.count_requests("POST", r"/v2/m3/large/app/blobs/uploads/", since=mark) > 0,
        timeout=30,
    )
    mirror.freeze()  # uploads in flight now hang: the kill lands mid-copy
    try:
        second = env.start()
        first.kill()
    finally:
        mirror.thaw()
    assert get_manifest(mirror, "m3/large/app", "1").status == 404
    key = (f"{source.host}/large/app:1", f"{mirror.host}/m3/large/app:1")
    env.wait(
        "the copy to be finished", lambda: bool(env.mirrors("all").get(key, {}).get("mirroredAt"))
    )
    final = get_manifest(mirror, "m3/large/app", "1")
    assert final.status == 200
    assert final.digest == digest
    assert uploads(mirror, "m3/large/app", since=mark) == 1
    assert '"successfully mirrored image"' in second.log_text()
    assert '"successfully mirrored image"' not in first.log_text()


def test_retention_deletes_unused_but_keeps_what_others_use_or_re_pushed(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    names = ["gone", "shared", "repushed"]
    for name in names:
        push_image(source, f"ret/{name}", "1", synthetic_image(f"ret-{name}"))
    spec = cism(
        "all",
        mirror_spec(mirror, "m4"),
        filter=all_images(),
        cleanup={"enabled": True, "retention": "1s"},
    )
    # a mirror without credentialSecret: copies work (open registry), deletion has nothing to use
    anonymous = {"registry": mirror.host, "path": "anon"}
    bare = cism(
        "bare",
        anonymous,
        filter={"include": [{"image": ".*/ret/gone:1"}]},
        cleanup={"enabled": True, "retention": "1s"},
    )
    base_setup(env, mirror, spec, bare)
    env.write(
        "pods.yaml",
        pod(*(f"{source.host}/ret/{n}:1" for n in names), namespace="apps", name="user"),
    )
    # a second cluster sharing Redis and the mirror registry runs "shared"
    other = env.root / "other"
    other.mkdir()
    (other / "all.yaml").write_text(
        yaml.safe_dump_all(
            [
                docker_secret("kuik", "mirror-creds", mirror.host, string_data=True),
                spec,
                pod(f"{source.host}/ret/shared:1", namespace="apps", name="user"),
            ]
        )
    )
    env.start(cluster_id="c1")
    pairs = {n: (f"{source.host}/ret/{n}:1", f"{mirror.host}/m4/ret/{n}:1") for n in names}
    env.wait(
        "3 images mirrored",
        lambda: all(env.mirrors("all").get(p, {}).get("mirroredAt") for p in pairs.values()),
    )
    mark = mirror.log_offset()
    env.start(cluster=other, cluster_id="c2")
    env.wait(
        "cluster c2 mirrored its image",
        lambda: bool(env.mirrors("all", other).get(pairs["shared"], {}).get("mirroredAt")),
    )
    # the second cluster found the copy in place: nothing uploaded, one HEAD at the destination
    assert mirror.count_requests("PUT", r"/v2/m4/ret/shared/", since=mark) == 0
    assert mirror.count_requests("POST", r"/v2/m4/ret/shared/", since=mark) == 0
    # someone else pushes another image under the mirrored tag
    intruder = push_image(mirror, "m4/ret/repushed", "1", synthetic_image("intruder"))
    env.write("pods.yaml", pod(f"{source.host}/ret/unrelated:1", namespace="apps", name="other"))

    env.wait("the unused copy to be deleted", lambda: pairs["gone"] not in env.mirrors("all"))
    assert get_manifest(mirror, "m4/ret/gone", "1").status == 404
    env.wait(
        "the shared copy to be kept with a reason",
        lambda: "c2" in (env.mirrors("all").get(pairs["shared"], {}).get("lastError") or ""),
    )
    env.wait(
        "the re-pushed tag to be kept with a reason",
        lambda: (
            "re-pushed" in (env.mirrors("all").get(pairs["repushed"], {}).get("lastError") or "")
        ),
    )
    bare_pair = (pairs["gone"][0], f"{mirror.host}/anon/ret/gone:1")
    env.wait(
        "the copy without a credential secret to be kept with a reason",
        lambda: (
            "no credentialSecret" in (env.mirrors("bare").get(bare_pair, {}).get("lastError") or "")
        ),
    )
    assert env.mirrors("bare")[bare_pair]["mirroredAt"]
    assert get_manifest(mirror, "anon/ret/gone", "1").status == 200
    assert get_manifest(mirror, "m4/ret/shared", "1").status == 200
    assert get_manifest(mirror, "m4/ret/repushed", "1").digest == intruder
    assert env.events("MirrorDeleted")


def test_mirror_removed_from_spec_leaves_status_and_is_deleted(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    push_image(source, "rm/app", "1", synthetic_image("rm"))
    two = [mirror_spec(mirror, "keep"), mirror_spec(mirror, "drop")]
    cleanup = {"enabled": True, "retention": "1h"}
    base_setup(env, mirror, cism("all", *two, filter=all_images(), cleanup=cleanup))
    env.write("pods.yaml", pod(f"{source.host}/rm/app:1", namespace="apps", name="p"))
    env.start()
    src = f"{source.host}/rm/app:1"
    kept, dropped = (src, f"{mirror.host}/keep/rm/app:1"), (src, f"{mirror.host}/drop/rm/app:1")
    env.wait(
        "both mirrors",
        lambda: all(env.mirrors("all").get(k, {}).get("mirroredAt") for k in (kept, dropped)),
    )
    env.write("mirrors.yaml", cism("all", *two[:1], filter=all_images(), cleanup=cleanup))
    env.wait("the removed mirror to leave status", lambda: dropped not in env.mirrors("all"))
    assert get_manifest(mirror, "drop/rm/app", "1").status == 404
    assert get_manifest(mirror, "keep/rm/app", "1").status == 200
    assert env.mirrors("all")[kept]["mirroredAt"]


def test_platform_filter_is_honoured_recorded_and_explained(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    index = synthetic_index("multi", platforms=("linux/amd64", "linux/arm64/v8"))
    push_image(source, "plat/multi", "1", index)
    push_image(source, "plat/s390x", "1", synthetic_image("s390x", platform="linux/s390x"))
    # gone from the source, but already in the mirror (upstream 9969b67: counts as mirrored)
    kept = push_image(mirror, "m5/plat/gone", "1", synthetic_image("gone"))
    base_setup(env, mirror, cism("all", mirror_spec(mirror, "m5"), filter=all_images()))
    env.write(
        "pods.yaml",
        pod(
            f"{source.host}/plat/multi:1",
            f"{source.host}/plat/s390x:1",
            f"{source.host}/plat/gone:1",
            namespace="apps",
            name="p",
        ),
    )
    env.start()
    multi = (f"{source.host}/plat/multi:1", f"{mirror.host}/m5/plat/multi:1")
    wrong = (f"{source.host}/plat/s390x:1", f"{mirror.host}/m5/plat/s390x:1")
    env.wait(
        "the index mirrored", lambda: bool(env.mirrors("all").get(multi, {}).get("mirroredAt"))
    )
    state = env.mirrors("all")[multi]
    assert state["platforms"] == ["linux/amd64"]
    copied = json.loads(get_manifest(mirror, "m5/plat/multi", "1").body)
    assert [m["platform"]["architecture"] for m in copied["manifests"]] == ["amd64"]
    assert state["digest"] != index.digest  # filtered index: a new digest, recorded
    env.wait("the error", lambda: bool(env.mirrors("all").get(wrong, {}).get("lastError")))
    error = env.mirrors("all")[wrong]["lastError"]
    assert "none of the configured platforms are available in the source image" in error
    assert not env.mirrors("all")[wrong].get("mirroredAt")
    env.wait("a MirrorFailed event", lambda: bool(env.events("MirrorFailed")))
    assert env.events("MirrorFailed")[0]["type"] == "Warning"
    gone = (f"{source.host}/plat/gone:1", f"{mirror.host}/m5/plat/gone:1")
    env.wait(
        "the existing mirror", lambda: bool(env.mirrors("all").get(gone, {}).get("mirroredAt"))
    )
    assert env.mirrors("all")[gone]["digest"] == kept
    assert "lastError" not in env.mirrors("all")[gone]


def test_digest_pinned_copied_verbatim_and_stale_report_recopies(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    index = synthetic_index("pinned", platforms=("linux/amd64", "linux/arm64/v8"))
    digest = push_image(source, "pin/app", None, index)
    image = f"{source.host}/pin/app@{digest}"
    push_image(source, "pin/tagged", "1", synthetic_image("stale"))
    base_setup(env, mirror, cism("all", mirror_spec(mirror, "m6"), filter=all_images()))
    env.write("pods.yaml", pod(image, f"{source.host}/pin/tagged:1", namespace="apps", name="p"))
    env.start(cluster_id="pin")
    pinned = (image, f"{mirror.host}/m6/pin/app@{digest}")
    tagged = (f"{source.host}/pin/tagged:1", f"{mirror.host}/m6/pin/tagged:1")
    env.wait(
        "both mirrored",
        lambda: all(env.mirrors("all").get(k, {}).get("mirroredAt") for k in (pinned, tagged)),
    )
    copied = get_manifest(mirror, "m6/pin/app", digest)
    assert copied.status == 200
    assert copied.body == index.manifest_bytes
    for child in index.children:
        assert get_manifest(mirror, "m6/pin/app", child.digest).status == 200
    assert env.mirrors("all")[pinned]["platforms"] == ["linux/amd64", "linux/arm64/v8"]

    # someone deletes the mirrored tag; the webhook finds it missing and reports it
    tag_digest = get_manifest(mirror, "m6/pin/tagged", "1").digest
    with mirror.client() as client:
        assert client.request("DELETE", f"/v2/m6/pin/tagged/manifests/{tag_digest}").status == 202
    assert get_manifest(mirror, "m6/pin/tagged", "1").status == 404

    async def report() -> None:
        coord = connect(env.redis_url, prefix=env.prefix)
        try:
            await report_stale_mirror(
                coord,
                "pin",
                source=tagged[0],
                destination=tagged[1],
                credential_secret=("kuik", "mirror-creds"),
            )
        finally:
            await coord.aclose()

    asyncio.run(report())
    env.wait(
        "the stale mirror to be copied again",
        lambda: get_manifest(mirror, "m6/pin/tagged", "1").status == 200,
        timeout=20,
    )


def test_redis_restart_loses_no_job_and_invalid_filter_is_isolated(
    tmp_path: Path,
    source: RegistryServer,
    mirror: RegistryServer,
    redis_server_private: RedisServer,
) -> None:
    env = Env(tmp_path, redis_server_private.url, "rr:")
    try:
        for name in ("one", "two", "three", "four"):
            push_image(source, f"rr/{name}", "1", synthetic_image(f"rr-{name}"))
        bad = cism("bad", mirror_spec(mirror, "bad"), filter={"include": [{"label": "!!nope"}]})
        base_setup(env, mirror, cism("all", mirror_spec(mirror, "m7"), filter=all_images()), bad)
        env.write("pods.yaml", pod(f"{source.host}/rr/one:1", namespace="apps", name="p1"))
        env.start(resyncInterval="1h")  # no periodic re-plan: queued jobs must survive
        one = (f"{source.host}/rr/one:1", f"{mirror.host}/m7/rr/one:1")
        env.wait("first image", lambda: bool(env.mirrors("all").get(one, {}).get("mirroredAt")))
        env.wait("InvalidFilter event", lambda: bool(env.events("InvalidFilter")))
        event = env.events("InvalidFilter")[0]
        assert event["type"] == "Warning"
        assert event["note"].startswith("filter is invalid: ")
        assert event["regarding"]["name"] == "bad"

        mirror.freeze()  # the next copies stay queued or in flight across the restart
        try:
            env.write(
                "pods.yaml",
                pod(f"{source.host}/rr/one:1", namespace="apps", name="p1"),
                pod(
                    f"{source.host}/rr/two:1",
                    f"{source.host}/rr/three:1",
                    namespace="apps",
                    name="p2",
                ),
            )
            env.wait(
                "jobs queued",
                lambda: (
                    b"rr:q:"
                    in subprocess.run(
                        [
                            "redis-cli",
                            "-u",
                            redis_server_private.url,
                            "--scan",
                            "--pattern",
                            "rr:q:*:job:*",
                        ],
                        capture_output=True,
                        check=False,
                    ).stdout
                ),
                timeout=20,
            )
            redis_server_private.restart()
        finally:
            mirror.thaw()
        # planning resumes by itself: a Pod created after the restart is mirrored too
        env.write("more.yaml", pod(f"{source.host}/rr/four:1", namespace="apps", name="p3"))
        for name in ("two", "three", "four"):
            pair = (f"{source.host}/rr/{name}:1", f"{mirror.host}/m7/rr/{name}:1")
            env.wait(name, lambda: bool(env.mirrors("all").get(pair, {}).get("mirroredAt")))  # noqa: B023
        assert all(p.running() for p in env.processes)
        bad_status = env.status("bad")  # nothing planned for it; its conditions say why
        assert "matchingImages" not in bad_status
        assert {c["type"]: (c["status"], c["reason"]) for c in bad_status["conditions"]} == {
            "Ready": ("False", "InvalidFilter"),
            "Degraded": ("True", "InvalidFilter"),
        }
    finally:
        env.stop()


@pytest.fixture
def own_redis_env(tmp_path: Path) -> Iterator[tuple[Env, RedisServer]]:
    """An Env on a redis-server of the test's own, without persistence: a restart loses all."""
    redis = RedisServer().start()
    environment = Env(tmp_path, redis.url, "own:")
    yield environment, redis
    environment.stop()
    redis.cleanup()


def start_with_first_mirrored(
    env: Env, source: RegistryServer, mirror: RegistryServer, repo: str
) -> tuple[ServiceProcess, Callable[[str], bool]]:
    """Push `<repo>/first:1` and `<repo>/second:1`, run a replicator mirroring every image, wait
    for `first` (a Pod uses it); return the process and `mirrored(name)`."""
    for name in ("first", "second"):
        push_image(source, f"{repo}/{name}", "1", synthetic_image(f"{repo}-{name}"))
    base_setup(env, mirror, cism("all", mirror_spec(mirror, f"m-{repo}"), filter=all_images()))
    env.write("pods.yaml", pod(f"{source.host}/{repo}/first:1", namespace="apps", name="p1"))
    process = env.start()

    def mirrored(name: str) -> bool:
        pair = (f"{source.host}/{repo}/{name}:1", f"{mirror.host}/m-{repo}/{repo}/{name}:1")
        return bool(env.mirrors("all").get(pair, {}).get("mirroredAt"))

    env.wait("the first image mirrored", lambda: mirrored("first"))
    return process, mirrored


def test_redis_restarted_empty_replicator_survives_and_mirrors_pods_of_the_outage(
    own_redis_env: tuple[Env, RedisServer], source: RegistryServer, mirror: RegistryServer
) -> None:
    """Redis killed, then back EMPTY on the same port (no persistence): the queue's consumer
    groups are gone. The replicator must neither exit nor stall: a Pod created during the
    outage is mirrored within 30 s of Redis's return."""
    env, redis = own_redis_env
    process, mirrored = start_with_first_mirrored(env, source, mirror, "empty")
    redis.kill()
    env.write("more.yaml", pod(f"{source.host}/empty/second:1", namespace="apps", name="p2"))
    time.sleep(4.0)  # long enough for the leadership lease (3 s) to lapse
    redis.start()  # same port, empty
    back = time.monotonic()
    env.wait("the Pod of the outage mirrored", lambda: mirrored("second"), timeout=30.0)
    assert time.monotonic() - back < 30.0
    assert process.running(), process.log_text()[-4000:]
    assert process.get("/readyz")[0] == 200


def loop_restarts(process: ServiceProcess, loop: str) -> float | None:
    return process.sample("kube_image_keeper_loop_restarts_total", loop=loop)


def test_a_loop_failing_on_a_redis_error_is_restarted_not_fatal(
    own_redis_env: tuple[Env, RedisServer], source: RegistryServer, mirror: RegistryServer
) -> None:
    """Redis refuses a command for a while (an ACL mistake: an error, not an outage). The loops
    needing it fail; they are logged, counted and restarted, and the process keeps working."""
    env, redis = own_redis_env

    def acl(rule: str) -> None:
        subprocess.run(
            ["redis-cli", "-u", redis.url, "ACL", "SETUSER", "default", rule],
            check=True,
            capture_output=True,
        )

    process, mirrored = start_with_first_mirrored(env, source, mirror, "acl")
    assert loop_restarts(process, "replicator-queue-depth") == 0
    acl("-xpending")  # the queue-depth gauge's XPENDING now fails with NOPERM
    env.wait(
        "a restart of the queue-depth loop",
        lambda: (loop_restarts(process, "replicator-queue-depth") or 0) >= 1,
        timeout=15,
    )
    acl("+xpending")
    env.write("more.yaml", pod(f"{source.host}/acl/second:1", namespace="apps", name="p2"))
    env.wait("the second image mirrored", lambda: mirrored("second"))
    assert process.running()
    failures = [
        json.loads(line)
        for line in process.log_text().splitlines()
        if "background loop failed" in line
    ]
    assert failures[0]["loop"] == "replicator-queue-depth"
    assert "Traceback" in failures[0]["exception"]
    assert "no permissions to run the 'xpending' command" in failures[0]["exception"]


def test_deleting_a_cism_deletes_its_mirrors_and_pull_secret_copies(
    env: Env, source: RegistryServer, mirror: RegistryServer
) -> None:
    from kuikcore.api import (
        OWNER_KIND_LABEL,
        OWNER_NAME_LABEL,
        OWNER_UID_LABEL,
        SECRET_CLEANUP_FINALIZER,
    )
    from kuikcore.cluster.open import open_cluster

    push_image(source, "gc/app", "1", synthetic_image("gc"))
    base_setup(env, mirror, cism("gc", mirror_spec(mirror, "m8"), filter=all_images()))
    env.write("pods.yaml", pod(f"{source.host}/gc/app:1", namespace="apps", name="p"))
    env.start()
    pair = (f"{source.host}/gc/app:1", f"{mirror.host}/m8/gc/app:1")
    env.wait("mirrored", lambda: bool(env.mirrors("gc").get(pair, {}).get("mirroredAt")))
    state = env.cluster / ".kuik" / "resources" / CISM / "_cluster" / "gc.yaml"
    env.wait(
        "the secret-cleanup finalizer",
        lambda: (
            SECRET_CLEANUP_FINALIZER
            in (yaml.safe_load(state.read_text())["metadata"].get("finalizers") or [])
        ),
    )

    async def copy_secret() -> str:
        """What the webhook does when it routes a Pod of `apps` to this mirror."""
        cluster = await open_cluster(f"dir:{env.cluster}", field_manager="kuik-webhook")
        await cluster.start()
        await cluster.wait_synced()
        try:
            owner = cluster.store.resource(CISM, "", "gc")
            copy = docker_secret(
                "apps", "kuik-mirror-creds-0123456789abcdef", mirror.host, string_data=True
            )
            copy["metadata"]["labels"] = {
                OWNER_UID_LABEL: owner.metadata.uid,
                OWNER_KIND_LABEL: CISM,
                OWNER_NAME_LABEL: "gc",
            }
            await cluster.apply_secret(copy)
            return str(owner.metadata.uid)
        finally:
            await cluster.stop()

    asyncio.run(copy_secret())
    secret_file = (
        env.cluster / ".kuik" / "secrets" / "apps" / "kuik-mirror-creds-0123456789abcdef.yaml"
    )
    assert secret_file.exists()

    env.remove("mirrors.yaml")
    env.wait("the CR to be released", lambda: not state.exists())
    assert get_manifest(mirror, "m8/gc/app", "1").status == 404
    assert not secret_file.exists()
    assert any("m8/gc/app:1" in e["note"] for e in env.events("MirrorDeleted"))
    metrics = env.processes[0].metrics()
    for name in (
        'kube_image_keeper_replicator_copies_total{result="copied"} 1.0',
        "kube_image_keeper_replicator_copy_bytes_total",
        "kube_image_keeper_replicator_copy_duration_seconds_bucket",
        'kube_image_keeper_replicator_queue_depth{lane="expedite"}',
        "kube_image_keeper_replicator_jobs_in_flight 0.0",
        'kube_image_keeper_replicator_deletions_total{result="deleted"} 1.0',
        'kube_image_keeper_replicator_is_leader{role="replicator:',
    ):
        assert name in metrics, name


def test_rerouted_pods_get_one_event_per_workload_and_a_new_leader_repeats_none(
    env: Env, registry: RegistryServer
) -> None:
    """The webhook's annotations become a `Rerouted` Event once the Pod exists: one for the 20
    Pods of a ReplicaSet, one for a Pod on its own, none for a Pod kept on its image."""
    originals = {"c0": "registry.a/shop/web:1"}
    reasons = {
        REROUTE_REASONS_ANNOTATION: json.dumps({"c0": "registry.a is down since 12:00:01 (probe)"})
    }
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "rs"}
    mirrored = f"{registry.host}/m/shop/web:1"
    replicas = [
        pod(
            mirrored,
            namespace="apps",
            name=f"web-7d9f-{n}",
            originals=originals,
            annotations=reasons,
            metadata={"ownerReferences": [{**owner, "controller": True}]},
        )
        for n in range(20)
    ]
    alone = pod(mirrored, namespace="apps", name="debug", originals=originals, annotations=reasons)
    kept = pod("registry.a/shop/web:1", namespace="apps", name="kept", originals=originals)
    first = env.start()
    env.write("pods.yaml", *replicas, alone, kept)
    env.wait("two Rerouted events", lambda: len(env.events("Rerouted")) == 2)
    regarding = sorted(e["regarding"]["name"] for e in env.events("Rerouted"))
    assert regarding[0] == "debug"
    assert regarding[1].startswith("web-7d9f-")
    event = next(e for e in env.events("Rerouted") if e["regarding"]["name"] == "debug")
    assert event["note"] == (
        f"rerouted c0: registry.a/shop/web:1 -> {registry.host}/m/shop/web:1 "
        "(registry.a is down since 12:00:01 (probe))"
    )
    metric = "kube_image_keeper_replicator_reroute_events_total"
    env.wait("19 coalesced", lambda: (first.sample(metric, result="coalesced") or 0) == 19)
    assert first.sample(metric, result="recorded") == 2
    first.stop()
    second = env.start()  # takes over: sees all 21 again, the Redis markers hold
    env.wait("21 coalesced", lambda: (second.sample(metric, result="coalesced") or 0) == 21)
    assert len(env.events("Rerouted")) == 2
