"""The registry fixtures run real docker-registry processes that store what `push_image` sends."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from kuik_testing.images import (
    PushError,
    SyntheticImage,
    get_manifest,
    make_layer,
    push_image,
    synthetic_image,
    synthetic_index,
)
from kuik_testing.registry import RegistryHTTP, RegistryServer, deep_merge
from kuik_testing.token_issuer import TokenIssuer

Factory = Callable[..., RegistryServer]


def _images() -> list[tuple[str, SyntheticImage]]:
    return [
        ("oci-single", synthetic_image("single", flavor="oci")),
        ("docker-single", synthetic_image("single", flavor="docker")),
        ("oci-index", synthetic_index("index", flavor="oci")),
        ("docker-list", synthetic_index("index", flavor="docker")),
    ]


@pytest.mark.parametrize("variant", ["registry", "registry_tls", "registry_auth"])
def test_each_variant_serves_v2(variant: str, request: pytest.FixtureRequest) -> None:
    server: RegistryServer = request.getfixturevalue(variant)
    with server.client() as client:
        resp = client.request("GET", "/v2/")
    assert resp.status == 200
    assert resp.header("Docker-Distribution-Api-Version") == "registry/2.0"
    assert server.url.startswith("https://" if server.tls else "http://")
    assert server.url.endswith(server.host)


@pytest.mark.parametrize(("name", "image"), _images())
@pytest.mark.parametrize("variant", ["registry", "registry_auth"])
def test_pushed_manifests_read_back_byte_identical(
    variant: str, name: str, image: SyntheticImage, request: pytest.FixtureRequest
) -> None:
    server: RegistryServer = request.getfixturevalue(variant)
    repository = f"fixtures/{name}"
    digest = push_image(server, repository, "v1", image)
    assert digest == image.digest
    for reference in ("v1", image.digest):
        got = get_manifest(server, repository, reference)
        assert got.status == 200
        assert got.body == image.manifest_bytes
        assert got.digest == image.digest
        assert got.media_type == image.media_type
    for child in image.children:
        got = get_manifest(server, repository, child.digest)
        assert (got.body, got.digest) == (child.manifest_bytes, child.digest)
    with server.client() as client:
        for blob in image.blobs:
            resp = client.request("GET", f"/v2/{repository}/blobs/{blob.digest}")
            assert resp.status == 200
            assert resp.body == blob.data


@pytest.mark.parametrize(("name", "image"), _images())
def test_skopeo_reads_the_same_manifest(
    name: str, image: SyntheticImage, registry_tls: RegistryServer
) -> None:
    repository = f"skopeo/{name}"
    push_image(registry_tls, repository, "v1", image)
    raw = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{registry_tls.host}/{repository}:v1",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert raw == image.manifest_bytes
    # skopeo, trusting the CA, resolves the image for a platform to the right child and config
    target = image.child("linux/arm64/v8") if image.is_index else image
    assert target.config is not None
    inspected = json.loads(
        subprocess.run(
            [
                "skopeo", "inspect", "--cert-dir", str(registry_tls.cert_dir),
                "--override-arch", "arm64", "--override-variant", "v8",
                f"docker://{registry_tls.host}/{repository}:v1",
            ],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    )  # fmt: skip
    assert inspected["Layers"] == [layer.blob.digest for layer in target.layers]
    assert inspected["Architecture"] == json.loads(target.config.data)["architecture"]


def test_skopeo_copies_a_pushed_index_between_registries(
    registry: RegistryServer, registry_auth: RegistryServer
) -> None:
    image = synthetic_index("copy-me")
    push_image(registry, "copy/src", "v1", image)
    subprocess.run(
        [
            "skopeo", "copy", "--all", "--src-tls-verify=false", "--dest-cert-dir",
            str(registry_auth.cert_dir), "--dest-creds",
            f"{registry_auth.username}:{registry_auth.password}",
            f"docker://{registry.host}/copy/src:v1", f"docker://{registry_auth.host}/copy/dst:v1",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    got = get_manifest(registry_auth, "copy/dst", "v1")
    assert (got.body, got.digest) == (image.manifest_bytes, image.digest)


def test_auth_registry_rejects_a_wrong_password_and_accepts_the_right_one(
    registry_auth: RegistryServer,
) -> None:
    since = registry_auth.log_offset()
    for username, password in [(registry_auth.username, "wrong"), ("nobody", "x"), (None, None)]:
        with RegistryHTTP(
            registry_auth.url,
            username=username,
            password=password,
            ssl_context=registry_auth.ssl_context(),
        ) as client:
            resp = client.request("GET", "/v2/")
        assert resp.status == 401, (username, password)
        assert (resp.header("WWW-Authenticate") or "").startswith("Basic ")
    with registry_auth.client() as client:
        assert client.request("GET", "/v2/").status == 200
    statuses = [r.status for r in registry_auth.requests(since=since)]
    assert statuses == [401, 401, 401, 200]
    with pytest.raises(PushError, match="HTTP 401"):
        push_image(registry_auth, "denied/x", "v1", synthetic_image("d"), password="wrong")


def test_tls_registry_rejects_a_client_without_the_ca(registry_tls: RegistryServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError), RegistryHTTP(registry_tls.url) as client:
        client.request("GET", "/v2/")
    with urllib.request.urlopen(
        f"{registry_tls.url}/v2/", timeout=10, context=registry_tls.ssl_context()
    ) as resp:
        assert resp.status == 200


def test_plain_registry_has_no_ca(registry: RegistryServer) -> None:
    assert registry.ssl_context() is None
    with pytest.raises(ValueError, match="plain HTTP"):
        _ = registry.ca_file


def test_request_log_counts_uploads_and_skips_existing_blobs(registry: RegistryServer) -> None:
    base = [make_layer("count-base", 3000)]
    first = synthetic_image("count-1", layers=2, base_layers=base)
    second = synthetic_image("count-2", layers=1, base_layers=base)
    since = registry.log_offset()
    push_image(registry, "count/a", "1", first)
    assert registry.count_requests("PUT", r"^/v2/count/a/blobs/uploads/", since=since) == 4
    mark = registry.log_offset()
    push_image(registry, "count/a", "2", second)
    # the shared base is already there: only the new layer and the config travel
    assert registry.count_requests("PUT", r"/blobs/uploads/", since=mark) == 2
    assert registry.count_requests("HEAD", r"/blobs/sha256:", since=mark) == 3
    assert registry.count_requests("PUT", r"/manifests/2$", since=mark) == 1
    assert registry.count_requests(since=mark) == 3 + 2 * 2 + 1


def test_factory_registries_restart_keep_data_and_are_torn_down(registry_factory: Factory) -> None:
    server = registry_factory(delete_enabled=True)
    image = synthetic_image("restart")
    push_image(server, "keep/me", "v1", image)
    server.kill()
    with pytest.raises(ConnectionRefusedError), server.client() as client:
        client.request("GET", "/v2/")
    server.start()
    assert get_manifest(server, "keep/me", "v1").body == image.manifest_bytes
    # delete is enabled: a manifest can be removed by digest
    with server.client() as client:
        assert client.request("DELETE", f"/v2/keep/me/manifests/{image.digest}").status == 202
    assert get_manifest(server, "keep/me", "v1").status == 404


def test_factory_registry_without_delete_refuses_it(registry_factory: Factory) -> None:
    server = registry_factory(delete_enabled=False)
    image = synthetic_image("nodelete")
    push_image(server, "keep/me", "v1", image)
    with server.client() as client:
        assert client.request("DELETE", f"/v2/keep/me/manifests/{image.digest}").status == 405


def test_extra_config_is_deep_merged(registry_factory: Factory) -> None:
    server = registry_factory(
        extra_config={"http": {"headers": {"X-Kuik-Test": ["yes"]}}, "log": {"level": "debug"}}
    )
    config = server.config()
    assert config["http"]["addr"] == server.host  # kept
    assert config["log"]["formatter"] == "json"  # kept
    assert config["log"]["level"] == "debug"  # overridden
    with server.client() as client:
        assert client.request("GET", "/v2/").header("X-Kuik-Test") == "yes"


def test_deep_merge_rules() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    merged = deep_merge(base, {"a": {"c": {"x": 4}}, "e": None, "f": [1]})
    assert merged == {"a": {"b": 1, "c": {"d": 2, "x": 4}}, "f": [1]}
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}  # untouched


def test_cleanup_leaves_no_process_or_directory() -> None:
    server = RegistryServer()
    with server:
        process = server.process
        assert process is not None
        assert process.poll() is None
    assert process.poll() is not None
    assert not server.workdir.exists()


def test_push_follows_a_bearer_challenge(registry_factory: Factory) -> None:
    issuer = TokenIssuer(users={"alice": "secret"}).start()
    try:
        server = registry_factory(extra_config=issuer.registry_config())
        image = synthetic_index("bearer")
        with RegistryHTTP(server.url, username="alice", password="secret") as client:
            assert push_image(client, "team/app", "v1", image) == image.digest
            assert get_manifest(client, "team/app", "v1").body == image.manifest_bytes
        assert issuer.requests, "the push never asked the issuer for a token"
        assert {r.user for r in issuer.requests} == {"alice"}
        with RegistryHTTP(server.url, username="alice", password="wrong") as client:
            assert get_manifest(client, "team/app", "v1").status == 401
    finally:
        issuer.stop()


def test_urllib_without_credentials_gets_401(registry_auth: RegistryServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(
            f"{registry_auth.url}/v2/", timeout=10, context=registry_auth.ssl_context()
        )
    assert caught.value.code == 401


def test_ipv6_loopback_registry(registry_factory: Factory) -> None:
    server = registry_factory(address="::1", tls=True)
    assert server.host == f"[::1]:{server.port}"
    image = synthetic_image("v6")
    assert push_image(server, "v6/app", "v1", image) == image.digest
    assert get_manifest(server, "v6/app", "v1").body == image.manifest_bytes
