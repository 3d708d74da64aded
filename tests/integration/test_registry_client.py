"""kuikcore.registry against real docker-registry processes: protocol, checks, TLS, auth."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kuik_testing.images import push_image, synthetic_image, synthetic_index
from kuik_testing.registry import RegistryServer
from kuik_testing.token_issuer import TokenIssuer
from kuikcore.api import AvailabilityStatus
from kuikcore.reference import parse
from kuikcore.registry import (
    Credentials,
    InvalidAuth,
    Keyring,
    NotFound,
    RegistryClient,
    RegistryTLS,
    RetryPolicy,
    Unreachable,
    check,
    copy,
)
from kuikcore.registry.mediatypes import DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST

PASSWORD = "pw-for-alice"


@pytest.fixture
async def client(
    registry_tls: RegistryServer, registry_auth: RegistryServer
) -> AsyncIterator[RegistryClient]:
    tls = {
        registry_tls.host: RegistryTLS(ca_file=str(registry_tls.ca_file)),
        registry_auth.host: RegistryTLS(ca_file=str(registry_auth.ca_file)),
    }
    async with RegistryClient(tls=tls, retry=RetryPolicy(attempts=2, base=0.01)) as c:
        yield c


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    token_issuer = TokenIssuer(users={"alice": PASSWORD}, anonymous_actions=("pull",)).start()
    yield token_issuer
    token_issuer.stop()


@pytest.fixture(scope="module")
def token_registry(issuer: TokenIssuer) -> Iterator[RegistryServer]:
    server = RegistryServer(extra_config=issuer.registry_config()).start()
    yield server
    server.cleanup()


# --- manifests, tags, checks on a plain registry -------------------------------------------


async def test_get_manifest_returns_the_bytes_pushed(
    client: RegistryClient, registry: RegistryServer
) -> None:
    image = synthetic_image("s1")
    digest = push_image(registry, "proto/single", "v1", image)
    manifest = await client.get_manifest(f"{registry.host}/proto/single:v1")
    assert manifest.digest == digest
    assert manifest.raw == image.manifest_bytes
    assert manifest.media_type == OCI_MANIFEST
    info = await client.head_manifest(f"{registry.host}/proto/single@{digest}")
    assert info.digest == digest


@pytest.mark.parametrize(
    ("docker", "media_type"), [(False, OCI_INDEX), (True, DOCKER_MANIFEST_LIST)]
)
async def test_indexes_of_both_formats_are_read(
    client: RegistryClient, registry: RegistryServer, docker: bool, media_type: str
) -> None:
    index = synthetic_index("s2", flavor="docker" if docker else "oci")
    push_image(registry, "proto/index", f"docker-{docker}", index)
    manifest = await client.get_manifest(f"{registry.host}/proto/index:docker-{docker}")
    assert manifest.is_index
    assert manifest.media_type == media_type
    assert [c.digest for c in manifest.children] == [c.digest for c in index.children]


async def test_list_tags_follows_pagination(
    client: RegistryClient, registry: RegistryServer
) -> None:
    image = synthetic_image("s3")
    expected = [f"t{i}" for i in range(5)]
    for tag in expected:
        push_image(registry, "proto/tags", tag, image)
    tags = await client.list_tags(f"{registry.host}/proto/tags", page_size=2)
    assert sorted(tags) == expected


async def test_check_statuses_on_a_plain_registry(
    client: RegistryClient, registry: RegistryServer
) -> None:
    digest = push_image(registry, "check/app", "v1", synthetic_image("s4"))
    ok = await check(client, f"{registry.host}/check/app:v1", timeout=5, resolve_digest=True)
    assert ok.status is AvailabilityStatus.AVAILABLE
    assert ok.error is None
    assert ok.digest == digest
    pinned = await check(client, f"{registry.host}/check/app@{digest}", method="GET")
    assert pinned.status is AvailabilityStatus.AVAILABLE
    for missing in (f"{registry.host}/check/app:nope", f"{registry.host}/check/none:v1"):
        result = await check(client, missing, timeout=5)
        assert result.status is AvailabilityStatus.NOT_FOUND
        assert result.error is not None
        assert result.error.startswith("image not found: ")


async def test_killed_registry_is_unreachable(
    client: RegistryClient, registry_factory: Any
) -> None:
    server = registry_factory()
    push_image(server, "gone/app", "v1", synthetic_image("s5"))
    assert (await check(client, f"{server.host}/gone/app:v1")).available
    server.kill()
    result = await check(client, f"{server.host}/gone/app:v1", timeout=5)
    assert result.status is AvailabilityStatus.UNREACHABLE
    assert result.error is not None
    assert result.error.startswith("registry unreachable: ")
    with pytest.raises(Unreachable, match="connection failed"):
        await client.head_manifest(f"{server.host}/gone/app:v1")


# --- TLS ----------------------------------------------------------------------------------


async def test_tls_with_custom_ca(client: RegistryClient, registry_tls: RegistryServer) -> None:
    push_image(registry_tls, "tls/app", "v1", synthetic_image("s6"))
    assert (await check(client, f"{registry_tls.host}/tls/app:v1")).available


async def test_tls_without_the_ca_is_unreachable_unless_verification_is_skipped(
    registry_tls: RegistryServer,
) -> None:
    push_image(registry_tls, "tls/app", "v2", synthetic_image("s7"))
    ref = f"{registry_tls.host}/tls/app:v2"
    async with RegistryClient() as plain:
        result = await check(plain, ref, timeout=5)
    assert result.status is AvailabilityStatus.UNREACHABLE
    assert result.error is not None
    assert "certificate verification failed" in result.error
    async with RegistryClient(tls={registry_tls.host: RegistryTLS(skip_verify=True)}) as lax:
        assert (await check(lax, ref, timeout=5)).available


async def test_insecure_option_forces_plain_http(registry_tls: RegistryServer) -> None:
    async with RegistryClient(tls={registry_tls.host: RegistryTLS(insecure=True)}) as c:
        result = await check(c, f"{registry_tls.host}/tls/app:v1", timeout=5)
    assert result.status is AvailabilityStatus.UNREACHABLE


# --- basic auth -----------------------------------------------------------------------------


async def test_basic_auth(client: RegistryClient, registry_auth: RegistryServer) -> None:
    push_image(registry_auth, "auth/app", "v1", synthetic_image("s8"))
    ref = f"{registry_auth.host}/auth/app:v1"
    good = Credentials(str(registry_auth.username), str(registry_auth.password))
    bad = Credentials(str(registry_auth.username), "wrong-password-xyz")
    assert (await check(client, ref, credentials=good)).available
    for credentials in (None, bad):
        result = await check(client, ref, credentials=credentials)
        assert result.status is AvailabilityStatus.INVALID_AUTH
        assert result.error is not None
        assert result.error.startswith("authentication failed: ")
        assert "wrong-password-xyz" not in result.error
    # rotation: every matching credential is tried in turn
    assert (await check(client, ref, credentials=[bad, good])).available
    with pytest.raises(InvalidAuth) as info:
        await client.get_manifest(ref, credentials=bad)
    assert info.value.status == 401
    assert "wrong-password-xyz" not in str(info.value)


async def test_pull_secret_keyring_feeds_checks(
    client: RegistryClient, registry_auth: RegistryServer
) -> None:
    push_image(registry_auth, "auth/app", "v2", synthetic_image("s9"))
    auth = base64.b64encode(f"{registry_auth.username}:{registry_auth.password}".encode()).decode()
    config = json.dumps({"auths": {f"https://{registry_auth.host}": {"auth": auth}}})
    secret = {
        "metadata": {"name": "pull", "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }
    ref = parse(f"{registry_auth.host}/auth/app:v2")
    credentials = Keyring.from_secrets([secret]).lookup(ref)
    assert len(credentials) == 1
    assert (await check(client, ref, credentials=credentials)).available


# --- token auth -------------------------------------------------------------------------------


async def test_token_auth_flow_and_cache(
    registry: RegistryServer, token_registry: RegistryServer, issuer: TokenIssuer
) -> None:
    push_image(registry, "tok/src", "v1", synthetic_image("s10"))
    alice = Credentials("alice", PASSWORD)
    async with RegistryClient() as c:
        with pytest.raises(InvalidAuth):  # anonymous may pull, not push
            await copy(c, f"{registry.host}/tok/src:v1", f"{token_registry.host}/tok/app:v1")
        result = await copy(
            c,
            f"{registry.host}/tok/src:v1",
            f"{token_registry.host}/tok/app:v1",
            dst_credentials=alice,
        )
    ref = f"{token_registry.host}/tok/app:v1"
    async with RegistryClient() as c:
        before = len(issuer.requests)
        assert (await check(c, ref, credentials=alice)).digest == result.digest
        assert (await check(c, ref, credentials=alice, resolve_digest=True)).available
        assert len(issuer.requests) - before == 1  # one token, cached for the next requests
        assert (await check(c, ref)).available  # anonymous pull is granted
        denied = await check(c, ref, credentials=Credentials("alice", "not-her-password"))
    assert denied.status is AvailabilityStatus.INVALID_AUTH
    assert denied.error is not None
    assert "not-her-password" not in denied.error
    assert issuer.requests[-1].user == "alice"
    assert not issuer.requests[-1].granted


async def test_token_auth_missing_image_is_not_found(token_registry: RegistryServer) -> None:
    async with RegistryClient() as c:
        with pytest.raises(NotFound):
            await c.get_manifest(f"{token_registry.host}/tok/absent:v1")
