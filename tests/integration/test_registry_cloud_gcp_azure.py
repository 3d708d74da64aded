"""Artifact Registry (GKE Workload Identity) and ACR (Azure Workload Identity), end to end on
loopback: google-auth against a GCE metadata stand-in, azure-identity against an Entra stand-in
plus ACR's `/oauth2/exchange`; each in front of a real docker-registry whose token service admits
only the tokens those exchanges issued. Short-lived tokens show the refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from kuik_testing.cloud import ACR_USER, EntraServer, GceMetadata, IssuedTokens, acr_routes
from kuik_testing.images import push_image, synthetic_image
from kuik_testing.registry import RegistryServer
from kuik_testing.token_issuer import TokenIssuer
from kuikcore.config import Config
from kuikcore.registry import RegistryClient, check, copy
from kuikcore.registry.cloud import CloudAuth

LIFETIME = 4.0  # seconds: refreshed after half of it


def cloud_config(host: str, cloud: str) -> Config:
    return Config.model_validate({"registries": {host: {"insecure": True, "cloudAuth": cloud}}})


def cloud_of(client: RegistryClient) -> CloudAuth:
    cloud = client.transport.cloud
    assert isinstance(cloud, CloudAuth)
    return cloud


# --- GCP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gce_metadata() -> Iterator[GceMetadata]:
    """One metadata server per process: google-auth reads `GCE_METADATA_HOST` once, at import."""
    metadata = GceMetadata(lifetime=LIFETIME).start()
    with pytest.MonkeyPatch.context() as env:
        env.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        env.setenv("CLOUDSDK_CONFIG", "/nonexistent-gcloud-config")
        for name, value in metadata.gcp_env().items():
            env.setenv(name, value)
        yield metadata
    metadata.stop()


@pytest.fixture
def gke(gce_metadata: GceMetadata) -> GceMetadata:
    gce_metadata.tokens.issued.clear()
    return gce_metadata


@pytest.fixture
def artifact_registry(gke: GceMetadata) -> Iterator[tuple[RegistryServer, TokenIssuer]]:
    issuer = TokenIssuer(
        authenticate=lambda user, password: (
            user == "oauth2accesstoken" and gke.tokens.valid(password)
        )
    ).start()
    server = RegistryServer(extra_config=issuer.registry_config()).start()
    yield server, issuer
    server.cleanup()
    issuer.stop()


async def test_gke_workload_identity_copies_checks_and_refreshes(
    registry: RegistryServer,
    gke: GceMetadata,
    artifact_registry: tuple[RegistryServer, TokenIssuer],
) -> None:
    target_registry, issuer = artifact_registry
    push_image(registry, "cloud/src", "g1", synthetic_image("gcp1"))
    target = f"{target_registry.host}/kuik/mirror/src:g1"
    async with RegistryClient.from_config(cloud_config(target_registry.host, "gcp")) as client:
        copied = await copy(client, f"{registry.host}/cloud/src:g1", target)
        assert (await check(client, target)).available
        assert cloud_of(client).exchanges == {target_registry.host: 1}  # cached meanwhile
        await asyncio.sleep(LIFETIME / 2 + 0.5)  # past the refresh point
        client.transport.tokens = type(client.transport.tokens)()  # ask the token service anew
        later = await check(client, target)
        assert later.available, later.error
        assert later.digest == copied.digest
        assert cloud_of(client).exchanges == {target_registry.host: 2}
    assert gke.tokens.count == 2
    assert {r.user for r in issuer.requests if r.granted} == {"oauth2accesstoken"}


async def test_gke_expired_token_is_refused_by_the_registry(
    gke: GceMetadata, artifact_registry: tuple[RegistryServer, TokenIssuer]
) -> None:
    """The stand-in really checks: a token past its lifetime no longer opens the registry."""
    target_registry, issuer = artifact_registry
    async with RegistryClient.from_config(cloud_config(target_registry.host, "gcp")) as client:
        await check(client, f"{target_registry.host}/kuik/absent:x")
    token = next(iter(gke.tokens.issued))
    assert issuer.authenticate is not None
    assert issuer.authenticate("oauth2accesstoken", token)
    gke.tokens.issued[token] = 0.0
    assert not issuer.authenticate("oauth2accesstoken", token)


# --- Azure -------------------------------------------------------------------------------------


@pytest.fixture
def entra(monkeypatch: pytest.MonkeyPatch) -> Iterator[EntraServer]:
    server = EntraServer().start()
    for name in ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in server.azure_env().items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


@pytest.fixture
def acr(entra: EntraServer) -> Iterator[tuple[RegistryServer, TokenIssuer, IssuedTokens]]:
    refresh_tokens = IssuedTokens(lifetime=LIFETIME)
    issuer = TokenIssuer(
        authenticate=lambda user, password: user == ACR_USER and refresh_tokens.valid(password)
    )
    issuer.post_routes.update(acr_routes(entra, refresh_tokens, issuer.service))
    issuer.start()
    server = RegistryServer(extra_config=issuer.registry_config()).start()
    yield server, issuer, refresh_tokens
    server.cleanup()
    issuer.stop()


async def test_azure_workload_identity_exchanges_copies_checks_and_refreshes(
    registry: RegistryServer,
    entra: EntraServer,
    acr: tuple[RegistryServer, TokenIssuer, IssuedTokens],
) -> None:
    target_registry, issuer, refresh_tokens = acr
    push_image(registry, "cloud/src", "a1", synthetic_image("acr1"))
    target = f"{target_registry.host}/mirror/src:a1"
    async with RegistryClient.from_config(cloud_config(target_registry.host, "azure")) as client:
        copied = await copy(client, f"{registry.host}/cloud/src:a1", target)
        checks = await asyncio.gather(*(check(client, target) for _ in range(4)))
        assert all(c.available for c in checks), [c.error for c in checks]
        assert cloud_of(client).exchanges == {target_registry.host: 1}
        await asyncio.sleep(LIFETIME / 2 + 0.5)
        client.transport.tokens = type(client.transport.tokens)()
        later = await check(client, target)
        assert later.available, later.error
        assert later.digest == copied.digest
        assert cloud_of(client).exchanges == {target_registry.host: 2}
    assert refresh_tokens.count == 2
    assert set(entra.scopes) == {"https://management.azure.com/.default"}
    assert {r.user for r in issuer.requests if r.granted} == {ACR_USER}


async def test_azure_without_the_federated_token_nothing_is_granted(
    registry: RegistryServer,
    entra: EntraServer,
    acr: tuple[RegistryServer, TokenIssuer, IssuedTokens],
) -> None:
    """A projected token Entra does not accept: the exchange never happens, the push is refused."""
    target_registry, issuer, refresh_tokens = acr
    entra.federated_token = "not-the-projected-token"
    push_image(registry, "cloud/src", "a2", synthetic_image("acr2"))
    async with RegistryClient.from_config(cloud_config(target_registry.host, "azure")) as client:
        with pytest.raises(Exception, match="azure credentials"):
            await copy(client, f"{registry.host}/cloud/src:a2", f"{target_registry.host}/m:a2")
    assert refresh_tokens.count == 0
    assert not any(r.granted and r.user for r in issuer.requests)
