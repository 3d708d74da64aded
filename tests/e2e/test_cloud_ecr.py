"""An ECR mirror with no Secret at all: the replicator, the monitor and the webhook, as real
processes under IRSA's environment, get their registry credentials from the web-identity token
file through moto's STS and ECR, against a real docker-registry behind ECR's repository rule."""

from __future__ import annotations

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

from kuik_testing import RedisServer, RegistryServer, free_port, push_image, synthetic_image
from kuik_testing.cloud import ECR_ACCOUNT, EcrFront, MotoServer, ecr_password
from kuik_testing.processes import ServiceProcess
from kuik_testing.token_issuer import TokenIssuer

pytestmark = pytest.mark.timeout(150)

ROLE_ARN = f"arn:aws:iam::{ECR_ACCOUNT}:role/kuik"


class Ecr:
    """moto (STS + ECR), a token service admitting only moto's password, the registry, the front."""

    def __init__(self) -> None:
        self.moto = MotoServer().start()
        self.issuer = TokenIssuer(
            authenticate=lambda user, password: user == "AWS" and password == ecr_password()
        ).start()
        self.backend = RegistryServer(extra_config=self.issuer.registry_config()).start()
        self.front = EcrFront(
            self.backend.url, exists=lambda name: name in self.moto.repositories()
        ).start()

    def stop(self) -> None:
        self.front.stop()
        self.backend.cleanup()
        self.issuer.stop()
        self.moto.stop()


@pytest.fixture
def ecr() -> Iterator[Ecr]:
    stand_in = Ecr()
    yield stand_in
    stand_in.stop()


def wait_until(
    what: str, check: Callable[[], bool], logs: Callable[[], str], timeout: float = 45
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n--- logs ---\n{logs()[-8000:]}")


def review(pod: dict[str, Any]) -> bytes:
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": pod["metadata"]["namespace"],
        "name": pod["metadata"]["name"],
        "operation": "CREATE",
        "object": pod,
        "dryRun": False,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {"containers": [{"name": "c", "image": image, "imagePullPolicy": "IfNotPresent"}]},
    }


def test_replicator_mirrors_to_ecr_and_webhook_and_monitor_check_it_without_a_secret(
    tmp_path: Path, source: RegistryServer, redis_shared: RedisServer, ecr: Ecr
) -> None:
    digest = push_image(source, "shop/app", "1.0", synthetic_image("ecr-e2e"))
    image = f"{source.host}/shop/app:1.0"
    mirrored = f"{ecr.front.host}/mirror/shop/app:1.0"

    # IRSA: the projected token file and the variables EKS's webhook sets, pointed at moto
    token_file = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.projected-sa-token.sig")
    env = ecr.moto.aws_env(token_file, ROLE_ARN)

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    documents = [
        {
            "apiVersion": "kuik.enix.io/v1alpha1",
            "kind": "ClusterImageSetMirror",
            "metadata": {"name": "ecr"},
            "spec": {
                "filter": {"include": [{"image": rf".*:{source.port}/.*"}]},
                "mirrors": [{"registry": ecr.front.host, "path": "mirror"}],  # no credentialSecret
                "priority": -1,  # the mirror before the original: the webhook must check ECR
            },
        },
        {
            "apiVersion": "kuik.enix.io/v1alpha1",
            "kind": "ClusterImageSetAvailability",
            "metadata": {"name": "ecr"},
            "spec": {"filter": {"include": [{"image": rf".*{ecr.front.port}/.*"}]}},
        },
        pod("web", image),
        pod("web-mirrored", mirrored),
    ]
    (cluster / "docs.yaml").write_text(yaml.safe_dump_all(documents))
    prefix = f"ecr{uuid.uuid4().hex[:6]}:"
    config = {
        "clusterID": "ecr-e2e",
        "redis": {"url": redis_shared.url, "keyPrefix": prefix},
        "registries": {
            ecr.front.host: {
                "insecure": True,
                "cloudAuth": "ecr",
                "region": "us-east-1",
                "registryID": ECR_ACCOUNT,
            }
        },
        "mirroring": {"resyncInterval": "1s", "jobTimeout": "10s", "leaderTTL": "3s"},
        "monitoring": {
            "registries": {"default": {"interval": "2s", "maxPerInterval": 4, "timeout": "5s"}}
        },
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    common = ["--config", str(config_path), "--cluster", f"dir:{cluster}"]
    processes: list[ServiceProcess] = []

    def logs() -> str:
        return "\n".join(p.log_text() for p in processes)

    def status(kind: str) -> dict[str, Any]:
        path = cluster / ".kuik" / "resources" / kind / "_cluster" / "ecr.yaml"
        if not path.exists():
            return {}
        return (yaml.safe_load(path.read_text()) or {}).get("status") or {}

    try:
        replicator = ServiceProcess("replicator", common, env=env, log_dir=tmp_path).start()
        processes.append(replicator)
        replicator.wait_ready()

        def mirrored_at() -> bool:
            for entry in status("ClusterImageSetMirror").get("matchingImages") or ():
                for m in entry.get("mirrors") or ():
                    if m["image"] == mirrored and m.get("mirroredAt"):
                        return bool(m["digest"] == digest)
            return False

        wait_until("the replicator's copy to ECR", mirrored_at, logs)
        assert "mirror/shop/app" in ecr.moto.repositories()  # created on first push
        assert ecr.moto.web_identity_sessions() >= 1

        monitor = ServiceProcess("monitor", common, env=env, log_dir=tmp_path).start()
        processes.append(monitor)
        monitor.wait_ready()

        def available() -> bool:
            return any(
                i["image"] == mirrored and i.get("status") == "Available"
                for i in status("ClusterImageSetAvailability").get("images") or ()
            )

        wait_until("the monitor's check of the ECR image", available, logs)

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
        cert.private_key_pem.write_to_path(str(key_path))
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        port = free_port()
        webhook_args = [*common, "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert_path)]
        webhook = ServiceProcess(
            "webhook", [*webhook_args, "--tls-key", str(key_path)], env=env, log_dir=tmp_path
        ).start()
        processes.append(webhook)
        webhook.wait_ready()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=15)
        admitted = pod("new", image)
        try:
            connection.request(
                "POST", "/mutate", review(admitted), {"Content-Type": "application/json"}
            )
            answer = json.loads(connection.getresponse().read())["response"]
        finally:
            connection.close()
        assert answer["allowed"] is True
        assert "patch" in answer, logs()[-4000:]
        patched = jsonpatch.apply_patch(
            copy.deepcopy(admitted), json.loads(base64.b64decode(answer["patch"]))
        )
        assert patched["spec"]["containers"][0]["image"] == mirrored
        secrets = (ecr_password(), token_file.read_text())
        for process in processes:  # nor a metric
            exported = process.metrics()
            assert not any(secret in exported for secret in secrets), process.service
    finally:
        for process in processes:
            process.stop()
    assert ecr_password() not in logs()  # the registry password never reaches a log line
    # nor Redis (board, queue, results, health), nor anything written beside the manifests
    stored = _redis_text(redis_shared, prefix)
    assert prefix in stored  # the services did write there
    assert not any(secret in stored for secret in secrets)
    written = "".join(p.read_text(errors="replace") for p in cluster.rglob("*") if p.is_file())
    assert "mirroredAt" in written
    assert not any(secret in written for secret in secrets)
    assert {r.user for r in ecr.issuer.requests if r.granted} == {"AWS"}


def _redis_text(server: RedisServer, prefix: str) -> str:
    """Every key under `prefix` with its value, whatever its type, as one text."""
    import redis

    client = redis.Redis.from_url(server.url, decode_responses=True)
    parts: list[str] = []
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            kind = client.type(key)
            value: object
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "stream":
                value = client.xrange(key)
            else:
                value = kind
            parts.append(f"{key} {value}")
    finally:
        client.close()
    return "\n".join(parts)
