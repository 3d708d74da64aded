"""kuik-webhook end to end: the real process over HTTPS (trustme certificates), local mode, real
docker-registry processes and a real redis-server.

Registries: `source` (A) is where Pods' images come from; `mirror` (B, HTTPS + basic auth) is
where a ClusterImageSetMirror says copies live. Most tests share one webhook process and use
their own namespace and repositories; tests that need their own settings start their own.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import http.client
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import trustme
import yaml

import kuik_testing.objects as objects
from kuik_testing import RedisServer, RegistryServer, free_port, push_image, synthetic_image
from kuik_testing.objects import cism, container, docker_secret, pod, review
from kuik_testing.processes import ServiceProcess
from kuikcore.api import ORIGINAL_IMAGES_ANNOTATION, AvailabilityStatus
from kuikcore.cluster.local import LocalCluster
from kuikcore.coord import AvailabilityBoard, JobQueue, connect
from kuikcore.mirroring import CopyJob, queue_name
from kuikcore.names import MODE_LABEL
from kuikcore.names import REROUTE_REASONS_ANNOTATION as REASONS

pytestmark = pytest.mark.timeout(120)

ANN = ORIGINAL_IMAGES_ANNOTATION
USER, PASSWORD = "mirror-user", "mirror-password-for-tests"
CLUSTER_ID = "webhook-e2e"
CREDENTIALS = {"name": "mirror-creds", "namespace": "kuik-system"}
LOCAL_IMAGES = {"include": [{"image": r"127\.0\.0\.1:\d+/.*"}]}  # every image pushed here
JSON = dict[str, Any]


# --- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror() -> Iterator[RegistryServer]:
    with RegistryServer(tls=True, username=USER, password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_cert(ca: trustme.CA, directory: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert.private_key_pem.write_to_path(str(key_path.with_suffix(".tmp")))
    key_path.with_suffix(".tmp").rename(key_path)
    cert.cert_chain_pems[0].write_to_path(str(cert_path.with_suffix(".tmp")))
    cert_path.with_suffix(".tmp").rename(cert_path)
    return cert_path, key_path


# --- documents ------------------------------------------------------------------------------


def mirror_set(name: str, registry: str, *, priority: int = 0, secret: bool = True) -> JSON:
    """A CISM of the loopback images to `registry`, with the mirror's credentials unless not
    `secret`."""
    creds = {"credentialSecret": dict(CREDENTIALS)} if secret else {}
    spec = {"priority": priority} if priority else {}
    return cism(name, objects.mirror(registry, "m", **creds), filter=LOCAL_IMAGES, **spec)


def user_pod(
    namespace: str,
    containers: dict[str, str],
    *,
    init: dict[str, str] | None = None,
    policy: str = "IfNotPresent",
) -> JSON:
    """A freshly named Pod with these containers (name -> image), as a user would send it."""
    return pod(
        *(container(n, i) for n, i in containers.items()),
        init=[container(n, i) for n, i in (init or {}).items()],
        policy=policy,
        namespace=namespace,
        name=f"p-{uuid.uuid4().hex[:6]}",
    )


# --- one webhook process ----------------------------------------------------------------------


class Webhook:
    """A kuik-webhook process over a cluster directory, with an HTTPS client trusting `ca`."""

    def __init__(self, root: Path, ca: trustme.CA) -> None:
        self.root = root
        self.cluster = root / "cluster"
        self.cluster.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.cert, self.key = write_cert(ca, root / "tls")
        self.port = free_port()
        self.process: ServiceProcess | None = None

    def write(self, name: str, *docs: dict[str, Any]) -> None:
        path = self.cluster / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump_all(docs))
        tmp.rename(path)

    def start(
        self,
        config: dict[str, Any],
        *,
        redis_url: str | None = None,
        cluster: str | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Webhook:
        config_path = self.root / "config.yaml"
        config_path.write_text(yaml.safe_dump({"clusterID": CLUSTER_ID, **config}))
        args = [
            "--config", str(config_path),
            "--cluster", cluster or f"dir:{self.cluster}",
            "--listen", f"127.0.0.1:{self.port}",
            "--tls-cert", str(self.cert),
            "--tls-key", str(self.key),
        ]  # fmt: skip
        if redis_url:
            args += ["--redis-url", redis_url]
        self.process = ServiceProcess("webhook", args, env=env, log_dir=self.root).start()
        if wait:
            self.process.wait_ready()
        return self

    def context(self, ca: trustme.CA | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        (ca or self.ca).configure_trust(context)
        return context

    def post(
        self, body: bytes, *, ca: trustme.CA | None = None, timeout: float = 10
    ) -> tuple[int, dict[str, Any]]:
        """One request on a new connection (a new TLS handshake every time)."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context(ca), timeout=timeout
        )
        try:
            connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    def admit(
        self, obj: dict[str, Any], *, timeout: float = 10, **options: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(AdmissionReview response, the object with the patch applied)."""
        status, body = self.post(json.dumps(review(obj, **options)).encode(), timeout=timeout)
        assert status == 200, body
        response = body["response"]
        assert response["allowed"] is True
        patched = copy.deepcopy(obj)
        if "patch" in response:
            assert response["patchType"] == "JSONPatch"
            patched = jsonpatch.apply_patch(obj, json.loads(base64.b64decode(response["patch"])))
        return response, patched

    def logs(self) -> list[dict[str, Any]]:
        assert self.process is not None
        lines = []
        for line in self.process.log_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def log_event(self, event: str, timeout: float = 2.0) -> dict[str, Any]:
        """The first line of `event`, waited for: `rerouting image` lines leave in batches a few
        milliseconds after the admission (kuikcore.observe.HotLogger)."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [e for e in self.logs() if e.get("event") == event][:1]
            return bool(found)

        wait_until(f"a {event!r} line", seen, timeout=timeout)
        return found[0]

    def metric(self, name: str, **labels: str) -> float:
        assert self.process is not None
        total = 0.0
        for line in self.process.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def images(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj["spec"]
    out = {c["name"]: c["image"] for c in spec.get("containers", [])}
    out.update({"init:" + c["name"]: c["image"] for c in spec.get("initContainers", [])})
    out.update({"ephemeral:" + c["name"]: c["image"] for c in spec.get("ephemeralContainers", [])})
    return out


def recorded(obj: dict[str, Any]) -> dict[str, str]:
    value: dict[str, str] = json.loads(obj["metadata"]["annotations"][ANN])
    return value


def base_config(mirror: RegistryServer, **webhook: Any) -> dict[str, Any]:
    # generous budgets: the machine running the tests may be loaded; only the deadline tests
    # shorten them on purpose
    return {
        "registries": {mirror.host: {"caFile": str(mirror.ca_file)}},
        "routing": {"activeCheck": {"timeout": "5s"}},
        "webhook": {"cacheTTL": "1s", "deadline": "8s", **webhook},
    }


def cluster_docs(hook: Webhook, mirror: RegistryServer) -> None:
    hook.write(
        "secrets.yaml",
        docker_secret("kuik-system", "mirror-creds", mirror.host, USER, PASSWORD, string_data=True),
    )
    hook.write("mirrors.yaml", mirror_set("to-b", mirror.host))


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
    ca: trustme.CA,
    mirror: RegistryServer,
    redis_shared: RedisServer,
) -> Iterator[Webhook]:
    hook = Webhook(tmp_path_factory.mktemp("webhook"), ca)
    cluster_docs(hook, mirror)
    hook.start(
        {**base_config(mirror), "redis": {"keyPrefix": "wh-shared:"}}, redis_url=redis_shared.url
    )
    yield hook
    hook.stop()


def push(registry: RegistryServer, repository: str, tag: str, seed: str) -> str:
    auth = {"username": USER, "password": PASSWORD} if registry.username else {}
    return push_image(registry, repository, tag, synthetic_image(seed), **auth)


# --- routing ----------------------------------------------------------------------------------


def test_reroutes_to_the_mirror_when_the_original_is_missing(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    original = f"{source.host}/shop/missing:1"
    push(mirror, "m/shop/missing", "1", "missing")
    response, out = shared.admit(user_pod("shop", {"web": original}))
    assert images(out) == {"web": f"{mirror.host}/m/shop/missing:1"}
    assert recorded(out) == {"web": original}
    # the mirror needs its credentials: a copy of the CR's secret is listed
    assert next(s["name"] for s in out["spec"]["imagePullSecrets"]).startswith("kuik-mirror-creds-")
    assert "warnings" not in response
    line = shared.log_event("rerouting image")
    assert line["original"] == original
    assert line["image"] == f"{mirror.host}/m/shop/missing:1"
    assert line["rejected"][0]["image"] == original
    assert line["rejected"][0]["reason"].startswith("NotFound")
    assert (
        shared.metric(
            "kube_image_keeper_webhook_reroutes_total",
            from_registry=source.host,
            to_registry=mirror.host,
        )
        >= 1
    )
    assert (
        shared.metric(
            "kube_image_keeper_webhook_admissions_total", operation="CREATE", result="rerouted"
        )
        >= 1
    )
    assert shared.metric("kube_image_keeper_webhook_check_results_total", status="NotFound") >= 1


def test_keeps_the_original_when_it_is_there(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    original = f"{source.host}/shop/present:1"
    push(source, "shop/present", "1", "present")
    push(mirror, "m/shop/present", "1", "present")
    _, out = shared.admit(user_pod("shop", {"web": original}, init={"setup": original}))
    assert images(out) == {"web": original, "init:setup": original}
    assert recorded(out) == {"web": original, "init:setup": original}
    assert "imagePullSecrets" not in out["spec"]


def test_negative_priority_puts_the_mirror_first(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer, mirror: RegistryServer
) -> None:
    original = f"{source.host}/prio/app:1"
    push(source, "prio/app", "1", "prio")
    push(mirror, "m/prio/app", "1", "prio")
    hook = Webhook(tmp_path, ca)
    hook.write(
        "secrets.yaml",
        docker_secret("kuik-system", "mirror-creds", mirror.host, USER, PASSWORD, string_data=True),
    )
    hook.write("mirrors.yaml", mirror_set("first", mirror.host, priority=-1))
    hook.start(base_config(mirror))
    try:
        _, out = hook.admit(user_pod("prio", {"app": original}))
        assert images(out) == {"app": f"{mirror.host}/m/prio/app:1"}
        # the same with imagePullPolicy Always: the original stays first (upstream)
        _, kept = hook.admit(user_pod("prio", {"app": original}, policy="Always"))
        assert images(kept) == {"app": original}
    finally:
        hook.stop()


def test_pull_secret_copied_into_the_pod_namespace(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    push(mirror, "m/team/copy", "1", "copy")
    _, out = shared.admit(user_pod("team-a", {"c": f"{source.host}/team/copy:1"}))
    name = out["spec"]["imagePullSecrets"][0]["name"]

    async def read() -> dict[str, Any] | None:
        cluster = LocalCluster(shared.cluster, field_manager="test")
        await cluster.start()
        await cluster.wait_synced()
        try:
            return await cluster.get_secret("team-a", name)
        finally:
            await cluster.stop()

    secret = asyncio.run(read())
    assert secret is not None
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    labels = secret["metadata"]["labels"]
    assert labels["kuik.enix.io/owner-kind"] == "ClusterImageSetMirror"
    assert labels["kuik.enix.io/owner-name"] == "to-b"
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert mirror.host in auths


def test_dry_run_writes_nothing(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    push(mirror, "m/dry/app", "1", "dry")
    before = {p.name for p in (shared.cluster / ".kuik").rglob("*") if p.is_file()}
    _, out = shared.admit(user_pod("dry-ns", {"c": f"{source.host}/dry/app:1"}), dry_run=True)
    assert images(out) == {"c": f"{mirror.host}/m/dry/app:1"}
    name = out["spec"]["imagePullSecrets"][0]["name"]
    after = {p.name for p in (shared.cluster / ".kuik").rglob("*") if p.is_file()}
    assert not any(name in p for p in after - before), after - before


def test_update_reconsiders_only_changed_images(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    push(mirror, "m/upd/a", "1", "upd-a")
    push(source, "upd/b", "1", "upd-b")
    push(mirror, "m/upd/b", "2", "upd-b2")
    a, b = f"{source.host}/upd/a:1", f"{source.host}/upd/b:1"
    _, created = shared.admit(user_pod("upd", {"a": a, "b": b}))
    assert images(created) == {"a": f"{mirror.host}/m/upd/a:1", "b": b}
    secrets = created["spec"]["imagePullSecrets"]
    new = copy.deepcopy(created)
    new["spec"]["containers"][1]["image"] = f"{source.host}/upd/b:2"
    _, updated = shared.admit(new, operation="UPDATE", old=created)
    # only b was looked at again; the mirror is reached with the copy the Pod already lists
    assert images(updated) == {"a": f"{mirror.host}/m/upd/a:1", "b": f"{mirror.host}/m/upd/b:2"}
    assert recorded(updated) == {"a": a, "b": f"{source.host}/upd/b:2"}
    assert updated["spec"]["imagePullSecrets"] == secrets  # Pod updates cannot change them


def test_ephemeral_container_rerouted_through_the_subresource(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer, mirror: RegistryServer
) -> None:
    # a mirror without credentials: the subresource cannot add pull secrets
    plain = RegistryServer().start()
    try:
        push_image(plain, "m/dbg/tools", "1", synthetic_image("tools"))
        hook = Webhook(tmp_path, ca)
        hook.write("mirrors.yaml", mirror_set("plain", plain.host, secret=False))
        hook.start(base_config(mirror))
        try:
            running = user_pod("dbg", {"app": f"{source.host}/dbg/app:1"})
            running["metadata"]["annotations"] = {
                ANN: json.dumps({"app": f"{source.host}/dbg/app:1"})
            }
            new = copy.deepcopy(running)
            new["spec"]["ephemeralContainers"] = [
                {"name": "debug", "image": f"{source.host}/dbg/tools:1"}
            ]
            _response, out = hook.admit(
                new, operation="UPDATE", old=running, sub_resource="ephemeralcontainers"
            )
            assert images(out)["ephemeral:debug"] == f"{plain.host}/m/dbg/tools:1"
            assert images(out)["app"] == f"{source.host}/dbg/app:1"  # unchanged: not reconsidered
        finally:
            hook.stop()
    finally:
        plain.cleanup()


def test_digest_pinned_image_rerouted_with_its_digest(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    digest = push(mirror, "m/pin/app", "whatever", "pinned")
    _, out = shared.admit(user_pod("pin", {"c": f"{source.host}/pin/app@{digest}"}))
    assert images(out) == {"c": f"{mirror.host}/m/pin/app@{digest}"}


def test_results_go_to_the_board(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer, redis_shared: RedisServer
) -> None:
    push(mirror, "m/board/app", "1", "board")
    shared.admit(user_pod("board", {"c": f"{source.host}/board/app:1"}))

    async def read() -> tuple[Any, Any]:
        async with connect(redis_shared.url, prefix="wh-shared:") as coord:
            board = AvailabilityBoard(coord)
            snapshot = await board.read(
                [f"{mirror.host}/m/board/app:1", f"{source.host}/board/app:1"], [mirror.host]
            )
            return snapshot.images, snapshot.registries

    found: dict[str, Any] = {}

    def published() -> bool:
        found["images"], found["registries"] = asyncio.run(read())
        return all(v is not None for v in found["images"].values())

    wait_until("board entries", published, timeout=10)
    assert found["images"][f"{mirror.host}/m/board/app:1"].status is AvailabilityStatus.AVAILABLE
    assert found["images"][f"{source.host}/board/app:1"].status is AvailabilityStatus.NOT_FOUND
    assert found["registries"][mirror.host].up is True


def test_stale_mirror_reported_to_the_replicator(
    tmp_path: Path,
    ca: trustme.CA,
    source: RegistryServer,
    mirror: RegistryServer,
    redis_shared: RedisServer,
) -> None:
    hook = Webhook(tmp_path, ca)
    cluster_docs(hook, mirror)
    gone = f"{mirror.host}/m/stale/app:1"
    original = f"{source.host}/stale/app:1"
    push(source, "stale/app", "1", "stale")

    async def mark_mirrored() -> None:
        cluster = LocalCluster(hook.cluster, field_manager="test")
        await cluster.start()
        await cluster.wait_synced()
        try:
            await cluster.update_status(
                "ClusterImageSetMirror", "", "to-b",
                lambda _s: {"matchingImages": [{"image": original, "mirrors": [{"image": gone, "mirroredAt": "2026-01-01T00:00:00Z"}]}]},
            )  # fmt: skip
        finally:
            await cluster.stop()

    # the mirror comes first, so it is checked whatever the original says
    hook.write("mirrors.yaml", mirror_set("to-b", mirror.host, priority=-1))
    asyncio.run(mark_mirrored())
    prefix = f"wh-stale-{uuid.uuid4().hex[:6]}:"
    hook.start({**base_config(mirror), "redis": {"keyPrefix": prefix}}, redis_url=redis_shared.url)
    try:
        # a dry run reports nothing (had it reported, the next admission would count as "recent")
        hook.admit(user_pod("stale", {"c": original}), dry_run=True)
        _, out = hook.admit(user_pod("stale", {"c": original}))
        assert images(out) == {"c": original}

        async def pending() -> int:
            async with connect(redis_shared.url, prefix=prefix) as coord:
                stats = await JobQueue(coord, queue_name(CLUSTER_ID), [CopyJob]).stats()
                return stats.lanes["expedite"].ready

        wait_until("expedite job", lambda: asyncio.run(pending()) == 1, timeout=10)
        reports = "kube_image_keeper_webhook_stale_mirror_reports_total"
        assert hook.metric(reports, result="recent") == 0
        # a further admission within the interval does not report again
        hook.admit(user_pod("stale", {"c": original}))
        assert asyncio.run(pending()) == 1
        assert hook.metric(reports, result="sent") == 1
        assert hook.metric(reports, result="recent") == 1
    finally:
        hook.stop()


# --- failure modes ---------------------------------------------------------------------------


def test_black_holed_registry_answered_within_the_deadline(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer, mirror: RegistryServer
) -> None:
    hole = RegistryServer().start()
    try:
        push_image(hole, "bh/app", "1", synthetic_image("bh"))
        push(mirror, "m/bh/app", "1", "bh")
        hole.freeze()  # connections are accepted, nothing ever answers
        hook = Webhook(tmp_path, ca)
        cluster_docs(hook, mirror)
        # a check budget longer than the deadline: only the deadline can end the admission
        config = base_config(mirror, deadline="1s")
        config["routing"]["activeCheck"]["timeout"] = "30s"
        hook.start(config)
        try:
            # the client gives up after 5 s, like an API server with timeoutSeconds: 5
            response, out = hook.admit(user_pod("bh", {"c": f"{hole.host}/bh/app:1"}), timeout=5)
            # the original was still unknown at the deadline: kept, as written
            assert images(out) == {"c": f"{hole.host}/bh/app:1"}
            assert recorded(out) == {"c": f"{hole.host}/bh/app:1"}
            assert "patch" in response
        finally:
            hook.stop()
    finally:
        hole.thaw()
        hole.cleanup()


def test_a_black_holed_registry_is_given_up_on_as_soon_as_the_probes_find_it(
    tmp_path: Path, ca: trustme.CA, mirror: RegistryServer, redis_shared: RedisServer
) -> None:
    """An admission already waiting on a check of a registry that stopped answering does not
    wait for its check's timeout (30 s) or the deadline: the prober marks the host down within
    a probe interval and timeout, and the admission moves on to the mirror."""
    hole = RegistryServer().start()
    try:
        push(mirror, "m/down/app", "1", "down")
        hole.freeze()
        prefix = f"wh-down-{uuid.uuid4().hex[:6]}:"
        hook = Webhook(tmp_path, ca)
        cluster_docs(hook, mirror)
        config = {**base_config(mirror, deadline="6s"), "redis": {"keyPrefix": prefix}}
        config["routing"]["activeCheck"]["timeout"] = "30s"
        hook.start(config, redis_url=redis_shared.url)
        try:
            started = time.monotonic()
            _, out = hook.admit(user_pod("down", {"c": f"{hole.host}/down/app:1"}), timeout=10)
            took = time.monotonic() - started
            assert images(out) == {"c": f"{mirror.host}/m/down/app:1"}
            assert took < 4.0  # the deadline minus its reserve is 5.7 s; probes need ~1 s
            line = hook.log_event("rerouting image")
            assert "is down since" in line["rejected"][0]["reason"]
            assert line["reason"] == "first available"
            down = next(e for e in hook.logs() if e.get("event") == "registry marked down")
            assert down["registry"] == hole.host
            assert down["by"].startswith("webhook ")
        finally:
            hook.stop()
    finally:
        hole.thaw()
        hole.cleanup()


def test_redis_killed_then_back_empty_pods_still_admitted(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer, mirror: RegistryServer
) -> None:
    """Redis down: admissions go on from active checks, ready all along, the outage visible in
    `kube_image_keeper_redis_up`. Redis back EMPTY: results reach the board again."""
    redis = RedisServer().start()  # no persistence: a restart loses everything
    try:
        for name in ("a", "b", "c"):
            push(mirror, f"m/redis/{name}", "1", f"r{name}")
        hook = Webhook(tmp_path, ca)
        cluster_docs(hook, mirror)
        hook.start(base_config(mirror), redis_url=redis.url)
        try:
            _, out = hook.admit(user_pod("r", {"c": f"{source.host}/redis/a:1"}))
            assert images(out) == {"c": f"{mirror.host}/m/redis/a:1"}
            assert hook.metric("kube_image_keeper_redis_up") == 1
            redis.kill()
            response, out = hook.admit(user_pod("r", {"c": f"{source.host}/redis/b:1"}))
            assert images(out) == {"c": f"{mirror.host}/m/redis/b:1"}
            assert "warnings" not in response
            assert hook.process is not None
            assert hook.process.get("/readyz")[0] == 200
            wait_until("redis_up 0", lambda: hook.metric("kube_image_keeper_redis_up") == 0, 10)

            redis.start()  # same port, empty
            wait_until("redis_up 1", lambda: hook.metric("kube_image_keeper_redis_up") == 1, 10)
            _, out = hook.admit(user_pod("r", {"c": f"{source.host}/redis/c:1"}))
            mirrored = f"{mirror.host}/m/redis/c:1"
            assert images(out) == {"c": mirrored}

            async def on_board() -> bool:
                async with connect(redis.url) as coord:
                    snapshot = await AvailabilityBoard(coord).read([mirrored], [])
                    return snapshot.images[mirrored] is not None

            wait_until("the board in the new Redis", lambda: asyncio.run(on_board()), timeout=10)
            assert hook.process.running()
        finally:
            hook.stop()
    finally:
        redis.cleanup()


def test_certificate_rotation_without_restart(tmp_path: Path, mirror: RegistryServer) -> None:
    first, second = trustme.CA(), trustme.CA()
    hook = Webhook(tmp_path, first)
    hook.start(base_config(mirror))
    try:
        body = json.dumps(review(user_pod("tls", {"c": "127.0.0.1:1/x:1"}))).encode()
        assert hook.post(body)[0] == 200
        pid = hook.process.pid if hook.process else None
        write_cert(second, tmp_path / "tls")  # what cert-manager does to the mounted files

        def second_trusted() -> bool:
            try:
                return hook.post(body, ca=second)[0] == 200
            except ssl.SSLError:
                return False

        wait_until("the new certificate to be served", second_trusted, timeout=20)
        with pytest.raises(ssl.SSLError):
            hook.post(body, ca=first)
        assert hook.process is not None
        assert hook.process.pid == pid
        assert hook.process.running()
    finally:
        hook.stop()


def test_internal_errors_admit_unchanged_with_a_warning(shared: Webhook) -> None:
    status, body = shared.post(
        json.dumps(
            review({"kind": "Pod", "metadata": {"namespace": "x", "name": "bad"}, "spec": "nope"})
        ).encode()
    )
    assert status == 200
    response = body["response"]
    assert response["allowed"] is True
    assert "patch" not in response
    assert response["warnings"][0].startswith("kuik: Pod admitted unchanged")
    # not a Pod write kuik routes: allowed untouched, no warning
    others: list[dict[str, Any]] = [
        {"operation": "DELETE"},
        {"sub_resource": "status", "operation": "UPDATE"},
    ]
    for options in others:
        obj = user_pod("x", {"c": "127.0.0.1:1/x:1"})
        status, body = shared.post(json.dumps(review(obj, old=obj, **options)).encode())
        assert status == 200
        assert body["response"] == {"uid": body["response"]["uid"], "allowed": True}
    status, body = shared.post(b"{not json")
    assert status == 400
    assert "malformed AdmissionReview" in body["error"]


# --- identical admissions (the decision memo) -------------------------------------------------


def _reroute_lines(hook: Webhook, original: str) -> list[dict[str, Any]]:
    return [
        e for e in hook.logs() if e.get("event") == "rerouting image" and e["original"] == original
    ]


def test_identical_admissions_answer_alike_and_follow_the_registry(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer
) -> None:
    """A repeated admission (same Pod, new uid) answers the same, logs and counts again; once
    the cached verdicts expire, what the registry now says decides (no Redis: checks only)."""
    original = f"{source.host}/memo/app:1"
    push(source, "m/memo/app", "1", "memo")
    hook = Webhook(tmp_path, ca)
    mirror_cr = mirror_set("to-source", source.host, secret=False)
    hook.write("mirrors.yaml", mirror_cr)
    hook.start({"webhook": {"cacheTTL": "1s", "deadline": "8s"}})
    try:
        obj = user_pod("memo", {"web": original})
        first, out = hook.admit(obj)
        second, again = hook.admit(obj)
        assert first["uid"] != second["uid"]
        assert images(out) == images(again) == {"web": f"{source.host}/m/memo/app:1"}
        assert first["patch"] == second["patch"]
        wait_until("two reroute lines", lambda: len(_reroute_lines(hook, original)) == 2)
        pods = {line["pod"] for line in _reroute_lines(hook, original)}
        assert pods == {f"memo/{obj['metadata']['name']}"}
        counted = hook.metric(
            "kube_image_keeper_webhook_reroutes_total",
            from_registry=source.host,
            to_registry=source.host,
        )
        assert counted == 2
        assert hook.metric("kube_image_keeper_webhook_admissions_total", result="rerouted") == 2
        push(source, "memo/app", "1", "memo")  # the original appears
        # a remembered answer that outlived its verdicts would reroute forever
        wait_until("the original kept", lambda: images(hook.admit(obj)[1]) == {"web": original})
    finally:
        hook.stop()


def test_identical_admissions_follow_routing_changes(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer
) -> None:
    """Verdicts cached for a minute, the CR changes: the next admission routes by the new CR."""
    original = f"{source.host}/memo-cr/app:1"
    push(source, "m/memo-cr/app", "1", "memo-cr")
    push(source, "n/memo-cr/app", "1", "memo-cr")
    hook = Webhook(tmp_path, ca)
    hook.write("mirrors.yaml", mirror_set("to-m", source.host, secret=False))
    hook.start({"webhook": {"cacheTTL": "60s", "deadline": "8s"}})
    try:
        obj = user_pod("memo-cr", {"web": original})
        for _ in range(2):
            assert images(hook.admit(obj)[1]) == {"web": f"{source.host}/m/memo-cr/app:1"}
        moved = mirror_set("to-n", source.host, secret=False)
        moved["spec"]["mirrors"][0]["path"] = "n"
        hook.write("mirrors.yaml", moved)
        wait_until(
            "the new mirror used",
            lambda: images(hook.admit(obj)[1]) == {"web": f"{source.host}/n/memo-cr/app:1"},
            timeout=20,
        )
    finally:
        hook.stop()


# --- audit mode -------------------------------------------------------------------------------


def namespace(name: str, mode: str | None) -> JSON:
    labels = {MODE_LABEL: mode} if mode is not None else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _state_files(hook: Webhook) -> set[str]:
    return {str(p) for p in (hook.cluster / ".kuik").rglob("*") if p.is_file()}


def test_audit_namespace_patches_nothing_and_says_every_decision(
    shared: Webhook, source: RegistryServer, mirror: RegistryServer
) -> None:
    """A Namespace labelled audit: every decision is made, logged and counted, no Pod is
    patched and nothing is written in the cluster; relabelled enforce, Pods are patched again."""
    push(mirror, "m/audit/app", "1", "audit")
    original = f"{source.host}/audit/app:1"
    shared.write("ns-audit.yaml", namespace("audit-ns", "audit"))
    wait_until(
        "the Namespace label seen",
        lambda: "patch" not in shared.admit(user_pod("audit-ns", {"c": original}))[0],
    )
    audited = shared.metric("kube_image_keeper_webhook_admissions_total", result="audited")
    would = shared.metric("kube_image_keeper_webhook_audit_decisions_total", result="rerouted")
    reroutes = shared.metric("kube_image_keeper_webhook_reroutes_total")
    files = _state_files(shared)
    names = []
    for _ in range(5):
        sent = user_pod("audit-ns", {"c": original})
        names.append(sent["metadata"]["name"])
        response, out = shared.admit(sent)
        assert "patch" not in response
        assert out == sent
    assert _state_files(shared) == files  # no pull-secret copy, nothing else
    after = shared.metric("kube_image_keeper_webhook_admissions_total", result="audited")
    assert after - audited == 5
    assert (
        shared.metric("kube_image_keeper_webhook_audit_decisions_total", result="rerouted") - would
        == 5
    )
    assert shared.metric("kube_image_keeper_webhook_reroutes_total") == reroutes
    wait_until(
        "five would-reroute lines",
        lambda: (
            {
                e["pod"].rpartition("/")[2]
                for e in shared.logs()
                if e.get("event") == "would reroute image"
            }
            >= set(names)
        ),
        timeout=5,
    )
    line = next(
        e
        for e in shared.logs()
        if e.get("event") == "would reroute image" and e["pod"].endswith(names[0])
    )
    assert line["mode"] == "audit"
    assert line["original"] == original
    assert line["image"] == f"{mirror.host}/m/audit/app:1"
    assert not any(
        e.get("event") == "rerouting image" and e["pod"].rpartition("/")[2] in names
        for e in shared.logs()
    )
    shared.write("ns-audit.yaml", namespace("audit-ns", "enforce"))
    wait_until(
        "the new label seen",
        lambda: "patch" in shared.admit(user_pod("audit-ns", {"c": original}))[0],
    )
    _, out = shared.admit(user_pod("audit-ns", {"c": original}))
    assert images(out) == {"c": f"{mirror.host}/m/audit/app:1"}
    assert REASONS in out["metadata"]["annotations"]


def test_audit_by_config_and_a_namespace_that_opts_in(
    tmp_path: Path, ca: trustme.CA, source: RegistryServer, mirror: RegistryServer
) -> None:
    push(mirror, "m/cfg/app", "1", "cfg")
    original = f"{source.host}/cfg/app:1"
    hook = Webhook(tmp_path, ca)
    cluster_docs(hook, mirror)
    hook.write("ns.yaml", namespace("rolled-out", "enforce"), namespace("bad", "dry-run"))
    hook.start(base_config(mirror, mode="audit"))
    try:
        response, _ = hook.admit(user_pod("anywhere", {"c": original}))
        assert "patch" not in response
        response, _ = hook.admit(user_pod("bad", {"c": original}))  # not a mode: the config's
        assert "patch" not in response
        _, out = hook.admit(user_pod("rolled-out", {"c": original}))
        assert images(out) == {"c": f"{mirror.host}/m/cfg/app:1"}
        reasons = json.loads(out["metadata"]["annotations"][REASONS])
        assert reasons["c"].startswith("NotFound")
        warning = hook.log_event("namespace mode label ignored")
        assert warning["namespace"] == "bad"
    finally:
        hook.stop()
